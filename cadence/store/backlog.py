"""What an operator watches between passes: how much is due and waiting, and whose tasks are open.

Read at each metrics scrape, so each is one indexed query: the due backlog is a range over
`enrollment.next_due_at` (the claim's own index), the open tasks a range over `touch.status`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, bindparam, func, select

from cadence.names import EnrollmentState, TouchStatus
from cadence.store.tables import EnrollmentT, TouchT

_DUE = select(func.count(), func.min(EnrollmentT.c.next_due_at)).where(
    EnrollmentT.c.next_due_at <= bindparam("now", type_=EnrollmentT.c.next_due_at.type),
    EnrollmentT.c.state == EnrollmentState.ACTIVE.value,
)
_OPEN_TASKS = (
    select(TouchT.c.owner, func.count()).where(TouchT.c.status == TouchStatus.TASK_OPEN.value).group_by(TouchT.c.owner)
)


def due(conn: Connection, now: datetime) -> tuple[int, datetime | None]:
    """How many enrollments are due at `now` and not yet claimed, and when the oldest of them fell due."""
    count, oldest = conn.execute(_DUE, {"now": now}).one()
    return int(count), oldest  # min() keeps the column's type: an aware UTC datetime


def open_tasks_by_owner(conn: Connection) -> dict[str, int]:
    """Open call and manual tasks per owner ("" for a lead nobody owns)."""
    return {owner or "": int(n) for owner, n in conn.execute(_OPEN_TASKS).all()}
