"""Delivery reports (Twilio status callbacks): a touch's delivery only moves forward.

queued < sending < sent < delivered (< read); undelivered, failed and canceled are
final. A duplicate or late report matches no row and changes nothing, so
(MessageSid, MessageStatus) pairs are deduplicated by the update itself. A final
failure keeps its error code in `touch.error`, and the code says what it means for
the lead (see `DELIVERY_EVENTS`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cadence.names import CarrierEvent, Channel, Delivery, Event, HistoryKind
from cadence.outcomes.events import on_event
from cadence.store import history, touches

if TYPE_CHECKING:
    from cadence.app import App


# How far along a message is; a report may only move a touch to a higher rank.
DELIVERY_RANK = {
    Delivery.ACCEPTED: 0, Delivery.SCHEDULED: 0, Delivery.QUEUED: 1, Delivery.SENDING: 2, Delivery.SENT: 3,
    Delivery.DELIVERED: 4, Delivery.READ: 5,
}  # fmt: skip
DELIVERY_FAILURES = {Delivery.UNDELIVERED: 4, Delivery.FAILED: 4, Delivery.CANCELED: 4}
# Twilio error code -> the event it is for the lead.
DELIVERY_EVENTS = {
    21610: Event.SMS_STOP,  # the recipient had opted out
    21211: CarrierEvent.PHONE_INVALID,  # not a valid number
    21614: CarrierEvent.NOT_MOBILE,  # a landline (calls are still fine)
    30003: CarrierEvent.PHONE_INVALID,  # unreachable handset
    30005: CarrierEvent.PHONE_INVALID,  # unknown or inactive number
    30006: CarrierEvent.PHONE_INVALID,  # landline or unreachable carrier
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
    rank = DELIVERY_RANK.get(status, DELIVERY_FAILURES.get(status))  # type: ignore[call-overload]
    report = DeliveryReport()
    if not message_sid or rank is None:
        return report
    code = _code(error_code)
    now = app.clock.now()
    earlier = [s for s, r in DELIVERY_RANK.items() if r < rank]
    failed = status in DELIVERY_FAILURES
    error = None
    if failed:
        reason = ERROR_TEXT.get(code, "no reason given") if code else "no reason given"
        error = f"{status}: Twilio {code}, {reason}" if code else f"{status}: {reason}"
    with app.engine.begin() as conn:
        touch = touches.sms_by_provider_id(conn, message_sid)
        if touch is None:
            return report
        report.touch, report.lead = touch.id, touch.lead_id
        report.changed = touches.advance_delivery(conn, touch.id, status, earlier, error)
        if not report.changed or not failed:
            return report
        detail = {
            "sequence": touch.sequence_id, "step": touch.step_id, "touch": touch.id, "delivery": status,
            "error_code": code, "message_sid": message_sid,
        }  # fmt: skip
        cause = f"SMS {touch.step_id} {error}"
        history.add(conn, touch.lead_id, now, HistoryKind.DELIVERY, detail, cause)
        event = DELIVERY_EVENTS.get(code) if code else None
        if event:
            report.actions = on_event(
                conn, app, touch.lead_id, event, now, cause=cause, detail=detail, channel=Channel.SMS
            )
        elif code == SENDER_FILTERED:
            filtered = {**detail, "sender": touch.sender}
            history.add(conn, touch.lead_id, now, HistoryKind.SENDER_FILTERED, filtered, cause)
            report.actions = [f"sender {touch.sender} filtered by the carrier; not resent"]
    return report
