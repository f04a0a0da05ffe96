"""Moving an enrollment past a step that happened (sent, skipped, failed, done or expired).

The next step is planned from when this one actually happened (the no-catch-up
rule). An enrollment that runs out of steps finishes with outcome `completed`; the
caller then tells the rules (`cadence.outcomes.completion`), because completing is
itself an event. Every move is guarded (`cadence.store.enrollments`): a mover that
no longer sees the enrollment where it left it changes nothing and is told so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from cadence.names import Outcome
from cadence.plan.planner import Planner
from cadence.store import enrollments
from cadence.store.enrollments import Move
from cadence.store.rows import EnrollmentRow

if TYPE_CHECKING:
    from sqlalchemy import Connection


@dataclass(frozen=True, slots=True)
class Advanced:
    """What a move did: `moved` is False when a newer writer got there first."""

    moved: bool
    due: datetime | None = None  # when the next step is due (None once completed)
    completed: bool = False  # the enrollment ran out of steps and finished as completed


STALE = Advanced(moved=False)


def _plan(enrollment: EnrollmentRow, planner: Planner, index: int, happened_at: datetime) -> Move:
    due = planner.due_after(index, happened_at, enrollment.lead_id)
    return Move(
        enrollment.id,
        enrollment.next_index,
        enrollment.pending_touch_id,
        index + 1,
        planner.sequence.steps[index + 1].id,
        due,
        happened_at,
    )


def advance(
    conn: Connection, enrollment: EnrollmentRow, planner: Planner, index: int, happened_at: datetime, now: datetime
) -> Advanced:
    """Plan the step after `index` for an enrollment last seen as `enrollment`, or finish it as completed."""
    if index + 1 >= len(planner.sequence.steps):
        if not _completes(conn, enrollment, now):
            return STALE
        return Advanced(moved=True, completed=True)
    move = _plan(enrollment, planner, index, happened_at)
    if not enrollments.move(conn, move):
        return STALE
    return Advanced(moved=True, due=move.due)


def advance_many(
    conn: Connection,
    moves: Sequence[tuple[EnrollmentRow, Planner, int]],
    happened_at: datetime,
    now: datetime,
) -> list[tuple[EnrollmentRow, Advanced]]:
    """`advance` for many enrollments of different leads at once; returns each one's result, in order.

    The dispatcher records hundreds of sent touches a batch; one UPDATE per touch was the
    largest cost of recording them. Steps that are not the last are planned here and
    written in one executemany; the enrollments that run out of steps complete together too.
    """
    planned = [
        (
            enrollment,
            planner,
            index,
            None if index + 1 >= len(planner.sequence.steps) else _plan(enrollment, planner, index, happened_at),
        )
        for enrollment, planner, index in moves
    ]
    won = enrollments.move_many(conn, [m for *_, m in planned if m is not None])
    ending = [enrollment for enrollment, _planner, _index, move in planned if move is None]
    ended = enrollments.finish_many(conn, ending, Outcome.COMPLETED, now, "sequence ran out of steps")
    out: list[tuple[EnrollmentRow, Advanced]] = []
    for enrollment, _planner, _index, move in planned:
        if move is None:
            out.append((enrollment, Advanced(moved=True, completed=True) if enrollment.id in ended else STALE))
        else:
            out.append((enrollment, Advanced(moved=True, due=move.due) if move.id in won else STALE))
    return out


def _completes(conn: Connection, enrollment: EnrollmentRow, now: datetime) -> bool:
    return enrollments.finish(conn, enrollment, Outcome.COMPLETED, now, "sequence ran out of steps")
