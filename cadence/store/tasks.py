"""Tasks: touches a person does (calls, manual steps, a rule's note to the owner), opened, done or expired.

A task closes once: logging a disposition and expiring both expect `task_open`, so a
rep and the sweep racing for the same task cannot both close it.

An open task carries its deadline (`expires_at`), set when it opens (`touches.settle`) or is
snoozed, so expiring is one UPDATE on the partial index of open tasks by deadline. A task
without one (opened before the column existed, or by `open_for_owner`) is dated by the
sweep (`undated`, `date_many`), a bounded batch at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, bindparam, select, update

from cadence.names import Channel, TouchStatus
from cadence.store.rows import TouchRow
from cadence.store.tables import TouchT

T = TouchT.c
OWNER_TASK_STEP = "notify-owner"  # a task outside the steps: it reaches nobody and never moves a sequence


def open_for_owner(
    conn: Connection, lead_id: str, owner: str | None, enrollment_id: int, title: str, note: str, now: datetime
) -> int:
    """A task for the lead's owner outside the sequence's steps (step index -1)."""
    touch_id: int = conn.execute(
        TouchT.insert()
        .values(
            enrollment_id=enrollment_id, lead_id=lead_id, sequence_id="-", step_id=OWNER_TASK_STEP, step_index=-1,
            channel=Channel.TASK, status=TouchStatus.TASK_OPEN, owner=owner, due_at=now, sent_at=now, attempts=0,
            subject=title, body=note,
        )
        .returning(T.id)
    ).scalar_one()  # fmt: skip
    return touch_id


def complete(conn: Connection, task_id: int, code: str, note: str | None, now: datetime) -> bool:
    """Log a disposition on an open task; False if it is no longer open."""
    query = (
        update(TouchT)
        .where(T.id == task_id, T.status == TouchStatus.TASK_OPEN)
        .values(status=TouchStatus.DONE, done_at=now, disposition=code, note=note)
    )
    return conn.execute(query).rowcount == 1


def undated(conn: Connection, limit: int) -> list[TouchRow]:
    """Up to `limit` open tasks without a deadline yet, oldest first, locked for this transaction.

    On PostgreSQL, another worker's sweep skips the tasks this one is dating (`SKIP LOCKED`).
    The lock also keeps `status = 'task_open'` among the index conditions: for a row it does not
    lock, PostgreSQL drops a condition the partial index's predicate implies, and the search of
    `ix_touch_open_expires_at` (status, expires_at) would become a walk of every open task.
    """
    query = (
        select(*TouchT.c).where(T.status == TouchStatus.TASK_OPEN, T.expires_at.is_(None)).order_by(T.id).limit(limit)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return [TouchRow._make(row) for row in conn.execute(query)]


_DATE = (
    update(TouchT)
    .where(T.id == bindparam("d_task"), T.status == TouchStatus.TASK_OPEN, T.expires_at.is_(None))
    .values(expires_at=bindparam("d_deadline"))
)


def date_many(conn: Connection, deadlines: Sequence[tuple[int, datetime]]) -> None:
    """Give open tasks without a deadline theirs: (task id, deadline) pairs, in one executemany."""
    if deadlines:
        conn.execute(_DATE, [{"d_task": task_id, "d_deadline": at} for task_id, at in deadlines])


def expire_due(conn: Connection, now: datetime, reason: str) -> list[TouchRow]:
    """Expire every open task whose deadline has passed, in one UPDATE; the tasks it expired, by id."""
    query = (
        update(TouchT)
        .where(T.status == TouchStatus.TASK_OPEN, T.expires_at <= now)
        .values(status=TouchStatus.EXPIRED, done_at=now, error=reason)
        .returning(*TouchT.c)
    )
    return sorted((TouchRow._make(row) for row in conn.execute(query)), key=lambda task: task.id)


def explain_expiry(conn: Connection, task_id: int, reason: str) -> None:
    """Replace the recorded reason of an expired task (what followed its expiry failed)."""
    conn.execute(update(TouchT).where(T.id == task_id, T.status == TouchStatus.EXPIRED).values(error=reason))


def expire(conn: Connection, task_id: int, now: datetime, reason: str) -> bool:
    """An open task nobody worked expires; False if it was logged (or expired) meanwhile."""
    query = (
        update(TouchT)
        .where(T.id == task_id, T.status == TouchStatus.TASK_OPEN)
        .values(status=TouchStatus.EXPIRED, done_at=now, error=reason)
    )
    return conn.execute(query).rowcount == 1


def snooze(conn: Connection, task_id: int, owner: str | None, until: datetime, expires_at: datetime) -> bool:
    """Move an open task to `until`, with its new deadline; False, and nothing changed, if it was
    logged, expired or reassigned meanwhile.

    A task's deadline is dated from `due_at`, so a snoozed task gets its allowed days again from `until`.
    """
    query = (
        update(TouchT)
        .where(T.id == task_id, T.status == TouchStatus.TASK_OPEN, T.owner.is_not_distinct_from(owner))
        .values(due_at=until, expires_at=expires_at)
    )
    return conn.execute(query).rowcount == 1
