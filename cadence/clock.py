"""Where "now" comes from.

Nothing in cadence reads the wall clock directly: a `Clock` is built once at the
composition root and passed down. `CADENCE_NOW` pins it for every CLI command so
weeks of outreach can be simulated in seconds and tests never sleep.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """An aware datetime in UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass
class FixedClock:
    """A clock that stays where it is put; `advance` moves it for simulations."""

    at: datetime

    def __post_init__(self) -> None:
        if self.at.tzinfo is None:
            raise ValueError("FixedClock needs an aware datetime (with a UTC offset)")
        self.at = self.at.astimezone(UTC)

    def now(self) -> datetime:
        return self.at

    def set(self, at: datetime) -> None:
        self.at = FixedClock(at).at


def parse_instant(text: str) -> datetime:
    """ISO 8601 with an explicit offset; a naive time would be ambiguous across zones."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"not an ISO 8601 time: {text!r}") from exc
    if value.tzinfo is None:
        raise ValueError(f"time {text!r} needs a UTC offset, e.g. 2026-11-23T09:00:00-05:00")
    return value.astimezone(UTC)


def clock_from_env(environ: Mapping[str, str] | None = None) -> Clock:
    env = os.environ if environ is None else environ
    pinned = env.get("CADENCE_NOW")
    if pinned:
        return FixedClock(parse_instant(pinned))
    return SystemClock()
