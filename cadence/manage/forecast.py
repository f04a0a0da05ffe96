"""Capacity planning: the emails, SMS and tasks each SDR gets per day if N leads are enrolled now.

Pure: a planner, the senders and the rates in, expected counts out; no store,
no clock (the start is a parameter: `CADENCE_NOW` at the CLI).

The model, step by step:

- **Leads.** N hypothetical leads in one time zone and country (config.yaml's, or
  the ones given), all enrolled at `start`. They are dealt to the senders
  round-robin in config.yaml order, as the inbound rotation does (lead 1 to the
  first sender, lead 2 to the second, ...); each lead's owner sends its emails
  and SMS and gets its call and task steps.
- **Timing.** Each lead's steps are placed by the planner, exactly as
  `cadence preview` shows them (allowed days, holidays, windows, quiet hours, the
  lead's spread, no catch-up), assuming every task is worked the moment it opens.
  The engine's per-lead daily cap (`limits.per_lead_daily`) is applied the way
  dispatch applies it: a touch past the cap moves to the next allowed day, and
  the steps after it follow. Days are the leads' local dates.
- **Replies.** After each email or SMS, a share `reply_rate` of the leads still in
  the sequence reply; they leave it when the rules say a reply ends the enrollment
  (`replied` for an email, `sms_reply` for an SMS: the first matching rule, else
  the sequence's `exit_on`). This is the per-step reply rate `cadence report`
  prints, so a measured rate can be fed straight back in.
- **Calls.** A share `connect_rate` of call tasks reach the lead, and a connected
  lead leaves the sequence (as `connected_interested`, `not_now` and
  `not_interested` all do under the starter rules); calls that do not connect
  (voicemail, no answer) let the sequence go on. Manual tasks never end it.
- **Counts are expected values**: a step's count is the number of leads still in
  the sequence when it falls due (fractional when the rates are). Bounces,
  opt-outs, missing SMS consent and expired tasks are not modelled.
- **Sender caps.** A day on which a sender's expected emails exceed its
  `daily_cap` is listed under `over_cap`: the engine would hold the excess to the
  next allowed day, which this forecast does not redistribute.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from cadence.names import Channel, Event
from cadence.plan.planner import Planner
from cadence.plan.rules import Situation, decide
from cadence.plan.timing import parse_time_of_day
from cadence.spec.model import CHANNELS, Step
from cadence.spec.model import Sequence as SequenceSpec
from cadence.spec.rules import Rule

REPLY_EVENT: dict[str, Event] = {Channel.EMAIL: Event.REPLIED, Channel.SMS: Event.SMS_REPLY}


@dataclass
class Forecast:
    sequence: str
    leads: int
    start: datetime
    timezone: str
    reply_rate: float
    connect_rate: float
    assigned: dict[str, int]
    days: dict[date, dict[str, dict[str, float]]] = field(default_factory=dict)
    daily_caps: dict[str, int] = field(default_factory=dict)

    def totals(self) -> dict[str, float]:
        return _sum(c for by_sender in self.days.values() for c in by_sender.values())

    def over_cap(self) -> list[dict[str, Any]]:
        """Sender days whose expected emails exceed the sender's daily cap."""
        out = []
        for day in sorted(self.days):
            for sender, counts in self.days[day].items():
                cap = self.daily_caps.get(sender)
                emails = counts.get("email", 0.0)
                if cap is not None and emails > cap + 1e-9:
                    out.append(
                        {
                            "date": day.isoformat(),
                            "sender": sender,
                            "emails": round(emails, 2),
                            "daily_cap": cap,
                        }
                    )
        return out

    def as_json(self) -> dict[str, Any]:
        def channels(counts: Mapping[str, float]) -> dict[str, float]:
            return {c: round(counts.get(c, 0.0), 2) for c in CHANNELS}

        days = []
        for day in sorted(self.days):
            by_sender = self.days[day]
            days.append(
                {
                    "date": day.isoformat(),
                    "weekday": day.strftime("%a"),
                    "senders": {s: channels(by_sender.get(s, {})) for s in self.assigned},
                    "total": channels(_sum(by_sender.values())),
                }
            )
        return {
            "sequence": self.sequence,
            "leads": self.leads,
            "start": self.start.isoformat(),
            "timezone": self.timezone,
            "reply_rate": self.reply_rate,
            "connect_rate": self.connect_rate,
            "senders": dict(self.assigned),
            "days": days,
            "totals": channels(self.totals()),
            "over_cap": self.over_cap(),
        }


def _sum(parts: Iterable[Mapping[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in parts:
        for channel, n in part.items():
            out[channel] = out.get(channel, 0.0) + n
    return out


def leaves_on(spec: SequenceSpec, rules: Sequence[Rule], event: str, channel: str) -> bool:
    """Does `event` end an enrollment in `spec`? The same decision `cadence.events.on_event` makes."""
    decided = decide(list(rules), Situation(event=event, kind=spec.kind, sequence=spec.id, channel=channel))
    if decided is None:
        return event in spec.exit_on
    then = decided[1]
    return then.ends_enrollment or (event in spec.exit_on and not then.continue_)


def leave_share(spec: SequenceSpec, rules: Sequence[Rule], step: Step, reply_rate: float, connect_rate: float) -> float:
    """The share of the leads reached by `step` that leave the sequence after it."""
    if step.channel in REPLY_EVENT:
        return reply_rate if leaves_on(spec, rules, REPLY_EVENT[step.channel], step.channel) else 0.0
    if step.channel == "call":
        return connect_rate
    return 0.0


def within_daily_limit(
    planner: Planner, index: int, due: datetime, lead_key: str, per_day: Counter[date], per_lead_daily: int | None
) -> datetime:
    """`due`, or the first slot of the next allowed day whose count of touches is under `per_lead_daily`
    (what the engine's per-lead daily limit does: the excess waits, it is never dropped)."""
    cal, step = planner.calendar, planner.sequence.steps[index]
    day = cal.local_date(due)
    while per_lead_daily is not None and per_day[day] >= per_lead_daily:
        due = cal.first_slot_from(
            cal.next_allowed(day),
            earliest=due,
            at=parse_time_of_day(step.at) if step.at else None,
            spread_key=None if step.immediate else lead_key,
            window=planner.window_for(step),
        )
        day = cal.local_date(due)
    return due


def lead_timeline(planner: Planner, lead_key: str, start: datetime, per_lead_daily: int | None) -> list[datetime]:
    """When each step happens for one lead enrolled at `start` (tasks worked when they open)."""
    cal = planner.calendar
    steps = planner.sequence.steps
    per_day: Counter[date] = Counter()
    out: list[datetime] = []
    for index in range(len(steps)):
        due = planner.first_due(start, lead_key) if index == 0 else planner.due_after(index - 1, out[-1], lead_key)
        assert due is not None
        due = within_daily_limit(planner, index, due, lead_key, per_day, per_lead_daily)
        per_day[cal.local_date(due)] += 1
        out.append(due)
    return out


def forecast(
    planner: Planner,
    *,
    leads: int,
    senders: Sequence[str],
    start: datetime,
    reply_rate: float = 0.0,
    connect_rate: float = 0.0,
    rules: Sequence[Rule] = (),
    per_lead_daily: int | None = None,
    daily_caps: Mapping[str, int] | None = None,
) -> Forecast:
    """Expected touches per local day, per sender, per channel (see the module doc for the model)."""
    if leads < 1:
        raise ValueError("--leads must be at least 1")
    if not senders:
        raise ValueError("config.yaml has no senders to deal the leads to")
    for name, rate in (("reply rate", reply_rate), ("connect rate", connect_rate)):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"the {name} must be between 0 and 1, not {rate}")
    spec = planner.sequence
    survival, alive = [], 1.0
    for step in spec.steps:
        survival.append(alive)
        alive *= 1.0 - leave_share(spec, rules, step, reply_rate, connect_rate)
    assigned = {s: 0 for s in senders}
    result = Forecast(
        spec.id, leads, start, str(planner.calendar.tz), reply_rate, connect_rate, assigned,
        daily_caps=dict(daily_caps or {}),
    )  # fmt: skip
    for n in range(leads):
        sender = senders[n % len(senders)]
        assigned[sender] += 1
        times = lead_timeline(planner, f"forecast-{n + 1}", start, per_lead_daily)
        for step, at, share in zip(spec.steps, times, survival, strict=True):
            by_sender = result.days.setdefault(planner.calendar.local_date(at), {})
            counts = by_sender.setdefault(sender, {})
            counts[step.channel] = counts.get(step.channel, 0.0) + share
    return result
