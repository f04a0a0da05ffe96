"""The Twilio-shaped server answers 500, then 429 with Retry-After, for a while, then recovers.

300 due SMS. The fake fails the next 450 requests (150 with 500, then 300 with 429 and
Retry-After: 1) whoever they are for, then accepts everything. Pass 1, two `cadence run --once`
processes at once, meets only failures: every SMS waits for its retry. Pass 2, two minutes
later, meets the last 150 failures and gets 150 through; pass 3 sends the rest. Both answers
are transient for the engine (retried with backoff, inside the window, up to
engine.max_attempts); none of them reached the server, so nothing may be sent twice, and each
SMS is sent exactly once in the end, its attempts counted.
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.faults.helpers import RUN_AT, Lab, later

pytestmark = [pytest.mark.faults, pytest.mark.postgres]

SMS = 300
SERVER_ERRORS = 150
THROTTLED = 300
WORKERS = 2


def test_sms_through_a_twilio_outage_is_retried_and_sent_exactly_once(lab: Lab) -> None:
    lab.configure(batch_size=25, max_attempts=5, backoff_seconds=1)
    seeded = lab.seed(sms=SMS)
    lab.twilio.fail_next(SERVER_ERRORS, 500, 20500)
    lab.twilio.fail_next(THROTTLED, 429, 20429, retry_after=1)

    first = lab.run_once_procs(WORKERS, RUN_AT)
    assert sum(r["dispatch"]["retrying"] for r in first) == SMS and lab.twilio.count == 0
    assert lab.twilio.failures_left == SERVER_ERRORS + THROTTLED - SMS
    waiting = lab.touches().values()  # each waits for its retry, with Twilio's answer as the reason
    assert {row["status"] for row in waiting} == {"scheduled"}
    assert Counter(row["error"].rpartition("(code ")[2] for row in waiting) == Counter(
        {"20500)": SERVER_ERRORS, "20429)": SMS - SERVER_ERRORS}
    )

    second = lab.run_once(later(RUN_AT, minutes=2))
    through = 2 * SMS - (SERVER_ERRORS + THROTTLED)  # pass 2 asks again for all 300; the last 150 failures go first
    assert second["dispatch"]["sent"] == {"sms": through} and lab.twilio.count == through
    assert lab.twilio.failures_left == 0

    third = lab.run_once(later(RUN_AT, minutes=4))  # past every retry's backoff
    assert third["dispatch"]["sent"] == {"sms": SMS - through}

    outcome = lab.check(seeded, later(RUN_AT, minutes=10))
    assert outcome.statuses == Counter({"sent": SMS})
    assert lab.twilio.count == SMS and lab.twilio.requests == SMS + SERVER_ERRORS + THROTTLED
    # Each failed answer cost its touch one attempt: 300 failed once, 150 of them twice.
    assert Counter(row["attempts"] for row in outcome.touches.values()) == Counter({2: 150, 3: 150})
