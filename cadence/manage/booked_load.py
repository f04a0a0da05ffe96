"""The work already booked for each rep: `cadence forecast`'s model applied to the leads enrolled now.

`cadence forecast` asks what N *new* leads would cost each SDR. A manager looking at the
team also needs the other half: what the leads already in a sequence will ask of each
rep over the next business days. This module answers it with the same model, so the two
add up (`cadence.manage.team_load` shows them side by side):

- **Where each lead stands.** Every active enrollment continues from its next step:
  at its stored due time, or as soon as its window opens when that time has passed (the
  engine sends an overdue touch on its next pass, never catches up). A lead whose step is
  in flight (an open call or task, a send not yet recorded) goes on from now, as if the
  task were worked the moment the page is read (the forecast's assumption). Paused
  enrollments are left out until their pause ends; steps of a channel a rule dropped
  for the lead are skipped, as dispatch skips them.
- **Timing, caps, replies.** The later steps fall where the lead's own planner puts them,
  with `limits.per_lead_daily` applied as `forecast.lead_timeline` applies it; after each
  email, SMS and call a share of the leads still in the sequence leaves it, with the rates
  and rules of `forecast.leave_share`. Counts are expected values on the leads' local dates.
- **The result is a `Forecast`**, with each rep's active leads under `assigned`, so
  `over_cap` flags the days on which a rep's booked emails exceed the sender's `daily_cap`.

Reads only: one query for the active enrollments (`cadence.store.team.active_leads`), the
published versions from the process's spec cache, and no query per lead.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime
from typing import TYPE_CHECKING

from cadence.manage.forecast import Forecast, leave_share, within_daily_limit
from cadence.plan.planner import Planner, calendar_for
from cadence.plan.timing import Calendar
from cadence.spec.model import Schedule
from cadence.store.team import ActiveLead, active_leads

if TYPE_CHECKING:
    from cadence.app import App

PlannerKey = tuple[int, str | None, str | None, str | None]


def business_days(app: App, start: datetime, count: int) -> list[date]:
    """The next `count` working days from `start` (today included when it is one), in config.yaml's calendar.

    "Business day" is config.yaml's `schedule.days` less the public holidays of its country
    (or `region`), in its `timezone`: the days the team works, whatever a lead's own zone.
    """
    settings = app.settings
    cal = calendar_for(app.defaults, Schedule(), settings.timezone, settings.holiday_calendar_of(None, None))
    day = cal.next_allowed(cal.local_date(start), inclusive=True)
    out = [day]
    while len(out) < count:
        day = cal.next_allowed(day)
        out.append(day)
    return out


def remaining_steps(
    planner: Planner,
    lead_key: str,
    index: int,
    due: datetime,
    *,
    per_lead_daily: int | None,
    last_day: date,
    skip_channels: frozenset[str] = frozenset(),
) -> list[tuple[int, datetime]]:
    """(step index, when) for step `index` due at `due` and the steps after it, up to `last_day` (lead-local).

    The per-lead daily cap moves a touch to the next allowed day, exactly as
    `cadence.manage.forecast.lead_timeline` does for a new lead; a skipped step (a dropped
    channel) takes no time and no room under the cap, and the next one follows the last
    touch that happened.
    """
    cal = planner.calendar
    steps = planner.sequence.steps
    per_day: Counter[date] = Counter()
    out: list[tuple[int, datetime]] = []
    happened: tuple[int, datetime] | None = None
    for i in range(index, len(steps)):
        step = steps[i]
        if happened is not None:
            nxt = planner.due_after(happened[0], happened[1], lead_key)
            if nxt is None:
                break
            due = nxt
        day = cal.local_date(due)
        if step.channel in skip_channels:  # skipped when due: the next step follows from then
            if day > last_day:
                break
            happened = (i, due)
            continue
        due = within_daily_limit(planner, i, due, lead_key, per_day, per_lead_daily)
        day = cal.local_date(due)
        if day > last_day:
            break
        per_day[day] += 1
        out.append((i, due))
        happened = (i, due)
    return out


def _starting_point(lead: ActiveLead, planner: Planner, now: datetime) -> tuple[int, datetime, int | None] | None:
    """(the next step to count, when it is due, the step in flight before it if any), or None when none is left."""
    index = lead.next_index
    steps = planner.sequence.steps
    if index is None or index >= len(steps):
        return None
    if lead.next_due_at is None:
        if lead.pending_touch_id is None:
            return None
        after = planner.due_after(index, now, lead.lead_id)  # the step in flight is worked now
        return (index + 1, after, index) if after is not None else None
    due = lead.next_due_at
    if due < now:  # overdue: it goes on the engine's next pass, or when the lead's window next opens
        cal: Calendar = planner.calendar
        window = planner.window_for(steps[index])
        due = cal.first_slot_from(cal.local_date(now), earliest=now, at=None, spread_key=None, window=window)
    return index, due, None


def booked_forecast(
    app: App,
    *,
    now: datetime,
    days: list[date],
    reply_rate: float = 0.0,
    connect_rate: float = 0.0,
) -> Forecast:
    """Expected touches per lead-local day in `days`, per rep (the owner) and channel, from the leads enrolled now."""
    for name, rate in (("reply rate", reply_rate), ("connect rate", connect_rate)):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"the {name} must be between 0 and 1, not {rate}")
    settings = app.settings
    senders = [s.id for s in settings.senders]
    result = Forecast(
        "(enrolled)", 0, now, settings.timezone, reply_rate, connect_rate, dict.fromkeys(senders, 0),
        daily_caps={s.id: s.daily_cap for s in settings.senders},
    )  # fmt: skip
    if not days:
        return result
    last_day = days[-1]
    wanted = set(days)
    planners: dict[PlannerKey, Planner] = {}
    shares: dict[int, list[float]] = {}
    with app.engine.connect() as conn:
        leads = active_leads(conn)
        for lead in leads:
            key = (lead.version_id, lead.timezone, lead.country, lead.region)
            planner = planners.get(key)
            if planner is None:
                spec, _ = app.specs.get(conn, lead.version_id)
                planner = planners[key] = app.planner(spec, lead.timezone, lead.country, lead.region)
            if lead.version_id not in shares:
                spec = planner.sequence
                shares[lead.version_id] = [
                    leave_share(spec, settings.rules, step, reply_rate, connect_rate) for step in spec.steps
                ]
            owner = lead.owner or ""
            result.leads += 1
            result.assigned[owner] = result.assigned.get(owner, 0) + 1
            start = _starting_point(lead, planner, now)
            if start is None:
                continue
            index, due, in_flight = start
            share = shares[lead.version_id]
            alive = 1.0 if in_flight is None else 1.0 - share[in_flight]  # the step in flight may end it too
            steps = planner.sequence.steps
            timeline = remaining_steps(
                planner, lead.lead_id, index, due, per_lead_daily=settings.limits.per_lead_daily,
                last_day=last_day, skip_channels=frozenset(lead.dropped_channels),
            )  # fmt: skip
            for i, at in timeline:
                day = planner.calendar.local_date(at)
                if day in wanted:
                    counts = result.days.setdefault(day, {}).setdefault(owner, {})
                    channel = steps[i].channel
                    counts[channel] = counts.get(channel, 0.0) + alive
                alive *= 1.0 - share[i]
    return result
