"""The message for one touch: RFC 5322 bytes exactly as SMTP sends them and the outbox keeps them.

`build_message` and `wire_bytes` are the email package's path, which reports every error;
`prepare` takes a hand-written fast path for the plain messages an engine sends all day and
checks nothing it could not write byte for byte the same (see the comment above `_plain_wire`).
"""

from __future__ import annotations

import binascii
import email.errors
import email.policy
import random
import re
import sys
from datetime import datetime
from email import headerregistry, quoprimime
from email.generator import BytesGenerator
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from io import BytesIO

from cadence.channels.base import OutgoingEmail, PermanentError, SendError

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


def needs_utf8(msg: OutgoingEmail) -> bool:
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


def prepare(msg: OutgoingEmail, sent_at: datetime) -> bytes | SendError:
    """The wire bytes, or the PermanentError that says why this message can never go out."""
    try:
        fast = _plain_wire(msg, sent_at)
        if fast is not None:
            return fast
        return wire_bytes(build_message(msg, sent_at), needs_utf8(msg))
    except Exception as exc:  # the same message would fail the same way on every retry
        plain = isinstance(exc, (ValueError, email.errors.MessageError))
        detail = str(exc) if plain else f"{type(exc).__name__}: {exc}"
        return PermanentError(f"not sent: cannot build the email: {detail}")
