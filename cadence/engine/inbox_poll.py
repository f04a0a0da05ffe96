"""Reading the mailboxes: each new message in each folder, taken in once, the cursor moved past it.

One worker reads a mailbox at a time (a lease row, taken by compare-and-set; another worker
takes over when the holder dies and its lease runs out). A folder is read from the UID after
the stored cursor, and the cursor moves in the same transaction that records the message, so
a crash mid-poll neither loses a message nor acts on one twice. A new UIDVALIDITY reads the
folder again from the start; the unique Message-ID key makes that safe.

Reading never changes the rep's mailbox: messages are fetched with BODY.PEEK (nothing is
marked read), nothing is deleted, and only bounces and automatic replies are moved, and only
when `inbox.move_processed` names a folder. A server that is down or drops the connection is
retried with backoff; wrong credentials give one clear error naming the mailbox.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from cadence.app import App
from cadence.channels.imap import MailboxError, MailboxReader
from cadence.inbox_settings import Mailbox
from cadence.names import InboundKind
from cadence.outcomes.inbound_mail import Processed, Source, take_in
from cadence.store import mailboxes

log = logging.getLogger("cadence.inbox")
MOVABLE = frozenset({InboundKind.BOUNCE, InboundKind.SOFT_BOUNCE, InboundKind.OUT_OF_OFFICE, InboundKind.AUTO_REPLY})
RETRIES = 3
BACKOFF_SECONDS = 1.0


@dataclass
class MailboxReport:
    """What one poll of one mailbox did."""

    mailbox: str
    messages: list[Processed] = field(default_factory=list)
    moved: int = 0
    error: str | None = None
    held_by: str | None = None  # another worker reads this mailbox now

    def as_json(self) -> dict[str, Any]:
        kinds: dict[str, int] = {}
        for p in self.messages:
            kinds[p.kind] = kinds.get(p.kind, 0) + 1
        return {
            "mailbox": self.mailbox,
            "read": len(self.messages),
            "kinds": kinds,
            "moved": self.moved,
            "error": self.error,
            "held_by": self.held_by,
            "messages": [p.as_json() for p in self.messages],
        }


@dataclass
class PollReport:
    mailboxes: list[MailboxReport] = field(default_factory=list)

    @property
    def read(self) -> int:
        return sum(len(m.messages) for m in self.mailboxes)

    def as_json(self) -> dict[str, Any]:
        return {"read": self.read, "mailboxes": [m.as_json() for m in self.mailboxes]}


ReaderFactory = Callable[[Mailbox, int], MailboxReader]


def _reader(mailbox: Mailbox, max_bytes: int) -> MailboxReader:
    return MailboxReader(mailbox, max_bytes=max_bytes)


def poll(
    app: App,
    worker: str,
    *,
    reader: ReaderFactory = _reader,
    sleep: Callable[[float], None] = time.sleep,
    backoff_seconds: float = BACKOFF_SECONDS,
) -> PollReport:
    """Read every configured mailbox once (those another worker holds are left to it)."""
    report = PollReport()
    for mailbox in app.settings.inbox.mailboxes:
        report.mailboxes.append(poll_mailbox(app, mailbox, worker, reader, sleep, backoff_seconds))
    return report


def poll_mailbox(
    app: App,
    mailbox: Mailbox,
    worker: str,
    reader: ReaderFactory = _reader,
    sleep: Callable[[float], None] = time.sleep,
    backoff_seconds: float = BACKOFF_SECONDS,
) -> MailboxReport:
    """One mailbox, under its lease, with retries on a server that is down or drops the connection."""
    report = MailboxReport(mailbox.key)
    if not _take(app, mailbox.key, worker):
        with app.engine.connect() as conn:
            report.held_by = mailboxes.holder_of(conn, mailbox.key, app.clock.now()) or "another worker"
        return report
    try:
        for attempt in range(RETRIES + 1):
            try:
                _read(app, mailbox, worker, reader, report)
                report.error = None
                break
            except MailboxError as exc:
                report.error = str(exc)
                if not exc.transient or attempt == RETRIES:
                    log.warning("%s", exc)
                    break
                delay = backoff_seconds * 2**attempt
                log.info("%s; trying again in %.1f s", exc, delay)
                sleep(delay)
    finally:
        with app.engine.begin() as conn:
            mailboxes.release_lease(conn, mailbox.key, worker)
    return report


def _take(app: App, key: str, worker: str) -> bool:
    now = app.clock.now()
    until = now + timedelta(seconds=app.settings.inbox.lease_seconds)
    with app.engine.begin() as conn:
        return mailboxes.take_lease(conn, key, worker, now, until)


def _read(app: App, mailbox: Mailbox, worker: str, reader: ReaderFactory, report: MailboxReport) -> None:
    settings = app.settings.inbox
    with reader(mailbox, settings.max_message_kib * 1024) as imap:
        for folder in mailbox.folders:
            state = imap.open_folder(folder)
            with app.engine.connect() as conn:
                cursor = mailboxes.cursor(conn, mailbox.key, folder)
            renumbered = cursor is not None and cursor[0] != state.uidvalidity
            last = 0 if cursor is None or renumbered else cursor[1]
            to_move: list[int] = []
            for count, fetched in enumerate(imap.fetch(imap.new_uids(last)), start=1):
                source = Source(
                    "imap", f"{mailbox.key}/{folder}/{fetched.uid}", mailbox.key, folder, fetched.uid,
                    state.uidvalidity,
                )  # fmt: skip
                processed = take_in(app, fetched.raw, source)
                report.messages.append(processed)
                if processed.kind == InboundKind.DUPLICATE and not renumbered:
                    # Past the cursor yet read before: another door took it (a file, HTTP), or two
                    # readers shared the mailbox, which the lease exists to prevent.
                    log.warning("%s/%s UID %s was read before: %s", mailbox.key, folder, fetched.uid, processed.reason)
                if settings.move_processed and processed.classified_as in MOVABLE:
                    to_move.append(fetched.uid)
                if count % 200 == 0 and not _take(app, mailbox.key, worker):
                    raise MailboxError(f"mailbox {mailbox.key}: another worker took over the lease", transient=False)
            if to_move and settings.move_processed and settings.move_processed != folder:
                imap.move(to_move, settings.move_processed)
                report.moved += len(to_move)
