"""Unsubscribing a lead from its signed link: `unsubscribed` once; doing it again changes nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select

from cadence.outcomes.events import on_event
from cadence.store.queries import LeadT, SuppressionT

if TYPE_CHECKING:
    from cadence.app import App


def unsubscribe(app: App, lead_id: str) -> list[str] | None:
    """Record `unsubscribed` for a lead (from a signed link); None if it had been done already."""
    now = app.clock.now()
    with app.engine.begin() as conn:
        lead = conn.execute(select(LeadT.c.id, LeadT.c.email).where(LeadT.c.id == lead_id)).first()
        if lead is None:
            return None  # the lead is gone: there is nobody left to write to
        if lead.email:
            already = conn.execute(
                select(SuppressionT.c.address).where(
                    SuppressionT.c.channel == "email", SuppressionT.c.address == lead.email
                )
            ).first()
            if already:
                return None
        return on_event(
            conn, app, lead_id, "unsubscribed", now, cause="unsubscribe link", detail={"source": "link"},
            channel="email",
        )  # fmt: skip
