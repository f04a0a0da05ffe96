"""The time values a manager writes (windows, times of day, durations, weekdays, zones, holiday calendars).

Parsed here, once, so that sequence files and config.yaml are checked with the same rules
the planner later computes with. Pure: no I/O, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Container
from dataclasses import dataclass
from datetime import date, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_DURATION = re.compile(r"^\s*(\d{1,9})\s*(s|m|h|d|w)\s*$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_LONGEST = timedelta(days=3653)


def shown(value: object) -> str:
    """A value as an error message quotes it: whole when short, its start when a file holds a megabyte of it."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text):,} characters)"


@dataclass(frozen=True)
class Window:
    """A daily interval of local wall time, in minutes since midnight: [start, end)."""

    start: int
    end: int

    @classmethod
    def parse(cls, text: str) -> Window:
        if text.strip().lower() == "always":
            return cls(0, 24 * 60)
        m = _WINDOW.match(text)
        if not m:
            raise ValueError(f'window must look like "09:00-17:00" or be "always", not {shown(text)}')
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2):
            raise ValueError(f"window {text!r} has an impossible time of day")
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if end <= start:
            raise ValueError(f"window {text!r} must end after it starts (overnight windows are not supported)")
        return cls(start, end)

    def contains(self, minute: int) -> bool:
        return self.start <= minute < self.end

    def intersect(self, other: Window) -> Window | None:
        start, end = max(self.start, other.start), min(self.end, other.end)
        return Window(start, end) if end > start else None

    def __str__(self) -> str:
        return f"{self.start // 60:02d}:{self.start % 60:02d}-{self.end // 60:02d}:{self.end % 60:02d}"


@lru_cache(maxsize=1024)
def parse_time_of_day(text: str) -> time:
    m = re.match(r"^\s*(\d{1,2}):(\d{2})\s*$", text)
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise ValueError(f'time of day must look like "10:30", not {shown(text)}')
    return time(int(m.group(1)), int(m.group(2)))


def parse_duration(text: str | int) -> timedelta:
    """`30d`, `12h`, `45m`, `2w`; a bare number means days (how managers talk about cool-offs)."""
    m = _DURATION.match(f"{text}d" if isinstance(text, int) else text)
    if not m:
        raise ValueError(f"duration must look like 30d, 12h, 45m, 2w or 60s, not {shown(text)}")
    seconds = int(m.group(1)) * _DURATION_UNITS[m.group(2)]
    if seconds > _LONGEST.total_seconds():  # `now + 99999999w` is past any date Python can hold
        raise ValueError(f"duration {shown(text)} is longer than ten years")
    return timedelta(seconds=seconds)


def parse_weekdays(days: list[str]) -> frozenset[int]:
    out = set()
    for d in days:
        key = str(d).strip().lower()[:3]
        if key not in WEEKDAYS:
            raise ValueError(f"unknown weekday {shown(d)}; use mon, tue, wed, thu, fri, sat, sun")
        out.add(WEEKDAYS.index(key))
    if not out:
        raise ValueError("days must allow at least one weekday")
    return frozenset(out)


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {shown(name)} (use an IANA name like America/New_York)") from exc


@lru_cache(maxsize=256)
def holiday_calendar(country: str) -> Container[date]:
    """The public holidays of a country (ISO 3166 alpha-2, optionally COUNTRY-SUBDIV)."""
    import holidays

    code, _, subdiv = country.strip().upper().partition("-")
    try:
        return holidays.country_holidays(code, subdiv=subdiv or None)
    except NotImplementedError as exc:
        raise ValueError(f"no holiday calendar for country {shown(country)}") from exc


def email_address(text: str) -> str:
    """A sender's address, normalized as email-validator does (its domain lower-cased)."""
    from email_validator import EmailNotValidError, validate_email  # ~50 ms of regexes: only when validating

    try:
        return validate_email(text, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from exc


def phone_number(text: str) -> str:
    """A phone number in E.164 (+15550100001), as phonenumbers formats it."""
    import phonenumbers  # here, not at the top: only a sender with a phone needs it

    try:
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"phone {text!r} is not in E.164 form (+15550100001): {exc}") from exc
    if not phonenumbers.is_possible_number(number):
        raise ValueError(f"phone {text!r} is not a possible number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
