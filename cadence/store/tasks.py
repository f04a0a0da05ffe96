"""Tasks: touches a person does (calls, manual steps, a rule's note to the owner), opened, done or expired.

A task closes once: logging a disposition and expiring both expect `task_open`, so a
rep and the sweep racing for the same task cannot both close it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, select, update

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


def open_since_before(conn: Connection, opened_before: datetime) -> list[TouchRow]:
    """Open tasks opened before `opened_before`: the candidates for expiry."""
    query = select(*TouchT.c).where(T.status == TouchStatus.TASK_OPEN, T.due_at < opened_before).order_by(T.id)
    return [TouchRow._make(row) for row in conn.execute(query)]


def expire(conn: Connection, task_id: int, now: datetime, reason: str) -> bool:
    """An open task nobody worked expires; False if it was logged (or expired) meanwhile."""
    query = (
        update(TouchT)
        .where(T.id == task_id, T.status == TouchStatus.TASK_OPEN)
        .values(status=TouchStatus.EXPIRED, done_at=now, error=reason)
    )
    return conn.execute(query).rowcount == 1


def snooze(conn: Connection, task_id: int, owner: str | None, until: datetime) -> bool:
    """Move an open task to `until`; False, and nothing changed, if it was logged, expired or reassigned meanwhile.

    The sweep dates a task's expiry from `due_at`, so a snoozed task gets its allowed days again from `until`.
    """
    query = (
        update(TouchT)
        .where(T.id == task_id, T.status == TouchStatus.TASK_OPEN, T.owner.is_not_distinct_from(owner))
        .values(due_at=until)
    )
    return conn.execute(query).rowcount == 1
