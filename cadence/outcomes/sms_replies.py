"""An SMS from a lead: opt-out and opt-in keywords, HELP, or a reply.

An inbound SMS is matched to leads by its sender number (E.164, `lead.phone`).
Opt-out keywords (STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT, REVOKE, OPTOUT)
record `sms_stop` for every lead on that number, which suppresses SMS to it in
every sequence; opt-in keywords (START, UNSTOP, YES) lift that suppression and
set `sms_consent`; HELP/INFO is answered; any other text is an `sms_reply` from
the lead we texted last. A number we do not know records nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, delete, select, update

from cadence.outcomes.events import add_history, on_event
from cadence.plan.sms_keywords import is_help, is_opt_in, is_opt_out
from cadence.store.queries import LeadT, SuppressionT, TouchT

if TYPE_CHECKING:
    from cadence.app import App


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
