"""A real SMTP server (aiosmtpd) on 127.0.0.1, so the email channel is tested over a real socket.

It records every message it accepts (envelope, raw bytes, the connection it came
on) and can be scripted from the test thread: refuse a recipient (`reject`),
answer 4xx to the next few messages (`defer`), or close a connection in the middle
of a session (`drop_after` closes it when the next MAIL FROM arrives, before the
server has anything to deliver; `drop_before_reply` closes it after taking a
message's text but before saying 250, the case nobody can call unsent), or hold
each 250 back for a while (`slow_down`), so a client killed while it waits has
handed over a message it never heard was accepted. It can go down and come back on
the same port (`stop`, then `start` again), as a mail server restarted mid-run does.

It is also the target of dispatch benchmarks and concurrency tests, so messages
are parsed lazily and the counters (`count`, `message_ids`, `connections`) are
cheap. Every wait is bounded, and `stop` closes every server-side connection
before the thread ends, so no ResourceWarning outlives a test.
"""

from __future__ import annotations

import asyncio
import email.policy
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from functools import cached_property
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

_HEADERS_ONLY = BytesParser(policy=email.policy.default)


@dataclass
class Received:
    """One message the server accepted (or took and then dropped the connection on)."""

    connection: int  # 1 for the first connection that said EHLO, 2 for the next, ...
    mail_from: str
    rcpt_tos: tuple[str, ...]
    mail_options: tuple[str, ...]
    data: bytes
    tls: bool
    login: str | None
    message_id: str | None = field(default=None)

    @cached_property
    def message(self) -> EmailMessage:
        parsed = BytesParser(policy=email.policy.default).parsebytes(self.data)
        assert isinstance(parsed, EmailMessage)
        return parsed


class _SinkSMTP(SMTP):
    """aiosmtpd's server protocol, reporting each connection's start and end to the sink."""

    def __init__(self, sink: SmtpSink, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._sink = sink

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        fresh = self.transport is None  # STARTTLS calls this again on the same connection
        super().connection_made(transport)
        if fresh:
            self._sink._opened(self)

    def connection_lost(self, error: Exception | None) -> None:
        super().connection_lost(error)
        self._sink._closed(self)


class _SinkController(Controller):
    def __init__(self, sink: SmtpSink, handler: Any, port: int = 0, **kwargs: Any):
        super().__init__(handler, hostname="127.0.0.1", port=port, server_hostname="sink.test", **kwargs)
        self._sink = sink

    def factory(self) -> SMTP:
        return _SinkSMTP(self._sink, self.handler, **self.SMTP_kwargs)

    def _trigger_server(self) -> None:
        # Bound to port 0: learn the port the OS chose before aiosmtpd's readiness probe uses it.
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class SmtpSink:
    """The scriptable state behind the server; every public method is safe to call from the test thread.

    With `tls_context` the server offers STARTTLS and requires it; with `implicit_tls`
    too, it speaks TLS from the first byte instead (port 465 style). `credentials`
    make it require a login (over implicit TLS the login is offered, not required:
    aiosmtpd counts only STARTTLS as TLS when it decides whether AUTH may be demanded).
    """

    def __init__(
        self,
        *,
        tls_context: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
        credentials: tuple[str, str] | None = None,
    ):
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._rejects: dict[str, str] = {}
        self._defer: list[tuple[str, str]] = []  # (stage, reply) for the next messages, in order
        self._drop_after: int | None = None
        self._drop_before_reply = 0
        self._reply_delay = 0.0
        self._numbers: dict[int, int] = {}  # id(protocol) -> connection number, given at EHLO
        self._protocols: list[_SinkSMTP] = []
        self._open: set[int] = set()
        self._logins: dict[int, str] = {}
        self.credentials = credentials
        kwargs: dict[str, Any] = {}
        if credentials is not None:
            kwargs.update(authenticator=self._authenticate, auth_required=not implicit_tls)
        if implicit_tls:
            assert tls_context is not None
            kwargs.update(ssl_context=tls_context, auth_require_tls=False)
        elif tls_context is not None:
            kwargs.update(tls_context=tls_context, require_starttls=True)
        self._controller_kwargs = kwargs
        self._controller: _SinkController | None = None
        self.host = "127.0.0.1"
        self.port = 0

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> SmtpSink:
        """Listen (again): the first start takes a free port, a restart after `stop` takes the same one.

        What was received, and the scripting, outlive a restart; connections do not.
        """
        if self._controller is not None:
            raise RuntimeError("the sink is already running")
        controller = _SinkController(self, self, port=self.port, **self._controller_kwargs)
        controller.start()
        self._controller = controller
        self.port = controller.port
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop listening, close every server-side connection (clients see them drop), end the thread.

        The listener closes first, so a client reconnecting meanwhile is refused rather than
        keeping a connection open. Stopping a stopped sink does nothing.
        """
        controller, self._controller = self._controller, None
        if controller is None:
            return
        loop = controller.loop

        def close_all() -> None:
            if controller.server is not None:
                controller.server.close()
            for protocol in self._protocols:
                if protocol.transport is not None:
                    protocol.transport.close()

        try:
            loop.call_soon_threadsafe(close_all)
            self.wait_until(lambda: self.open_connections == 0, timeout, what="server-side connections to close")
        finally:
            controller.stop()

    # -- scripting ------------------------------------------------------------------------

    def reject(self, recipient: str, reply: str = "550 5.1.1 <{rcpt}>: Recipient address rejected") -> None:
        """Refuse RCPT TO for this address, for good (the reply may use {rcpt})."""
        with self._lock:
            self._rejects[recipient.lower()] = reply

    def defer(self, count: int = 1, reply: str = "451 4.7.1 Try again later", stage: str = "rcpt") -> None:
        """Answer the next `count` messages with a 4xx, at RCPT TO (greylisting) or after the text ("data")."""
        assert stage in ("rcpt", "data")
        with self._lock:
            self._defer.extend([(stage, reply)] * count)

    def drop_after(self, count: int) -> None:
        """Once `count` more messages are accepted, close the connection that next says MAIL FROM."""
        with self._lock:
            self._drop_after = count

    def drop_before_reply(self, count: int = 1) -> None:
        """Take the text of the next `count` messages, then close the connection instead of answering."""
        with self._lock:
            self._drop_before_reply = count

    def slow_down(self, seconds: float) -> None:
        """Hold the 250 for each message's text `seconds` after taking it (0 answers at once again).

        The message counts as received (`count`) before the wait, so a test that waits
        on `count` and then kills the client lands while the client waits for its reply.
        """
        assert seconds >= 0
        with self._lock:
            self._reply_delay = seconds

    # -- what happened --------------------------------------------------------------------

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    @property
    def count(self) -> int:
        with self._lock:
            return len(self._received)

    @property
    def message_ids(self) -> list[str | None]:
        with self._lock:
            return [r.message_id for r in self._received]

    @property
    def connections(self) -> int:
        """Connections that said EHLO (aiosmtpd's own readiness probe never does)."""
        with self._lock:
            return len(self._numbers)

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._open)

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0, what: str = "the sink") -> None:
        """Bounded wait for a state the server reaches on its own thread."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(0.005)

    def wait_for_count(self, count: int, timeout: float = 10.0) -> None:
        self.wait_until(lambda: self.count >= count, timeout, what=f"{count} messages")

    # -- server side (the aiosmtpd thread) --------------------------------------------------

    def _opened(self, protocol: _SinkSMTP) -> None:
        with self._lock:
            self._protocols.append(protocol)
            self._open.add(id(protocol))

    def _closed(self, protocol: _SinkSMTP) -> None:
        with self._lock:
            self._open.discard(id(protocol))

    def _number(self, server: SMTP) -> int:
        with self._lock:
            return self._numbers.setdefault(id(server), len(self._numbers) + 1)

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword) or self.credentials is None:
            return AuthResult(success=False, handled=False)
        user, password = auth_data.login.decode(), auth_data.password.decode()
        if (user, password) != self.credentials:
            return AuthResult(success=False, handled=False)
        with self._lock:
            self._logins[id(server)] = user
        return AuthResult(success=True)

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname  # the five-argument hook must do what aiosmtpd would have done
        self._number(server)
        return responses

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        with self._lock:
            drop = self._drop_after is not None and self._drop_after <= 0
            if drop:
                self._drop_after = None
        if drop:
            assert server.transport is not None
            server.transport.close()  # the client sees the connection go, never a reply
            return "421 4.4.2 closing"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        with self._lock:
            reply = self._rejects.get(address.lower())
            if reply is None and self._defer and self._defer[0][0] == "rcpt":
                reply = self._defer.pop(0)[1]
        if reply is not None:
            return reply.format(rcpt=address)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self._lock:
            if self._defer and self._defer[0][0] == "data":
                return self._defer.pop(0)[1]
        raw = envelope.original_content or b""
        transport = server.transport
        headers = _HEADERS_ONLY.parsebytes(raw, headersonly=True)
        with self._lock:
            item = Received(
                connection=self._numbers.get(id(server), 0),
                mail_from=envelope.mail_from or "",
                rcpt_tos=tuple(envelope.rcpt_tos),
                mail_options=tuple(envelope.mail_options),
                data=raw,
                tls=transport is not None and transport.get_extra_info("ssl_object") is not None,
                login=self._logins.get(id(server)),
                message_id=str(headers["Message-ID"]) if headers["Message-ID"] else None,
            )
            self._received.append(item)
            number = len(self._received)
            if self._drop_after is not None:
                self._drop_after -= 1
            drop = self._drop_before_reply > 0
            if drop:
                self._drop_before_reply -= 1
            delay = self._reply_delay
        if drop:
            assert transport is not None
            transport.close()
            return "250 never sent"
        if delay:
            await asyncio.sleep(delay)  # cancelled by aiosmtpd if the client goes away meanwhile
        return f"250 OK queued as {number}"


def point_project_at(project: Path, sink: SmtpSink, *, connections: int, **config: Any) -> None:
    """Make a test project send its email over SMTP to `sink`, with caps raised so nothing defers.

    `engine` (a mapping) updates config.yaml's `engine`; any other keyword replaces that key.
    """
    import yaml

    path = project / "config.yaml"
    settings = yaml.safe_load(path.read_text())
    for sender in settings["senders"]:
        sender.update(per_minute=100_000, daily_cap=100_000)
    settings["limits"] = {"per_lead_daily": 10}
    settings["engine"].update(config.pop("engine", {}))
    settings.update(config)
    settings["email"].update(
        transport="smtp",
        smtp={
            "host": sink.host,
            "port": sink.port,
            "security": "none",
            "connections": connections,
            "timeout_seconds": 10,
        },
    )
    path.write_text(yaml.safe_dump(settings, sort_keys=False))


@contextmanager
def running_sink(**kwargs: Any) -> Iterator[SmtpSink]:
    """A started sink (keyword arguments as for `SmtpSink`), stopped on the way out."""
    sink = SmtpSink(**kwargs).start()
    try:
        yield sink
    finally:
        sink.stop()


@dataclass(frozen=True)
class TlsFiles:
    """A self-signed certificate for 127.0.0.1 and its key, for STARTTLS and implicit-TLS sinks."""

    cert: Path
    key: Path

    @classmethod
    def make(cls, folder: Path) -> TlsFiles:
        """Made with the openssl command line (no Python crypto package needed), valid for two days."""
        openssl = shutil.which("openssl")
        if openssl is None:
            raise RuntimeError("the TLS tests need the openssl command line tool to make a test certificate")
        cert, key = folder / "cert.pem", folder / "key.pem"
        subprocess.run(
            [
                openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
                "-addext", "subjectAltName=IP:127.0.0.1",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )  # fmt: skip
        return cls(cert, key)

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context
