"""Calendar arithmetic in the lead's own time zone (pure: no I/O, no clock).

A `Calendar` answers the questions every schedule asks: is this local date an
allowed day (weekday allowed, not a holiday of the calendar in force), what is
the n-th allowed day after it, and when, in UTC, does a touch planned for a local
date actually fall inside the send window. All local->UTC conversion goes through
`local_to_utc`, which is correct across DST changes: a wall time that does not
exist (the spring-forward gap) moves forward by the gap, an ambiguous one (the
fall-back hour) takes its first occurrence.
"""

from __future__ import annotations

import hashlib
from collections.abc import Container
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from cadence.config import known_calendar
from cadence.spec import values
from cadence.spec.values import (
    WEEKDAYS,
    Window,
    parse_duration,
    parse_time_of_day,
    parse_weekdays,
    zone,
)

__all__ = [
    "WEEKDAYS",
    "Calendar",
    "Window",
    "holiday_calendar",
    "local_to_utc",
    "parse_duration",
    "parse_time_of_day",
    "parse_weekdays",
    "spread_seconds",
    "zone",
]

_MAX_SEARCH_DAYS = 3 * 366


class _Holidays:
    """A country's public holidays, built the first time a date is asked about.

    Building one imports every country's calendar module, and many calendars only ever answer
    "which local day is it" (`cadence tasks` dates each open task in its lead's zone).
    """

    def __init__(self, code: str) -> None:
        self.code = code
        self._days: Container[date] | None = None

    def __contains__(self, day: object) -> bool:
        if self._days is None:
            self._days = values.holiday_calendar(self.code)
        return day in self._days

    def __repr__(self) -> str:
        return f"holidays({self.code})"


@lru_cache(maxsize=256)
def holiday_calendar(code: str) -> Container[date]:
    """The public holidays of a country (ISO 3166 alpha-2, optionally COUNTRY-SUBDIV); ValueError when
    the holidays library has none. A plainly known code is built on first use, any other now."""
    if known_calendar(code):
        return _Holidays(code)
    return values.holiday_calendar(code)


@lru_cache(maxsize=65536)
def local_to_utc(day: date, minute: int, tz: ZoneInfo) -> datetime:
    """Wall time `minute` after local midnight of `day`, as UTC (DST-safe, see module doc)."""
    if minute >= 24 * 60:
        return local_to_utc(day + timedelta(days=1), minute - 24 * 60, tz)
    naive = datetime(day.year, day.month, day.day, minute // 60, minute % 60)
    return naive.replace(tzinfo=tz, fold=0).astimezone(UTC)


def spread_seconds(key: str, limit_seconds: int) -> int:
    """A stable per-lead offset in [0, limit): the same lead always lands at the same minute."""
    if limit_seconds <= 0:
        return 0
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % limit_seconds


@dataclass(frozen=True)
class Calendar:
    """One lead's schedule, resolved: zone, window, allowed weekdays, holidays, spread."""

    tz: ZoneInfo
    window: Window
    days: frozenset[int]
    holidays: Container[date] = field(default_factory=frozenset)
    spread: timedelta = timedelta(0)
    # Planning thousands of leads asks about the same few days again and again.
    _allowed: dict[date, bool] = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def is_allowed(self, day: date) -> bool:
        known = self._allowed.get(day)
        if known is None:
            known = self._allowed[day] = day.weekday() in self.days and day not in self.holidays
        return known

    def next_allowed(self, day: date, *, inclusive: bool = False) -> date:
        current = day if inclusive else day + timedelta(days=1)
        for _ in range(_MAX_SEARCH_DAYS):
            if self.is_allowed(current):
                return current
            current += timedelta(days=1)
        raise ValueError("no allowed day within three years: check days and holidays")

    def add_allowed_days(self, day: date, count: int) -> date:
        """The `count`-th allowed day strictly after `day` (count 0 returns `day` itself)."""
        current = day
        for _ in range(count):
            current = self.next_allowed(current)
        return current

    def local_date(self, instant: datetime) -> date:
        return instant.astimezone(self.tz).date()

    def local_minute(self, instant: datetime) -> float:
        local = instant.astimezone(self.tz)
        return local.hour * 60 + local.minute + local.second / 60

    def bounds(self, day: date, window: Window | None = None) -> tuple[datetime, datetime]:
        w = window or self.window
        return local_to_utc(day, w.start, self.tz), local_to_utc(day, w.end, self.tz)

    def is_open(self, instant: datetime, window: Window | None = None) -> bool:
        """Is `instant` an allowed day, inside the window, for this lead?"""
        day = self.local_date(instant)
        if not self.is_allowed(day):
            return False
        start, end = self.bounds(day, window)
        return start <= instant < end

    def slot_on(
        self,
        day: date,
        *,
        earliest: datetime,
        at: time | None,
        spread_key: str | None,
        window: Window | None = None,
    ) -> datetime | None:
        """When a touch planned for local `day` falls due, or None if it no longer fits that day.

        The base is the `at` time (or the window's opening), plus the lead's stable spread;
        never before `earliest` (so a lead enrolled mid-window goes at once), never at or
        after the window's close.
        """
        w = window or self.window
        if not self.is_allowed(day):
            return None
        open_at, close_at = self.bounds(day, w)
        base_minute = w.start if at is None else at.hour * 60 + at.minute
        base = local_to_utc(day, base_minute, self.tz)
        if base < open_at:
            base = open_at
        room = int((close_at - base).total_seconds())
        if room <= 0:
            return None
        spread = 0 if spread_key is None else spread_seconds(spread_key, min(room, int(self.spread.total_seconds())))
        candidate = base + timedelta(seconds=spread)
        if candidate < earliest:
            candidate = earliest.astimezone(UTC)  # stored times are UTC, whatever zone `earliest` came in
        if candidate >= close_at:
            return None
        return candidate

    def first_slot_from(
        self,
        day: date,
        *,
        earliest: datetime,
        at: time | None,
        spread_key: str | None,
        window: Window | None = None,
    ) -> datetime:
        """The first slot on `day` or, if it no longer fits, on the next allowed days."""
        current = day if self.is_allowed(day) else self.next_allowed(day)
        for _ in range(_MAX_SEARCH_DAYS):
            slot = self.slot_on(current, earliest=earliest, at=at, spread_key=spread_key, window=window)
            if slot is not None:
                return slot
            current = self.next_allowed(current)
        raise ValueError("no slot within three years: check the window, days and holidays")
