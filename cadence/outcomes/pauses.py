"""Pausing and resuming a lead's sequences (by hand, for out-of-office, or by a rule).

A paused enrollment has nothing due. Resuming plans its next step from the moment
of resumption (no catch-up): at the next slot of the step's own time of day,
inside the window. An enrollment waiting on an open task keeps waiting for it.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select, update

from cadence.outcomes.events import LIVE, add_history, pause_enrollment
from cadence.plan.timing import parse_time_of_day
from cadence.store.queries import EnrollmentT, LeadT

if TYPE_CHECKING:
    from cadence.app import App


class LeadNotFound(KeyError):
    def __str__(self) -> str:
        return f"no lead with id {self.args[0]!r}"


def _live(conn: Connection, lead_id: str) -> list[Any]:
    if conn.execute(select(LeadT.c.id).where(LeadT.c.id == lead_id)).first() is None:
        raise LeadNotFound(lead_id)
    return list(
        conn.execute(
            select(EnrollmentT).where(EnrollmentT.c.lead_id == lead_id, EnrollmentT.c.state.in_(LIVE))
        ).mappings()
    )


def pause_lead(app: App, lead_id: str, until: datetime | None, cause: str = "paused by hand") -> list[str]:
    now = app.clock.now()
    with app.engine.begin() as conn:
        paused = []
        for enrollment in _live(conn, lead_id):
            pause_enrollment(conn, enrollment["id"], until)
            paused.append(enrollment["sequence_id"])
        detail = {"sequences": paused, "until": until.isoformat() if until else None}
        add_history(conn, lead_id, now, "action", {"action": "pause", **detail}, cause)
    return paused


def resume_enrollment(conn: Connection, app: App, enrollment: Any, now: datetime, cause: str) -> datetime | None:
    lead = conn.execute(select(LeadT.c.timezone, LeadT.c.country).where(LeadT.c.id == enrollment["lead_id"])).one()
    spec, _ = app.specs.get(conn, enrollment["version_id"])
    due = None
    if enrollment["pending_touch_id"] is None and enrollment["next_index"] is not None:
        planner = app.planner(spec, lead.timezone, lead.country)
        step = spec.steps[enrollment["next_index"]]
        cal = planner.calendar
        due = cal.first_slot_from(
            cal.local_date(now),
            earliest=now,
            at=parse_time_of_day(step.at) if step.at else None,
            spread_key=None if step.immediate else enrollment["lead_id"],
            window=planner.window_for(step),
        )
    conn.execute(
        update(EnrollmentT)
        .where(EnrollmentT.c.id == enrollment["id"])
        .values(state="active", paused_until=None, next_due_at=due)
    )
    add_history(
        conn,
        enrollment["lead_id"],
        now,
        "action",
        {"action": "resume", "sequence": enrollment["sequence_id"], "next_due_at": due.isoformat() if due else None},
        cause,
    )
    return due


def resume_lead(app: App, lead_id: str) -> list[str]:
    now = app.clock.now()
    with app.engine.begin() as conn:
        resumed = []
        for enrollment in _live(conn, lead_id):
            if enrollment["state"] == "paused":
                resume_enrollment(conn, app, enrollment, now, "resumed by hand")
                resumed.append(enrollment["sequence_id"])
    return resumed
