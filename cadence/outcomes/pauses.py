"""Pausing and resuming a lead's sequences (by hand, for out-of-office, or by a rule).

A paused enrollment has nothing due. Resuming plans its next step from the moment
of resumption (no catch-up): at the next slot of the step's own time of day,
inside the window. An enrollment waiting on an open task keeps waiting for it.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from cadence.names import EnrollmentState, HistoryKind, TouchStatus
from cadence.outcomes.completion import move_on
from cadence.plan.timing import parse_time_of_day
from cadence.store import enrollments, history, leads, touches
from cadence.store.rows import EnrollmentRow

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from cadence.app import App


# A pending touch in one of these is still in flight: the enrollment keeps waiting for it.
WAITING = (TouchStatus.TASK_OPEN, TouchStatus.SCHEDULED, TouchStatus.SENDING, TouchStatus.UNKNOWN)


class LeadNotFound(KeyError):
    def __str__(self) -> str:
        return f"no lead with id {self.args[0]!r}"


def _live(conn: Connection, lead_id: str) -> list[EnrollmentRow]:
    if not leads.exists(conn, lead_id):
        raise LeadNotFound(lead_id)
    return enrollments.live_of_lead(conn, lead_id)


def pause_lead(app: App, lead_id: str, until: datetime | None, cause: str = "paused by hand") -> list[str]:
    now = app.clock.now()
    with app.engine.begin() as conn:
        paused = [e.sequence_id for e in _live(conn, lead_id) if enrollments.pause(conn, e.id, until)]
        detail = {"sequences": paused, "until": until.isoformat() if until else None}
        history.add(conn, lead_id, now, HistoryKind.ACTION, {"action": "pause", **detail}, cause)
    return paused


def resume_enrollment(
    conn: Connection, app: App, enrollment: EnrollmentRow, now: datetime, cause: str
) -> datetime | None:
    """Plan the next step from now, inside the window; returns when it is due (None: it waits on a task)."""
    lead = leads.get(conn, enrollment.lead_id)
    assert lead is not None
    spec, _ = app.specs.get(conn, enrollment.version_id)
    waited = touches.get(conn, enrollment.pending_touch_id) if enrollment.pending_touch_id is not None else None
    if waited is not None and waited.status not in WAITING and waited.step_index >= 0:
        # The touch it waited on is over (a task expired while it was set aside): move past that step now.
        if not enrollments.resume(conn, enrollment.id, None):
            return None
        planner = app.planner(spec, lead.timezone, lead.country, lead.region)
        active = enrollment._replace(state=EnrollmentState.ACTIVE, paused_until=None)
        moved = move_on(conn, app, active, planner, waited.step_index, now, now)
        detail: dict[str, str | None] = {"action": "resume", "sequence": enrollment.sequence_id, "past": waited.step_id}
        history.add(conn, enrollment.lead_id, now, HistoryKind.ACTION, detail, cause)
        return moved.due
    due = None
    if enrollment.pending_touch_id is None and enrollment.next_index is not None:
        planner = app.planner(spec, lead.timezone, lead.country, lead.region)
        step = spec.steps[enrollment.next_index]
        cal = planner.calendar
        due = cal.first_slot_from(
            cal.local_date(now),
            earliest=now,
            at=parse_time_of_day(step.at) if step.at else None,
            spread_key=None if step.immediate else enrollment.lead_id,
            window=planner.window_for(step),
        )
    if not enrollments.resume(conn, enrollment.id, due):
        return None
    detail = {"action": "resume", "sequence": enrollment.sequence_id, "next_due_at": due.isoformat() if due else None}
    history.add(conn, enrollment.lead_id, now, HistoryKind.ACTION, detail, cause)
    return due


def resume_lead(app: App, lead_id: str) -> list[str]:
    now = app.clock.now()
    with app.engine.begin() as conn:
        resumed = []
        for enrollment in _live(conn, lead_id):
            if enrollment.state == EnrollmentState.PAUSED:
                resume_enrollment(conn, app, enrollment, now, "resumed by hand")
                resumed.append(enrollment.sequence_id)
    return resumed
