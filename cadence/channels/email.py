"""Email transports: an outbox folder for demos and dry runs, and SMTP for real sends.

Both follow `cadence.channels.base.EmailTransport`: a batch in, one `Receipt` per
message out, in order, and never an exception for one message's failure. Both
write the bytes `build_message` makes, so the outbox shows exactly what SMTP sends.

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
import binascii
import email.errors
import email.policy
import os
import random
import re
import socket
import sys
import tempfile
from collections import deque
from collections.abc import Mapping, Sequence
from contextlib import suppress
from datetime import datetime
from email import headerregistry, quoprimime
from email.generator import BytesGenerator
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from io import BytesIO
from pathlib import Path

import aiosmtplib
from aiosmtplib.protocol import SMTPProtocol

from cadence.channels.base import (
    EmailTransport,
    OutgoingEmail,
    PermanentError,
    Receipt,
    SendError,
    TransientError,
    UncertainError,
    missing_secrets,
)
from cadence.clock import Clock
from cadence.config import Settings, SmtpSettings

# -- the message ------------------------------------------------------------------------


class _HeaderClasses(headerregistry.HeaderRegistry):
    """The stdlib's header registry, building each header class once instead of once per header.

    `HeaderRegistry.__getitem__` calls `type()` for every header it parses (about 17 per
    message here), which was a tenth of the cost of building a message. The classes it
    builds are equal every time, so keeping them changes nothing but the time.
    """

    def __init__(self) -> None:
        super().__init__()
        self._built: dict[str, type] = {}

    def __getitem__(self, name: str) -> type:
        key = name.lower()
        built = self._built.get(key)
        if built is None:
            built = self._built[key] = super().__getitem__(name)
        return built


class _WireGenerator(BytesGenerator):
    """BytesGenerator choosing each MIME boundary without compiling a regular expression for it.

    The stdlib compiles `^--<boundary>(--)?$` for every message (its random boundary never
    hits the regex cache). We draw the boundary the same way and refuse it if it occurs
    anywhere in the text at all, which is a stricter test than the stdlib's.
    """

    @classmethod
    def _make_boundary(cls, text: str | bytes | None = None) -> str:
        boundary = f"{'=' * 15}{random.randrange(sys.maxsize):0{_BOUNDARY_DIGITS}d}=="  # the stdlib's form
        if text is None:
            return boundary
        data = text.encode("ascii", "replace") if isinstance(text, str) else text
        candidate, counter = boundary, 0
        while f"--{candidate}".encode("ascii") in data:
            candidate, counter = f"{boundary}.{counter}", counter + 1
        return candidate


_BOUNDARY_DIGITS = len(repr(sys.maxsize - 1))


# 7-bit clean (non-ASCII text goes quoted-printable or base64), so any relay takes it
# without 8BITMIME. refold_source="none" keeps List-Unsubscribe as we fold it: left to
# the header folder, a URL longer than a line becomes an RFC 2047 encoded word, which
# mailbox providers cannot read as a link.
WIRE_POLICY = email.policy.SMTP.clone(cte_type="7bit", refold_source="none", header_factory=_HeaderClasses())
_UTF8_WIRE_POLICY = WIRE_POLICY.clone(utf8=True, cte_type="8bit")

_RESERVED_HEADERS = frozenset(
    name.lower()
    for name in (
        "From", "To", "Cc", "Bcc", "Subject", "Date", "Message-ID", "In-Reply-To", "References",
        "List-Unsubscribe", "List-Unsubscribe-Post", "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
    )
)  # fmt: skip
_UNSAFE_URI = re.compile(r"[\s<>\x00-\x1f\x7f]")
_LINE = 78  # RFC 5322's recommended line length, the one WIRE_POLICY folds at


def build_message(msg: OutgoingEmail, sent_at: datetime) -> EmailMessage:
    """The RFC 5322 message for one touch, dated `sent_at` (the injected clock's now).

    Threading follows what Gmail needs: In-Reply-To is the parent, References the
    whole chain oldest first, ending with the parent. One-click unsubscribe (RFC 8058)
    is offered only with an https URL, as the RFC requires. Raises ValueError for a
    message that can never be sent as given (bad address, header injection, a
    reserved header in `msg.headers`); transports turn that into a PermanentError.
    """
    if sent_at.tzinfo is None or sent_at.utcoffset() is None:
        raise ValueError("sent_at must be an aware datetime (the clock's now)")
    message = EmailMessage(policy=WIRE_POLICY)
    message["From"] = Address(display_name=msg.from_name, addr_spec=msg.from_addr)
    message["To"] = Address(display_name=msg.to_name or "", addr_spec=msg.to)
    message["Subject"] = msg.subject
    message["Date"] = format_datetime(sent_at)
    message["Message-ID"] = msg.message_id
    references = list(msg.references)
    if msg.in_reply_to:
        message["In-Reply-To"] = msg.in_reply_to
        if msg.in_reply_to not in references:
            references.append(msg.in_reply_to)
    if references:
        message["References"] = " ".join(references)
    unsubscribe = _list_unsubscribe(msg)
    if unsubscribe:
        message.set_raw("List-Unsubscribe", unsubscribe)
        if msg.unsubscribe_url and msg.unsubscribe_url.lower().startswith("https://"):
            message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    for name, value in msg.headers.items():
        if name.lower() in _RESERVED_HEADERS:
            raise ValueError(f"header {name!r} is set by the email channel and cannot be overridden")
        message[name] = value
    message.set_content(msg.text)
    if msg.html:
        message.add_alternative(msg.html, subtype="html")
        for part in message.iter_parts():
            del part["MIME-Version"]  # set_content adds one to each part; it belongs on the top only
    return message


def _list_unsubscribe(msg: OutgoingEmail) -> str | None:
    """The raw List-Unsubscribe value, folded between its URIs when one line would be too long."""
    uris = []
    if msg.unsubscribe_url:
        uris.append(msg.unsubscribe_url)
    if msg.unsubscribe_mailto:
        mailto = msg.unsubscribe_mailto.removeprefix("mailto:")
        uris.append(f"mailto:{mailto}" if "?" in mailto else f"mailto:{mailto}?subject=unsubscribe")
    for uri in uris:
        if _UNSAFE_URI.search(uri):
            raise ValueError(f"unsubscribe URI {uri!r} contains spaces, angle brackets or control characters")
    if not uris:
        return None
    value = ", ".join(f"<{uri}>" for uri in uris)
    if len("List-Unsubscribe: ") + len(value) <= _LINE:
        return value
    return ",\r\n ".join(f"<{uri}>" for uri in uris)


def _needs_utf8(msg: OutgoingEmail) -> bool:
    return not (msg.from_addr.isascii() and msg.to.isascii())


def wire_bytes(message: EmailMessage, utf8: bool = False) -> bytes:
    """The message as sent: CRLF line ends; UTF-8 headers only for SMTPUTF8 addresses."""
    out = BytesIO()  # what EmailMessage.as_bytes does, with our generator
    _WireGenerator(out, mangle_from_=False, policy=_UTF8_WIRE_POLICY if utf8 else WIRE_POLICY).flatten(message)
    return out.getvalue()


# -- the plain fast path -----------------------------------------------------------------
#
# Building a message with the email package costs about 2.5 ms, nearly all of it parsing and
# refolding header values it was just handed. For the messages an engine sends all day (ASCII
# addresses, display names of letters, digits and single spaces, every header on one line)
# `_plain_wire` writes the very bytes `wire_bytes(build_message(...))` would: the same headers
# in the same order, the same body encoding (email.contentmanager's choice, made the same
# way), the same kind of random boundary. Anything else takes the email package's path, which
# also reports every error. It was checked byte for byte against that path (same random
# seed) on a few thousand messages covering both sides of every condition below.

_PLAIN_NAME = re.compile(r"[A-Za-z0-9]+(?: [A-Za-z0-9]+)*\Z")
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+\Z")
_PLAIN_TEXT = re.compile(r"[!-~]+(?: [!-~]+)*\Z")  # printable ASCII, single spaces between words
_PLAIN_MSGID = re.compile(r"<[A-Za-z0-9_+.-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*>\Z")
_PLAIN_HEADER_NAME = re.compile(r"[Xx]-[A-Za-z0-9-]+\Z")  # extension headers only: no special parsing
_NEWLINES = re.compile(r"\r\n|\r|\n")


def _plain_header(name: str, value: str, pattern: re.Pattern[str] = _PLAIN_TEXT) -> str | None:
    """`Name: value` + CRLF when the email package would write exactly that, else None."""
    if "=?" in value or len(name) + 2 + len(value) > _LINE or not pattern.match(value):
        return None
    return f"{name}: {value}\r\n"


def _plain_body(text: str) -> tuple[str, str]:
    """(Content-Transfer-Encoding, payload) as email.contentmanager picks them for WIRE_POLICY (utf-8)."""
    lines = text.encode("utf-8").splitlines()
    if max((len(x) for x in lines), default=0) <= _LINE:
        try:
            return "7bit", (b"\n".join(lines) + b"\n").decode("ascii")
        except UnicodeDecodeError:
            pass
    sniff = b"\r\n".join(lines[:10]) + b"\r\n"
    sniff_qp = quoprimime.body_encode(sniff.decode("latin-1"), _LINE)
    if len(sniff_qp) > len(binascii.b2a_base64(sniff)):
        data, step = b"\r\n".join(lines) + b"\r\n", _LINE // 4 * 3
        return "base64", "".join(
            binascii.b2a_base64(data[i : i + step]).decode("ascii") for i in range(0, len(data), step)
        )
    if len(lines) <= 10:
        return "quoted-printable", sniff_qp
    return "quoted-printable", quoprimime.body_encode((b"\n".join(lines) + b"\n").decode("latin-1"), _LINE)


def _plain_part(subtype: str, text: str, mime_version: str = "") -> str:
    """A text part: its headers (then `mime_version`, which set_content adds last), a blank line, the body."""
    cte, payload = _plain_body(text)
    lines = _NEWLINES.split(payload)  # as the generator writes a payload: every line end as CRLF
    body = "".join(f"{line}\r\n" for line in lines[:-1]) + lines[-1]
    head = f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: {cte}\r\n'
    return f"{head}{mime_version}\r\n{body}"


def _plain_wire(msg: OutgoingEmail, sent_at: datetime) -> bytes | None:
    """The wire bytes of a plain message without the email package, or None if it is not plain."""
    if sent_at.tzinfo is None or sent_at.utcoffset() is None:
        return None
    if not (_PLAIN_ADDRESS.match(msg.from_addr) and _PLAIN_ADDRESS.match(msg.to)):
        return None
    if not _PLAIN_NAME.match(msg.from_name) or (msg.to_name and not _PLAIN_NAME.match(msg.to_name)):
        return None
    references = list(msg.references)
    if msg.in_reply_to and msg.in_reply_to not in references:
        references.append(msg.in_reply_to)
    if not all(_PLAIN_MSGID.match(m) for m in [msg.message_id, *references]):
        return None
    to = f"{msg.to_name} <{msg.to}>" if msg.to_name else msg.to
    headers = [
        _plain_header("From", f"{msg.from_name} <{msg.from_addr}>"),
        _plain_header("To", to),
        _plain_header("Subject", msg.subject),
        _plain_header("Date", format_datetime(sent_at)),
        _plain_header("Message-ID", msg.message_id),
    ]
    if msg.in_reply_to:
        headers.append(_plain_header("In-Reply-To", msg.in_reply_to))
    if references:
        headers.append(_plain_header("References", " ".join(references)))
    try:
        unsubscribe = _list_unsubscribe(msg)
    except ValueError:
        return None
    if unsubscribe:
        headers.append(f"List-Unsubscribe: {unsubscribe}\r\n")  # set raw, so written as given
        if msg.unsubscribe_url and msg.unsubscribe_url.lower().startswith("https://"):
            headers.append("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")
    for name, value in msg.headers.items():
        if not _PLAIN_HEADER_NAME.match(name):
            return None
        headers.append(_plain_header(name, value))
    if None in headers:
        return None
    head = "".join(h for h in headers if h is not None)
    if not msg.html:
        return (head + _plain_part("plain", msg.text, "MIME-Version: 1.0\r\n")).encode("ascii")
    parts = [_plain_part("plain", msg.text), _plain_part("html", msg.html)]
    boundary = _WireGenerator._make_boundary("\r\n".join(parts).encode("ascii"))  # drawn as the generator does
    body = f"--{boundary}\r\n" + f"\r\n--{boundary}\r\n".join(parts) + f"\r\n--{boundary}--\r\n"
    # The boundary (36 characters or more) never fits beside the type, so the parameter folds.
    content_type = f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n'
    return (head + "MIME-Version: 1.0\r\n" + content_type + "\r\n" + body).encode("ascii")


def _prepare(msg: OutgoingEmail, sent_at: datetime) -> bytes | SendError:
    """The wire bytes, or the PermanentError that says why this message can never go out."""
    try:
        fast = _plain_wire(msg, sent_at)
        if fast is not None:
            return fast
        return wire_bytes(build_message(msg, sent_at), _needs_utf8(msg))
    except Exception as exc:  # the same message would fail the same way on every retry
        plain = isinstance(exc, (ValueError, email.errors.MessageError))
        detail = str(exc) if plain else f"{type(exc).__name__}: {exc}"
        return PermanentError(f"not sent: cannot build the email: {detail}")


# -- outbox -----------------------------------------------------------------------------


class OutboxEmailTransport:
    """Writes each message as `touch-000123.eml` instead of sending it (demos, dry runs, tests).

    Each file is written to a temporary name, fsynced, then renamed over the final
    name, so a crash leaves either the whole message or none of it, and a touch sent
    again (after `cadence retry`) replaces its file instead of adding a second one.
    A file that cannot be written gets a TransientError; the others still go out.
    """

    def __init__(self, directory: Path, clock: Clock):
        self.directory = directory
        self.clock = clock

    def path_for(self, touch_id: int) -> Path:
        return self.directory / f"touch-{touch_id:06d}.eml"

    async def send_batch(self, messages: Sequence[OutgoingEmail]) -> list[Receipt]:
        if not messages:
            return []
        sent_at = self.clock.now()
        prepared = [_prepare(m, sent_at) for m in messages]
        jobs = [(self.path_for(m.touch_id), data) for m, data in zip(messages, prepared, strict=True)]
        errors = await asyncio.to_thread(self._write_all, [(p, d) for p, d in jobs if isinstance(d, bytes)])
        receipts = []
        for m, (path, data) in zip(messages, jobs, strict=True):
            error = data if isinstance(data, SendError) else errors.get(path)
            receipts.append(Receipt(m.touch_id, error=error) if error else Receipt(m.touch_id, m.message_id))
        return receipts

    def _write_all(self, files: list[tuple[Path, bytes]]) -> dict[Path, SendError]:
        errors: dict[Path, SendError] = {}
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            error = TransientError(f"cannot create the email outbox {self.directory}: {exc}")
            return {path: error for path, _ in files}
        for path, data in files:
            try:
                _write_atomically(path, data)
            except OSError as exc:
                errors[path] = TransientError(f"cannot write {path}: {exc}")
        # Make the renames durable too, where the platform lets a directory be fsynced.
        with suppress(OSError):
            fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        return errors

    async def aclose(self) -> None:
        return None


def _write_atomically(path: Path, data: bytes) -> None:
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(temp)
        raise


# -- smtp -------------------------------------------------------------------------------


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
        return PermanentError(text, code, event="bounced" if bounced else None)
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
            wire = _prepare(message, self.clock.now())
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
        if _needs_utf8(message):
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


def make_email_transport(settings: Settings, clock: Clock, environ: Mapping[str, str] | None = None) -> EmailTransport:
    """The transport config.yaml asks for (email.transport: outbox | smtp)."""
    if settings.email.transport == "smtp":
        return SmtpEmailTransport(settings.email.smtp, clock, os.environ if environ is None else environ)
    return OutboxEmailTransport(settings.outbox_dir / "email", clock)
