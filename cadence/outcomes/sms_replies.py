"""An SMS from a lead: opt-out and opt-in keywords, HELP, or a reply.

An inbound SMS is matched to leads by its sender number (E.164, `lead.phone`).
Opt-out keywords (STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT, REVOKE, OPTOUT)
record `sms_stop` for every lead on that number, which suppresses SMS to it in
every sequence; opt-in keywords (START, UNSTOP, YES) lift that suppression and
set `sms_consent`; HELP/INFO is answered; any other text is an `sms_reply` from
the lead we texted last. A number we do not know records nothing.

Twilio retries a webhook whose answer it did not get, with the same MessageSid: the
message is acted on once (`cadence.store.receipts`, checked in the same transaction),
and a replay records nothing; a replayed HELP is answered again, since its answer was lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cadence.names import CarrierEvent, Channel, Event, HistoryKind
from cadence.outcomes.events import on_event
from cadence.plan.sms_keywords import SmsKind, classify
from cadence.store import history, leads, receipts, suppressions
from cadence.store.rows import LeadRow

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from cadence.app import App


@dataclass
class SmsAnswer:
    """What an inbound SMS did, and the text to answer it with (HELP), if any."""

    kind: SmsKind
    leads: list[str] = field(default_factory=list)
    reply: str | None = None
    actions: list[str] = field(default_factory=list)
    replayed: bool = False  # the same MessageSid was acted on before: nothing recorded this time


def help_text(app: App, owner: str | None) -> str:
    """The HELP answer: who is texting and how to stop it."""
    try:
        sender = app.settings.sender(owner or "")
    except KeyError:
        return "Reply STOP to stop these messages, START to receive them again."
    return f"{sender.name} ({sender.email}). Reply STOP to stop these messages, START to receive them again."


def restore_sms(conn: Connection, lead: LeadRow, now: datetime, cause: str, detail: dict[str, Any]) -> list[str]:
    """START: the number may be texted again (suppression lifted, consent recorded)."""
    history.add(conn, lead.id, now, HistoryKind.EVENT, {"event": CarrierEvent.SMS_START, **detail}, cause)
    done: list[str] = []
    if lead.phone and suppressions.lift(conn, Channel.SMS, lead.phone):
        done.append(f"lifted the SMS suppression of {lead.phone}")
    if leads.record_sms_consent(conn, lead.id, now):
        done.append("SMS consent recorded")
    if done:
        history.add(conn, lead.id, now, HistoryKind.ACTION, {"event": CarrierEvent.SMS_START, "actions": done}, cause)
    return done


def receive_sms(app: App, from_: str, body: str, message_sid: str | None = None) -> SmsAnswer:
    """Act on one inbound SMS (Twilio's From and Body), in one transaction."""
    now = app.clock.now()
    keyword = body.strip().upper()
    detail = {k: v for k, v in {"message_sid": message_sid, "from": from_}.items() if v}
    with app.engine.begin() as conn:
        on_number = leads.on_phone(conn, from_.strip()) if from_.strip() else []
        if not on_number:
            return SmsAnswer(SmsKind.UNKNOWN)
        kind = classify(body)
        answer = SmsAnswer(kind, [lead.id for lead in on_number])
        if message_sid and not receipts.first_receipt(conn, message_sid, now):
            answer.replayed = True
            answer.reply = help_text(app, on_number[0].owner) if kind == SmsKind.HELP else None
            return answer
        cause = f"{keyword} by SMS"
        if kind == SmsKind.OPT_OUT:
            for lead in on_number:
                answer.actions += on_event(
                    conn, app, lead.id, Event.SMS_STOP, now, cause=cause, detail={**detail, "keyword": keyword},
                    channel=Channel.SMS,
                )  # fmt: skip
        elif kind == SmsKind.OPT_IN:
            for lead in on_number:
                answer.actions += restore_sms(conn, lead, now, cause, {**detail, "keyword": keyword})
        elif kind == SmsKind.HELP:
            answer.reply = help_text(app, on_number[0].owner)
            history.add(conn, on_number[0].id, now, HistoryKind.SMS_HELP, {**detail, "keyword": keyword}, cause)
        else:
            lead = on_number[0]  # the lead we texted last is the one answering
            answer.leads = [lead.id]
            answer.actions = on_event(
                conn, app, lead.id, Event.SMS_REPLY, now, cause="SMS reply", detail={**detail, "body": body},
                channel=Channel.SMS,
            )  # fmt: skip
    return answer
