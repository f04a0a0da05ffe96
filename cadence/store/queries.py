"""The hot queries, each written once.

`claim_due` is the single place where concurrency is decided: it locks due
enrollments (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so several `cadence run`
processes can share one database; on SQLite the IMMEDIATE transaction serializes
claimers). Nothing else turns due work into a `sending` touch.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, or_, select

from cadence.store.tables import Enrollment, Lead, Suppression, Touch

EnrollmentT: Any = Enrollment.__table__  # type: ignore[attr-defined]
LeadT: Any = Lead.__table__  # type: ignore[attr-defined]
TouchT: Any = Touch.__table__  # type: ignore[attr-defined]
SuppressionT: Any = Suppression.__table__  # type: ignore[attr-defined]
COUNTED = ("sending", "sent", "task_open", "done", "unknown")


def lock_due(conn: Connection, now: datetime, limit: int) -> list[Any]:
    """Due active enrollments, oldest first, locked for this transaction (an index range scan)."""
    query = (
        select(EnrollmentT)
        .where(EnrollmentT.c.next_due_at <= now, EnrollmentT.c.state == "active")
        .order_by(EnrollmentT.c.next_due_at, EnrollmentT.c.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list(conn.execute(query).mappings())


def leads_by_id(conn: Connection, lead_ids: Iterable[str]) -> dict[str, Any]:
    ids = list(set(lead_ids))
    return {row["id"]: row for row in conn.execute(select(LeadT).where(LeadT.c.id.in_(ids))).mappings()} if ids else {}


def suppressed(conn: Connection, pairs: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which (channel, address) pairs are on the global suppression list."""
    wanted = set(pairs)
    if not wanted:
        return set()
    addresses = list({a for _, a in wanted})
    rows = conn.execute(
        select(SuppressionT.c.channel, SuppressionT.c.address).where(SuppressionT.c.address.in_(addresses))
    )
    return {(c, a) for c, a in rows if (c, a) in wanted}


def recent_touches(conn: Connection, lead_ids: Iterable[str], since: datetime) -> list[tuple[str, datetime]]:
    """(lead, time) of every touch that reached a lead since `since`, or is reaching it now.

    A task a rule opened for the owner (step_index -1, e.g. notify_owner) reaches nobody and is not counted.
    """
    ids = list(set(lead_ids))
    if not ids:
        return []
    rows = conn.execute(
        select(TouchT.c.lead_id, TouchT.c.sent_at, TouchT.c.lease_until, TouchT.c.due_at).where(
            TouchT.c.lead_id.in_(ids),
            TouchT.c.status.in_(COUNTED),
            TouchT.c.step_index >= 0,
            _recent(since),
        )
    )
    return [(lead, sent_at or lease or due) for lead, sent_at, lease, due in rows]


def _recent(since: datetime) -> Any:
    """Sent since `since`, in flight now, or possibly sent (`unknown`, dated by when it was due).

    An `unknown` touch may have reached the lead, so it counts towards every cap as if it had.
    """
    return or_(
        TouchT.c.sent_at >= since,
        TouchT.c.status == "sending",
        and_(TouchT.c.status == "unknown", TouchT.c.due_at >= since),
    )


def sender_sends(conn: Connection, senders: Iterable[str], since: datetime) -> list[tuple[str, datetime | None]]:
    """(sender, sent time or None while in flight) of emails since `since`."""
    ids = list(set(senders))
    if not ids:
        return []
    rows = conn.execute(
        select(TouchT.c.sender, TouchT.c.sent_at, TouchT.c.status, TouchT.c.due_at).where(
            TouchT.c.sender.in_(ids),
            TouchT.c.channel == "email",
            TouchT.c.status.in_(("sending", "sent", "unknown")),
            _recent(since),
        )
    )
    return [(s, due if status == "unknown" else sent) for s, sent, status, due in rows]


def thread_messages(conn: Connection, enrollment_ids: Iterable[int]) -> list[Any]:
    """Sent emails of these enrollments, oldest first, for threading follow-ups."""
    ids = list(set(enrollment_ids))
    if not ids:
        return []
    return list(
        conn.execute(
            select(TouchT.c.enrollment_id, TouchT.c.step_id, TouchT.c.message_id, TouchT.c.subject, TouchT.c.sent_at)
            .where(TouchT.c.enrollment_id.in_(ids), TouchT.c.channel == "email", TouchT.c.status == "sent")
            .order_by(TouchT.c.sent_at, TouchT.c.id)
        ).mappings()
    )


def touch_attempts(conn: Connection, touch_ids: Iterable[int]) -> dict[int, tuple[int, str | None]]:
    """touch id -> (attempts so far, the Message-ID it was sent with, if any) for touches about to be resent."""
    ids = list(set(touch_ids))
    if not ids:
        return {}
    rows = conn.execute(select(TouchT.c.id, TouchT.c.attempts, TouchT.c.message_id).where(TouchT.c.id.in_(ids)))
    return {tid: (n, mid) for tid, n, mid in rows}
