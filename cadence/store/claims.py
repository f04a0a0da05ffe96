"""Claiming due work: the one place where concurrency is decided, and where a touch becomes `sending`.

`lock_due` locks due enrollments (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so several
`cadence run` processes can share one database; on SQLite the IMMEDIATE transaction
serializes claimers). Nothing but `claim_new` and `reclaim` turns due work into a
`sending` touch, and only inside the transaction that locked its enrollment.

Caps need more than row locks: two workers claiming at once each count the touches
the other has committed, not the ones it is claiming, and together overshoot a
mailbox's daily cap or a lead's. So on PostgreSQL a claim first takes its turn
(`take_claim_turn`, a transaction advisory lock): claims run one at a time, sending
does not, and each claim counts everything claimed before it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, case, func, insert, or_, select, text, update

from cadence.names import COUNTED_STATUSES, Channel, EnrollmentState, TouchStatus
from cadence.store.rows import EnrollmentRow
from cadence.store.tables import EnrollmentT, TouchT

CLAIM_TURN = 0x0CADE1A1  # the advisory lock claims take turns on (store/db.py and web/intake.py use others)


def take_claim_turn(conn: Connection) -> None:
    """Wait for any other worker's claim to commit (PostgreSQL; SQLite's IMMEDIATE transaction already does)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": CLAIM_TURN})


def lock_due(conn: Connection, now: datetime, limit: int) -> list[EnrollmentRow]:
    """Due active enrollments, oldest first, locked for this transaction (an index range scan)."""
    query = (
        select(*EnrollmentT.c)
        .where(EnrollmentT.c.next_due_at <= now, EnrollmentT.c.state == EnrollmentState.ACTIVE)
        .order_by(EnrollmentT.c.next_due_at, EnrollmentT.c.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return [EnrollmentRow._make(row) for row in conn.execute(query)]


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
            TouchT.c.status.in_(COUNTED_STATUSES),
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
        TouchT.c.status == TouchStatus.SENDING,
        and_(TouchT.c.status == TouchStatus.UNKNOWN, TouchT.c.due_at >= since),
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
    sent_at = case((TouchT.c.status == TouchStatus.UNKNOWN, TouchT.c.due_at), else_=TouchT.c.sent_at)
    in_flight = TouchT.c.status == TouchStatus.SENDING
    today = and_(sent_at >= day_start, sent_at < day_end)
    rows = conn.execute(
        select(
            TouchT.c.sender,
            func.sum(case((or_(in_flight, today), 1), else_=0)),
            func.sum(case((or_(in_flight, sent_at > minute_ago), 1), else_=0)),
        )
        .where(
            TouchT.c.sender.in_(ids),
            TouchT.c.channel == Channel.EMAIL,
            TouchT.c.status.in_((TouchStatus.SENDING, TouchStatus.SENT, TouchStatus.UNKNOWN)),
            or_(in_flight, sent_at >= min(day_start, minute_ago)),
        )
        .group_by(TouchT.c.sender)
    )
    return {sender: [int(on_day or 0), int(last_minute or 0)] for sender, on_day, last_minute in rows}


def touch_attempts(conn: Connection, touch_ids: Iterable[int]) -> dict[int, tuple[int, str | None]]:
    """touch id -> (attempts so far, the Message-ID it was sent with, if any) for touches about to be resent."""
    ids = list(set(touch_ids))
    if not ids:
        return {}
    rows = conn.execute(select(TouchT.c.id, TouchT.c.attempts, TouchT.c.message_id).where(TouchT.c.id.in_(ids)))
    return {tid: (n, mid) for tid, n, mid in rows}


def claim_new(conn: Connection, touches: Sequence[dict[str, Any]]) -> list[int]:
    """Insert the claimed (`sending`) touches of a batch in one statement; their ids, in order."""
    if not touches:
        return []
    query = insert(TouchT).returning(TouchT.c.id, sort_by_parameter_order=True)
    return list(conn.execute(query, list(touches)).scalars())


def reclaim(conn: Connection, touch_id: int, values: dict[str, Any]) -> bool:
    """A touch waiting for its retry is claimed again (`scheduled` -> `sending`); False if it is not waiting."""
    query = (
        update(TouchT)
        .where(TouchT.c.id == touch_id, TouchT.c.status == TouchStatus.SCHEDULED)
        .values(**values, status=TouchStatus.SENDING)
    )
    return conn.execute(query).rowcount == 1


def skip(conn: Connection, pending_touch_id: int | None, values: dict[str, Any], reason: str, now: datetime) -> None:
    """Record a due touch as skipped (it cannot reach the lead): its waiting retry, or a new row."""
    if pending_touch_id is not None:
        conn.execute(
            update(TouchT)
            .where(TouchT.c.id == pending_touch_id, TouchT.c.status == TouchStatus.SCHEDULED)
            .values(status=TouchStatus.SKIPPED, error=reason, done_at=now)
        )
        return
    conn.execute(insert(TouchT).values(**values, status=TouchStatus.SKIPPED, error=reason, done_at=now))
