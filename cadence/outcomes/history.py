"""The whole story of a lead, oldest first (read-only)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cadence.store import history, leads

if TYPE_CHECKING:
    from cadence.app import App


def lead_history(app: App, lead_id: str) -> list[dict[str, Any]]:
    with app.engine.connect() as conn:
        if not leads.exists(conn, lead_id):
            raise KeyError(f"no lead with id {lead_id!r}")
        return [
            {"at": r.at, "kind": r.kind, "detail": r.detail, "cause": r.cause} for r in history.of_lead(conn, lead_id)
        ]
