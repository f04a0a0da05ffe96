"""A real uvicorn server on 127.0.0.1 for an ASGI app, in a background thread, for the length of a `with`."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


@contextmanager
def serving(asgi_app: Any, startup_timeout: float = 5.0) -> Iterator[str]:
    """Yields the base URL (a free port chosen by the OS); shuts the server down cleanly on exit."""
    # proto=IPPROTO_TCP, so asyncio sets TCP_NODELAY on accepted connections (else each response
    # stalls ~40 ms on delayed ACK, as uvicorn writes headers and body separately)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(asgi_app, lifespan="off", ws="none", log_config=None, access_log=False, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn:{port}", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + startup_timeout
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("uvicorn stopped during startup")
            if time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start within {startup_timeout} s")
            time.sleep(0.005)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        if thread.is_alive():
            raise RuntimeError("uvicorn did not shut down within 10 s")


class Switchboard:
    """An ASGI app that forwards to whichever app a test plugs in, so one server can serve a whole module.

    Starting and stopping uvicorn costs ~0.15 s; each test still gets its own app, store and secrets.
    """

    def __init__(self) -> None:
        self.target: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.target is None:
            raise RuntimeError("no app is plugged into the switchboard")
        await self.target(scope, receive, send)
