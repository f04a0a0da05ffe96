"""The timing rules of issue 2, one promise per test (pure: no clock, no sleeps, no store).

Most tests set `spread: 0` so due times are exact; the spread has tests of its own.
Dates: 2026-11-26 is US Thanksgiving (a Thursday), 2026-05-25 the UK Spring bank
holiday, 2027-03-14 New York's spring-forward Sunday, 2027-04-04 and 2026-10-04
the Sundays Sydney's DST ends and starts.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cadence.app import App
from cadence.clock import FixedClock
from cadence.config import Settings, quiet_window
from cadence.plan import planner
from cadence.plan.timing import Window, local_to_utc, zone
from cadence.spec.load import load_sequence
from cadence.spec.model import Sequence
from cadence.spec.templates import TemplateFolder

ROOT = Path(__file__).resolve().parents[2]
NY = "America/New_York"
NO_SPREAD = planner.ScheduleDefaults(spread="0")
SPREAD_45M = planner.ScheduleDefaults(spread="45m")
SMS_HOURS = quiet_window("21:00-08:00")
EVERY_DAY = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def step(step_id: str, day: int, channel: str = "email", **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"id": step_id, "day": day, "channel": channel}
    if channel == "email":
        out |= {"subject": "Hi", "template": "t.md.j2"}
    elif channel in ("sms", "call"):
        out["template"] = "t.txt.j2"
    else:
        out["title"] = "Connect on LinkedIn"
    return out | extra


def make_planner(
    steps: list[dict[str, Any]],
    *,
    tz: str = NY,
    country: str = "US",
    defaults: planner.ScheduleDefaults = NO_SPREAD,
    **schedule: Any,
) -> planner.Planner:
    seq = Sequence.model_validate({"id": "s", "name": "S", "schedule": schedule, "steps": steps})
    calendar = planner.calendar_for(defaults, seq.schedule, tz, country)
    return planner.Planner(seq, calendar, SMS_HOURS)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def local_dues(p: planner.Planner, enrolled: str, lead: str = "L1") -> list[str]:
    """The timeline as lead-local ISO times."""
    return [due.astimezone(p.calendar.tz).isoformat() for _, _, due in p.timeline(at(enrolled), lead)]


def local_first_due(p: planner.Planner, enrolled: str, lead: str = "L1") -> str:
    return p.first_due(at(enrolled), lead).astimezone(p.calendar.tz).isoformat()


# -- Day N is the N-th allowed day -------------------------------------------------------------------------------


def test_weekends_are_skipped_and_days_count_allowed_days() -> None:
    p = make_planner([step("a", 1), step("b", 2), step("c", 3)])
    timeline = p.timeline(at("2026-11-19T08:00:00-05:00"), "L1")  # a Thursday
    assert [(s.id, day, due.astimezone(p.calendar.tz).isoformat()) for s, day, due in timeline] == [
        ("a", 1, "2026-11-19T09:00:00-05:00"),
        ("b", 2, "2026-11-20T09:00:00-05:00"),
        ("c", 3, "2026-11-23T09:00:00-05:00"),
    ]


@pytest.mark.parametrize(
    ("tz", "country", "enrolled", "expected"),
    [
        pytest.param(
            NY,
            "US",
            "2026-11-25T08:00:00-05:00",
            ["2026-11-25T09:00:00-05:00", "2026-11-27T09:00:00-05:00", "2026-11-30T09:00:00-05:00"],
            id="us-thanksgiving-2026-11-26",
        ),
        pytest.param(
            "Europe/London",
            "GB",
            "2026-05-22T08:00:00+01:00",
            ["2026-05-22T09:00:00+01:00", "2026-05-26T09:00:00+01:00", "2026-05-27T09:00:00+01:00"],
            id="uk-spring-bank-holiday-2026-05-25",
        ),
        pytest.param(
            "Europe/London",
            "GB-ENG",
            "2026-08-28T08:00:00+01:00",
            ["2026-08-28T09:00:00+01:00", "2026-09-01T09:00:00+01:00", "2026-09-02T09:00:00+01:00"],
            id="england-summer-bank-holiday-2026-08-31-needs-GB-ENG",
        ),
        pytest.param(
            "Asia/Kolkata",
            "IN",
            "2026-11-23T08:00:00+05:30",
            ["2026-11-23T09:00:00+05:30", "2026-11-25T09:00:00+05:30", "2026-11-26T09:00:00+05:30"],
            id="india-guru-nanak-2026-11-24",
        ),
    ],
)
def test_holidays_of_the_leads_country_are_skipped(tz: str, country: str, enrolled: str, expected: list[str]) -> None:
    p = make_planner([step("a", 1), step("b", 2), step("c", 3)], tz=tz, country=country)
    assert local_dues(p, enrolled) == expected


def test_day_one_skips_a_holiday_enrollment_day() -> None:
    p = make_planner([step("a", 1)])
    assert local_first_due(p, "2026-11-26T08:00:00-05:00") == "2026-11-27T09:00:00-05:00"


def test_holidays_none_sends_on_public_holidays() -> None:
    p = make_planner([step("a", 1), step("b", 2), step("c", 3)], holidays="none")
    assert local_dues(p, "2026-11-25T08:00:00-05:00") == [
        "2026-11-25T09:00:00-05:00",
        "2026-11-26T09:00:00-05:00",
        "2026-11-27T09:00:00-05:00",
    ]


@pytest.mark.parametrize(
    ("enrolled", "expected"),
    [
        pytest.param(
            "2026-11-25T08:00:00-05:00",
            ["2026-11-25T09:00:00-05:00", "2026-11-26T09:00:00-05:00"],
            id="thanksgiving-is-a-working-day-in-GB",
        ),
        pytest.param(
            "2026-05-01T08:00:00-04:00",
            ["2026-05-01T09:00:00-04:00", "2026-05-05T09:00:00-04:00"],
            id="GB-early-may-bank-holiday-2026-05-04-is-skipped",
        ),
    ],
)
def test_named_holiday_calendar_overrides_the_leads_country(enrolled: str, expected: list[str]) -> None:
    p = make_planner([step("a", 1), step("b", 2)], holidays="GB")  # a US lead, a GB calendar
    assert local_dues(p, enrolled) == expected


def test_sequence_schedule_overrides_config_defaults() -> None:
    config_says_none = planner.ScheduleDefaults(holidays="none", spread="0")
    inherits = make_planner([step("a", 1), step("b", 2)], defaults=config_says_none)
    overrides = make_planner([step("a", 1), step("b", 2)], defaults=config_says_none, holidays="lead")
    assert local_dues(inherits, "2026-11-25T08:00:00-05:00")[1] == "2026-11-26T09:00:00-05:00"
    assert local_dues(overrides, "2026-11-25T08:00:00-05:00")[1] == "2026-11-27T09:00:00-05:00"


def test_allowed_days_come_from_the_schedule() -> None:
    p = make_planner([step("a", 1), step("b", 2), step("c", 3)], days=["tue", "thu"])
    assert local_dues(p, "2026-11-16T08:00:00-05:00") == [  # a Monday; Thanksgiving Thursday is skipped
        "2026-11-17T09:00:00-05:00",
        "2026-11-19T09:00:00-05:00",
        "2026-11-24T09:00:00-05:00",
    ]


# -- Day one ---------------------------------------------------------------------------------------------------


def test_day_one_is_enrollment_day_when_enrolled_before_the_window_opens() -> None:
    p = make_planner([step("a", 1)])
    assert local_first_due(p, "2026-11-17T07:30:00-05:00") == "2026-11-17T09:00:00-05:00"


@pytest.mark.parametrize(
    "enrolled",
    ["2026-11-17T09:00:00-05:00", "2026-11-17T11:15:20-05:00", "2026-11-17T16:59:59-05:00"],
    ids=["window-opening", "mid-window", "last-second"],
)
def test_enrolled_inside_the_window_is_due_at_once(enrolled: str) -> None:
    p = make_planner([step("a", 1)])
    assert p.first_due(at(enrolled), "L1") == at(enrolled)


@pytest.mark.parametrize(
    ("enrolled", "expected"),
    [
        pytest.param("2026-11-17T17:00:00-05:00", "2026-11-18T09:00:00-05:00", id="at-the-close"),
        pytest.param("2026-11-17T20:00:00-05:00", "2026-11-18T09:00:00-05:00", id="evening"),
        pytest.param("2026-11-20T17:30:00-05:00", "2026-11-23T09:00:00-05:00", id="friday-evening"),
        pytest.param("2026-11-25T17:30:00-05:00", "2026-11-27T09:00:00-05:00", id="eve-of-thanksgiving"),
    ],
)
def test_day_one_is_next_allowed_day_when_enrolled_after_the_window_closes(enrolled: str, expected: str) -> None:
    p = make_planner([step("a", 1), step("b", 2)])
    assert local_first_due(p, enrolled) == expected
    assert p.timeline(at(enrolled), "L1")[0][1] == 1


@pytest.mark.parametrize(
    "enrolled", ["2026-11-21T10:00:00-05:00", "2026-11-22T23:59:00-05:00"], ids=["saturday", "sunday-night"]
)
def test_day_one_is_next_allowed_day_when_enrolled_on_a_weekend(enrolled: str) -> None:
    p = make_planner([step("a", 1)])
    assert local_first_due(p, enrolled) == "2026-11-23T09:00:00-05:00"


def test_due_times_are_utc_whatever_zone_the_enrollment_time_is_in() -> None:
    p = make_planner([step("a", 1), step("b", 1)])
    enrolled = at("2026-11-17T11:15:00-05:00")  # inside the window: due at once
    for _, _, due in p.timeline(enrolled, "L1"):
        assert due.utcoffset() == timedelta(0)
        assert due.tzinfo is UTC
        assert due == enrolled


def test_lead_without_timezone_or_country_falls_back_to_config() -> None:
    settings = Settings.model_validate({"timezone": "Asia/Kolkata", "country": "IN"})
    app = App(settings=settings, clock=FixedClock(at("2026-11-23T00:00:00Z")), database_url="sqlite://")
    seq = Sequence.model_validate({"id": "s", "name": "S", "steps": [step("a", 1)]})
    fallback = app.planner(seq, None, None)
    assert fallback.calendar.tz == zone("Asia/Kolkata")
    assert date(2026, 11, 24) in fallback.calendar.holidays  # IN's calendar: Guru Nanak's birthday
    own = app.planner(seq, "Europe/London", "GB")
    assert own.calendar.tz == zone("Europe/London")
    assert date(2026, 11, 24) not in own.calendar.holidays


# -- DST and odd offsets: wall time holds, UTC moves -----------------------------------------------------------


@pytest.mark.parametrize(
    ("tz", "enrolled", "expected_utc"),
    [
        pytest.param(
            NY, "2027-03-12T08:00:00-05:00", ["2027-03-12T14:00:00+00:00", "2027-03-15T13:00:00+00:00"], id="ny-spring"
        ),
        pytest.param(
            NY, "2026-10-30T08:00:00-04:00", ["2026-10-30T13:00:00+00:00", "2026-11-02T14:00:00+00:00"], id="ny-fall"
        ),
        pytest.param(
            "Australia/Sydney",
            "2027-04-02T08:00:00+11:00",
            ["2027-04-01T22:00:00+00:00", "2027-04-04T23:00:00+00:00"],
            id="sydney-dst-ends-2027-04-04",
        ),
        pytest.param(
            "Australia/Sydney",
            "2026-10-02T08:00:00+10:00",
            ["2026-10-01T23:00:00+00:00", "2026-10-04T22:00:00+00:00"],
            id="sydney-dst-starts-2026-10-04",
        ),
    ],
)
def test_local_wall_time_holds_across_dst_changes(tz: str, enrolled: str, expected_utc: list[str]) -> None:
    p = make_planner([step("a", 1), step("b", 2)], tz=tz, holidays="none")
    dues = [due for _, _, due in p.timeline(at(enrolled), "L1")]
    assert [d.isoformat() for d in dues] == expected_utc
    assert [d.astimezone(zone(tz)).strftime("%a %H:%M") for d in dues] == ["Fri 09:00", "Mon 09:00"]


def test_new_york_utc_offset_changes_from_minus_five_to_minus_four_on_2027_03_14() -> None:
    p = make_planner([step("a", 1), step("b", 2)], days=EVERY_DAY)
    dues = [due.astimezone(p.calendar.tz) for _, _, due in p.timeline(at("2027-03-13T08:00:00-05:00"), "L1")]
    assert [d.isoformat() for d in dues] == ["2027-03-13T09:00:00-05:00", "2027-03-14T09:00:00-04:00"]


def test_kolkata_half_hour_offset() -> None:
    p = make_planner([step("a", 1), step("b", 2, at="10:45")], tz="Asia/Kolkata", country="IN")
    dues = [due.isoformat() for _, _, due in p.timeline(at("2026-11-23T08:00:00+05:30"), "L1")]
    assert dues == ["2026-11-23T03:30:00+00:00", "2026-11-25T05:15:00+00:00"]


@pytest.mark.parametrize(
    ("tz", "day", "minute", "expected_utc", "expected_local"),
    [
        pytest.param(NY, date(2027, 3, 14), 150, "2027-03-14T07:30:00+00:00", "2027-03-14T03:30:00-04:00", id="ny-gap"),
        pytest.param(
            "Australia/Sydney",
            date(2026, 10, 4),
            150,
            "2026-10-03T16:30:00+00:00",
            "2026-10-04T03:30:00+11:00",
            id="sydney-gap",
        ),
        pytest.param(
            NY, date(2026, 11, 1), 90, "2026-11-01T05:30:00+00:00", "2026-11-01T01:30:00-04:00", id="ny-fold-first"
        ),
        pytest.param(
            "Australia/Sydney",
            date(2027, 4, 4),
            150,
            "2027-04-03T15:30:00+00:00",
            "2027-04-04T02:30:00+11:00",
            id="sydney-fold-first",
        ),
        pytest.param(
            "Asia/Kolkata", date(2026, 11, 23), 540, "2026-11-23T03:30:00+00:00", "2026-11-23T09:00:00+05:30", id="ist"
        ),
        pytest.param(
            NY, date(2026, 11, 23), 24 * 60, "2026-11-24T05:00:00+00:00", "2026-11-24T00:00:00-05:00", id="midnight"
        ),
    ],
)
def test_local_to_utc_moves_a_nonexistent_wall_time_forward_and_takes_the_first_of_an_ambiguous_one(
    tz: str, day: date, minute: int, expected_utc: str, expected_local: str
) -> None:
    instant = local_to_utc(day, minute, zone(tz))
    assert instant.isoformat() == expected_utc
    assert instant.astimezone(zone(tz)).isoformat() == expected_local


def test_at_time_in_the_spring_forward_gap_moves_forward() -> None:
    p = make_planner([step("a", 1), step("b", 2, at="02:30")], window="always", days=EVERY_DAY)
    dues = [
        due.astimezone(p.calendar.tz).isoformat() for _, _, due in p.timeline(at("2027-03-13T12:00:00-05:00"), "L1")
    ]
    assert dues == ["2027-03-13T12:00:00-05:00", "2027-03-14T03:30:00-04:00"]


# -- `at` times ------------------------------------------------------------------------------------------------


def test_step_is_due_at_its_at_time() -> None:
    p = make_planner([step("a", 1), step("b", 2, "sms", at="10:30")])
    assert local_dues(p, "2026-11-17T08:00:00-05:00") == ["2026-11-17T09:00:00-05:00", "2026-11-18T10:30:00-05:00"]


def test_at_before_the_window_opens_waits_for_the_window() -> None:
    p = make_planner([step("a", 1, at="07:00")])
    assert local_first_due(p, "2026-11-17T06:00:00-05:00") == "2026-11-17T09:00:00-05:00"


def test_at_already_past_on_day_one_is_due_at_once() -> None:
    p = make_planner([step("a", 1, at="10:30")])
    assert local_first_due(p, "2026-11-17T14:00:00-05:00") == "2026-11-17T14:00:00-05:00"


def test_at_plus_spread_never_leaves_the_window() -> None:
    p = make_planner([step("a", 1, at="16:50")], defaults=SPREAD_45M)
    enrolled = at("2026-11-17T08:00:00-05:00")
    locals_ = [p.first_due(enrolled, f"L{i}").astimezone(p.calendar.tz) for i in range(500)]
    assert all(d.date() == date(2026, 11, 17) for d in locals_)
    assert all("16:50:00" <= d.strftime("%H:%M:%S") < "17:00:00" for d in locals_)
    assert len(set(locals_)) > 100  # still spread over the ten minutes left


def test_at_after_the_window_closes_is_never_due() -> None:
    p = make_planner([step("a", 1, at="18:00")])
    with pytest.raises(ValueError, match="no slot"):
        p.first_due(at("2026-11-17T08:00:00-05:00"), "L1")


# -- same-day steps and the no-catch-up rule -------------------------------------------------------------------


@pytest.mark.parametrize("lead", [f"L{i}" for i in range(20)])
def test_same_day_steps_keep_file_order_and_never_precede_each_other(lead: str) -> None:
    steps = [step("a", 1, at="15:00"), step("b", 1, "call"), step("c", 1, at="10:00"), step("d", 2)]
    p = make_planner(steps, defaults=SPREAD_45M)
    timeline = p.timeline(at("2026-11-17T08:00:00-05:00"), lead)
    dues = [due for _, _, due in timeline]
    assert [s.id for s, _, _ in timeline] == ["a", "b", "c", "d"]
    assert dues == sorted(dues)
    assert [day for _, day, _ in timeline] == [1, 1, 1, 2]
    first = dues[0].astimezone(p.calendar.tz)
    assert "15:00" <= first.strftime("%H:%M") < "15:45"
    assert dues[1] == dues[2] == dues[0]  # b and c may not go before a, and there is no reason to wait


def test_same_day_step_after_the_window_closed_moves_to_next_allowed_day() -> None:
    p = make_planner([step("call-1", 1, "call"), step("intro", 1)])
    done_late = at("2026-11-20T18:10:00-05:00")  # a Friday, after the window
    assert p.due_after(0, done_late, "L1") == at("2026-11-23T09:00:00-05:00")


@pytest.mark.parametrize(
    ("done", "expected"),
    [
        pytest.param("2026-11-16T09:40:00-05:00", "2026-11-18T09:00:00-05:00", id="done-on-day-1"),
        pytest.param("2026-11-17T11:00:00-05:00", "2026-11-19T09:00:00-05:00", id="done-on-day-2-moves-day-3-to-4"),
        pytest.param("2026-11-20T16:00:00-05:00", "2026-11-24T09:00:00-05:00", id="done-friday-skips-weekend"),
        pytest.param("2026-11-24T10:00:00-05:00", "2026-11-27T09:00:00-05:00", id="done-late-skips-thanksgiving"),
    ],
)
def test_no_catch_up_steps_are_spaced_from_when_the_previous_one_happened(done: str, expected: str) -> None:
    p = make_planner([step("call-1", 1, "call"), step("bump", 3)])
    assert local_first_due(p, "2026-11-16T08:00:00-05:00") == "2026-11-16T09:00:00-05:00"
    assert p.due_after(0, at(done), "L1") == at(expected)


def test_nothing_is_due_after_the_last_step() -> None:
    p = make_planner([step("a", 1), step("b", 2)])
    assert p.due_after(1, at("2026-11-17T09:00:00-05:00"), "L1") is None


def test_outbound_saas_timeline_across_thanksgiving() -> None:
    loaded, diags = load_sequence(ROOT / "sequences" / "outbound-saas.yaml", TemplateFolder(ROOT / "templates"))
    assert loaded is not None, diags
    calendar = planner.calendar_for(NO_SPREAD, loaded.spec.schedule, NY, "US")
    p = planner.Planner(loaded.spec, calendar, SMS_HOURS)
    timeline = p.timeline(at("2026-11-23T08:00:00-05:00"), "L1")
    shown = [(s.id, day, due.astimezone(calendar.tz).strftime("%a %m-%d %H:%M")) for s, day, due in timeline]
    assert shown == [
        ("intro", 1, "Mon 11-23 09:00"),
        ("call-1", 1, "Mon 11-23 09:00"),
        ("bump", 3, "Wed 11-25 09:00"),
        ("sms-1", 4, "Fri 11-27 10:30"),
        ("li-1", 5, "Mon 11-30 09:00"),
        ("case-study", 6, "Tue 12-01 09:00"),
        ("call-2", 7, "Wed 12-02 09:00"),
        ("value", 9, "Fri 12-04 09:00"),
        ("sms-2", 10, "Mon 12-07 09:00"),
        ("call-3", 11, "Tue 12-08 09:00"),
        ("li-2", 12, "Wed 12-09 09:00"),
        ("referral", 13, "Thu 12-10 09:00"),
        ("call-4", 14, "Fri 12-11 09:00"),
        ("breakup", 15, "Mon 12-14 09:00"),
    ]


# -- the per-lead spread ---------------------------------------------------------------------------------------


def test_spread_is_deterministic_per_lead() -> None:
    steps = [step("a", 1), step("b", 3)]
    enrolled = at("2026-11-17T08:00:00-05:00")
    first = make_planner(steps, defaults=SPREAD_45M).timeline(enrolled, "L42")
    planner._calendar.cache_clear()
    again = make_planner(steps, defaults=SPREAD_45M).timeline(enrolled, "L42")
    assert [due for _, _, due in first] == [due for _, _, due in again]
    # the same lead lands at the same minute every day, and in every process (a stable hash, not hash())
    assert [due.astimezone(zone(NY)).strftime("%a %H:%M:%S") for *_, due in first] == ["Tue 09:30:33", "Thu 09:30:33"]


def test_spread_differs_across_leads() -> None:
    p = make_planner([step("a", 1)], defaults=SPREAD_45M)
    enrolled = at("2026-11-17T08:00:00-05:00")
    dues = {p.first_due(enrolled, f"L{i}") for i in range(50)}
    assert len(dues) >= 45


@pytest.mark.parametrize(
    ("window", "latest"), [("09:00-17:00", "09:45:00"), ("09:00-09:10", "09:10:00")], ids=["45m", "window-shorter"]
)
def test_spread_is_never_outside_the_window_or_past_its_bound(window: str, latest: str) -> None:
    p = make_planner([step("a", 1)], defaults=SPREAD_45M, window=window)
    enrolled = at("2026-11-17T08:00:00-05:00")
    for i in range(1000):
        due = p.first_due(enrolled, f"L{i}").astimezone(p.calendar.tz)
        assert due.date() == date(2026, 11, 17)
        assert "09:00:00" <= due.strftime("%H:%M:%S") < latest


def test_ten_thousand_leads_do_not_all_land_on_the_same_second() -> None:
    p = make_planner([step("a", 1)], defaults=SPREAD_45M)
    enrolled = at("2026-11-17T08:00:00-05:00")
    per_second = Counter(p.first_due(enrolled, f"lead-{i}") for i in range(10_000))
    assert len(per_second) > 2000  # of the 2,700 seconds in 45 minutes
    assert max(per_second.values()) < 20


def test_immediate_step_is_not_spread() -> None:
    p = make_planner([step("a", 1, immediate=True)], defaults=SPREAD_45M)
    assert {p.first_due(at("2026-11-17T08:00:00-05:00"), f"L{i}") for i in range(20)} == {
        at("2026-11-17T09:00:00-05:00")
    }


# -- SMS quiet hours -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("hour", range(24))
def test_sms_is_never_due_in_quiet_hours_even_with_window_always(hour: int) -> None:
    steps = [step("sms-1", 1, "sms"), step("sms-2", 2, "sms", at="20:45"), step("sms-3", 3, "sms", at="06:00")]
    p = make_planner(steps, defaults=SPREAD_45M, window="always", days=EVERY_DAY, holidays="none")
    enrolled = datetime(2026, 11, 17, hour, 17, tzinfo=zone(NY))
    for lead in ("L1", "L2", "L3", "L4"):
        for _, _, due in p.timeline(enrolled, lead):
            local = due.astimezone(p.calendar.tz)
            assert "08:00" <= local.strftime("%H:%M") < "21:00", (hour, lead, local)
            assert due >= enrolled


def test_email_with_window_always_goes_at_once_at_night_but_sms_waits_for_morning() -> None:
    p = make_planner([step("email", 1), step("sms", 1, "sms")], window="always", days=EVERY_DAY)
    assert local_dues(p, "2026-11-17T22:30:00-05:00") == ["2026-11-17T22:30:00-05:00", "2026-11-18T08:00:00-05:00"]


def test_sms_step_whose_window_lies_inside_quiet_hours_is_refused() -> None:
    p = make_planner([step("sms", 1, "sms")], window="21:30-23:30")
    with pytest.raises(ValueError, match="quiet hours"):
        p.first_due(at("2026-11-17T08:00:00-05:00"), "L1")


# -- parsing the schedule's words ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("09:00-17:00", Window(540, 1020)), ("always", Window(0, 1440)), (" 9:30 - 24:00 ", Window(570, 1440))],
)
def test_window_parses(text: str, expected: Window) -> None:
    assert Window.parse(text) == expected


@pytest.mark.parametrize("text", ["9-17", "17:00-09:00", "09:00-09:00", "25:00-26:00", "09:60-17:00", "24:30-25:00"])
def test_window_refuses_impossible_or_overnight_windows(text: str) -> None:
    with pytest.raises(ValueError, match="window"):
        Window.parse(text)


def test_quiet_hours_are_the_complement_of_the_sms_window() -> None:
    assert quiet_window("21:00-08:00") == Window(480, 1260)
    with pytest.raises(ValueError, match="span midnight"):
        quiet_window("08:00-21:00")
