"""Delivery reports (Twilio status callbacks): a touch's delivery only moves forward.

queued < sending < sent < delivered (< read); undelivered, failed and canceled are
final. A duplicate or late report matches no row and changes nothing, so
(MessageSid, MessageStatus) pairs are deduplicated by the update itself. A final
failure keeps its error code in `touch.error`, and the code says what it means for
the lead (see `DELIVERY_EVENTS`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select, update

from cadence.outcomes.events import add_history, on_event
from cadence.store.queries import TouchT

if TYPE_CHECKING:
    from cadence.app import App


DELIVERY_RANK = {"accepted": 0, "scheduled": 0, "queued": 1, "sending": 2, "sent": 3, "delivered": 4, "read": 5}
DELIVERY_FAILURES = {"undelivered": 4, "failed": 4, "canceled": 4}
# Twilio error code -> the event it is for the lead.
DELIVERY_EVENTS = {
    21610: "sms_stop",  # the recipient had opted out
    21211: "phone_invalid",  # not a valid number
    21614: "not_mobile",  # a landline (calls are still fine)
    30003: "phone_invalid",  # unreachable handset
    30005: "phone_invalid",  # unknown or inactive number
    30006: "phone_invalid",  # landline or unreachable carrier
}
SENDER_FILTERED = 30007
ERROR_TEXT = {
    21610: "recipient opted out",
    21211: "invalid number",
    21614: "not a mobile number",
    30003: "unreachable handset",
    30004: "message blocked",
    30005: "unknown destination handset",
    30006: "landline or unreachable carrier",
    30007: "message filtered by the carrier",
    30008: "unknown error",
}


@dataclass
class DeliveryReport:
    """What a status callback did; `changed` is False for unknown, late and duplicate reports."""

    touch: int | None = None
    lead: str | None = None
    changed: bool = False
    actions: list[str] = field(default_factory=list)


def _code(value: str | int | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def record_delivery(app: App, message_sid: str, status: str, error_code: str | int | None = None) -> DeliveryReport:
    """Apply one delivery report to the touch that sent `message_sid`, in one transaction."""
    status = status.strip().lower()
    rank = DELIVERY_RANK.get(status, DELIVERY_FAILURES.get(status))
    report = DeliveryReport()
    if not message_sid or rank is None:
        return report
    code = _code(error_code)
    now = app.clock.now()
    earlier = [s for s, r in DELIVERY_RANK.items() if r < rank]
    with app.engine.begin() as conn:
        touch = conn.execute(
            select(TouchT.c.id, TouchT.c.lead_id, TouchT.c.step_id, TouchT.c.sequence_id, TouchT.c.sender).where(
                TouchT.c.provider_id == message_sid, TouchT.c.channel == "sms"
            )
        ).first()
        if touch is None:
            return report
        report.touch, report.lead = touch.id, touch.lead_id
        values: dict[str, Any] = {"delivery": status}
        failed = status in DELIVERY_FAILURES
        if failed:
            reason = ERROR_TEXT.get(code, "no reason given") if code else "no reason given"
            values["error"] = f"{status}: Twilio {code}, {reason}" if code else f"{status}: {reason}"
        moved = conn.execute(
            update(TouchT)
            .where(
                TouchT.c.id == touch.id,
                or_(TouchT.c.delivery.is_(None), TouchT.c.delivery.in_(earlier)),
            )
            .values(**values)
        ).rowcount
        report.changed = bool(moved)
        if not moved or not failed:
            return report
        detail = {
            "sequence": touch.sequence_id, "step": touch.step_id, "touch": touch.id, "delivery": status,
            "error_code": code, "message_sid": message_sid,
        }  # fmt: skip
        cause = f"SMS {touch.step_id} {values['error']}"
        add_history(conn, touch.lead_id, now, "delivery", detail, cause)
        event = DELIVERY_EVENTS.get(code) if code else None
        if event:
            report.actions = on_event(conn, app, touch.lead_id, event, now, cause=cause, detail=detail, channel="sms")
        elif code == SENDER_FILTERED:
            add_history(conn, touch.lead_id, now, "sender_filtered", {**detail, "sender": touch.sender}, cause)
            report.actions = [f"sender {touch.sender} filtered by the carrier; not resent"]
    return report
