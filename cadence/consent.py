"""What recipients and carriers tell us back: SMS keywords, unsubscribes and delivery reports.

Every function here runs in one transaction and returns what it did, in words;
the web handlers (`cadence.web`) only check who is calling and translate.

- An inbound SMS is matched to leads by its sender number (E.164, `lead.phone`).
  Opt-out keywords (STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT, REVOKE, OPTOUT)
  record `sms_stop` for every lead on that number, which suppresses SMS to it in
  every sequence; opt-in keywords (START, UNSTOP, YES) lift that suppression and
  set `sms_consent`; HELP/INFO is answered; any other text is an `sms_reply` from
  the lead we texted last. A number we do not know records nothing.
- An unsubscribe records `unsubscribed` once (the email is suppressed everywhere,
  enrollments with it in `exit_on` end); doing it again changes nothing.
- A delivery report (Twilio status callback) only moves a touch's `delivery`
  forward: queued < sending < sent < delivered (< read); undelivered, failed and
  canceled are final. A duplicate or late report matches no row and changes
  nothing, so (MessageSid, MessageStatus) pairs are deduplicated by the update
  itself. A final failure keeps its error code in `touch.error`, and the code says
  what it means for the lead (see `DELIVERY_EVENTS`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, delete, or_, select, update

from cadence.channels.sms import is_help, is_opt_in, is_opt_out
from cadence.events import add_history, on_event
from cadence.store.queries import LeadT, SuppressionT, TouchT

if TYPE_CHECKING:
    from cadence.app import App

# -- SMS keywords -----------------------------------------------------------------------


@dataclass
class SmsAnswer:
    """What an inbound SMS did: `kind` is unknown | opt_out | opt_in | help | reply."""

    kind: str
    leads: list[str] = field(default_factory=list)
    reply: str | None = None
    actions: list[str] = field(default_factory=list)


def _leads_on(conn: Connection, phone: str) -> list[Any]:
    """Leads with this number, the one we texted most recently first."""
    last_sms = (
        select(TouchT.c.sent_at)
        .where(TouchT.c.lead_id == LeadT.c.id, TouchT.c.channel == "sms", TouchT.c.sent_at.is_not(None))
        .order_by(TouchT.c.sent_at.desc())
        .limit(1)
        .scalar_subquery()
    )
    rows = conn.execute(select(LeadT, last_sms.label("last_sms")).where(LeadT.c.phone == phone)).all()
    return sorted(rows, key=lambda r: (r.last_sms is None, -(r.last_sms.timestamp() if r.last_sms else 0), r.id))


def help_text(app: App, owner: str | None) -> str:
    """The HELP answer: who is texting and how to stop it."""
    try:
        sender = app.settings.sender(owner or "")
    except KeyError:
        return "Reply STOP to stop these messages, START to receive them again."
    return f"{sender.name} ({sender.email}). Reply STOP to stop these messages, START to receive them again."


def restore_sms(conn: Connection, lead: Any, now: datetime, cause: str, detail: dict[str, Any]) -> list[str]:
    """START: the number may be texted again (suppression lifted, consent recorded)."""
    add_history(conn, lead.id, now, "event", {"event": "sms_start", **detail}, cause)
    done: list[str] = []
    if lead.phone:
        gone = conn.execute(
            delete(SuppressionT).where(SuppressionT.c.channel == "sms", SuppressionT.c.address == lead.phone)
        ).rowcount
        if gone:
            done.append(f"lifted the SMS suppression of {lead.phone}")
    if not lead.sms_consent:
        conn.execute(update(LeadT).where(LeadT.c.id == lead.id).values(sms_consent=True, updated_at=now))
        done.append("SMS consent recorded")
    if done:
        add_history(conn, lead.id, now, "action", {"event": "sms_start", "actions": done}, cause)
    return done


def receive_sms(app: App, from_: str, body: str, message_sid: str | None = None) -> SmsAnswer:
    """Act on one inbound SMS (Twilio's From and Body), in one transaction."""
    now = app.clock.now()
    keyword = body.strip().upper()
    detail = {k: v for k, v in {"message_sid": message_sid, "from": from_}.items() if v}
    with app.engine.begin() as conn:
        leads = _leads_on(conn, from_.strip()) if from_.strip() else []
        if not leads:
            return SmsAnswer("unknown")
        answer = SmsAnswer("reply", [lead.id for lead in leads])
        if is_opt_out(body):
            answer.kind = "opt_out"
            for lead in leads:
                answer.actions += on_event(
                    conn, app, lead.id, "sms_stop", now, cause=f"{keyword} by SMS",
                    detail={**detail, "keyword": keyword}, channel="sms",
                )  # fmt: skip
        elif is_opt_in(body):
            answer.kind = "opt_in"
            for lead in leads:
                answer.actions += restore_sms(conn, lead, now, f"{keyword} by SMS", {**detail, "keyword": keyword})
        elif is_help(body):
            answer.kind = "help"
            answer.reply = help_text(app, leads[0].owner)
            add_history(conn, leads[0].id, now, "sms_help", {**detail, "keyword": keyword}, f"{keyword} by SMS")
        else:
            lead = leads[0]  # the lead we texted last is the one answering
            answer.leads = [lead.id]
            answer.actions = on_event(
                conn, app, lead.id, "sms_reply", now, cause="SMS reply", detail={**detail, "body": body}, channel="sms"
            )
    return answer


# -- unsubscribe ------------------------------------------------------------------------


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


# -- delivery reports -------------------------------------------------------------------

# How far along a message is; a report may only move a touch to a higher rank.
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
