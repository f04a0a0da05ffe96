"""The workers' database connections are terminated during claims and during records; the workers carry on.

Two real `cadence run` processes send 200 emails and 200 SMS while a separate admin
connection calls `pg_terminate_backend` on their connections. To land inside a claim or a
record, and not wherever luck puts it, a test trigger holds the first row a transaction
claims (the INSERT of `sending` touches) and the first claim a transaction settles (the
record's guarded UPDATE) for a moment, and the terminator aims at a worker backend only
while it waits there (`pg_stat_activity.wait_event = 'PgSleep'`), named by its statement.
The triggers hold only the workers' connections (PGAPPNAME) and are dropped afterwards.

A claim cut off is rolled back whole (nothing sent); a record cut off is retried (the
messages are out). The workers must stay up and exit 0 on SIGTERM; each touch ends `sent`,
or `unknown` and listed, and no server sees a message twice.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text

from tests.faults.helpers import RUN_AT, WORKER_APP_NAME, Lab, later, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.postgres]

EMAILS = 200
SMS = 200
WORKERS = 2
BATCH = 20
HOLD_SECONDS = 0.2  # how long a held claim or record waits where the terminator can find it
KILLS = 4  # terminations of each kind: claims (about 20) and records (about 20) outlast them
PAUSE = 0.2  # seconds between two terminations, so the workers make progress in between

UNHOLD = """
DROP TRIGGER IF EXISTS fault_hold_claim ON touch;
DROP TRIGGER IF EXISTS fault_hold_record ON touch;
DROP FUNCTION IF EXISTS fault_hold();
"""

HOLD = f"""
CREATE OR REPLACE FUNCTION fault_hold() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF current_setting('application_name') = '{WORKER_APP_NAME}'
     AND current_setting('fault.held', true) IS DISTINCT FROM 'yes' THEN
    PERFORM set_config('fault.held', 'yes', true);  -- once a transaction
    PERFORM pg_sleep({HOLD_SECONDS});
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER fault_hold_claim AFTER INSERT ON touch
  FOR EACH ROW WHEN (NEW.status = 'sending') EXECUTE FUNCTION fault_hold();
CREATE TRIGGER fault_hold_record AFTER UPDATE ON touch
  FOR EACH ROW WHEN (OLD.status = 'sending' AND OLD.claimed_by IS NOT NULL AND NEW.claimed_by IS NULL)
  EXECUTE FUNCTION fault_hold();
"""
HELD = text(
    "SELECT pid, query FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
    "AND application_name = :app AND wait_event = 'PgSleep'"
)


@contextmanager
def held_claims_and_records(db_url: str) -> Iterator[None]:
    engine = create_engine(db_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(UNHOLD + HOLD)  # a run that was cut short may have left them
        yield
    finally:
        with engine.connect() as conn:
            conn.exec_driver_sql(UNHOLD)
        engine.dispose()


class Terminator(threading.Thread):
    """Terminates worker backends held in a claim or a record, KILLS of each, PAUSE apart."""

    def __init__(self, db_url: str):
        super().__init__(name="pg-terminator", daemon=True)
        self.db_url = db_url
        self.done = threading.Event()
        self.kills: Counter[str] = Counter()
        self.error: BaseException | None = None

    def run(self) -> None:
        engine = create_engine(self.db_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                last = 0.0
                while not self.done.is_set() and min(self.kills["claim"], self.kills["record"]) < KILLS:
                    time.sleep(0.005)
                    if time.monotonic() - last < PAUSE:
                        continue
                    for pid, query in conn.execute(HELD, {"app": WORKER_APP_NAME}).all():
                        kind = "claim" if query.lstrip().upper().startswith("INSERT") else "record"
                        if self.kills[kind] >= KILLS:
                            continue
                        if conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar():
                            self.kills[kind] += 1
                            last = time.monotonic()
                            break
        except BaseException as exc:  # reported by the test, never lost in a thread
            self.error = exc
        finally:
            engine.dispose()


def test_workers_survive_terminated_connections_during_claims_and_records(lab: Lab) -> None:
    lab.configure(batch_size=BATCH, interval_seconds=0.2)
    seeded = lab.seed(emails=EMAILS, sms=SMS)
    terminator = Terminator(lab.db_url)
    with held_claims_and_records(lab.db_url):
        procs = lab.workers(WORKERS, RUN_AT)
        terminator.start()
        try:
            wait_until(
                lambda: not terminator.is_alive() or lab.drained(RUN_AT, procs),
                120,
                f"{KILLS} terminations during claims and {KILLS} during records",
            )
        finally:
            terminator.done.set()
            terminator.join(timeout=10)
        assert terminator.error is None, terminator.error
        assert terminator.kills == Counter({"claim": KILLS, "record": KILLS}), "the work ran out first"
        assert all(p.poll() is None for p in procs), "a worker died of a terminated connection"
        lab.wait_drained(RUN_AT, procs)
        errs = lab.stop(procs)

    outcome = lab.check(seeded, later(RUN_AT, minutes=5))
    assert lab.sink.count + lab.twilio.count >= outcome.statuses["sent"]
    print(
        f"terminated {dict(terminator.kills)}; {dict(outcome.statuses)}; "
        f"worker logs mention {sum(e.count('terminat') for e in errs)} terminations"
    )
