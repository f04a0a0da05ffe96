"""Logging a disposition on a call or task: the task is done, and the rules run at once."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select, update

from cadence.enrollment.progression import advance
from cadence.outcomes.events import LIVE, add_history, apply_then
from cadence.plan.rules import Situation, decide
from cadence.store.queries import EnrollmentT, LeadT, TouchT

if TYPE_CHECKING:
    from cadence.app import App


class DispositionError(ValueError):
    """A disposition that cannot be logged, with the reason a rep understands."""


def log_disposition(app: App, task_id: int, code: str, note: str | None = None) -> list[str]:
    settings = app.settings
    if code not in settings.dispositions:
        valid = ", ".join(f"{c} ({label})" for c, label in settings.dispositions.items())
        raise DispositionError(f"unknown disposition {code!r}; valid codes: {valid}")
    now = app.clock.now()
    with app.engine.begin() as conn:
        task = conn.execute(select(TouchT).where(TouchT.c.id == task_id)).mappings().first()
        if task is None or task["channel"] not in ("call", "task"):
            raise DispositionError(f"no call or task with id {task_id}")
        if task["status"] != "task_open":
            raise DispositionError(f"task {task_id} is {task['status']}, not open")
        conn.execute(
            update(TouchT).where(TouchT.c.id == task_id).values(status="done", done_at=now, disposition=code, note=note)
        )
        lead = conn.execute(select(LeadT).where(LeadT.c.id == task["lead_id"])).first()
        assert lead is not None
        add_history(
            conn,
            lead.id,
            now,
            "disposition",
            {
                "task": task_id,
                "step": task["step_id"],
                "code": code,
                "label": settings.dispositions[code],
                "note": note,
            },
            f"logged by {task['owner']}",
        )
        done = [f"task {task_id} done: {settings.dispositions[code]}"]
        enrollment = conn.execute(select(EnrollmentT).where(EnrollmentT.c.id == task["enrollment_id"])).mappings().one()
        spec, _ = app.specs.get(conn, enrollment["version_id"])
        decided = decide(
            settings.rules, Situation(disposition=code, kind=spec.kind, sequence=spec.id, channel=task["channel"])
        )
        if decided is not None:
            index, then = decided
            done += apply_then(conn, app, lead, enrollment, then, now, cause=f"rule {index + 1}: {code}")
            add_history(conn, lead.id, now, "action", {"disposition": code, "actions": done[1:]}, f"rule {index + 1}")
        # The sequence waited for this task: it moves on from now (no catch-up) unless a rule ended it.
        state = conn.execute(
            select(EnrollmentT.c.state, EnrollmentT.c.pending_touch_id).where(EnrollmentT.c.id == enrollment["id"])
        ).one()
        if task["step_index"] >= 0 and state.state in LIVE and state.pending_touch_id == task_id:
            planner = app.planner(spec, lead.timezone, lead.country)
            due = advance(conn, app, enrollment, planner, task["step_index"], now, now)
            if state.state == "paused":  # the step is done, but nothing is due until the pause ends
                conn.execute(update(EnrollmentT).where(EnrollmentT.c.id == enrollment["id"]).values(next_due_at=None))
            elif due is not None:
                done.append(f"next step due {due.isoformat()}")
            else:
                done.append("sequence completed")
    return done
