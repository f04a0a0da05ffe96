"""When is each step of a sequence due for one lead (pure: values in, values out).

The rules, in the words of the README:
- Day N is the N-th allowed day of the lead's schedule. The enrollment's own day is
  day 1 if it is allowed and the enrollment happens before the window closes;
  otherwise day 1 is the next allowed day.
- A step is due at its `at` time, or else at the window's opening, plus the lead's
  stable spread, and never before the moment it became possible (a lead enrolled
  mid-window goes at once). It is never due outside the window; SMS steps also
  avoid quiet hours.
- No catch-up: a step is placed (its day - the previous step's day) allowed days
  after the local date on which the previous step actually happened.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import lru_cache

from cadence.plan import timing
from cadence.spec.model import Schedule, Sequence, Step


@dataclass(frozen=True)
class ScheduleDefaults:
    """config.yaml's `schedule`, as plain values (hashable, so calendars can be cached)."""

    window: str = "09:00-17:00"
    days: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri")
    holidays: str = "lead"
    spread: str = "45m"


@lru_cache(maxsize=4096)
def _calendar(window: str, days: tuple[str, ...], holidays: str, spread: str, tz: str, country: str) -> timing.Calendar:
    source = country if holidays == "lead" else holidays
    calendar: Container[date] = frozenset()
    if source not in ("none", ""):
        try:
            calendar = timing.holiday_calendar(source)
        except ValueError:
            if holidays != "lead":
                raise  # a named calendar must exist; a lead's country may simply have none

    spread_td = timedelta(0) if str(spread).strip() in ("0", "none") else timing.parse_duration(spread)
    return timing.Calendar(
        tz=timing.zone(tz),
        window=timing.Window.parse(window),
        days=timing.parse_weekdays(list(days)),
        holidays=calendar,
        spread=spread_td,
    )


def calendar_for(defaults: ScheduleDefaults, schedule: Schedule, tz: str, country: str) -> timing.Calendar:
    """The calendar in force for one lead in one sequence: the file's keys over config's."""
    return _calendar(
        schedule.window or defaults.window,
        tuple(schedule.days) if schedule.days is not None else defaults.days,
        schedule.holidays or defaults.holidays,
        schedule.spread or defaults.spread,
        tz,
        country.upper(),
    )


@dataclass(frozen=True)
class Planner:
    """Plans one sequence for one lead's calendar. `quiet` is the SMS-allowed part of the day."""

    sequence: Sequence
    calendar: timing.Calendar
    sms_hours: timing.Window | None = None
    # Step 0's local day for an enrollment time: the same for every lead enrolled at that moment on this
    # calendar (only the slot within the day is the lead's own), so an enrollment of thousands works it out once.
    _first_days: dict[datetime, date] = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def window_for(self, step: Step) -> timing.Window:
        if step.channel == "sms" and self.sms_hours is not None:
            allowed = self.calendar.window.intersect(self.sms_hours)
            if allowed is None:
                raise ValueError(f"step {step.id!r}: the send window lies entirely inside SMS quiet hours")
            return allowed
        return self.calendar.window

    def _slot(self, step: Step, day: date, earliest: datetime, lead_key: str) -> datetime:
        at: time | None = timing.parse_time_of_day(step.at) if step.at else None
        key = None if step.immediate else lead_key
        return self.calendar.first_slot_from(
            day, earliest=earliest, at=at, spread_key=key, window=self.window_for(step)
        )

    def day_one(self, enrolled_at: datetime) -> date:
        cal = self.calendar
        local_day = cal.local_date(enrolled_at)
        if cal.is_allowed(local_day) and cal.local_minute(enrolled_at) < cal.window.end:
            return local_day
        return cal.next_allowed(local_day)

    def first_due(self, enrolled_at: datetime, lead_key: str) -> datetime:
        """When step 0 is due for a lead enrolled at `enrolled_at`."""
        step = self.sequence.steps[0]
        day = self._first_days.get(enrolled_at)
        if day is None:
            if len(self._first_days) >= 64:  # a long-lived planner sees many moments: keep the recent ones
                self._first_days.clear()
            day = self._first_days[enrolled_at] = self.calendar.add_allowed_days(
                self.day_one(enrolled_at), step.day - 1
            )
        return self._slot(step, day, enrolled_at, lead_key)

    def due_after(self, index: int, happened_at: datetime, lead_key: str) -> datetime | None:
        """When the step after `index` is due, given when step `index` actually happened."""
        steps = self.sequence.steps
        if index + 1 >= len(steps):
            return None
        previous, step = steps[index], steps[index + 1]
        happened_day = self.calendar.local_date(happened_at)
        gap = step.day - previous.day
        day = happened_day if gap <= 0 else self.calendar.add_allowed_days(happened_day, gap)
        return self._slot(step, day, happened_at, lead_key)

    def timeline(self, enrolled_at: datetime, lead_key: str) -> list[tuple[Step, int, datetime]]:
        """Every step with its sequence day and due time, if each happens when due."""
        out: list[tuple[Step, int, datetime]] = []
        due = self.first_due(enrolled_at, lead_key)
        first_day = self.day_one(enrolled_at)
        for i, step in enumerate(self.sequence.steps):
            if i > 0:
                nxt = self.due_after(i - 1, due, lead_key)
                assert nxt is not None
                due = nxt
            local_day = self.calendar.local_date(due)
            out.append((step, self._day_number(first_day, local_day), due))
        return out

    def _day_number(self, first_day: date, day: date) -> int:
        """Which allowed day of the enrollment `day` is (1-based)."""
        count, current = 1, first_day
        while current < day:
            current = self.calendar.next_allowed(current)
            count += 1
        return count
