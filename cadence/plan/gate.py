"""The gate a due touch passes at claim time: skip it, hold it for later, or let it go now (pure).

Whatever was planned, the window, quiet hours, consent, the suppression list,
invalid addresses, dropped channels and every cap are checked again here, at the
moment of sending: a plan made last week knows nothing of today's STOP.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Protocol

from cadence.config import Settings
from cadence.names import MESSAGE_CHANNELS, Channel, Event
from cadence.plan.planner import Planner
from cadence.spec.model import Step
from cadence.spec.values import parse_time_of_day


class Reachable(Protocol):
    """What the gate reads of a lead (a `LeadRow` is one)."""

    @property
    def id(self) -> str: ...
    @property
    def email(self) -> str | None: ...
    @property
    def phone(self) -> str | None: ...
    @property
    def owner(self) -> str | None: ...
    @property
    def do_not_contact(self) -> bool: ...
    @property
    def email_invalid(self) -> bool: ...
    @property
    def phone_invalid(self) -> bool: ...
    @property
    def sms_consent(self) -> bool: ...


def suppression_keys(lead: Reachable) -> list[tuple[str, str]]:
    """The (channel, address) pairs of the suppression list that concern this lead."""
    keys: list[tuple[str, str]] = []
    if lead.email:
        keys.append((Channel.EMAIL, lead.email))
    if lead.phone:
        keys.append((Channel.SMS, lead.phone))
        keys.append((Channel.CALL, lead.phone))  # do_not_call suppresses calls to the number
    return keys


def why_unusable(
    step: Step, lead: Reachable, dropped: Collection[str], blocked: Mapping[tuple[str, str], str], settings: Settings
) -> str | None:
    """Why this step cannot reach this lead at all (it is skipped, and the lead moves on), or None.

    `blocked` maps the suppressed (channel, address) pairs to the reason they were suppressed,
    so a skip names the true cause: a STOP, an unsubscribe, or the rule that suppressed it.
    """
    channel = step.channel
    if lead.do_not_contact:
        return "lead is marked do-not-contact"
    if channel in dropped:
        return f"{channel} dropped for this lead"
    if channel == Channel.EMAIL:
        if not lead.email:
            return "lead has no email"
        if (Channel.EMAIL, lead.email) in blocked:
            return f"email address is suppressed ({_why(blocked[(Channel.EMAIL, lead.email)])})"
        if lead.email_invalid:
            return "email address bounced"
    if channel == Channel.SMS:
        if not lead.phone:
            return "lead has no phone"
        if (Channel.SMS, lead.phone) in blocked:
            why = blocked[(Channel.SMS, lead.phone)]
            return (
                "phone opted out of SMS (STOP)"
                if why == Event.SMS_STOP
                else f"SMS to this phone is suppressed ({_why(why)})"
            )
        if lead.phone_invalid:
            return "phone cannot take SMS"
        if settings.sms.require_consent and not lead.sms_consent:
            return "no SMS consent"
    if channel == Channel.CALL and (Channel.CALL, lead.phone or "") in blocked:
        return "lead asked not to be called"
    if channel in MESSAGE_CHANNELS:
        try:
            settings.sender(lead.owner or "")
        except KeyError:
            return f"owner {lead.owner!r} is not a sender in config.yaml"
    return None


def _why(reason: str) -> str:
    """A suppression's stored reason as a skip shows it ("rule: rule 6: do_not_call" -> "rule 6: do_not_call")."""
    return reason.removeprefix("rule: ")


def hold_until(
    step: Step,
    lead: Reachable,
    planner: Planner,
    now: datetime,
    lead_times: Sequence[datetime | None],
    sender_counts: Mapping[str, Sequence[int]],
    settings: Settings,
) -> datetime | None:
    """When this touch must wait until instead of going now (out of its window, over a cap), or None.

    `lead_times` are the lead's recent touches (None: in flight now); `sender_counts` maps
    each sender to [emails on the mailbox's day, emails in the last minute].
    """
    cal = planner.calendar
    window = planner.window_for(step)
    key = None if step.immediate else lead.id
    at = parse_time_of_day(step.at) if step.at else None
    today = cal.local_date(now)

    def next_slot(day: date, earliest: datetime) -> datetime:
        return cal.first_slot_from(day, earliest=earliest, at=at, spread_key=key, window=window)

    if not cal.is_open(now, window):
        return next_slot(today, now)
    cap = settings.limits.per_lead_daily
    if sum(1 for t in lead_times if t is None or cal.local_date(t) == today) >= cap:
        return next_slot(cal.next_allowed(today), now)
    if step.channel == Channel.EMAIL:
        sender = settings.sender(lead.owner or "")
        sent_today, sent_this_minute = sender_counts.get(sender.id, (0, 0))
        if sent_today >= sender.daily_cap:
            return next_slot(cal.next_allowed(today), now)
        if sent_this_minute >= sender.per_minute:
            return next_slot(today, now + timedelta(seconds=60))
    return None
