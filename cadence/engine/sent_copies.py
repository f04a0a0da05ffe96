"""`inbox.save_sent`: each email sent is APPENDed to its sender's Sent folder, as Outreach and Salesloft do.

The rep then sees the prospect's thread whole in their own mail client, our touches beside
the replies. The copy is the message as it went out (same bytes builder, same Message-ID),
marked \\Seen. It is a courtesy, not a record: the send is already recorded when the copy is
made, and a mailbox that is down only costs the copy, logged, never the send or the batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

from cadence.app import App
from cadence.channels.base import OutgoingEmail
from cadence.channels.email.mime import build_message, wire_bytes
from cadence.channels.imap import MailboxError, MailboxReader
from cadence.engine.jobs import Job
from cadence.inbox_settings import Mailbox

log = logging.getLogger("cadence.inbox")


def copies(app: App, jobs: Sequence[Job], sent_at: datetime) -> dict[str, list[bytes]]:
    """The bytes of each email this batch sent, by the mailbox of its sender (senders without one have none)."""
    by_sender = {m.sender: m.key for m in app.settings.inbox.mailboxes if m.sender}
    out: dict[str, list[bytes]] = defaultdict(list)
    for job in jobs:
        outgoing = job.outgoing
        sent = job.receipt is not None and job.receipt.ok and job.error is None
        if not sent or not isinstance(outgoing, OutgoingEmail) or job.sender is None:
            continue
        key = by_sender.get(job.sender.id)
        if key is not None:
            try:
                out[key].append(wire_bytes(build_message(outgoing, sent_at)))
            except ValueError as exc:  # it was sent, so it was buildable; never let a copy fail the batch
                log.warning("no Sent copy of touch %s: %s", job.touch_id, exc)
    return out


def _append(mailbox: Mailbox, messages: list[bytes], sent_at: datetime) -> int:
    try:
        with MailboxReader(mailbox) as imap:
            for raw in messages:
                imap.append(mailbox.sent_folder, raw, when=sent_at)
        return len(messages)
    except MailboxError as exc:
        log.warning("could not save %d sent emails to %s: %s", len(messages), mailbox.sent_folder, exc)
        return 0


async def save_sent(app: App, jobs: Sequence[Job]) -> int:
    """APPEND the batch's sent emails to their senders' Sent folders; returns how many were saved."""
    if not app.settings.inbox.save_sent:
        return 0
    sent_at = app.clock.now()
    saved = 0
    for key, messages in copies(app, jobs, sent_at).items():
        saved += await asyncio.to_thread(_append, app.settings.inbox.mailbox(key), messages, sent_at)
    return saved
