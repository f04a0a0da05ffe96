"""IMAP transport: reads a rep's mailbox (new mail since a UID cursor), moves what was handled, files sent mail.

This is the one place cadence speaks IMAP, and it knows only a `Mailbox` from the settings:
no store, no plan, no rules. The poll loop keeps the cursor (UIDVALIDITY and the last UID
seen, per folder) and decides what a message means; this module only carries out the reads
and writes, with three promises a rep can rely on:

- Reading never changes a rep's mail: every fetch is `BODY.PEEK`, so nothing becomes \\Seen,
  and nothing is deleted (a move uses MOVE, or COPY plus a UID EXPUNGE of exactly those
  messages, never a bare EXPUNGE that would purge the rep's own deleted mail).
- A message is read only up to `max_bytes` (headers and text come first), so a 30 MB
  attachment costs 512 KiB, and `FetchedMessage.truncated` says when it was cut.
- Every failure is a `MailboxError` whose str() is one line naming the mailbox and host.

Errors, by what the poll loop does about them:

    MailboxError          base class; `transient` decides
    │   transient=True    connection refused or dropped, timeout, server busy ([UNAVAILABLE],
    │                     [INUSE], [SERVERBUG]): try again later, with backoff
    │   transient=False   folder missing, certificate rejected, host unknown, credentials
    │                     missing from the environment: retrying cannot help until someone acts
    └── LoginRefused      the server refused the user name or password (never transient)

imaplib keeps the capability list it read before login, and servers announce MOVE only
after it, so `__enter__` asks again; without that, a move silently degrades to
COPY + \\Deleted + EXPUNGE.
"""

from __future__ import annotations

import imaplib
import re
import socket
import ssl
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any

from imap_tools import BaseMailBox, MailBox, MailBoxStartTls, MailBoxUnencrypted
from imap_tools.errors import ImapToolsError, MailboxLoginError, UnexpectedCommandStatusError
from imap_tools.utils import clean_flags, encode_folder

from cadence.inbox_settings import Mailbox

# Response codes (RFC 5530) that mean "not now" rather than "never".
TRANSIENT_CODES = frozenset({"UNAVAILABLE", "INUSE", "SERVERBUG", "EXPUNGEISSUED"})
_MAX_UID = 2**32 - 1
_CODE = re.compile(r"\[([A-Z-]+)")
_LITERAL = re.compile(rb"\{(\d+)\+?\}$")
_NEW_RESPONSE = re.compile(rb"^\d+ \(")
_Command = Callable[[], tuple[str, list[Any]]]  # runs one IMAP command, returns imaplib's (status, data)


class MailboxError(Exception):
    """A mailbox could not be read. str() is one clear line naming the mailbox key and host, never a traceback."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class LoginRefused(MailboxError):
    """The server refused the user name or password: fix the credentials, retrying cannot help."""

    def __init__(self, message: str) -> None:
        super().__init__(message, transient=False)


@dataclass(frozen=True)
class FetchedMessage:
    """One message as read: its first `max_bytes` (headers and text first), and its size on the server."""

    uid: int
    raw: bytes
    size: int
    truncated: bool


@dataclass(frozen=True)
class FolderState:
    """What a SELECT says about a folder: a changed UIDVALIDITY means every stored UID is void."""

    uidvalidity: int
    uidnext: int | None


def _one_line(value: object, limit: int = 300) -> str:
    """Server text or an exception as one printable line (no tracebacks, no CRLFs, bounded)."""
    if isinstance(value, list | tuple):
        value = " ".join(_one_line(v, limit) for v in value if v is not None)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _response_code(text: str) -> str | None:
    found = _CODE.search(text)
    return found.group(1) if found else None


class MailboxReader:
    """One IMAP session on one mailbox: `with MailboxReader(mailbox) as reader: ...`.

    Not thread-safe, like the connection under it. Open a folder, then ask for the UIDs
    after a cursor, fetch them, and move the handled ones; `append` files sent mail.
    """

    def __init__(
        self,
        mailbox: Mailbox,
        *,
        max_bytes: int = 512 * 1024,
        environ: Mapping[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        self.mailbox = mailbox
        self.max_bytes = max_bytes
        self._environ = environ
        self._ssl_context = ssl_context
        self._box: BaseMailBox | None = None
        self._where = f"mailbox {mailbox.key} ({mailbox.host}:{mailbox.imap_port})"

    # -- session -------------------------------------------------------------------------

    def __enter__(self) -> MailboxReader:
        try:
            user, password = self.mailbox.credentials(self._environ)
        except KeyError as exc:
            detail = str(exc.args[0]) if exc.args else "credentials missing"
            detail = detail.removeprefix(f"mailbox {self.mailbox.key}: ")
            raise MailboxError(f"{self._where}: {detail}", transient=False) from None
        with self._guard("connecting"):
            self._box = self._connect()
        try:
            with self._guard("logging in"):
                self._login(self._box, user, password)
                self._refresh_capabilities()
        except MailboxError:
            self._close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._close()

    def _connect(self) -> BaseMailBox:
        m, timeout = self.mailbox, self.mailbox.timeout_seconds
        # imaplib's own default context verifies nothing (ssl._create_stdlib_context): never use it.
        context = self._ssl_context or ssl.create_default_context()
        if m.security == "tls":
            return MailBox(m.host, m.imap_port, timeout=timeout, ssl_context=context)
        if m.security == "starttls":
            return MailBoxStartTls(m.host, m.imap_port, timeout=timeout, ssl_context=context)
        return MailBoxUnencrypted(m.host, m.imap_port, timeout=timeout)

    def _login(self, box: BaseMailBox, user: str, password: str) -> None:
        try:
            if user.isascii() and password.isascii():
                box.login(user, password, initial_folder=None)
            else:  # LOGIN's quoted strings are ASCII; AUTHENTICATE PLAIN carries UTF-8
                box.login_utf8(user, password, initial_folder=None)
        except (MailboxLoginError, imaplib.IMAP4.error) as exc:
            if isinstance(exc, imaplib.IMAP4.abort):
                raise
            said = _one_line(exc.command_result[1] if isinstance(exc, MailboxLoginError) else exc)
            if _response_code(said) in TRANSIENT_CODES:
                raise MailboxError(f"{self._where}: server cannot log {user} in now: {said}", transient=True) from exc
            raise LoginRefused(f"{self._where}: login refused for {user}: {said}") from exc

    def _refresh_capabilities(self) -> None:
        client = self._client
        typ, data = client.capability()
        if typ == "OK" and data and data[-1]:
            client.capabilities = tuple(bytes(data[-1]).decode("ascii", "replace").upper().split())

    def _close(self) -> None:
        """LOGOUT if the connection still answers; close the socket either way. Never raises."""
        box, self._box = self._box, None
        if box is None:
            return
        try:
            box.client.logout()
        except Exception:
            with suppress(Exception):
                box.client.shutdown()

    @property
    def _client(self) -> imaplib.IMAP4:
        if self._box is None:
            raise RuntimeError("use MailboxReader in a `with` block")
        return self._box.client

    @property
    def capabilities(self) -> tuple[str, ...]:
        """The server's capabilities, as announced after login."""
        return tuple(self._client.capabilities)

    @contextmanager
    def _guard(self, doing: str) -> Iterator[None]:
        """Turn whatever the socket, TLS, imaplib or imap-tools raise into one MailboxError."""
        try:
            yield
        except MailboxError:
            raise
        except imaplib.IMAP4.abort as exc:  # the connection is gone (BYE, EOF, a socket error)
            raise self._error(f"connection dropped while {doing}: {_one_line(exc)}", True) from exc
        except imaplib.IMAP4.error as exc:  # BAD, or a reply imaplib could not take
            raise self._error(f"server refused {doing}: {_one_line(exc)}", False) from exc
        except UnexpectedCommandStatusError as exc:
            said = _one_line(exc.command_result[1])
            raise self._error(f"server refused {doing}: {said}", _response_code(said) in TRANSIENT_CODES) from exc
        except ImapToolsError as exc:
            raise self._error(f"failed while {doing}: {_one_line(exc)}", False) from exc
        except ssl.SSLCertVerificationError as exc:
            raise self._error(f"certificate rejected: {_one_line(exc.verify_message or exc)}", False) from exc
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError) as exc:
            raise self._error(f"connection dropped while {doing}: {_one_line(exc)}", True) from exc
        except ssl.SSLError as exc:
            raise self._error(f"TLS failed while {doing} (is `security` right?): {_one_line(exc)}", False) from exc
        except TimeoutError as exc:
            raise self._error(f"timed out while {doing}", True) from exc
        except ConnectionRefusedError as exc:
            raise self._error("connection refused (is the server down?)", True) from exc
        except socket.gaierror as exc:
            again = exc.errno == socket.EAI_AGAIN
            raise self._error(f"cannot resolve host {self.mailbox.host}: {_one_line(exc.strerror)}", again) from exc
        except OSError as exc:
            raise self._error(f"connection dropped while {doing}: {_one_line(exc)}", True) from exc
        except (EOFError, UnicodeError, ValueError) as exc:
            raise self._error(f"failed while {doing}: {_one_line(exc)}", False) from exc

    def _error(self, detail: str, transient: bool) -> MailboxError:
        return MailboxError(f"{self._where}: {detail}", transient=transient)

    def _check(self, typ: str, data: object, doing: str) -> None:
        if typ != "OK":
            said = _one_line(data)
            raise self._error(f"server refused {doing}: {said}", _response_code(said) in TRANSIENT_CODES)

    # -- reading -------------------------------------------------------------------------

    def open_folder(self, folder: str) -> FolderState:
        """SELECT `folder` (read-write, so a later move works; selecting changes nothing) and return its state."""
        doing = f"opening folder {folder}"
        with self._guard(doing):
            client = self._client
            try:
                typ, data = client.select(_quoted(folder), readonly=False)
            except imaplib.IMAP4.readonly:
                typ, data = "OK", []  # selected, read-only: reading works, a move will be refused
            if typ != "OK":
                said = _one_line(data)
                if _response_code(said) in TRANSIENT_CODES:
                    raise self._error(f"server refused {doing}: {said}", True)
                raise self._error(f"folder {folder} not found or not readable: {said}", False)
            uidvalidity = _number(client.response("UIDVALIDITY")[1])
            uidnext = _number(client.response("UIDNEXT")[1])
        if uidvalidity is None:
            raise self._error(f"server gave no UIDVALIDITY for folder {folder}", False)
        return FolderState(uidvalidity=uidvalidity, uidnext=uidnext)

    def new_uids(self, after_uid: int) -> list[int]:
        """UIDs in the open folder above `after_uid`, ascending.

        `UID n:*` always matches the highest UID, even when it is below n, so the answer is
        filtered here: an empty list means nothing new.
        """
        if after_uid >= _MAX_UID:
            return []
        with self._guard("searching for new mail"):
            self._client.noop()  # lets the server report mail that arrived since SELECT
            typ, data = self._client.uid("SEARCH", f"UID {max(after_uid, 0) + 1}:*")
            self._check(typ, data, "searching for new mail")
        uids = {int(token) for line in data if isinstance(line, bytes) for token in line.split() if token.isdigit()}
        return sorted(uid for uid in uids if uid > after_uid)

    def fetch(self, uids: Sequence[int], *, chunk: int = 100) -> Iterator[FetchedMessage]:
        """The messages with these UIDs in the open folder, in UID order, each cut at `max_bytes`.

        Uses `BODY.PEEK[]<0.max_bytes>`, so nothing is marked \\Seen and a huge attachment is
        never downloaded whole. A UID that no longer exists (expunged meanwhile) is skipped.
        """
        wanted = sorted({int(u) for u in uids})
        items = f"(UID RFC822.SIZE BODY.PEEK[]<0.{self.max_bytes}>)"
        for start in range(0, len(wanted), max(chunk, 1)):
            part = wanted[start : start + max(chunk, 1)]
            doing = f"fetching {len(part)} messages"
            with self._guard(doing):
                typ, data = self._client.uid("FETCH", ",".join(map(str, part)), items)
                self._check(typ, data, doing)
            found = {m.uid: m for m in _parse_fetch(data)}
            for uid in part:
                if uid in found:
                    yield found[uid]

    # -- writing -------------------------------------------------------------------------

    def move(self, uids: Sequence[int], to_folder: str) -> None:
        """Move these messages of the open folder into `to_folder`, creating it if missing.

        MOVE when the server has it; else COPY, then \\Deleted and UID EXPUNGE of exactly these
        UIDs (UIDPLUS); a server with neither keeps the originals, flagged \\Deleted.
        """
        if not uids:
            return
        uid_set = ",".join(str(u) for u in sorted(set(uids)))
        caps = set(self.capabilities)
        doing = f"moving {len(set(uids))} messages to {to_folder}"
        with self._guard(doing):
            command = "MOVE" if "MOVE" in caps else "COPY"
            self._with_folder(to_folder, doing, lambda: self._client.uid(command, uid_set, _quoted(to_folder)))
            if command == "COPY":
                typ, data = self._client.uid("STORE", uid_set, "+FLAGS.SILENT", r"(\Deleted)")
                self._check(typ, data, doing)
                if "UIDPLUS" in caps:
                    typ, data = self._client.uid("EXPUNGE", uid_set)
                    self._check(typ, data, doing)

    def append(self, folder: str, raw: bytes, *, when: datetime, flags: Sequence[str] = ("\\Seen",)) -> None:
        """APPEND one message to `folder` (created if missing), e.g. a sent email into the Sent folder."""
        doing = f"saving a message to {folder}"
        cleaned = clean_flags(list(flags))  # a ValueError here is the caller's bug, not the mailbox's
        flag_list = f"({' '.join(cleaned)})" if cleaned else None
        stamp = when  # the injected clock's now: cadence never reads the wall clock
        with self._guard(doing):
            self._with_folder(folder, doing, lambda: self._client.append(_quoted(folder), flag_list, stamp, raw))

    def _with_folder(self, folder: str, doing: str, command: _Command) -> None:
        """Run `command`; if it failed because `folder` does not exist, create the folder and run it once more."""
        typ, data = command()
        if typ != "OK" and ("TRYCREATE" in _one_line(data).upper() or not self._exists(folder)):
            created, said = self._client.create(_quoted(folder))
            if created != "OK" and "ALREADYEXISTS" not in _one_line(said).upper():
                self._check(created, said, f"creating folder {folder}")
            typ, data = command()
        self._check(typ, data, doing)

    def _exists(self, folder: str) -> bool:
        typ, data = self._client.list('""', _quoted(folder))
        return typ == "OK" and any(d is not None for d in data)


def _quoted(folder: str) -> str:
    """A folder name as IMAP wants it: modified UTF-7, quoted."""
    return encode_folder(folder).decode("ascii")


def _number(data: list[object] | None) -> int | None:
    """The int in an imaplib response list ([b'1234'] -> 1234), or None."""
    for item in data or []:
        if isinstance(item, bytes) and item.strip().isdigit():
            return int(item.strip())
    return None


def _responses(data: Sequence[object]) -> Iterator[list[tuple[bytes, bytes | None]]]:
    """Group imaplib's flat FETCH data into one list per response of (text, literal) pieces.

    imaplib gives a response with literals as (text-up-to-{n}, literal) tuples followed by
    the text after them as plain bytes; a new response starts with "<seq> (".
    """
    current: list[tuple[bytes, bytes | None]] = []
    for item in data:
        if isinstance(item, tuple) and len(item) == 2:
            text, literal = bytes(item[0]), bytes(item[1])
        elif isinstance(item, bytes):
            text, literal = item, None
        else:
            continue
        if _NEW_RESPONSE.match(text) and current:
            yield current
            current = []
        current.append((text, literal))
    if current:
        yield current


_FIELD = re.compile(rb"(?:^\d+ \(|\s)(UID|RFC822\.SIZE)\s+(\d+)", re.IGNORECASE)
_BODY = re.compile(rb"BODY\[\](?:<\d+>)?\s+(?:(NIL)|\"((?:[^\"\\]|\\.)*)\"|\x00(\d+)\x00)", re.IGNORECASE | re.DOTALL)


def _parse_fetch(data: Sequence[object]) -> Iterator[FetchedMessage]:
    """FetchedMessages from UID FETCH data, whatever order the server put UID, RFC822.SIZE and BODY[] in."""
    for pieces in _responses(data):
        literals: list[bytes] = []
        text = b""
        for piece, literal in pieces:
            if literal is None:
                text += piece
            else:  # stand the literal in by its index, so no byte of mail is ever parsed as protocol
                text += _LITERAL.sub(b"\x00" + str(len(literals)).encode() + b"\x00", piece.rstrip())
                literals.append(literal)
        fields = {name.upper(): int(value) for name, value in _FIELD.findall(text)}
        body = _BODY.search(text)
        if b"UID" not in fields or body is None:
            continue  # an unsolicited FETCH (a flag change), not an answer to ours
        if body.group(3) is not None:
            raw = literals[int(body.group(3))]
        elif body.group(2) is not None:
            raw = re.sub(rb"\\(.)", rb"\1", body.group(2))
        else:
            raw = b""
        size = fields.get(b"RFC822.SIZE", len(raw))
        yield FetchedMessage(uid=fields[b"UID"], raw=raw, size=size, truncated=size > len(raw))
