"""Snoozing a task: a rep moves an open task to later, in the lead's own calendar.

`1h` is an hour from now; `tomorrow` is the opening of the step's window on the lead's next
working day (their zone, weekdays and holidays: "tomorrow" on a Friday is Monday morning);
a date `YYYY-MM-DD` is that day's window opening for the lead, and must be a working day.
The task's due time moves, so it leaves today's list and comes back when due, and its deadline
(`task_deadline`, dated from the due time) moves with it: it gets its allowed days again from
there. The move is a compare-and-set (`store.tasks.snooze`): a task logged, expired or
reassigned meanwhile is left as it is, and the rep is told. Each snooze is written to the
lead's history.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from cadence.enrollment.my_day import step_window
from cadence.names import TASK_CHANNELS, HistoryKind, TouchStatus
from cadence.store import enrollments, history, leads, tasks, touches

if TYPE_CHECKING:
    from cadence.app import App
    from cadence.plan.planner import Planner

CHOICES = ("1h", "tomorrow")
HOUR = timedelta(hours=1)
FURTHEST = timedelta(days=366)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class SnoozeError(ValueError):
    """A snooze that cannot be done, with the reason a rep understands; nothing was changed."""


@dataclass(frozen=True)
class Snoozed:
    task_id: int
    lead_id: str
    until: datetime
    timezone: str  # the lead's zone, to say "9:00 am in Denver"


def task_deadline(planner: Planner, due_at: datetime, days: int) -> datetime:
    """When an open task due at `due_at` expires if nobody works it: the close of the lead's
    window on the `days`-th allowed day after the day it fell due (`tasks.expire_after_days`).

    Computed when the task opens or is snoozed, and stored (`touch.expires_at`), so the sweep
    expires tasks with one indexed UPDATE instead of reading every open task each minute.
    """
    cal = planner.calendar
    return cal.bounds(cal.add_allowed_days(cal.local_date(due_at), days))[1]


def snooze_until(planner: Planner, step_id: str, choice: str, now: datetime) -> datetime:
    """When a task snoozed with `choice` falls due again (pure: the lead's planner and now in, a time out)."""
    cal, window = planner.calendar, step_window(planner, step_id)
    choice = choice.strip().lower()
    if choice == "1h":
        return now + HOUR
    if choice == "tomorrow":
        return cal.bounds(cal.next_allowed(cal.local_date(now)), window)[0]
    if not _DATE.fullmatch(choice):
        raise SnoozeError(f"snooze until 1h, tomorrow or a date (YYYY-MM-DD), not {choice[:40]!r}")
    try:
        day = date.fromisoformat(choice)
    except ValueError:
        raise SnoozeError(f"{choice} is not a date") from None
    shown = day.strftime("%a %b %-d, %Y")
    if not cal.is_allowed(day):
        raise SnoozeError(f"{shown} is not a working day for this lead (a weekend or a holiday); pick another day")
    start = cal.bounds(day, window)[0]
    if start <= now:
        raise SnoozeError(f"{shown} has already started for this lead; pick a later day, or snooze for an hour")
    if start > now + FURTHEST:
        raise SnoozeError(f"{shown} is more than a year away; pick an earlier day")
    return start


def snooze_task(app: App, task_id: int, choice: str, *, owner: str | None, by: str) -> Snoozed:
    """Move the open task `task_id` of `owner` (as the caller saw it) to `choice`, and say so in the lead's history."""
    now = app.clock.now()
    with app.engine.begin() as conn:
        task = touches.get(conn, task_id)
        if task is None or task.channel not in TASK_CHANNELS:
            raise SnoozeError(f"there is no call or task {task_id}")
        if task.status != TouchStatus.TASK_OPEN:
            raise SnoozeError(f"task {task_id} is already {task.status}; there is nothing to snooze")
        lead = leads.get(conn, task.lead_id)
        enrollment = enrollments.get(conn, task.enrollment_id)
        assert lead is not None and enrollment is not None
        spec, _ = app.specs.get(conn, enrollment.version_id)
        planner = app.planner(spec, lead.timezone, lead.country, lead.region)
        until = snooze_until(planner, task.step_id, choice, now)
        deadline = task_deadline(planner, until, app.settings.tasks.expire_after_days)
        if not tasks.snooze(conn, task_id, owner, until, deadline):
            raise SnoozeError(f"task {task_id} changed meanwhile (logged, expired or reassigned); reload the page")
        detail = {
            "action": "snoozed", "task": task_id, "step": task.step_id, "from": task.due_at.isoformat(),
            "until": until.isoformat(), "by": by,
        }  # fmt: skip
        history.add(conn, lead.id, now, HistoryKind.ACTION, detail, f"snoozed by {by}")
    return Snoozed(task_id, lead.id, until, str(planner.calendar.tz))
