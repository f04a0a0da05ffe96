"""Read-only views for people: a lead's whole picture (`cadence status`) and the SDR's task queue."""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import Connection, select

from cadence.names import TouchStatus
from cadence.store.rows import EnrollmentRow, LeadRow, TouchRow
from cadence.store.tables import EnrollmentT, LeadT, TouchT, VersionT

E, T = EnrollmentT.c, TouchT.c
_ENROLLMENT_WIDTH, _TOUCH_WIDTH = len(EnrollmentT.c), len(TouchT.c)


class Enrolled(NamedTuple):
    """One of a lead's enrollments, with the number of the version it follows."""

    enrollment: EnrollmentRow
    version: int


class QueuedTask(NamedTuple):
    """An open task, with its lead and the version its enrollment follows (for the lead's calendar)."""

    task: TouchRow
    lead: LeadRow
    version_id: int


def enrollments_of(conn: Connection, lead_id: str) -> list[Enrolled]:
    """Every enrollment of a lead, live or finished, the oldest first."""
    query = (
        select(*EnrollmentT.c, VersionT.c.version)
        .join(VersionT, VersionT.c.id == E.version_id)
        .where(E.lead_id == lead_id)
        .order_by(E.enrolled_at, E.id)
    )
    rows = [tuple(row) for row in conn.execute(query)]
    return [Enrolled(EnrollmentRow._make(row[:_ENROLLMENT_WIDTH]), row[_ENROLLMENT_WIDTH]) for row in rows]


def touches_of(conn: Connection, lead_id: str) -> list[TouchRow]:
    """Every touch of a lead, in the order they were due."""
    query = select(*TouchT.c).where(T.lead_id == lead_id).order_by(T.due_at, T.id)
    return [TouchRow._make(row) for row in conn.execute(query)]


def open_tasks(conn: Connection, owner: str | None = None) -> list[QueuedTask]:
    """The open call and manual tasks, of one owner or of everyone, in no particular order."""
    query = (
        select(*TouchT.c, *LeadT.c, E.version_id)
        .join(LeadT, LeadT.c.id == T.lead_id)
        .join(EnrollmentT, E.id == T.enrollment_id)
        .where(T.status == TouchStatus.TASK_OPEN)
    )
    if owner:
        query = query.where(T.owner == owner)
    rows = [tuple(row) for row in conn.execute(query)]
    return [
        QueuedTask(TouchRow._make(row[:_TOUCH_WIDTH]), LeadRow._make(row[_TOUCH_WIDTH:-1]), row[-1]) for row in rows
    ]
