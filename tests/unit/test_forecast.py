"""Capacity forecasts on small sequences whose day-by-day counts are worked out by hand.

The week of 2026-11-23 in New York: Thursday 26 is Thanksgiving (a US holiday, not a
British one), 28-29 are the weekend. Leads are dealt round-robin: with five leads
and senders alice and bob, alice gets leads 1, 3, 5 and bob leads 2, 4.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from cadence.clock import parse_instant
from cadence.config import quiet_window
from cadence.manage.forecast import Forecast, forecast, leaves_on
from cadence.plan.planner import Planner, ScheduleDefaults, calendar_for
from cadence.spec.model import Sequence
from cadence.spec.rules import Rule

WED_0800 = parse_instant("2026-11-25T08:00:00-05:00")
SENDERS = ["alice", "bob"]
FOUR_STEPS = [
    {"id": "intro", "day": 1, "channel": "email", "subject": "Hi", "template": "t.md.j2"},
    {"id": "call", "day": 2, "channel": "call", "template": "c.md.j2"},
    {"id": "text", "day": 3, "channel": "sms", "at": "10:30", "template": "s.txt.j2"},
    {"id": "linkedin", "day": 4, "channel": "task", "title": "Connect"},
]


def _planner(steps: list[dict[str, Any]], country: str = "US", **extra: Any) -> Planner:
    spec = Sequence.model_validate({"id": "pilot", "name": "Pilot", "steps": steps, **extra})
    calendar = calendar_for(ScheduleDefaults(), spec.schedule, "America/New_York", country)
    return Planner(spec, calendar, quiet_window("21:00-08:00"))


def _rules(*rules: dict[str, Any]) -> list[Rule]:
    return [Rule.model_validate(r) for r in rules]


def _by_day(result: Forecast) -> dict[str, dict[str, dict[str, float]]]:
    """{date: {sender: {channel: count}}}, without zeros."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for day, senders in sorted(result.days.items()):
        out[day.isoformat()] = {s: {c: n for c, n in counts.items() if n} for s, counts in senders.items()}
    return out


def _approx(expected: dict[str, dict[str, dict[str, float]]]) -> Any:
    return {day: {s: pytest.approx(c) for s, c in senders.items()} for day, senders in expected.items()}


def test_days_skip_weekends_and_the_leads_holidays_and_replies_and_connects_thin_the_steps() -> None:
    result = forecast(_planner(FOUR_STEPS), leads=5, senders=SENDERS, start=WED_0800, reply_rate=0.2, connect_rate=0.5)
    # Day 1 Wed 25; day 2 skips Thanksgiving to Fri 27; day 3 skips the weekend to Mon 30; day 4 Tue 1.
    # 20% of the emailed leads reply and leave; half the calls connect and end the sequence; an SMS reply
    # (sms_reply) is not in the default exit_on, so it thins nothing.
    assert _by_day(result) == _approx(
        {
            "2026-11-25": {"alice": {"email": 3}, "bob": {"email": 2}},
            "2026-11-27": {"alice": {"call": 3 * 0.8}, "bob": {"call": 2 * 0.8}},
            "2026-11-30": {"alice": {"sms": 3 * 0.8 * 0.5}, "bob": {"sms": 2 * 0.8 * 0.5}},
            "2026-12-01": {"alice": {"task": 3 * 0.8 * 0.5}, "bob": {"task": 2 * 0.8 * 0.5}},
        }
    )
    assert result.assigned == {"alice": 3, "bob": 2}
    assert result.totals() == pytest.approx({"email": 5, "call": 4, "sms": 2, "task": 2})


def test_a_british_lead_works_through_thanksgiving() -> None:
    result = forecast(_planner(FOUR_STEPS, country="GB"), leads=2, senders=SENDERS, start=WED_0800)
    assert list(_by_day(result)) == ["2026-11-25", "2026-11-26", "2026-11-27", "2026-11-30"]


def test_an_sms_reply_thins_the_next_steps_when_the_sequence_exits_on_it() -> None:
    planner = _planner(FOUR_STEPS, exit_on=["replied", "sms_reply"])
    result = forecast(planner, leads=5, senders=SENDERS, start=WED_0800, reply_rate=0.2, connect_rate=0.5)
    assert result.days[date(2026, 12, 1)]["alice"]["task"] == pytest.approx(3 * 0.8 * 0.5 * 0.8)
    assert result.days[date(2026, 12, 1)]["bob"]["task"] == pytest.approx(2 * 0.8 * 0.5 * 0.8)


def test_the_rules_decide_whether_a_reply_ends_the_sequence() -> None:
    planner = _planner(FOUR_STEPS)
    spec = planner.sequence
    assert leaves_on(spec, [], "replied", "email")
    keep_going = _rules({"when": {"event": "replied"}, "then": "continue"})
    assert not leaves_on(spec, keep_going, "replied", "email")
    result = forecast(planner, leads=5, senders=SENDERS, start=WED_0800, reply_rate=0.2, rules=keep_going)
    assert result.days[date(2026, 11, 27)]["alice"]["call"] == pytest.approx(3)
    move = _rules({"when": {"event": "sms_reply"}, "then": {"enroll": "outbound-hot"}})
    assert leaves_on(spec, move, "sms_reply", "sms")


def test_the_per_lead_daily_cap_pushes_the_third_same_day_touch_and_what_follows() -> None:
    steps = [
        {"id": "intro", "day": 1, "channel": "email", "subject": "Hi", "template": "t.md.j2"},
        {"id": "call", "day": 1, "channel": "call", "template": "c.md.j2"},
        {"id": "note", "day": 1, "channel": "email", "subject": "PS", "template": "t.md.j2"},
        {"id": "linkedin", "day": 2, "channel": "task", "title": "Connect"},
    ]
    capped = forecast(_planner(steps), leads=2, senders=SENDERS, start=WED_0800, per_lead_daily=2)
    # Two touches fit on Wednesday; the note waits for Friday (Thursday is Thanksgiving), and the
    # day-2 task is counted from when the note actually went: the next allowed day, Monday.
    assert _by_day(capped) == _approx(
        {
            "2026-11-25": {"alice": {"email": 1, "call": 1}, "bob": {"email": 1, "call": 1}},
            "2026-11-27": {"alice": {"email": 1}, "bob": {"email": 1}},
            "2026-11-30": {"alice": {"task": 1}, "bob": {"task": 1}},
        }
    )
    free = forecast(_planner(steps), leads=2, senders=SENDERS, start=WED_0800)
    assert _by_day(free)["2026-11-25"]["alice"] == {"email": 2, "call": 1}
    assert list(_by_day(free)) == ["2026-11-25", "2026-11-27"]


def test_an_enrollment_after_the_window_closes_starts_on_the_next_allowed_day() -> None:
    evening = parse_instant("2026-11-25T17:30:00-05:00")
    result = forecast(_planner(FOUR_STEPS), leads=1, senders=SENDERS, start=evening)
    assert list(_by_day(result)) == ["2026-11-27", "2026-11-30", "2026-12-01", "2026-12-02"]
    assert result.assigned == {"alice": 1, "bob": 0}


def test_json_lists_every_day_sender_and_channel_and_flags_days_over_a_senders_cap() -> None:
    result = forecast(
        _planner(FOUR_STEPS), leads=5, senders=SENDERS, start=WED_0800, reply_rate=0.2, connect_rate=0.5,
        daily_caps={"alice": 2, "bob": 300},
    )  # fmt: skip
    data = result.as_json()
    assert data["start"] == "2026-11-25T13:00:00+00:00" and data["timezone"] == "America/New_York"
    assert data["senders"] == {"alice": 3, "bob": 2}
    assert [(d["date"], d["weekday"]) for d in data["days"]] == [
        ("2026-11-25", "Wed"), ("2026-11-27", "Fri"), ("2026-11-30", "Mon"), ("2026-12-01", "Tue"),
    ]  # fmt: skip
    friday = data["days"][1]
    assert friday["senders"] == {
        "alice": {"email": 0.0, "sms": 0.0, "call": 2.4, "task": 0.0},
        "bob": {"email": 0.0, "sms": 0.0, "call": 1.6, "task": 0.0},
    }
    assert friday["total"] == {"email": 0.0, "sms": 0.0, "call": 4.0, "task": 0.0}
    assert data["totals"] == {"email": 5.0, "sms": 2.0, "call": 4.0, "task": 2.0}
    assert data["over_cap"] == [{"date": "2026-11-25", "sender": "alice", "emails": 3.0, "daily_cap": 2}]


@pytest.mark.parametrize(
    ("leads", "senders", "reply", "message"),
    [
        (0, SENDERS, 0.0, "at least 1"),
        (3, [], 0.0, "no senders"),
        (3, SENDERS, 1.5, "between 0 and 1"),
    ],
)
def test_impossible_inputs_are_refused(leads: int, senders: list[str], reply: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        forecast(_planner(FOUR_STEPS), leads=leads, senders=senders, start=WED_0800, reply_rate=reply)
