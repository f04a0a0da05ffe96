"""Unsubscribing a lead from its signed link: `unsubscribed` once; doing it again changes nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cadence.names import Channel, Event
from cadence.outcomes.events import on_event
from cadence.store import leads, suppressions

if TYPE_CHECKING:
    from cadence.app import App


def unsubscribe(app: App, lead_id: str) -> list[str] | None:
    """Record `unsubscribed` for a lead (from a signed link); None if it had been done already."""
    now = app.clock.now()
    with app.engine.begin() as conn:
        lead = leads.get(conn, lead_id)
        if lead is None:
            return None  # the lead is gone: there is nobody left to write to
        if lead.email and suppressions.is_suppressed(conn, Channel.EMAIL, lead.email):
            return None
        return on_event(
            conn, app, lead_id, Event.UNSUBSCRIBED, now, cause="unsubscribe link", detail={"source": "link"},
            channel=Channel.EMAIL,
        )  # fmt: skip
