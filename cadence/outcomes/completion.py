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
from cadence.names import Outcome
from cadence.outcomes.events import on_completed_many, tell_completed
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
        tell_completed(conn, app, enrollment, now)
    return result


def move_on_many(
    conn: Connection,
    app: App,
    moves: Sequence[tuple[EnrollmentRow, Planner, int]],
    happened_at: datetime,
    now: datetime,
) -> list[tuple[EnrollmentRow, Advanced]]:
    results = advance_many(conn, moves, happened_at, now)
    on_completed_many(conn, app, [enrollment for enrollment, result in results if result.completed], now)
    return results


def complete(conn: Connection, app: App, enrollment: EnrollmentRow, now: datetime, cause: str) -> bool:
    """Finish a live enrollment that has no step left (an applied edit removed them), then tell the rules."""
    if not enrollments.finish(conn, enrollment, Outcome.COMPLETED, now, cause):
        return False
    tell_completed(conn, app, enrollment, now)
    return True
