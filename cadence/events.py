"""What happens to a lead when something happens to it: the built-in behaviour.

Every event is appended to the lead's history. Then, unless a configured rule
says otherwise (the rules layer sits on top of this), the documented defaults
apply:

- an event listed in a sequence's `exit_on` ends that enrollment (outcome = event);
- `unsubscribed` puts the email address on the global suppression list;
- `sms_stop` puts the phone on the suppression list for SMS; other channels go on;
- `bounced` marks the lead's email invalid;
- `phone_invalid` / `not_mobile` mark the phone unusable for SMS (calls go on).

Suppression is by address, so it outlives the lead row: importing the same
email again does not make it contactable.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from cadence.store.queries import EnrollmentT, LeadT, SuppressionT, TouchT
from cadence.store.tables import History
from cadence.versions import SpecCache

HistoryT: Any = History.__table__  # type: ignore[attr-defined]
LIVE = ("active", "paused")


def add_history(
    conn: Connection, lead_id: str, now: datetime, kind: str, detail: dict[str, Any], cause: str | None = None
) -> None:
    conn.execute(HistoryT.insert().values(lead_id=lead_id, at=now, kind=kind, detail=detail, cause=cause))


def suppress(conn: Connection, channel: str, address: str, reason: str, lead_id: str, now: datetime) -> None:
    exists = conn.execute(
        select(SuppressionT.c.address).where(SuppressionT.c.channel == channel, SuppressionT.c.address == address)
    ).first()
    if not exists:
        conn.execute(
            SuppressionT.insert().values(
                channel=channel, address=address, reason=reason, lead_id=lead_id, created_at=now
            )
        )


def finish_enrollment(
    conn: Connection, enrollment_id: int, lead_id: str, outcome: str, now: datetime, cause: str
) -> None:
    """End an enrollment: nothing more is due, open tasks and pending retries are cancelled."""
    conn.execute(
        update(EnrollmentT)
        .where(EnrollmentT.c.id == enrollment_id)
        .values(state="finished", outcome=outcome, finished_at=now, next_due_at=None, pending_touch_id=None)
    )
    conn.execute(
        update(TouchT)
        .where(TouchT.c.enrollment_id == enrollment_id, TouchT.c.status.in_(("scheduled", "task_open")))
        .values(status="cancelled", error=f"enrollment finished: {outcome}")
    )
    add_history(conn, lead_id, now, "finished", {"enrollment": enrollment_id, "outcome": outcome}, cause)


def apply_builtin(
    conn: Connection,
    specs: SpecCache,
    lead_id: str,
    event: str,
    now: datetime,
    *,
    cause: str,
    detail: dict[str, Any] | None = None,
) -> list[str]:
    """Record `event` for a lead and apply the default behaviour; returns what was done."""
    info = dict(detail or {})
    add_history(conn, lead_id, now, "event", {"event": event, **info}, cause)
    done: list[str] = []
    lead = conn.execute(select(LeadT.c.email, LeadT.c.phone).where(LeadT.c.id == lead_id)).first()
    if lead is None:
        return done
    if event == "unsubscribed" and lead.email:
        suppress(conn, "email", lead.email, "unsubscribed", lead_id, now)
        done.append(f"suppressed email {lead.email}")
    elif event == "sms_stop" and lead.phone:
        suppress(conn, "sms", lead.phone, "sms_stop", lead_id, now)
        done.append(f"suppressed SMS to {lead.phone}")
    elif event == "bounced":
        conn.execute(update(LeadT).where(LeadT.c.id == lead_id).values(email_invalid=True, updated_at=now))
        done.append("marked email invalid")
    elif event in ("phone_invalid", "not_mobile"):
        conn.execute(update(LeadT).where(LeadT.c.id == lead_id).values(phone_invalid=True, updated_at=now))
        done.append("marked phone unusable for SMS")
    live = conn.execute(
        select(EnrollmentT.c.id, EnrollmentT.c.version_id, EnrollmentT.c.sequence_id).where(
            EnrollmentT.c.lead_id == lead_id, EnrollmentT.c.state.in_(LIVE)
        )
    ).all()
    for enrollment_id, version_id, sequence_id in live:
        spec, _ = specs.get(conn, version_id)
        if event in spec.exit_on:
            finish_enrollment(conn, enrollment_id, lead_id, event, now, cause)
            done.append(f"ended {sequence_id} ({event})")
    if done:
        add_history(conn, lead_id, now, "action", {"event": event, "actions": done}, cause)
    return done
