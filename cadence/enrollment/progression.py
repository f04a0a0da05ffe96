"""Moving an enrollment past a step that happened (sent, skipped, failed, done or expired).

The next step is planned from when this one actually happened (the no-catch-up
rule). An enrollment that runs out of steps finishes with outcome `completed`,
which is itself an event the rules can act on.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, update

from cadence.outcomes.events import add_history, finish_enrollment, on_event
from cadence.plan.planner import Planner
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
    conn.execute(_MOVE, _move(enrollment, planner, index, due, happened_at))
    return due


# Moving an enrollment to its next step, built once and shared by `advance` and `advance_many`.
_MOVE = (
    update(EnrollmentT)
    .where(EnrollmentT.c.id == bindparam("moved_id"))
    .values(
        next_index=bindparam("moved_index"),
        next_step=bindparam("moved_step"),
        next_due_at=bindparam("moved_due"),
        pending_touch_id=None,
        last_touch_at=bindparam("moved_at"),
    )
)


def _move(enrollment: Any, planner: Planner, index: int, due: datetime | None, at: datetime) -> dict[str, Any]:
    return {
        "moved_id": enrollment["id"],
        "moved_index": index + 1,
        "moved_step": planner.sequence.steps[index + 1].id,
        "moved_due": due,
        "moved_at": at,
    }


def advance_many(
    conn: Connection,
    app: App,
    moves: Sequence[tuple[Any, Planner, int]],
    happened_at: datetime,
    now: datetime,
) -> None:
    """`advance` for many enrollments at once, each moved past the step at its index.

    The dispatcher records hundreds of sent touches a batch; one UPDATE per touch was the
    largest cost of recording them. Steps that are not the last are planned here and written
    in one executemany; an enrollment that runs out of steps goes through `advance`, because
    completing it fires rules. The caller passes enrollments of different leads with nothing
    else to do in between, so the order they are written in cannot matter.
    """
    rows: list[dict[str, Any]] = []
    for enrollment, planner, index in moves:
        if index + 1 >= len(planner.sequence.steps):
            advance(conn, app, enrollment, planner, index, happened_at, now)
        else:
            due = planner.due_after(index, happened_at, enrollment["lead_id"])
            rows.append(_move(enrollment, planner, index, due, happened_at))
    if rows:
        conn.execute(_MOVE, rows)


def defer(conn: Connection, enrollment_id: int, due: datetime) -> None:
    conn.execute(update(EnrollmentT).where(EnrollmentT.c.id == enrollment_id).values(next_due_at=due))


__all__ = ["add_history", "advance", "advance_many", "defer"]
