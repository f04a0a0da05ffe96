"""The SMTP server goes down in the middle of a run and comes back on the same port: nothing twice, nothing lost.

Two real `cadence run` processes send 300 due emails to the sink, which stops (listener
closed, every connection dropped) once a third has arrived, stays down for a moment, and
starts again on the same port. Messages cut off during DATA may be out: they become `unknown`.
Messages refused before DATA are transient failures: they wait for their retry, always inside
the window. The same worker processes then send 100 more due emails over fresh connections to
the restarted server, and passes at later moments of the day send the retries. Each message
reaches the server at most once, and each touch ends `sent` or `unknown` (and listed).
"""

from __future__ import annotations

import time

import pytest

from tests.faults.helpers import RUN_AT, Lab, later

pytestmark = [pytest.mark.faults, pytest.mark.postgres]

EMAILS = 300
MORE = 100  # enrolled while the server is back: the running workers must reconnect to send them
WORKERS = 2
BATCH = 20
REPLY_DELAY = 0.01
DOWN_SECONDS = 1.0


def test_smtp_server_restarted_mid_run_sends_each_email_at_most_once_and_retries_the_rest(lab: Lab) -> None:
    lab.configure(batch_size=BATCH, max_attempts=5, backoff_seconds=1)
    seeded = lab.seed(emails=EMAILS)
    lab.sink.slow_down(REPLY_DELAY)
    procs = lab.workers(WORKERS, RUN_AT)

    lab.sink.wait_until(lambda: lab.sink.count >= EMAILS // 3, 60, what="a third of the emails")
    port = lab.sink.port
    lab.sink.stop()
    time.sleep(DOWN_SECONDS)  # the workers meet a refused connection (the outage itself is what is tested)
    assert all(p.poll() is None for p in procs), "a worker died while the server was down"
    before_restart = lab.sink.connections  # connections are numbered on, across the restart
    lab.sink.start()
    assert lab.sink.port == port
    lab.sink.slow_down(0)

    more = lab.seed(emails=MORE, first=EMAILS)
    lab.wait_drained(RUN_AT, procs)
    lab.stop(procs)
    # The same processes sent the new emails, over connections they opened to the restarted server.
    fresh = [m for m in lab.sink.received if m.rcpt_tos[0] in more.emails.values()]
    assert len(fresh) == MORE and min(m.connection for m in fresh) > before_restart

    # The retries are due a little later (engine.backoff_seconds, doubled each attempt): later passes send them.
    for minutes in (2, 4, 8):
        lab.run_once(later(RUN_AT, minutes=minutes))
    outcome = lab.check(seeded.joined(more), later(RUN_AT, minutes=15))
    retried = {t for t, row in outcome.touches.items() if row["attempts"] > 1}
    assert retried, "no email met the outage: the server went down after the work was done"
    assert outcome.with_status("sent") >= retried  # the server came back, so every retry went out
    print(
        f"outage: {len(retried)} emails retried, {len(outcome.with_status('unknown'))} unknown (cut off in DATA), "
        f"{outcome.statuses['sent']} sent"
    )
