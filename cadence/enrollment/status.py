"""A lead's current picture: the lead, its enrollments and every touch (read-only)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from cadence.app import App
from cadence.store.tables import Enrollment, Lead, SequenceVersion, Touch

LeadT: Any = Lead.__table__  # type: ignore[attr-defined]
EnrollmentT: Any = Enrollment.__table__  # type: ignore[attr-defined]
TouchT: Any = Touch.__table__  # type: ignore[attr-defined]
VersionT: Any = SequenceVersion.__table__  # type: ignore[attr-defined]


class UnknownLead(KeyError):
    def __str__(self) -> str:
        return f"no lead with id {self.args[0]!r}"


def lead_status(app: App, lead_id: str) -> dict[str, Any]:
    with app.engine.connect() as conn:
        lead = conn.execute(select(LeadT).where(LeadT.c.id == lead_id)).mappings().first()
        if lead is None:
            raise UnknownLead(lead_id)
        enrollments = conn.execute(
            select(EnrollmentT, VersionT.c.version)
            .join(VersionT, VersionT.c.id == EnrollmentT.c.version_id)
            .where(EnrollmentT.c.lead_id == lead_id)
            .order_by(EnrollmentT.c.enrolled_at, EnrollmentT.c.id)
        ).mappings()
        upcoming: list[dict[str, Any]] = []
        enrollment_list = []
        for e in enrollments:
            spec, _ = app.specs.get(conn, e["version_id"])
            next_channel = spec.step(e["next_step"]).channel if e["next_step"] else None
            enrollment_list.append(
                {
                    "id": e["id"],
                    "sequence": e["sequence_id"],
                    "kind": e["kind"],
                    "state": e["state"],
                    "version": e["version"],
                    "enrolled_at": e["enrolled_at"],
                    "next_step": e["next_step"],
                    "next_due_at": e["next_due_at"],
                    "paused_until": e["paused_until"],
                    "finished_at": e["finished_at"],
                    "outcome": e["outcome"],
                }
            )
            # The next planned touch of a live enrollment shows as `scheduled` until it is claimed.
            if e["state"] == "active" and e["next_due_at"] and e["pending_touch_id"] is None:
                upcoming.append(
                    {
                        "id": None,
                        "sequence": e["sequence_id"],
                        "step": e["next_step"],
                        "channel": next_channel,
                        "status": "scheduled",
                        "due_at": e["next_due_at"],
                        "sent_at": None,
                        "variant": None,
                        "subject": None,
                        "error": None,
                        "attempts": 0,
                        "message_id": None,
                        "delivery": None,
                        "disposition": None,
                    }
                )
        touches = conn.execute(
            select(TouchT).where(TouchT.c.lead_id == lead_id).order_by(TouchT.c.due_at, TouchT.c.id)
        ).mappings()
        touch_list = [
            {
                "id": t["id"],
                "sequence": t["sequence_id"],
                "step": t["step_id"],
                "channel": t["channel"],
                "status": t["status"],
                "due_at": t["due_at"],
                "sent_at": t["sent_at"],
                "variant": t["variant"],
                "subject": t["subject"],
                "error": t["error"],
                "attempts": t["attempts"],
                "message_id": t["message_id"],
                "delivery": t["delivery"],
                "disposition": t["disposition"],
            }
            for t in touches
        ] + upcoming
    lead_out = {k: v for k, v in dict(lead).items() if k not in ("created_at", "updated_at")}
    lead_out["created_at"] = lead["created_at"]
    return {"lead": lead_out, "enrollments": enrollment_list, "touches": touch_list}
