"""Inbound email read once, and the lookups that tie a message to a lead and a touch.

The insert is the check: the inbound Message-ID (or a hash of the raw bytes) has a unique key,
and `first_reading` inserts with ON CONFLICT DO NOTHING in the transaction that acts on the
message. The same message read again (by a second worker, from a file, over HTTP) finds its row
and is a duplicate; two readings racing each other still act once, on PostgreSQL too; and a
message whose handling failed and rolled back leaves no row, so the next poll reads it again.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, bindparam, func, select, true, update

from cadence.names import LIVE_STATES, Channel, TouchStatus
from cadence.store.rows import InboundRow, LeadRow, TouchRow
from cadence.store.tables import EnrollmentT, InboundMessageT, LeadT, TouchT

I = InboundMessageT.c  # noqa: E741
MAX_ID = 400  # the column's width; longer Message-IDs are stored as their hash by the reader


# Statements built once: a poll runs them for every message, and building one cost more than running it.
_FIRST: dict[str, Any] = {}  # per dialect, built on first use: a lead's status never imports PostgreSQL's


def _first(name: str) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING id: a row comes back only when it was inserted."""
    if name not in _FIRST:
        dialect = importlib.import_module(f"sqlalchemy.dialects.{name}")
        insert = dialect.insert(InboundMessageT).on_conflict_do_nothing(index_elements=["message_id"])
        _FIRST[name] = insert.returning(I.id)
    return _FIRST[name]


OUTCOME = ("kind", "reason", "lead_id", "touch_id", "action", "until")
_COMPLETE = (
    update(InboundMessageT)
    .where(I.id == bindparam("row_id"))
    .values({name: bindparam(f"new_{name}") for name in OUTCOME})
)
_LEAD_BY_ADDRESS = select(*LeadT.c).where(LeadT.c.email == bindparam("address"))
_TOUCHES_BY_MESSAGE_ID = select(*TouchT.c).where(TouchT.c.message_id.in_(bindparam("ids", expanding=True)))
_LAST_EMAIL_TO = (
    select(*TouchT.c)
    .where(TouchT.c.lead_id == bindparam("lead_id"), TouchT.c.channel == Channel.EMAIL, TouchT.c.sent_at.is_not(None))
    .order_by(TouchT.c.sent_at.desc(), TouchT.c.id.desc())
    .limit(1)
)


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _storable(values: dict[str, Any]) -> dict[str, Any]:
    """Mail is written by strangers: NUL (which PostgreSQL refuses) and lone surrogates never reach a column."""
    return {k: _UNSTORABLE.sub("\ufffd", v) if isinstance(v, str) else v for k, v in values.items()}


def first_reading(conn: Connection, values: dict[str, Any]) -> int | None:
    """Record that a message is being acted on; its row id, or None when it was read before."""
    return conn.execute(_first(conn.dialect.name), _storable(values)).scalar()


def complete(conn: Connection, row_id: int, values: dict[str, Any]) -> None:
    """What the message turned out to be and what was done about it (same transaction as the insert).

    `values` holds every name of OUTCOME.
    """
    conn.execute(_COMPLETE, _storable({"row_id": row_id, **{f"new_{name}": values[name] for name in OUTCOME}}))


def by_message_id(conn: Connection, message_id: str) -> InboundRow | None:
    row = conn.execute(select(*InboundMessageT.c).where(I.message_id == message_id)).first()
    return InboundRow._make(row) if row is not None else None


def _read(kinds: Sequence[str], since: datetime | None) -> ColumnElement[bool]:
    """Which messages a list or a count is about: of these kinds (all when none), read since `since`."""
    return and_(
        I.kind.in_(list(kinds)) if kinds else true(),
        I.read_at >= since if since is not None else true(),
    )


def listing(
    conn: Connection, *, kinds: Sequence[str] = (), since: datetime | None = None, limit: int = 200
) -> list[InboundRow]:
    """Messages read, newest first."""
    query = select(*InboundMessageT.c).where(_read(kinds, since)).order_by(I.read_at.desc(), I.id.desc())
    return [InboundRow._make(row) for row in conn.execute(query.limit(limit))]


def count(conn: Connection, *, kinds: Sequence[str] = (), since: datetime | None = None) -> int:
    query = select(func.count()).select_from(InboundMessageT).where(_read(kinds, since))
    return int(conn.execute(query).scalar() or 0)


def counts(conn: Connection, since: datetime | None = None) -> dict[str, int]:
    """Messages read per kind (`unmatched` included), for `cadence report`."""
    query = select(I.kind, func.count()).where(_read((), since)).group_by(I.kind)
    return {kind: n for kind, n in conn.execute(query)}


def of_lead(conn: Connection, lead_id: str, limit: int = 20) -> list[InboundRow]:
    query = select(*InboundMessageT.c).where(I.lead_id == lead_id).order_by(I.read_at.desc(), I.id.desc())
    return [InboundRow._make(row) for row in conn.execute(query.limit(limit))]


def recent_kinds(conn: Connection, address: str, limit: int = 50) -> list[tuple[str, bool]]:
    """(what the classifier said, whether it was a delay warning) of the messages about an address, newest first."""
    query = (
        select(I.classified_as, I.retrying)
        .where(I.address == address)
        .order_by(I.read_at.desc(), I.id.desc())
        .limit(limit)
    )
    return [(kind, bool(retrying)) for kind, retrying in conn.execute(query)]


def touch_answered(conn: Connection, message_ids: Sequence[str]) -> TouchRow | None:
    """The touch whose Message-ID a message answers, trying the direct parent first."""
    if not message_ids:
        return None
    rows = {
        row.message_id: TouchRow._make(row) for row in conn.execute(_TOUCHES_BY_MESSAGE_ID, {"ids": list(message_ids)})
    }
    return next((rows[m] for m in message_ids if m in rows), None)


def lead_by_address(conn: Connection, address: str) -> LeadRow | None:
    """The lead at this address (stored lower-cased by every import, so the unique index answers)."""
    row = conn.execute(_LEAD_BY_ADDRESS, {"address": address.lower()}).first()
    return LeadRow._make(row) if row is not None else None


def last_email_to(conn: Connection, lead_id: str) -> TouchRow | None:
    """The latest email sent to the lead: the touch a reply or bounce matched by address is about."""
    row = conn.execute(_LAST_EMAIL_TO, {"lead_id": lead_id}).first()
    return TouchRow._make(row) if row is not None else None


def live_leads_at(conn: Connection, domain: str) -> list[LeadRow]:
    """Leads whose address is at `domain` and who are in a live sequence (same-company replies)."""
    live = select(EnrollmentT.c.lead_id).where(EnrollmentT.c.state.in_(list(LIVE_STATES)))
    query = select(*LeadT.c).where(LeadT.c.email.like(f"%@{domain.lower()}"), LeadT.c.id.in_(live)).order_by(LeadT.c.id)
    return [LeadRow._make(row) for row in conn.execute(query)]


def mark_touch(conn: Connection, touch_id: int, delivery: str, error: str) -> bool:
    """Note on a sent email what became of it (bounced, soft_bounce) and why; a touch not sent is left alone."""
    statement = (
        update(TouchT)
        .where(TouchT.c.id == touch_id, TouchT.c.status == TouchStatus.SENT)
        .values(delivery=delivery, error=error)
    )
    return conn.execute(statement).rowcount > 0


def bounces_by_sender(conn: Connection, since: datetime | None = None) -> list[tuple[str | None, str, str | None, int]]:
    """(sender of the touch that bounced, hard or soft, bounce reason, count): the senders' health."""
    query = (
        select(TouchT.c.sender, I.classified_as, I.bounce_reason, func.count())
        .select_from(InboundMessageT.join(TouchT, TouchT.c.id == I.touch_id))
        .where(I.classified_as.in_(["bounce", "soft_bounce"]), I.retrying.is_(False))
        .group_by(TouchT.c.sender, I.classified_as, I.bounce_reason)
    )
    if since is not None:
        query = query.where(I.read_at >= since)
    return [(sender, kind, reason, int(n)) for sender, kind, reason, n in conn.execute(query)]
