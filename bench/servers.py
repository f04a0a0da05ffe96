"""The test servers (the aiosmtpd sink, the Twilio-shaped fake) run in a child process for benchmarks.

A benchmark that measures the engine must not share the GIL with the server it sends
to, or it measures the server too. `ServerProcess("smtp")` starts `tests.smtp_sink.SmtpSink`
in a fresh interpreter (multiprocessing, spawn), `ServerProcess("twilio")` starts
`tests.twilio_fake.FakeTwilio`; the parent then asks it, over a pipe, what it received.
Every wait is bounded, and the child also ends when the parent goes away (its end of
the pipe closes).
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Callable
from contextlib import suppress
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `tests` is a package of the checkout, not of the installed distribution
    sys.path.insert(0, str(ROOT))

KINDS = ("smtp", "twilio")


def _serve(kind: str, conn: Connection) -> None:
    """The child: start the server, report where it listens, then answer questions until told to stop."""
    if kind == "smtp":
        from tests.smtp_sink import SmtpSink

        sink = SmtpSink().start()
        conn.send(("ready", {"host": sink.host, "port": sink.port}))

        def answer(question: str, start: int) -> Any:
            if question == "count":
                return sink.count
            if question == "ids":
                return sink.message_ids[start:]
            if question == "connections":
                return sink.connections
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

    def __init__(self, kind: str, timeout: float = 30.0):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        self.kind = kind
        self.timeout = timeout
        self.info: dict[str, Any] = {}
        context = multiprocessing.get_context("spawn")  # no inherited threads or event loops
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(kind, child), name=f"bench-{kind}", daemon=True)
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
        """`count` (messages accepted), `ids` (their Message-IDs or SIDs from `start` on), `connections`."""
        self._conn.send((question, start))
        return self._receive()[1]

    @property
    def count(self) -> int:
        return int(self.ask("count"))

    def ids(self, start: int = 0) -> list[str | None]:
        return list(self.ask("ids", start))
