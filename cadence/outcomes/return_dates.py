"""A lead's return date (`--until`, `"until"`): midnight in the lead's own time zone, the same for every door.

"Back on 2026-12-09" said by a prospect in Denver means 00:00 in Denver, not in UTC and
not in the office's zone: the CLI, the HTTP API and the inbox all read it here, and every
message that shows such a date shows it in the lead's zone too.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time
from typing import TYPE_CHECKING

from cadence.clock import parse_instant
from cadence.plan.timing import zone
from cadence.store import leads

if TYPE_CHECKING:
    from cadence.app import App


def lead_zone(app: App, lead_id: str) -> str:
    """The lead's IANA zone, or config.yaml's default when it has none (or does not exist)."""
    with app.engine.connect() as conn:
        return leads.timezone_of(conn, lead_id) or app.settings.timezone


def return_date(app: App, lead_id: str, text: str | None) -> datetime | None:
    """A date (the lead is back that day, from midnight in its zone) or a full ISO 8601 time with offset.

    Raises ValueError with a message a rep understands for anything else.
    """
    return read_return_date(text, lambda: lead_zone(app, lead_id))


def read_return_date(text: str | None, zone_of: Callable[[], str]) -> datetime | None:
    """`return_date`, asking `zone_of()` for the lead's zone only when `text` is a date."""
    if text is None or not text.strip():
        return None
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        try:
            return parse_instant(text)
        except ValueError as exc:
            raise ValueError(f"{exc}; give a date (YYYY-MM-DD) or an ISO 8601 time with offset") from exc
    return midnight(day, zone_of())


def midnight(day: date, timezone: str) -> datetime:
    """00:00 of `day` in `timezone`, as UTC."""
    return datetime.combine(day, time(0), tzinfo=zone(timezone)).astimezone(UTC)


def local_day(at: datetime, timezone: str) -> str:
    """The date `at` falls on in `timezone` (what a message shows for a return date)."""
    return at.astimezone(zone(timezone)).date().isoformat()
