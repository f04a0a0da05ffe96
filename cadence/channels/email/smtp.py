"""Sending email over SMTP (aiosmtplib), a pool of connections shared by the batches in flight.

It follows `cadence.channels.base.EmailTransport`: a batch in, one `Receipt` per message out,
in order, and never an exception for one message's failure. It sends the bytes
`cadence.channels.email.mime` makes, the same the outbox writes.

How an SMTP conversation becomes our errors (see `_reply_error` and `_lost`):

    SendError
    ├── TransientError     any 4xx reply (greylisting, a busy mailbox, rate limits, 421 closing);
    │                      no session at all (connection refused, timeout while connecting, TLS or
    │                      login refused); the connection dropped or timed out during MAIL FROM or
    │                      RCPT TO, before the server had anything it could deliver
    ├── UncertainError     the connection dropped or timed out during DATA: the server may hold the
    │                      message, so resending it blindly could reach the lead twice. aiosmtplib
    │                      sends DATA and the text in one call, so a drop while waiting for the
    │                      354 counts here too: rare, and a retry by hand is cheaper than a duplicate
    └── PermanentError     event "bounced": RCPT TO refused with 5xx (the address takes no mail);
                           event None: a RCPT TO 5xx whose enhanced status is 5.7.x (policy: relay
                           denied, our IP blocked; the address is fine, so it must not be marked
                           bounced), a 5xx to MAIL FROM or to the text, or a message that cannot be
                           built (bad header, non-ASCII address on a server without SMTPUTF8)

Each SMTP connection is one worker: it takes the next message of the batch, and
on a dropped connection reconnects for the message after. A worker that cannot
connect retires for the rest of the batch, so a server that is down costs at most
`connections` connect attempts per batch, not one per message; messages nobody
attempted get a TransientError. Retries belong to the dispatcher.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
from collections import deque
from collections.abc import Mapping, Sequence

import aiosmtplib
from aiosmtplib.protocol import SMTPProtocol

from cadence.channels.base import (
    OutgoingEmail,
    PermanentError,
    Receipt,
    SendError,
    TransientError,
    UncertainError,
    missing_secrets,
)
from cadence.channels.email.mime import needs_utf8, prepare
from cadence.clock import Clock
from cadence.config import SmtpSettings
from cadence.names import Event


class MissingSmtpCredentials(ValueError):
    """Raised at startup, so a misconfigured `cadence run` stops before it claims any work."""


class _Unreachable(Exception):
    """No SMTP session could be opened; carries the TransientError for the message at hand."""

    def __init__(self, error: TransientError):
        super().__init__(str(error))
        self.error = error


_POLICY_STATUS = re.compile(r"\s*5\.7\.\d")
_CLOSE_GRACE_SECONDS = 2.0


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"{exc.code} {exc.message}".strip()
    if isinstance(exc, aiosmtplib.SMTPException):
        return exc.message or type(exc).__name__
    return str(exc) or type(exc).__name__


def _reply_error(exc: aiosmtplib.SMTPResponseException, step: str) -> SendError | None:
    """An SMTP reply code -> our error; None for a reply that is no reply (a malformed line)."""
    code, text = exc.code, f"the SMTP server refused {step}: {_describe(exc)}"
    if 400 <= code < 500:
        return TransientError(text, code)
    if 500 <= code < 600:
        bounced = step == "RCPT TO" and not _POLICY_STATUS.match(exc.message)
        return PermanentError(text, code, event=Event.BOUNCED if bounced else None)
    return None


def _lost(exc: BaseException, step: str) -> SendError:
    if step == "DATA":
        return UncertainError(f"the SMTP connection was lost during DATA ({_describe(exc)}): the message may be out")
    return TransientError(f"the SMTP connection was lost at {step}, before the message was sent ({_describe(exc)})")


def _credentials(settings: SmtpSettings, environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    names = (settings.username_env, settings.password_env)
    if names == (None, None):
        return None, None
    if None in names:
        raise MissingSmtpCredentials(
            "email.smtp needs both username_env and password_env (the names of environment variables), or neither"
        )
    user_env, password_env = settings.username_env or "", settings.password_env or ""
    user, password = environ.get(user_env), environ.get(password_env)
    missing = [name for name, value in ((user_env, user), (password_env, password)) if not value]
    if missing:
        raise MissingSmtpCredentials(
            missing_secrets(
                "email goes through SMTP (email.transport: smtp)", missing, "email.smtp.username_env / password_env"
            )
        )
    return user, password


class SmtpEmailTransport:
    """Sends through aiosmtplib over `settings.connections` connections kept open between batches.

    Credentials come only from the environment variables named in the settings, and
    are checked here so a missing one fails at startup. `starttls` insists on the
    upgrade (a server that does not offer STARTTLS gets nothing, never plaintext);
    certificates are always verified (trust a private CA with SSL_CERT_FILE).
    Connections belong to the event loop that opened them: one transport serves one
    loop until `aclose`, which says QUIT on each.
    """

    def __init__(self, settings: SmtpSettings, clock: Clock, environ: Mapping[str, str] = os.environ):
        self.settings = settings
        self.clock = clock
        self._username, self._password = _credentials(settings, environ)
        self._slots: list[aiosmtplib.SMTP | None] = [None] * settings.connections
        self._protocols: list[SMTPProtocol] = []
        self._local_hostname: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._free: asyncio.Queue[int] | None = None

    def _free_slots(self) -> asyncio.Queue[int]:
        """The connection slots no batch is using, for the event loop that first asked."""
        loop = asyncio.get_running_loop()
        if self._loop is None or self._free is None:
            self._loop, self._free = loop, asyncio.Queue()
            for slot in range(len(self._slots)):
                self._free.put_nowait(slot)
        elif self._loop is not loop:
            raise RuntimeError("SmtpEmailTransport is bound to the event loop that first used it; make one per loop")
        return self._free

    async def send_batch(self, messages: Sequence[OutgoingEmail]) -> list[Receipt]:
        """Send over the free connections; batches sent at once share them, a connection at a time.

        Each worker takes one connection slot and keeps it until the batch has nothing left
        to hand out, so a second batch picks up each connection the moment the first lets it
        go: no connection waits for the slowest conversation of the batch before it.
        """
        if not messages:
            return []
        free = self._free_slots()
        receipts: list[Receipt | None] = [None] * len(messages)
        pending = deque(enumerate(messages))
        unreachable: list[TransientError] = []
        workers = min(len(self._slots), len(messages))
        await asyncio.gather(*(self._work(free, pending, receipts, unreachable) for _ in range(workers)))
        for index, message in pending:  # every worker retired: the server cannot be reached
            reason = unreachable[-1]
            error = TransientError(f"not attempted: {reason}", reason.code)
            receipts[index] = Receipt(message.touch_id, error=error)
        done = [r for r in receipts if r is not None]
        assert len(done) == len(messages), "every message gets a receipt"
        return done

    async def _work(
        self,
        free: asyncio.Queue[int],
        pending: deque[tuple[int, OutgoingEmail]],
        receipts: list[Receipt | None],
        unreachable: list[TransientError],
    ) -> None:
        slot = await free.get()
        try:
            await self._work_on(slot, pending, receipts, unreachable)
        finally:
            free.put_nowait(slot)

    async def _work_on(
        self,
        slot: int,
        pending: deque[tuple[int, OutgoingEmail]],
        receipts: list[Receipt | None],
        unreachable: list[TransientError],
    ) -> None:
        while pending:
            index, message = pending.popleft()
            wire = prepare(message, self.clock.now())
            if isinstance(wire, SendError):
                receipts[index] = Receipt(message.touch_id, error=wire)
                continue
            try:
                smtp = await self._connection(slot)
            except _Unreachable as exc:
                receipts[index] = Receipt(message.touch_id, error=exc.error)
                unreachable.append(exc.error)
                return
            receipts[index] = await self._transact(slot, smtp, message, wire)

    async def _connection(self, slot: int) -> aiosmtplib.SMTP:
        smtp = self._slots[slot]
        if smtp is not None and smtp.is_connected:
            return smtp
        self._drop(slot)
        smtp, s = None, self.settings
        try:
            if self._local_hostname is None:  # what EHLO says; looked up once, not per connection
                self._local_hostname = await asyncio.to_thread(socket.getfqdn)
            smtp = aiosmtplib.SMTP(
                hostname=s.host,
                port=s.port,
                local_hostname=self._local_hostname,
                timeout=s.timeout_seconds,
                use_tls=s.security == "tls",
                start_tls=s.security == "starttls",
            )
            await smtp.connect()
            self._track(smtp)
            if smtp.is_ehlo_or_helo_needed:  # extensions (SIZE, SMTPUTF8) must be known before MAIL FROM
                try:
                    await smtp.ehlo()
                except aiosmtplib.SMTPHeloError:
                    await smtp.helo()
            if self._username is not None and self._password is not None:
                await smtp.login(self._username, self._password)
        except Exception as exc:  # refused, timed out, TLS or login failed: the server, not the message
            if smtp is not None:
                smtp.close()
            text = f"cannot open an SMTP session with {s.host}:{s.port}: {_describe(exc)}"
            raise _Unreachable(TransientError(text, getattr(exc, "code", None))) from exc
        self._slots[slot] = smtp
        return smtp

    def _track(self, smtp: aiosmtplib.SMTP) -> None:
        """Remember the connection's protocol, so `aclose` can tell when its socket is really closed."""
        self._protocols = [p for p in self._protocols if p.transport is not None]
        if smtp.protocol is not None:
            self._protocols.append(smtp.protocol)

    async def _transact(self, slot: int, smtp: aiosmtplib.SMTP, message: OutgoingEmail, wire: bytes) -> Receipt:
        touch = message.touch_id
        options, encoding = [], "ascii"
        if needs_utf8(message):
            if not smtp.supports_extension("smtputf8"):
                return Receipt(touch, error=PermanentError("not sent: a non-ASCII address needs SMTPUTF8"))
            options, encoding = ["SMTPUTF8"], "utf-8"
            if smtp.supports_extension("8bitmime"):
                options.append("BODY=8BITMIME")
        if smtp.supports_extension("size"):  # an oversized message is refused before its text is sent
            options.append(f"SIZE={len(wire)}")
        step = "MAIL FROM"
        try:
            await smtp.mail(message.from_addr, options=options, encoding=encoding)
            step = "RCPT TO"
            await smtp.rcpt(message.to, encoding=encoding)
            step = "DATA"
            await smtp.data(wire)
        except aiosmtplib.SMTPResponseException as exc:
            error = _reply_error(exc, step)
            if error is None:  # the conversation is out of step: trust nothing more on this connection
                self._drop(slot)
                return Receipt(touch, error=_lost(exc, step))
            await self._reset(slot, smtp)
            return Receipt(touch, error=error)
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError) as exc:
            self._drop(slot)
            return Receipt(touch, error=_lost(exc, step))
        except ValueError as exc:  # aiosmtplib refuses an address that could inject SMTP commands
            await self._reset(slot, smtp)
            return Receipt(touch, error=PermanentError(f"not sent: {exc}"))
        except Exception as exc:  # a bug or a surprise: never guess that the message was not sent
            self._drop(slot)
            detail = f"unexpected error at {step}: {type(exc).__name__}: {exc}"
            return Receipt(touch, error=UncertainError(detail) if step == "DATA" else PermanentError(detail))
        return Receipt(touch, provider_id=message.message_id)

    async def _reset(self, slot: int, smtp: aiosmtplib.SMTP) -> None:
        """Clear a half-made envelope so the connection can carry the next message."""
        if not smtp.is_connected:
            self._drop(slot)
            return
        try:
            await smtp.rset()
        except (aiosmtplib.SMTPException, OSError):
            self._drop(slot)

    def _drop(self, slot: int) -> None:
        smtp, self._slots[slot] = self._slots[slot], None
        if smtp is not None:
            smtp.close()

    async def aclose(self) -> None:
        """QUIT on every connection, then wait until each socket is closed.

        Closing a TLS connection takes a round trip (close_notify) that happens after
        `close()` returns; a loop that ended first would leak the socket. So wait a
        moment for every connection this transport opened, then abort what is left.
        """
        open_ = [smtp for smtp in self._slots if smtp is not None]
        self._slots = [None] * len(self._slots)
        self._loop, self._free = None, None
        await asyncio.gather(*(self._quit(smtp) for smtp in open_))
        protocols, self._protocols = self._protocols, []
        if not await _all_closed(protocols, _CLOSE_GRACE_SECONDS):
            for protocol in protocols:
                if isinstance(protocol.transport, asyncio.WriteTransport):
                    protocol.transport.abort()
            await _all_closed(protocols, _CLOSE_GRACE_SECONDS)

    async def _quit(self, smtp: aiosmtplib.SMTP) -> None:
        try:
            if smtp.is_connected:
                await smtp.quit(timeout=_CLOSE_GRACE_SECONDS)
        except (aiosmtplib.SMTPException, OSError):
            pass
        finally:
            smtp.close()


async def _all_closed(protocols: Sequence[SMTPProtocol], grace: float) -> bool:
    """Wait up to `grace` seconds for every connection to be lost (aiosmtplib clears `transport` then)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    while any(p.transport is not None for p in protocols):
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.005)
    return True
