"""The hot queries, each written once.

`lock_due` is the single place where concurrency is decided: it locks due
enrollments (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so several `cadence run`
processes can share one database; on SQLite the IMMEDIATE transaction serializes
claimers). Nothing else turns due work into a `sending` touch.

Caps need more than row locks: two workers claiming at once each count the touches
the other has committed, not the ones it is claiming, and together overshoot a
mailbox's daily cap or a lead's. So on PostgreSQL a claim first takes its turn
(`take_claim_turn`, a transaction advisory lock): claims run one at a time, sending
does not, and each claim counts everything claimed before it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, case, func, or_, select, text

from cadence.store.tables import Enrollment, Lead, Suppression, Touch

EnrollmentT: Any = Enrollment.__table__  # type: ignore[attr-defined]
LeadT: Any = Lead.__table__  # type: ignore[attr-defined]
TouchT: Any = Touch.__table__  # type: ignore[attr-defined]
SuppressionT: Any = Suppression.__table__  # type: ignore[attr-defined]
COUNTED = ("sending", "sent", "task_open", "done", "unknown")
CLAIM_TURN = 0x0CADE1A1  # the advisory lock claims take turns on (store/db.py and web/intake.py use others)


def take_claim_turn(conn: Connection) -> None:
    """Wait for any other worker's claim to commit (PostgreSQL; SQLite's IMMEDIATE transaction already does)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": CLAIM_TURN})


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


def sender_counts(
    conn: Connection, senders: Iterable[str], day_start: datetime, day_end: datetime, minute_ago: datetime
) -> dict[str, list[int]]:
    """Per sender, [emails on the mailbox's day, emails in the last minute], counted by the database.

    In flight (`sending`) counts in both; `unknown` is dated by when it was due, since it may
    have gone out. Two counts a sender rather than a row per email: with caps raised, a
    sender's day holds many thousands of sends and every claim would read them all.
    """
    ids = list(set(senders))
    if not ids:
        return {}
    sent_at = case((TouchT.c.status == "unknown", TouchT.c.due_at), else_=TouchT.c.sent_at)
    in_flight = TouchT.c.status == "sending"
    today = and_(sent_at >= day_start, sent_at < day_end)
    rows = conn.execute(
        select(
            TouchT.c.sender,
            func.sum(case((or_(in_flight, today), 1), else_=0)),
            func.sum(case((or_(in_flight, sent_at > minute_ago), 1), else_=0)),
        )
        .where(
            TouchT.c.sender.in_(ids),
            TouchT.c.channel == "email",
            TouchT.c.status.in_(("sending", "sent", "unknown")),
            or_(in_flight, sent_at >= min(day_start, minute_ago)),
        )
        .group_by(TouchT.c.sender)
    )
    return {sender: [int(on_day or 0), int(last_minute or 0)] for sender, on_day, last_minute in rows}


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
