"""After a step happened: the enrollment moves on, and a sequence that ran out of steps tells the rules.

`cadence.enrollment.progression` plans and writes the move; completing a sequence is
itself an event (`completed`) that rules act on (recycle into nurture, ...), which is
this package's business. Callers that move enrollments come here, not to progression.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from cadence.enrollment.progression import Advanced, advance, advance_many
from cadence.names import EnrollmentState, Event, Outcome
from cadence.outcomes.events import on_event
from cadence.plan.planner import Planner
from cadence.store import enrollments
from cadence.store.rows import EnrollmentRow

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from cadence.app import App


def move_on(
    conn: Connection,
    app: App,
    enrollment: EnrollmentRow,
    planner: Planner,
    index: int,
    happened_at: datetime,
    now: datetime,
) -> Advanced:
    """Move past step `index` (guarded), and run the `completed` rules if that was the last step."""
    result = advance(conn, enrollment, planner, index, happened_at, now)
    if result.completed:
        _tell_rules(conn, app, enrollment, now)
    return result


def move_on_many(
    conn: Connection,
    app: App,
    moves: Sequence[tuple[EnrollmentRow, Planner, int]],
    happened_at: datetime,
    now: datetime,
) -> list[tuple[EnrollmentRow, Advanced]]:
    results = advance_many(conn, moves, happened_at, now)
    for enrollment, result in results:
        if result.completed:
            _tell_rules(conn, app, enrollment, now)
    return results


def complete(conn: Connection, app: App, enrollment: EnrollmentRow, now: datetime, cause: str) -> bool:
    """Finish a live enrollment that has no step left (an applied edit removed them), then tell the rules."""
    if not enrollments.finish(conn, enrollment, Outcome.COMPLETED, now, cause):
        return False
    _tell_rules(conn, app, enrollment, now)
    return True


def _tell_rules(conn: Connection, app: App, enrollment: EnrollmentRow, now: datetime) -> None:
    finished = enrollment._replace(state=EnrollmentState.FINISHED, outcome=Outcome.COMPLETED)
    on_event(
        conn,
        app,
        enrollment.lead_id,
        Event.COMPLETED,
        now,
        cause=f"{enrollment.sequence_id} completed",
        detail={"sequence": enrollment.sequence_id},
        enrollments=[finished],
    )
