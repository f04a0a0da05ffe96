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

from sqlalchemy import Connection, and_, bindparam, case, func, insert, or_, select, text, update

from cadence.names import COUNTED_STATUSES, Channel, EnrollmentState, TouchStatus
from cadence.store.bulk import insert_many
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
    return [EnrollmentRow._make(row) for row in conn.execute(query).all()]


def recent_touches(conn: Connection, lead_ids: Iterable[str], since: datetime) -> list[tuple[str, datetime]]:
    """(lead, time) of every touch that reached a lead since `since`, or is reaching it now.

    A task a rule opened for the owner (step_index -1, e.g. notify_owner) reaches nobody and is not counted.
    """
    ids = list(set(lead_ids))
    if not ids:
        return []
    rows = conn.execute(_RECENT, {"lead_ids": ids, "since": since}).all()
    return [(lead, sent_at or lease or due) for lead, sent_at, lease, due in rows]


# Sent since `since`, in flight now, or possibly sent (`unknown`, dated by when it was due): an
# `unknown` touch may have reached the lead, so it counts towards every cap as if it had. Built once.
# One part per status, each a search of (lead_id, status, sent_at) for a lead: the parts are disjoint
# (a touch has one status), and none reads a lead's older touches, let alone every sent touch.
_SINCE = bindparam("since", type_=TouchT.c.sent_at.type)
_DONE_WITH = tuple(s for s in COUNTED_STATUSES if s not in (TouchStatus.SENDING, TouchStatus.UNKNOWN))


def _recent(*where: Any) -> Any:
    return select(TouchT.c.lead_id, TouchT.c.sent_at, TouchT.c.lease_until, TouchT.c.due_at).where(
        TouchT.c.lead_id.in_(bindparam("lead_ids", expanding=True)), TouchT.c.step_index >= 0, *where
    )


_RECENT = _recent(TouchT.c.status.in_(_DONE_WITH), TouchT.c.sent_at >= _SINCE).union_all(
    _recent(TouchT.c.status == TouchStatus.SENDING),
    _recent(TouchT.c.status == TouchStatus.UNKNOWN, or_(TouchT.c.sent_at >= _SINCE, TouchT.c.due_at >= _SINCE)),
)


def sender_counts(
    conn: Connection, senders: Iterable[str], day_start: datetime, day_end: datetime, minute_ago: datetime
) -> dict[str, list[int]]:
    """Per sender, [emails on the mailbox's day, emails in the last minute], counted by the database.

    In flight (`sending`) counts in both; `unknown` is dated by when it was due, since it may
    have gone out. Two counts a sender rather than a row per email: with caps raised, a
    sender's day holds many thousands of sends and every claim would read them all.
    Each status is counted apart, by a search of (sender, status, sent_at): the sender's
    emails sent today, in flight, or unknown, never the mailbox's whole history.
    """
    ids = list(set(senders))
    if not ids:
        return {}
    since = min(day_start, minute_ago)

    def part(status: TouchStatus, at: Any) -> Any:
        """One status's emails of the senders, each 1 or 0 for today and for this minute."""
        recent: list[Any] = []
        if status == TouchStatus.SENDING:  # in flight: counts in both
            today = this_minute = TouchT.c.status == TouchStatus.SENDING
        else:
            today, this_minute, recent = and_(at >= day_start, at < day_end), at > minute_ago, [at >= since]
        return select(
            TouchT.c.sender.label("sender"),
            case((today, 1), else_=0).label("today"),
            case((this_minute, 1), else_=0).label("this_minute"),
        ).where(TouchT.c.sender.in_(ids), TouchT.c.status == status, TouchT.c.channel == Channel.EMAIL, *recent)

    emails = (
        part(TouchStatus.SENT, TouchT.c.sent_at)
        .union_all(part(TouchStatus.SENDING, None), part(TouchStatus.UNKNOWN, TouchT.c.due_at))
        .subquery()
    )
    rows = conn.execute(
        select(emails.c.sender, func.sum(emails.c.today), func.sum(emails.c.this_minute)).group_by(emails.c.sender)
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
    """Insert the claimed (`sending`) touches of a batch in one statement; their ids, in order.

    The touches of one claim share its worker and lease, and each is its enrollment's only
    touch in the batch: one executemany at the driver's speed (`bulk.insert_many`), then one
    indexed read finds each new touch by its enrollment and that claim. (INSERT ... RETURNING
    in parameter order is a statement a row on SQLite, and that was most of the claim's cost.)
    """
    if not touches:
        return []
    first = touches[0]
    columns = tuple(first)
    shared = {c for c in columns if c != "enrollment_id" and all(t[c] == first[c] for t in touches)}
    if not {"claimed_by", "lease_until"} <= shared:
        raise ValueError("the touches of one claim share its worker and its lease")
    varying = tuple(c for c in columns if c not in shared)
    # A StrEnum (status, channel) goes to the driver as a str: sqlite3 binds a subclass through an adapter lookup.
    constant = {c: _text(first[c]) for c in shared}
    enums = {c for c in varying if isinstance(first[c], str) and type(first[c]) is not str}
    rows = [tuple(_text(t[c]) if c in enums else t[c] for c in varying) for t in touches]
    insert_many(conn, TouchT, varying, rows, constant)
    enrollment_ids = [t["enrollment_id"] for t in touches]
    found_rows = conn.execute(
        _CLAIMED, {"c_worker": first["claimed_by"], "c_lease": first["lease_until"], "c_enrollments": enrollment_ids}
    ).all()
    found: dict[int, int] = dict(found_rows)
    if len(found_rows) != len(touches) or len(found) != len(touches):  # one touch an enrollment, or not this claim
        raise RuntimeError(f"inserted {len(touches)} claimed touches but found {len(found_rows)} rows of this claim")
    return [found[e] for e in enrollment_ids]


def _text(value: Any) -> Any:
    """A `StrEnum` as its plain `str` (anything else as it is)."""
    return str(value) if isinstance(value, str) else value


_CLAIMED = select(TouchT.c.enrollment_id, TouchT.c.id).where(
    TouchT.c.enrollment_id.in_(bindparam("c_enrollments", expanding=True)),
    TouchT.c.claimed_by == bindparam("c_worker"),
    TouchT.c.lease_until == bindparam("c_lease", type_=TouchT.c.lease_until.type),
    TouchT.c.status == TouchStatus.SENDING,
)


# The columns a claim writes on a touch it claims again: the same for every touch, so one executemany.
_RECLAIMED = ("claimed_by", "lease_until", "message_id", "owner", "variant", "sender")
_RECLAIM = (
    update(TouchT)
    .where(TouchT.c.id == bindparam("r_id"), TouchT.c.status == TouchStatus.SCHEDULED)
    .values(
        status=TouchStatus.SENDING,
        **{c: bindparam(f"r_{c}", type_=TouchT.c[c].type) for c in _RECLAIMED},
    )
)


def reclaim_many(conn: Connection, touches: Sequence[tuple[int, dict[str, Any]]]) -> int:
    """Touches waiting for their retry are claimed again (`scheduled` -> `sending`), in one statement:
    (touch, the claim's values for it). Returns how many were waiting; a claim that gets fewer rolls back.
    """
    if not touches:
        return 0
    params = [{"r_id": tid, **{f"r_{c}": values[c] for c in _RECLAIMED}} for tid, values in touches]
    return int(conn.execute(_RECLAIM, params).rowcount)


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
