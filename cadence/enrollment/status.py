"""A lead's current picture: its enrollments, every touch and the latest mail read from its inbox (read-only)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cadence.names import EnrollmentState, TouchStatus
from cadence.store import inbound, leads, views

if TYPE_CHECKING:
    from cadence.app import App


class UnknownLead(KeyError):
    def __str__(self) -> str:
        return f"no lead with id {self.args[0]!r}"


def lead_status(app: App, lead_id: str) -> dict[str, Any]:
    with app.engine.connect() as conn:
        lead = leads.get(conn, lead_id)
        if lead is None:
            raise UnknownLead(lead_id)
        upcoming: list[dict[str, Any]] = []
        enrollment_list = []
        for e, version in views.enrollments_of(conn, lead_id):
            spec, _ = app.specs.get(conn, e.version_id)
            next_channel = spec.step(e.next_step).channel if e.next_step else None
            enrollment_list.append(
                {
                    "id": e.id,
                    "sequence": e.sequence_id,
                    "kind": e.kind,
                    "state": e.state,
                    "version": version,
                    "enrolled_at": e.enrolled_at,
                    "next_step": e.next_step,
                    "next_due_at": e.next_due_at,
                    "paused_until": e.paused_until,
                    "finished_at": e.finished_at,
                    "outcome": e.outcome,
                }
            )
            # The next planned touch of a live enrollment shows as `scheduled` until it is claimed.
            if e.state == EnrollmentState.ACTIVE and e.next_due_at and e.pending_touch_id is None:
                upcoming.append(
                    {
                        "id": None,
                        "sequence": e.sequence_id,
                        "step": e.next_step,
                        "channel": next_channel,
                        "status": TouchStatus.SCHEDULED,
                        "due_at": e.next_due_at,
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
        touch_list = [
            {
                "id": t.id,
                "sequence": t.sequence_id,
                "step": t.step_id,
                "channel": t.channel,
                "status": t.status,
                "due_at": t.due_at,
                "sent_at": t.sent_at,
                "variant": t.variant,
                "subject": t.subject,
                "error": t.error,
                "attempts": t.attempts,
                "message_id": t.message_id,
                "delivery": t.delivery,
                "disposition": t.disposition,
            }
            for t in views.touches_of(conn, lead_id)
        ] + upcoming
        mail = [
            {
                "read_at": m.read_at,
                "kind": m.kind,
                "from": m.sender,
                "subject": m.subject,
                "text": m.text,
                "action": m.action,
                "until": m.until,
            }
            for m in inbound.of_lead(conn, lead_id, limit=5)
        ]
    lead_out = {k: v for k, v in lead._asdict().items() if k not in ("created_at", "updated_at")}
    lead_out["created_at"] = lead.created_at
    return {"lead": lead_out, "enrollments": enrollment_list, "touches": touch_list, "inbox": mail}
