"""The manager's view of the team: each rep's day so far, and the load ahead over the next business days.

Per rep (every sender of config.yaml; an SDR's user id is their sender id):

- **Today's tasks**, from the task queue `cadence tasks` shows (`enrollment.task_queue`):
  open calls and tasks due today and overdue, each judged on its lead's own calendar,
  as the rep's queue judges them; plus the calls and tasks logged done since midnight.
- **Emails today against the cap**: the very count dispatch gates on
  (`store.claims.sender_counts`: sent, in flight and unknown emails on the mailbox's
  day, in config.yaml's time zone), beside the sender's `daily_cap`.
- **The next business days** (`booked_load.business_days`): the touches already booked
  by the leads enrolled now (`booked_load.booked_forecast`), and, when the manager asks
  "what if N more leads joined SEQ?", exactly what `cadence forecast SEQ --leads N` computes
  (`what_if_forecast` makes the CLI's call). A day is over the cap when the booked and
  asked-about emails of a rep together exceed the sender's `daily_cap`.

Reads only, on the injected clock.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING

from cadence.enrollment.task_queue import task_queue
from cadence.manage.booked_load import booked_forecast, business_days
from cadence.manage.forecast import Forecast, forecast
from cadence.names import CHANNELS
from cadence.plan.timing import zone
from cadence.store.claims import sender_counts
from cadence.store.team import tasks_done

if TYPE_CHECKING:
    from cadence.app import App

HORIZON = 10  # business days ahead: two working weeks, what a manager plans staffing over


@dataclass(frozen=True)
class WhatIf:
    """The question `cadence forecast SEQ --leads N --reply-rate R --connect-rate C` asks."""

    sequence: str
    leads: int
    reply_rate: float = 0.0
    connect_rate: float = 0.0


@dataclass(frozen=True)
class RepDay:
    """One rep's expected touches on one business day: booked now, and the what-if's on top."""

    day: date
    booked: dict[str, float]
    extra: dict[str, float]
    daily_cap: int

    @property
    def emails(self) -> float:
        return self.booked.get("email", 0.0) + self.extra.get("email", 0.0)

    @property
    def over_cap(self) -> bool:
        return self.emails > self.daily_cap + 1e-9


@dataclass(frozen=True)
class Rep:
    id: str
    name: str
    daily_cap: int
    due_today: int  # open calls and tasks due today (the lead's today)
    overdue: int  # open calls and tasks due before today
    later: int  # open calls and tasks due after today
    done_today: int  # calls and tasks logged done since midnight (config.yaml's time zone)
    emails_today: int  # what dispatch counts against the daily cap
    days: list[RepDay] = field(default_factory=list)

    @property
    def open_tasks(self) -> int:
        return self.due_today + self.overdue + self.later

    @property
    def cap_left(self) -> int:
        return max(self.daily_cap - self.emails_today, 0)


@dataclass
class TeamLoad:
    at: datetime
    days: list[date]
    reps: list[Rep]
    booked: Forecast
    what_if: WhatIf | None = None
    extra: Forecast | None = None


def forecastable(app: App) -> list[str]:
    """The sequences `cadence forecast` can plan (their files load)."""
    return sorted(app.catalog.sequences)


def what_if_forecast(app: App, question: WhatIf) -> Forecast:
    """`cadence forecast` for `question`, with the CLI's arguments (config's zone and country, every sender).

    A KeyError names an unknown sequence, a ValueError a rate or count out of range.
    """
    settings = app.settings
    spec = app.catalog.get(question.sequence).spec
    return forecast(
        app.planner(spec, None, None),
        leads=question.leads,
        senders=[s.id for s in settings.senders],
        start=app.clock.now(),
        reply_rate=question.reply_rate,
        connect_rate=question.connect_rate,
        rules=settings.rules,
        per_lead_daily=settings.limits.per_lead_daily,
        daily_caps={s.id: s.daily_cap for s in settings.senders},
    )


def _today_bounds(app: App, now: datetime) -> tuple[datetime, datetime]:
    """Midnight to midnight in config.yaml's time zone: the mailbox's day, as dispatch counts it."""
    home = zone(app.settings.timezone)
    today = now.astimezone(home).date()
    start = datetime.combine(today, time(0), tzinfo=home)
    return start, datetime.combine(today + timedelta(days=1), time(0), tzinfo=home)


def team_load(
    app: App,
    *,
    reply_rate: float = 0.0,
    connect_rate: float = 0.0,
    what_if: WhatIf | None = None,
    horizon: int = HORIZON,
) -> TeamLoad:
    """Every rep's day and the `horizon` business days ahead (see the module doc); rates apply to booked leads."""
    settings = app.settings
    now = app.clock.now()
    app.reread_files()  # the what-if plans the file as it is now, as `cadence forecast` would
    extra = what_if_forecast(app, what_if) if what_if is not None else None
    days = business_days(app, now, horizon)
    booked = booked_forecast(app, now=now, days=days, reply_rate=reply_rate, connect_rate=connect_rate)
    queue: dict[str, Counter[str]] = {}
    for task in task_queue(app, now=now):
        queue.setdefault(task["owner"] or "", Counter())[task["due"]] += 1
    ids = [s.id for s in settings.senders]
    start, end = _today_bounds(app, now)
    with app.engine.connect() as conn:
        done = tasks_done(conn, ids, start, end)
        emails = sender_counts(conn, ids, start, end, now - timedelta(minutes=1))
    reps = []
    for sender in settings.senders:
        mine = queue.get(sender.id, Counter())
        reps.append(
            Rep(
                sender.id, sender.name or sender.id, sender.daily_cap, mine["today"], mine["overdue"], mine["later"],
                done.get(sender.id, 0), emails.get(sender.id, [0, 0])[0],
                [
                    RepDay(day, _channels(booked, day, sender.id), _channels(extra, day, sender.id), sender.daily_cap)
                    for day in days
                ],
            )
        )  # fmt: skip
    return TeamLoad(now, days, reps, booked, what_if, extra)


def _channels(result: Forecast | None, day: date, sender: str) -> dict[str, float]:
    """A forecast's expected touches of one sender on one day, every channel present, rounded as its JSON is."""
    counts = result.days.get(day, {}).get(sender, {}) if result is not None else {}
    return {c: round(counts.get(c, 0.0), 2) for c in CHANNELS}
