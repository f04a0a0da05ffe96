"""Four workers share 10,000 due touches, half email to aiosmtpd and half SMS to the Twilio-shaped server.

test_concurrent_workers.py proves exactly-once for 2,000 emails; this is the same promise at
the size issue 15 names, on both channels at once: four `cadence run --once` processes drain
one PostgreSQL database in contended batches, and each server receives each touch once.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from tests.faults.helpers import RUN_AT, Lab, later

pytestmark = [pytest.mark.faults, pytest.mark.postgres]

EMAILS = 5_000
SMS = 5_000
WORKERS = 4
BATCH = 200  # engine.batch_size's default: 50 batches for four workers, so every claim contends


def test_four_workers_send_ten_thousand_due_touches_exactly_once(lab: Lab) -> None:
    lab.configure(connections=4, batch_size=BATCH)
    started = time.monotonic()
    seeded = lab.seed(emails=EMAILS, sms=SMS)
    seeding = time.monotonic() - started

    reports = lab.run_once_procs(WORKERS, RUN_AT, timeout=180)
    running = time.monotonic() - started - seeding

    outcome = lab.check(seeded, later(RUN_AT, minutes=5))
    assert outcome.statuses == Counter({"sent": EMAILS + SMS})  # no fault here: nothing is even unknown
    assert lab.sink.count == EMAILS and lab.twilio.count == SMS
    sent = [Counter(r["dispatch"]["sent"]) for r in reports]
    assert sum(sent, Counter()) == Counter({"email": EMAILS, "sms": SMS})
    assert all(s.total() for s in sent), sent  # all four took part
    print(f"seeded {EMAILS + SMS} in {seeding:.1f}s; {WORKERS} workers sent {sent} in {running:.1f}s")
