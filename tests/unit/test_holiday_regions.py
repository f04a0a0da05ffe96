"""Holidays by subdivision: a lead keeps the public holidays of its own region (lead.region, ISO 3166-2),
else config.yaml's `region` for leads of that country, else its country's, with England and Wales
standing for GB (Easter Monday is a holiday in London, not in Edinburgh).
"""

from __future__ import annotations

from datetime import datetime

import pytest

from cadence.config import Settings
from cadence.plan import planner
from cadence.spec.model import Sequence

EASTER_MONDAY_2027 = "2027-03-29"
ONE_EMAIL = Sequence.model_validate(
    {"id": "s", "name": "s", "steps": [{"id": "a", "day": 1, "channel": "email", "subject": "x", "template": "t"}]}
)


@pytest.mark.parametrize(
    ("config_region", "country", "region", "calendar"),
    [
        (None, "GB", None, "GB-ENG"),  # England and Wales, not the UK-wide calendar that lacks Easter Monday
        (None, "GB", "GB-SCT", "GB-SCT"),
        (None, "US", None, "US"),
        ("US-CA", "US", None, "US-CA"),  # config's default region, for leads of its country
        ("US-CA", "GB", None, "GB-ENG"),  # ... and only for them
        ("US-CA", "US", "US-NY", "US-NY"),  # the lead's own region wins
        (None, None, None, "US"),  # no country: config's
    ],
)
def test_a_lead_keeps_the_holidays_of_its_region(
    config_region: str | None, country: str | None, region: str | None, calendar: str
) -> None:
    settings = Settings(region=config_region)
    assert settings.holiday_calendar_of(country, region) == calendar


@pytest.mark.parametrize(("region", "first_touch"), [("GB-ENG", "2027-03-30"), ("GB-SCT", EASTER_MONDAY_2027)])
def test_easter_monday_moves_a_london_touch_but_not_an_edinburgh_one(region: str, first_touch: str) -> None:
    calendar = planner.calendar_for(planner.ScheduleDefaults(spread="0"), ONE_EMAIL.schedule, "Europe/London", region)
    plan = planner.Planner(ONE_EMAIL, calendar)
    enrolled = datetime.fromisoformat(f"{EASTER_MONDAY_2027}T07:00:00+01:00")
    assert calendar.local_date(plan.first_due(enrolled, "L1")).isoformat() == first_touch


def test_config_refuses_a_region_that_is_not_a_subdivision() -> None:
    with pytest.raises(ValueError, match="ISO 3166-2"):
        Settings(region="GB")
    with pytest.raises(ValueError, match="holiday calendar"):
        Settings(region="US-XX")
