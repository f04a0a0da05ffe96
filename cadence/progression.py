"""Moving an enrollment past a step that happened (sent, skipped, failed, done or expired).

The next step is planned from when this one actually happened (the no-catch-up
rule). An enrollment that runs out of steps finishes with outcome `completed`,
which is itself an event the rules can act on.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, update

from cadence.events import add_history, finish_enrollment, on_event
from cadence.planner import Planner
from cadence.store.queries import EnrollmentT

if TYPE_CHECKING:
    from cadence.app import App


def advance(
    conn: Connection,
    app: App,
    enrollment: Any,
    planner: Planner,
    index: int,
    happened_at: datetime,
    now: datetime,
) -> datetime | None:
    """Plan the step after `index`; returns its due time, or None if the sequence is complete."""
    steps = planner.sequence.steps
    lead_id = enrollment["lead_id"]
    if index + 1 >= len(steps):
        finish_enrollment(conn, enrollment["id"], lead_id, "completed", now, cause="sequence ran out of steps")
        finished = {**dict(enrollment), "state": "finished", "outcome": "completed"}
        on_event(
            conn, app, lead_id, "completed", now, cause=f"{enrollment['sequence_id']} completed",
            detail={"sequence": enrollment["sequence_id"]}, enrollments=[finished],
        )  # fmt: skip
        return None
    due = planner.due_after(index, happened_at, lead_id)
    conn.execute(
        update(EnrollmentT)
        .where(EnrollmentT.c.id == enrollment["id"])
        .values(
            next_index=index + 1,
            next_step=steps[index + 1].id,
            next_due_at=due,
            pending_touch_id=None,
            last_touch_at=happened_at,
        )
    )
    return due


def defer(conn: Connection, enrollment_id: int, due: datetime) -> None:
    conn.execute(update(EnrollmentT).where(EnrollmentT.c.id == enrollment_id).values(next_due_at=due))


__all__ = ["add_history", "advance", "defer"]
