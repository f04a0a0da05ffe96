"""CADENCE_NOW moved back and forth across runs: no message outside its lead's window, none twice, none lost.

40 leads in four zones (New York, Los Angeles, London, Tokyo) run a four-message sequence
(email, SMS, email in the same thread, SMS over three business days, in a 09:00-17:00 window
on weekdays) by email to aiosmtpd and SMS to the Twilio-shaped server. `cadence run --once`
first runs at moments picked to hurt: back and forth across days, on window edges (08:59,
17:00 exactly), before the enrollment, on a Saturday. Then the clock walks forward on a
three-hour grid, jumping over stretches where nothing is due, and after each pass that sent
something it steps back a grid step and runs again, until every message is out.

Every message's moment (the touch's sent_at) must fall inside the window in the lead's own
zone, on a weekday that is not a holiday there, and no server may see a message twice. A pass
drains everything due at its moment (caps are raised here), so a pass at a moment before one
already run finds nothing due: it must send nothing, and in particular nothing again.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import holidays
import pytest
import yaml
from sqlalchemy import func, select

from cadence.store.tables import EnrollmentT
from tests.faults.helpers import EMAIL_SEQUENCE, ZONES, Lab

pytestmark = [pytest.mark.faults, pytest.mark.postgres]

LEADS = 40
SEQUENCE = """\
id: clockwork
name: Clockwork
kind: outbound
schedule: {window: "09:00-17:00", days: [mon, tue, wed, thu, fri], holidays: lead, spread: 45m}
steps:
  - {id: hello, day: 1, channel: email, subject: hello, template: outbound-saas/bump.md.j2}
  - {id: text, day: 1, at: "13:00", channel: sms, template: outbound-saas/sms-1.txt.j2}
  - {id: again, day: 2, channel: email, reply_to: hello, template: outbound-saas/bump.md.j2}
  - {id: last-text, day: 3, at: "11:00", channel: sms, template: outbound-saas/sms-2.txt.j2}
  - {id: check-in, day: 60, channel: task, title: Check in}
"""
MESSAGES = 4  # the steps before the task, months away
ENROLL_AT = "2026-12-07T00:00:00+00:00"  # Monday: 09:00 in Tokyo, Sunday evening in the Americas
JUMPS = (  # UTC, in this order; what each moment is for the leads' zones
    "2026-12-08T15:00:00+00:00",  # Tue: 10:00 New York, 15:00 London (a day late: Monday's work goes now)
    "2026-12-07T03:00:00+00:00",  # back to Mon: 12:00 Tokyo
    "2026-12-06T12:00:00+00:00",  # Sunday, before the enrollment
    "2026-12-09T09:30:00+00:00",  # Wed: 09:30 London
    "2026-12-07T08:59:00+00:00",  # back to Mon: 08:59 London (a minute early), 17:59 Tokyo (closed)
    "2026-12-07T17:00:00+00:00",  # 17:00 London exactly (closed), 12:00 New York, 09:00 Los Angeles
    "2026-12-12T15:00:00+00:00",  # Saturday: nothing may go; what is due waits for a weekday
    "2026-12-07T22:00:00+00:00",  # back to Mon: 17:00 New York (closed), 14:00 Los Angeles
    "2026-12-08T01:00:00+00:00",  # 17:00 Los Angeles (closed), Tue 10:00 Tokyo
    "2026-12-07T14:44:00+00:00",  # back to Mon: 09:44 New York
    "2026-12-10T03:00:00+00:00",  # Thu: 12:00 Tokyo
    "2026-12-08T12:00:00+00:00",  # back to Tue: 12:00 London
)
GRID = timedelta(hours=3)  # the forward walk: every window holds at least two grid moments in every zone
MAX_STEPS = 60


def _sent(report: dict[str, Any]) -> int:
    return sum(report["dispatch"]["sent"].values())


def _walk_forward(lab: Lab) -> tuple[datetime, int]:
    """Passes on the three-hour grid from the enrollment on, skipping to where something is due, each productive
    one followed by a pass a grid step earlier that must send nothing; the last moment, and the passes run."""
    grid_start = datetime.fromisoformat(ENROLL_AT)
    now = grid_start
    for walked in range(MAX_STEPS):
        pending = select(func.min(EnrollmentT.c.next_due_at)).where(
            EnrollmentT.c.state == "active", EnrollmentT.c.next_index < MESSAGES
        )
        due: datetime | None = lab.query(pending)[0][0]
        if due is None:
            return now, walked
        steps = max(1, -(-(max(due, now + GRID) - grid_start) // GRID))  # the next grid moment at or after `due`
        now = grid_start + steps * GRID
        if _sent(lab.run_once(now.isoformat())):
            back = (now - GRID).isoformat()
            assert _sent(lab.run_once(back)) == 0, f"a pass at {back}, after one at {now}, sent something"
    raise AssertionError(f"messages still due after {MAX_STEPS} forward passes")


def _outside_window(row: dict[str, object], window: tuple[time, time], days: set[int]) -> str | None:
    sent_at = row["sent_at"]
    assert isinstance(sent_at, datetime) and isinstance(row["zone"], str) and isinstance(row["country"], str)
    local = sent_at.astimezone(ZoneInfo(row["zone"]))
    if local.weekday() not in days:
        return f"on a {local:%A}"
    if local.date() in holidays.country_holidays(row["country"], years=local.year):
        return "on a holiday"
    if not window[0] <= local.time() < window[1]:
        return "outside the window"
    if row["channel"] == "sms" and not time(8) <= local.time() < time(21):
        return "in SMS quiet hours"
    return None


def test_clock_moved_back_and_forth_never_sends_outside_the_window_or_twice(lab: Lab) -> None:
    lab.configure(batch_size=50, sequences={"clockwork": SEQUENCE})
    seeded = lab.seed(sms=LEADS, zones=tuple(ZONES), sequences=(EMAIL_SEQUENCE, "clockwork"), at=ENROLL_AT)

    sent_by_jump = [_sent(lab.run_once(moment)) for moment in JUMPS]
    assert sent_by_jump[6] == 0  # Saturday
    latest = [max(JUMPS[: i + 1], key=datetime.fromisoformat) for i in range(len(JUMPS))]
    went_back = [n for n, moment, seen in zip(sent_by_jump, JUMPS, latest, strict=True) if moment != seen]
    assert went_back and not any(went_back), sent_by_jump  # behind a moment already run, nothing is due
    assert sum(sent_by_jump) > 0
    last, walked = _walk_forward(lab)

    outcome = lab.check(seeded, (last + timedelta(hours=1)).isoformat())
    messages = {t: row for t, row in outcome.touches.items() if row["step_index"] < MESSAGES}
    assert Counter(row["status"] for row in messages.values()) == Counter({"sent": LEADS * MESSAGES})

    schedule = yaml.safe_load(SEQUENCE)["schedule"]
    opens, closes = (time.fromisoformat(part) for part in schedule["window"].split("-"))
    days = {("mon", "tue", "wed", "thu", "fri", "sat", "sun").index(d) for d in schedule["days"]}
    outside = {t: why for t, row in messages.items() if (why := _outside_window(row, (opens, closes), days))}
    assert not outside, {t: (messages[t]["sent_at"], messages[t]["zone"], why) for t, why in outside.items()}

    # Each lead's messages went in step order, each on its own local day as the sequence says.
    for lead_id in seeded.lead_ids:
        mine = sorted((row for row in messages.values() if row["lead_id"] == lead_id), key=lambda r: r["step_index"])
        stamps = [row["sent_at"] for row in mine]
        assert stamps == sorted(stamps), lead_id
        zone = ZoneInfo(mine[0]["zone"])
        hello, text, again, last_text = (row["sent_at"].astimezone(zone).date() for row in mine)
        assert hello <= text < again < last_text, (lead_id, hello, text, again, last_text)
    print(f"sent per jump {sent_by_jump}; walked forward {walked} steps to {last.astimezone(UTC):%a %d %H:%M}Z")
