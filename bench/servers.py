"""The test servers (the aiosmtpd sink, the Twilio-shaped fake) run in a child process for benchmarks.

A benchmark that measures the engine must not share the GIL with the server it sends
to, or it measures the server too. `ServerProcess("smtp")` starts `tests.smtp_sink.SmtpSink`
in a fresh interpreter (multiprocessing, spawn), `ServerProcess("twilio")` starts
`tests.twilio_fake.FakeTwilio`; the parent then asks it, over a pipe, what it received.
Every wait is bounded, and the child also ends when the parent goes away (its end of
the pipe closes).

For throughput measured from the server's side, `ServerProcess("smtp", latency=0.05,
timestamps=True)` holds each 250 reply 50 ms (`SmtpSink.slow_down`, a slow relay) and
notes when each accepted message arrived, when its 250 went back and which client
connection it came on (`times`); `pid` lets the parent read the child's CPU time.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `tests` is a package of the checkout, not of the installed distribution
    sys.path.insert(0, str(ROOT))

KINDS = ("smtp", "twilio")


def _timed_sink() -> Any:
    """The sink, also noting (time.time(), so the parent can compare) when each accepted message
    arrived, when its 250 went back, and the client's address and port (one per connection);
    a subclass, so the plain sink stays as it is."""
    from aiosmtpd.smtp import SMTP, Envelope, Session

    from tests.smtp_sink import SmtpSink

    class TimedSink(SmtpSink):
        def __init__(self) -> None:
            super().__init__()
            self.times: list[tuple[float, float, str]] = []  # (arrived, replied, client), in reply order

        async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
            arrived = time.time()
            peer = server.transport.get_extra_info("peername") if server.transport is not None else None
            reply = await super().handle_DATA(server, session, envelope)
            if reply.startswith("250"):
                self.times.append((arrived, time.time(), f"{peer[0]}:{peer[1]}" if peer else "?"))
            return reply

    return TimedSink()


def _serve(kind: str, conn: Connection, latency: float = 0.0, timestamps: bool = False) -> None:
    """The child: start the server, report where it listens, then answer questions until told to stop."""
    if kind == "smtp":
        from tests.smtp_sink import SmtpSink

        sink = _timed_sink() if timestamps else SmtpSink()
        if latency:
            sink.slow_down(latency)
        sink.start()
        conn.send(("ready", {"host": sink.host, "port": sink.port}))

        def answer(question: str, start: int) -> Any:
            if question == "count":
                return sink.count
            if question == "ids":
                return sink.message_ids[start:]
            if question == "connections":
                return sink.connections
            if question == "times" and timestamps:
                return sink.times[start:]
            raise ValueError(question)

        stop: Callable[[], None] = sink.stop
    else:
        from tests.twilio_fake import FakeTwilio

        fake = FakeTwilio().start()
        conn.send(("ready", {"base_url": fake.base_url, "account_sid": fake.account_sid, "token": fake.auth_token}))

        def answer(question: str, start: int) -> Any:
            if question == "count":
                return fake.count
            if question == "ids":
                return [m.sid for m in fake.messages[start:]]
            if question == "connections":
                return fake.max_in_flight
            raise ValueError(question)

        stop = fake.stop
    try:
        while True:
            try:
                question, start = conn.recv()
            except EOFError:  # the parent is gone
                return
            if question == "stop":
                return
            try:
                conn.send(("ok", answer(question, start)))
            except Exception as exc:  # report, never hang the parent
                conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        stop()
        conn.close()


class ServerProcess:
    """One test server in its own process; use as a context manager."""

    def __init__(self, kind: str, timeout: float = 30.0, *, latency: float = 0.0, timestamps: bool = False):
        """`latency` (seconds held before each 250) and `timestamps` (answer `times`) are for "smtp" only."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        if kind != "smtp" and (latency or timestamps):
            raise ValueError("latency and timestamps are for the smtp sink only")
        if latency < 0:
            raise ValueError(f"latency must be 0 or more seconds, not {latency!r}")
        self.kind = kind
        self.timeout = timeout
        self.info: dict[str, Any] = {}
        context = multiprocessing.get_context("spawn")  # no inherited threads or event loops
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(kind, child, latency, timestamps), name=f"bench-{kind}", daemon=True
        )
        self._child = child

    def __enter__(self) -> ServerProcess:
        self._process.start()
        self._child.close()
        status, self.info = self._receive()
        assert status == "ready", status
        return self

    def __exit__(self, *exc_info: object) -> None:
        with suppress(OSError):  # the child may be gone already
            self._conn.send(("stop", 0))
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout=5)
        self._conn.close()

    def _receive(self) -> tuple[str, Any]:
        if not self._conn.poll(self.timeout):
            raise TimeoutError(f"the {self.kind} server process did not answer within {self.timeout} s")
        status, value = self._conn.recv()
        if status == "error":
            raise RuntimeError(f"the {self.kind} server process failed: {value}")
        return status, value

    def ask(self, question: str, start: int = 0) -> Any:
        """`count` (messages accepted), `ids` (their Message-IDs or SIDs from `start` on), `connections`,
        and with `timestamps`, `times` ((arrived, replied, client) in time.time() seconds, from `start` on)."""
        self._conn.send((question, start))
        return self._receive()[1]

    @property
    def count(self) -> int:
        return int(self.ask("count"))

    @property
    def pid(self) -> int | None:
        """The child's process id (None before it starts), e.g. to read its CPU time in /proc."""
        return self._process.pid

    def times(self, start: int = 0) -> list[tuple[float, float, str]]:
        """(arrived, replied, client "host:port") of each accepted message from `start` on; needs `timestamps=True`."""
        return [(float(a), float(r), str(c)) for a, r, c in self.ask("times", start)]

    def ids(self, start: int = 0) -> list[str | None]:
        return list(self.ask("ids", start))
