"""Lenient MIME reading: headers and text parts decoded without ever raising.

Mail in the wild declares charsets that do not exist, encodes headers twice, and leaves
boundaries open. The standard library's `compat32` parser keeps going through all of that
and records defects; these helpers decode what it found and say what they had to guess,
so the caller can report it as the message's problem instead of failing the poll.
"""

from __future__ import annotations

import codecs
import contextlib
import re
from collections.abc import Iterator
from email.header import decode_header, make_header
from email.message import Message

MAX_PARTS = 200  # parts walked per message: a message nesting more is hostile, not mail
MAX_DEPTH = 12
MAX_PART_BYTES = 512 * 1024  # a text part larger than this is read only this far

HEADER_LIMIT = 16 * 1024  # characters of one header read: References of a long thread fit, a flood does not

_MSGID = re.compile(r"<[^<>\s]+>")
_ESCAPED = re.compile("[\udc80-\udcff]")  # bytes the parser could not decode, kept as lone surrogates


class Notes:
    """What reading a message had to guess or give up on, said once each, in order."""

    def __init__(self) -> None:
        self.items: dict[str, None] = {}

    def add(self, note: str) -> None:
        self.items[note] = None

    def text(self) -> str | None:
        return "; ".join(self.items) or None


def _raw_value(msg: Message, name: str) -> str | None:
    """The header's first value as parsed, 8-bit bytes kept as surrogates (not yet replaced by "?")."""
    wanted = name.lower()
    try:
        return next((str(v) for k, v in msg.raw_items() if k.lower() == wanted), None)
    except Exception:  # a malformed header the parser chokes on only when asked for it
        return None


def _unescape_8bit(value: str) -> str:
    """Raw UTF-8 (or, failing that, Windows Latin-1) bytes in a header, as clients that skip RFC 2047 send them."""
    if not _ESCAPED.search(value):
        return value
    data = value.encode("utf-8", "surrogateescape")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


def header(msg: Message, name: str, notes: Notes | None = None) -> str:
    """A header's value as text (RFC 2047 words and raw 8-bit bytes decoded), "" when absent or unreadable."""
    value = _raw_value(msg, name)
    if value is None:
        return ""
    if len(value) > HEADER_LIMIT:
        if notes is not None:
            notes.add(f"the {name} header was cut at {HEADER_LIMIT:,} characters")
        value = value[:HEADER_LIMIT]
    raw = _unescape_8bit(value)
    try:
        decoded = str(make_header(decode_header(raw)))
    except Exception:
        if notes is not None:
            notes.add(f"the {name} header could not be decoded")
        decoded = raw
    return re.sub(r"\s+", " ", decoded).strip()


def message_ids(value: str) -> tuple[str, ...]:
    """The `<...>` ids a Message-ID, In-Reply-To or References header names, each once, in order."""
    return tuple(dict.fromkeys(_MSGID.findall(value or "")))


def charset_of(part: Message) -> str:
    try:
        return (part.get_content_charset() or "").strip().strip('"').lower()
    except Exception:
        return ""


def decode_bytes(data: bytes, charset: str, notes: Notes) -> str:
    """Bytes as text in their declared charset, guessing (and saying so) when it is unknown or wrong."""
    if charset:
        try:
            codecs.lookup(charset)
        except LookupError:
            notes.add(f"unknown charset {charset!r}, read as UTF-8")
            charset = ""
    for candidate in dict.fromkeys([charset or "utf-8", "utf-8"]):
        with contextlib.suppress(UnicodeDecodeError, LookupError):
            return data.decode(candidate)
    if charset:  # the usual lie: Latin-1 (Windows) text labelled UTF-8
        notes.add(f"text is not valid {charset}, read as windows-1252")
    return data.decode("cp1252", "replace")


def part_text(part: Message, notes: Notes) -> str:
    """A leaf part's decoded text (transfer encoding and charset), read up to MAX_PART_BYTES."""
    try:
        data = part.get_payload(decode=True)
    except Exception:
        notes.add("a text part could not be decoded")
        return ""
    if isinstance(data, str):
        return data[:MAX_PART_BYTES]
    if not isinstance(data, bytes):
        return ""
    if len(data) > MAX_PART_BYTES:
        notes.add(f"a text part of {len(data):,} bytes was read only in part")
        data = data[:MAX_PART_BYTES]
    return decode_bytes(data, charset_of(part), notes)


def content_type(part: Message) -> str:
    try:
        return part.get_content_type().lower()
    except Exception:
        return "text/plain"


def is_attachment(part: Message) -> bool:
    disposition = header(part, "Content-Disposition").lower()
    return disposition.startswith("attachment")


def leaves(msg: Message, notes: Notes) -> Iterator[Message]:
    """The message's parts, depth first, without entering attached messages (a bounce's returned original).

    Attached messages (`message/rfc822`) are yielded whole, once, for the caller to look into.
    """
    count = 0
    stack: list[tuple[Message, int]] = [(msg, 0)]
    while stack:
        part, depth = stack.pop()
        count += 1
        if count > MAX_PARTS:
            notes.add(f"more than {MAX_PARTS} MIME parts; the rest were not read")
            return
        payload = part.get_payload() if part.is_multipart() else None
        if isinstance(payload, list) and content_type(part).startswith("multipart/"):
            if depth >= MAX_DEPTH:
                notes.add(f"MIME parts nested more than {MAX_DEPTH} deep were not read")
                continue
            stack.extend((child, depth + 1) for child in reversed(payload) if isinstance(child, Message))
            continue
        yield part


def defects(msg: Message) -> list[str]:
    """The parser's complaints about the message and its parts, by name ("StartBoundaryNotFoundDefect")."""
    found: dict[str, None] = {}
    for part in [msg, *_walk_safely(msg)]:
        for defect in getattr(part, "defects", ()):
            found[type(defect).__name__] = None
    return list(found)


def _walk_safely(msg: Message) -> Iterator[Message]:
    count = 0
    with contextlib.suppress(Exception):
        for part in msg.walk():
            count += 1
            if count > MAX_PARTS:
                return
            yield part
