"""Touches after their claim: recording what the send did, lost leases, manual retries, delivery reports.

Each change says whose claim it expects. A worker records only touches it still holds
(`claimed_by` is its id and the touch is `sending`, or `unknown` because its lease ran
out while nobody claimed the touch since); a result for anything else is dropped, so a
late worker never writes over a newer claim. `settle` returns the touches it won.

A batch's results are written by one executemany per status, sent to the driver the way
`bulk.insert_many` sends inserts (compiled once, each value converted once): SQLAlchemy's
per-row parameter handling was most of what recording a batch cost.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Update, bindparam, or_, select, update

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
    expires_at: datetime | None = None  # a task opened: its deadline (`outcomes.snooze.task_deadline`)


def get(conn: Connection, touch_id: int) -> TouchRow | None:
    row = conn.execute(_GET, {"touch_id": touch_id}).first()
    return TouchRow._make(row) if row is not None else None


def settle(conn: Connection, worker: str, now: datetime, results: Sequence[Result]) -> set[int]:
    """Record a batch's results for the touches `worker` still holds; returns those touch ids.

    The first statement is the guard: it releases this worker's claims in one UPDATE and
    returns the ids it matched, so the rows are locked (PostgreSQL) or the writer is
    alone (SQLite) before any result is written. The results are then written per
    status, one executemany each, at the driver's speed (`_execute_many`).
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
        _write(conn, status, group, now)
    return won


def _write(conn: Connection, status: TouchStatus, group: Sequence[Result], now: datetime) -> None:
    """Write the results of one status, on touches the guard has just released for this worker."""
    values: dict[str, Any] = {"status": status, "subject": bindparam("r_subject"), "body": bindparam("r_body")}
    if status == TouchStatus.SENT:
        values |= {"sent_at": now, "error": None, "attempts": bindparam("r_attempts")}
    elif status == TouchStatus.TASK_OPEN:
        values |= {"sent_at": now, "due_at": now, "expires_at": bindparam("r_expires")}
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
    rows = [
        {
            "r_touch": r.touch_id, "r_subject": r.subject, "r_body": r.body, "r_attempts": r.attempts,
            "r_error": r.error, "r_due": r.retry_at, "r_provider": r.provider_id, "r_expires": r.expires_at,
        }
        for r in group
    ]  # fmt: skip
    _execute_many(conn, update(TouchT).where(T.id == bindparam("r_touch")).values(**values), rows)


def _execute_many(conn: Connection, statement: Update, rows: list[dict[str, Any]]) -> int:
    """`conn.execute(statement, rows).rowcount` at the driver's speed: how many rows the executemany changed.

    The statement is compiled once for the connection's dialect; a value it holds itself
    (a status, `now`) goes through its type's bind processor once, and each row's values
    (the keys of `rows` that the statement names) once each, as SQLAlchemy would convert them.
    """
    dialect = conn.dialect
    compiled = statement.compile(dialect=dialect)
    if compiled.post_compile_params or compiled.literal_execute_params:
        raise ValueError("an executemany statement cannot hold an IN list: spell it with OR")
    given = rows[0].keys()
    fixed: dict[str, Any] = {}
    varying: list[tuple[str, Any]] = []  # (name, its bind processor or None)
    for bind, name in compiled.bind_names.items():
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if name in given:
            varying.append((name, process))
        elif bind.required:
            raise KeyError(f"no value for {name!r}")
        else:
            value = process(bind.effective_value) if process else bind.effective_value
            fixed[name] = str(value) if isinstance(value, str) else value  # a StrEnum costs sqlite3 an adapter lookup
    params: list[Any] = []
    for row in rows:
        values = dict(fixed)
        for name, process in varying:
            values[name] = process(row[name]) if process else row[name]
        params.append(values)
    if compiled.positional:
        names = compiled.positiontup or []
        order = itemgetter(*names) if len(names) > 1 else (lambda values: tuple(values[n] for n in names))
        params = [order(values) for values in params]
    elif compiled.escaped_bind_names:
        escaped = compiled.escaped_bind_names
        params = [{escaped.get(k, k): v for k, v in values.items()} for values in params]
    return int(conn.exec_driver_sql(compiled.string, params).rowcount)


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
