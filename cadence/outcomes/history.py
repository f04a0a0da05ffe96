"""The whole story of a lead, oldest first (read-only)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from cadence.outcomes.events import HistoryT
from cadence.store.queries import LeadT

if TYPE_CHECKING:
    from cadence.app import App


def lead_history(app: App, lead_id: str) -> list[dict[str, Any]]:
    with app.engine.connect() as conn:
        if conn.execute(select(LeadT.c.id).where(LeadT.c.id == lead_id)).first() is None:
            raise KeyError(f"no lead with id {lead_id!r}")
        rows = conn.execute(
            select(HistoryT).where(HistoryT.c.lead_id == lead_id).order_by(HistoryT.c.at, HistoryT.c.id)
        ).mappings()
        return [{"at": r["at"], "kind": r["kind"], "detail": r["detail"], "cause": r["cause"]} for r in rows]
