"""Logging a disposition on a call or task: the task is done, and the rules run at once."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cadence.names import LIVE_STATES, TASK_CHANNELS, EnrollmentState, HistoryKind
from cadence.outcomes.actions import apply_then
from cadence.outcomes.completion import move_on
from cadence.plan.rules import Situation, decide
from cadence.store import enrollments, history, leads, tasks, touches

if TYPE_CHECKING:
    from cadence.app import App


class DispositionError(ValueError):
    """A disposition that cannot be logged, with the reason a rep understands."""


def log_disposition(app: App, task_id: int, code: str, note: str | None = None, *, by: str | None = None) -> list[str]:
    """Close a task with `code`; `by` is who actually made the call: a sender, or a workspace user such as
    a manager working the task for its owner (default: the task's owner)."""
    settings = app.settings
    if code not in settings.dispositions:
        valid = ", ".join(f"{c} ({label})" for c, label in settings.dispositions.items())
        raise DispositionError(f"unknown disposition {code!r}; valid codes: {valid}")
    if by is not None and settings.user(by) is None:  # a workspace user (a manager) may log for the owner
        try:
            settings.sender(by)
        except KeyError:
            known = ", ".join(s.id for s in settings.senders)
            raise DispositionError(f"--by {by!r} is not a sender in config.yaml (known: {known})") from None
    now = app.clock.now()
    with app.engine.begin() as conn:
        task = touches.get(conn, task_id)
        if task is None or task.channel not in TASK_CHANNELS:
            raise DispositionError(f"no call or task with id {task_id}")
        if not tasks.complete(conn, task_id, code, note, now):
            raise DispositionError(f"task {task_id} is {task.status}, not open")
        lead = leads.get(conn, task.lead_id)
        assert lead is not None
        label = settings.dispositions[code]
        worker = by or task.owner
        detail = {"task": task_id, "step": task.step_id, "code": code, "label": label, "note": note, "by": worker}
        history.add(conn, lead.id, now, HistoryKind.DISPOSITION, detail, f"logged by {worker}")
        done = [f"task {task_id} done: {label}"]
        enrollment = enrollments.get(conn, task.enrollment_id)
        assert enrollment is not None
        spec, _ = app.specs.get(conn, enrollment.version_id)
        situation = Situation(disposition=code, kind=spec.kind, sequence=spec.id, channel=task.channel)
        decided = decide(settings.rules, situation)
        if decided is not None:
            index, then = decided
            done += apply_then(conn, app, lead, enrollment, then, now, cause=f"rule {index + 1}: {code}")
            history.add(
                conn, lead.id, now, HistoryKind.ACTION, {"disposition": code, "actions": done[1:]}, f"rule {index + 1}"
            )
        # The sequence waited for this task: it moves on from now (no catch-up) unless a rule ended it.
        current = enrollments.get(conn, enrollment.id)
        assert current is not None
        if task.step_index >= 0 and current.state in LIVE_STATES and current.pending_touch_id == task_id:
            planner = app.planner(spec, lead.timezone, lead.country, lead.region)
            moved = move_on(conn, app, current, planner, task.step_index, now, now)
            paused = current.state == EnrollmentState.PAUSED  # the step is done; nothing is due until it resumes
            if moved.due is not None and not paused:
                done.append(f"next step due {moved.due.isoformat()}")
            elif moved.completed:
                done.append("sequence completed")
    return done
