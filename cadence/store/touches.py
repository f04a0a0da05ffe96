"""Touches after their claim: recording what the send did, lost leases, manual retries, delivery reports.

Each change says whose claim it expects. A worker records only touches it still holds
(`claimed_by` is its id and the touch is `sending`, or `unknown` because its lease ran
out while nobody claimed the touch since); a result for anything else is dropped, so a
late worker never writes over a newer claim. `settle` returns the touches it won.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, or_, select, update

from cadence.names import Channel, TouchStatus
from cadence.store.rows import TouchRow
from cadence.store.tables import TouchT

T = TouchT.c
_GET = select(*TouchT.c).where(T.id == bindparam("touch_id"))
# A claim may be recorded while it is in flight, or after the sweep called it unknown (nobody claimed it since).
HELD = (TouchStatus.SENDING, TouchStatus.UNKNOWN)


@dataclass(frozen=True, slots=True)
class Result:
    """What became of one claimed touch; `status` is sent, task_open, unknown, scheduled (a retry) or failed."""

    touch_id: int
    status: TouchStatus
    attempts: int
    subject: str | None
    body: str | None
    error: str | None = None
    provider_id: str | None = None
    retry_at: datetime | None = None


def get(conn: Connection, touch_id: int) -> TouchRow | None:
    row = conn.execute(_GET, {"touch_id": touch_id}).first()
    return TouchRow._make(row) if row is not None else None


def settle(conn: Connection, worker: str, now: datetime, results: Sequence[Result]) -> set[int]:
    """Record a batch's results for the touches `worker` still holds; returns those touch ids.

    The first statement is the guard: it releases this worker's claims in one UPDATE and
    returns the ids it matched, so the rows are locked (PostgreSQL) or the writer is
    alone (SQLite) before any result is written. The results are then written per
    status, one executemany each.
    """
    if not results:
        return set()
    ids = [r.touch_id for r in results]
    won = set(
        conn.execute(
            update(TouchT)
            .where(T.id.in_(ids), T.claimed_by == worker, T.status.in_(HELD))
            .values(claimed_by=None, lease_until=None)
            .returning(T.id)
        ).scalars()
    )
    by_status: dict[TouchStatus, list[Result]] = defaultdict(list)
    for result in results:
        if result.touch_id in won:
            by_status[result.status].append(result)
    for status, group in by_status.items():
        values: dict[str, Any] = {"status": status, "subject": bindparam("r_subject"), "body": bindparam("r_body")}
        if status == TouchStatus.SENT:
            values |= {"sent_at": now, "error": None, "attempts": bindparam("r_attempts")}
        elif status == TouchStatus.TASK_OPEN:
            values |= {"sent_at": now, "due_at": now}
        elif status == TouchStatus.SCHEDULED:
            values |= {"attempts": bindparam("r_attempts"), "error": bindparam("r_error"), "due_at": bindparam("r_due")}
        elif status == TouchStatus.FAILED:
            values |= {"attempts": bindparam("r_attempts"), "error": bindparam("r_error"), "done_at": now}
        elif status == TouchStatus.UNKNOWN:
            values |= {"attempts": bindparam("r_attempts"), "error": bindparam("r_error")}
        else:
            raise ValueError(f"a claim cannot end as {status}")
        if any(r.provider_id is not None for r in group):
            values["provider_id"] = bindparam("r_provider")
        conn.execute(
            update(TouchT).where(T.id == bindparam("r_touch")).values(**values),
            [
                {
                    "r_touch": r.touch_id, "r_subject": r.subject, "r_body": r.body, "r_attempts": r.attempts,
                    "r_error": r.error, "r_due": r.retry_at, "r_provider": r.provider_id,
                }
                for r in group
            ],
        )  # fmt: skip
    return won


def lost_claims(conn: Connection, now: datetime) -> list[TouchRow]:
    """Touches in flight whose lease ran out: their worker stopped, or is too slow to trust."""
    query = select(*TouchT.c).where(T.status == TouchStatus.SENDING, T.lease_until < now).order_by(T.id)
    return [TouchRow._make(row) for row in conn.execute(query)]


def release_lost(conn: Connection, touch: TouchRow, now: datetime, *, resend: bool, error: str) -> bool:
    """A lost claim becomes `unknown` (or `scheduled` to resend); False if its worker recorded it meanwhile.

    An `unknown` touch keeps `claimed_by`, so a worker that was only slow can still settle
    it with what really happened, unless someone claims the touch again first.
    """
    values: dict[str, Any] = {"status": TouchStatus.SCHEDULED if resend else TouchStatus.UNKNOWN, "error": error}
    values["lease_until"] = None
    if resend:
        values["claimed_by"] = None
    query = (
        update(TouchT)
        .where(T.id == touch.id, T.status == TouchStatus.SENDING, T.claimed_by == touch.claimed_by, T.lease_until < now)
        .values(**values)
    )
    return conn.execute(query).rowcount == 1


def reschedule_unknown(conn: Connection, touch_id: int) -> bool:
    """`cadence retry`: an unknown touch goes out again on the next pass."""
    query = (
        update(TouchT)
        .where(T.id == touch_id, T.status == TouchStatus.UNKNOWN)
        .values(status=TouchStatus.SCHEDULED, error=None)
    )
    return conn.execute(query).rowcount == 1


def skip_unknown(conn: Connection, touch_id: int, now: datetime, reason: str) -> bool:
    """`cadence retry --skip`: an unknown touch is recorded as not resent."""
    query = (
        update(TouchT)
        .where(T.id == touch_id, T.status == TouchStatus.UNKNOWN)
        .values(status=TouchStatus.SKIPPED, done_at=now, error=reason)
    )
    return conn.execute(query).rowcount == 1


def thread_messages(conn: Connection, enrollment_ids: Iterable[int]) -> list[TouchRow]:
    """Sent emails of these enrollments, oldest first, for threading follow-ups."""
    ids = list(set(enrollment_ids))
    if not ids:
        return []
    query = (
        select(*TouchT.c)
        .where(T.enrollment_id.in_(ids), T.channel == Channel.EMAIL, T.status == TouchStatus.SENT)
        .order_by(T.sent_at, T.id)
    )
    return [TouchRow._make(row) for row in conn.execute(query)]


def sms_by_provider_id(conn: Connection, message_sid: str) -> TouchRow | None:
    row = conn.execute(select(*TouchT.c).where(T.provider_id == message_sid, T.channel == Channel.SMS)).first()
    return TouchRow._make(row) if row is not None else None


def advance_delivery(conn: Connection, touch_id: int, delivery: str, earlier: Iterable[str], error: str | None) -> bool:
    """Move a touch's delivery forward to `delivery`, only from none or one of the `earlier` states."""
    values: dict[str, Any] = {"delivery": delivery}
    if error is not None:
        values["error"] = error
    query = (
        update(TouchT)
        .where(T.id == touch_id, or_(T.delivery.is_(None), T.delivery.in_(list(earlier))))
        .values(**values)
    )
    return conn.execute(query).rowcount == 1
