"""Several workers claiming from one store never claim the same enrollment twice.

`Dispatcher.claim` is the one place where due work becomes a `sending` touch. On
PostgreSQL it locks with `FOR UPDATE SKIP LOCKED`, so concurrent workers take disjoint
batches; on SQLite the IMMEDIATE transaction makes them take turns. Either way each due
enrollment yields exactly one touch, claimed by exactly one worker. Claiming does not
touch the transports, so none are given.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select

from cadence.app import App
from cadence.clock import parse_instant
from cadence.engine.dispatcher import Dispatcher, PassReport
from cadence.enrollment.enroll import enroll
from cadence.enrollment.lead_import import import_leads
from cadence.store.tables import EnrollmentT, TouchT
from tests.conftest import make_app

N = 300
ENROLL_AT = "2026-11-30T08:00:00-05:00"  # a Monday, before the window opens
CLAIM_AT = "2026-11-30T10:00:00-05:00"  # inside the 09:00-17:00 window, after every first touch is due
ONE_EMAIL = (
    "id: claim-race\nname: Claim race\nkind: outbound\nsteps:\n"
    "  - {id: only, day: 1, channel: email, subject: hi, template: outbound-saas/bump.md.j2}\n"
)


def _prepare(project: Path, db_url: str, daily_cap: int = 100_000) -> set[int]:
    """N due enrollments; caps raised so none is deferred (unless told), small batches so workers contend."""
    config = yaml.safe_load((project / "config.yaml").read_text())
    for sender in config["senders"]:
        sender.update(per_minute=100_000, daily_cap=daily_cap)
    config["limits"] = {"per_lead_daily": 10}
    config["engine"]["batch_size"] = 10
    (project / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (project / "sequences" / "claim-race.yaml").write_text(ONE_EMAIL)
    app = make_app(project, db_url, ENROLL_AT)
    try:
        rows: list[tuple[int, dict[str, str | None]]] = [
            (
                i + 2,
                {
                    "id": f"C{i:04d}",
                    "email": f"lead{i}@race.example",
                    "first_name": f"Lead{i}",
                    "company": "Race",
                    "owner": ("alice", "bob")[i % 2],
                    "timezone": "America/New_York",
                    "country": "US",
                },
            )
            for i in range(N)
        ]
        imported = import_leads(app.engine, rows, app.settings, app.clock.now())
        assert imported.rejected == [] and imported.imported == N
        report = enroll(app, "claim-race", [lead["id"] for _, lead in rows])  # type: ignore[misc]
        assert report.refused == [] and len(report.enrolled) == N
        claim_at = parse_instant(CLAIM_AT)
        with app.engine.connect() as conn:
            due: dict[int, datetime] = dict(conn.execute(select(EnrollmentT.c.id, EnrollmentT.c.next_due_at)).all())
        assert len(due) == N and max(due.values()) <= claim_at  # all due when the workers start
        return set(due)
    finally:
        app.close()


def _race(project: Path, db_url: str, workers: int, pause: float = 0.0) -> tuple[dict[str, list[int]], PassReport]:
    """Run `workers` threads, each with its own App, claiming until nothing is returned.

    `pause` stands for the send phase between two claims, when a real worker holds no lock.
    """
    claimed: dict[str, list[int]] = {f"w{i}": [] for i in range(workers)}
    total = PassReport()
    errors: list[BaseException] = []
    start = threading.Barrier(workers)
    lock = threading.Lock()

    def work(worker_id: str) -> None:
        app: App | None = None
        try:
            app = make_app(project, db_url, CLAIM_AT)
            _ = app.engine, app.catalog  # connect and migrate-check before the race starts
            dispatcher = Dispatcher(app, None, None, worker_id)  # type: ignore[arg-type]
            start.wait(timeout=30)
            while True:
                report = PassReport()
                jobs = dispatcher.claim(app.clock.now(), report)
                with lock:
                    total.merge(report)
                if report.claimed == report.deferred == report.skipped == 0:
                    break  # nothing due is left
                claimed[worker_id].extend(job.enrollment.id for job in jobs)
                time.sleep(pause)
        except BaseException as exc:  # handed to the test thread, which re-raises it
            start.abort()
            errors.append(exc)
        finally:
            if app is not None:
                app.close()

    threads = [threading.Thread(target=work, args=(worker,)) for worker in claimed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    if errors:
        raise errors[0]
    return claimed, total


def _assert_claimed_exactly_once(db_url: str, project: Path, due: set[int], claimed: dict[str, list[int]]) -> None:
    every = [enrollment for ids in claimed.values() for enrollment in ids]
    assert len(every) == len(set(every)) == N  # no enrollment claimed by two workers, or twice by one
    assert set(every) == due
    app = make_app(project, db_url, CLAIM_AT)
    try:
        with app.engine.connect() as conn:
            per_enrollment = Counter(conn.execute(select(TouchT.c.enrollment_id)).scalars())
            by_worker: dict[str, int] = dict(
                conn.execute(select(TouchT.c.claimed_by, func.count()).group_by(TouchT.c.claimed_by)).all()
            )
            owners = {eid: w for eid, w in conn.execute(select(TouchT.c.enrollment_id, TouchT.c.claimed_by))}
            statuses = set(conn.execute(select(TouchT.c.status)).scalars())
            still_due = conn.execute(select(func.count()).where(EnrollmentT.c.next_due_at.is_not(None))).scalar()
            unlinked = conn.execute(
                select(func.count())
                .select_from(EnrollmentT.join(TouchT, TouchT.c.id == EnrollmentT.c.pending_touch_id))
                .where(TouchT.c.enrollment_id == EnrollmentT.c.id)
            ).scalar()
    finally:
        app.close()
    assert set(per_enrollment) == due and set(per_enrollment.values()) == {1}  # one touch row per enrollment
    assert sum(by_worker.values()) == N
    assert by_worker == {worker: len(ids) for worker, ids in claimed.items() if ids}
    assert all(owners[eid] == worker for worker, ids in claimed.items() for eid in ids)
    assert statuses == {"sending"}
    assert still_due == 0
    assert unlinked == N  # each enrollment points at its own touch


@pytest.mark.postgres
def test_concurrent_workers_claim_each_enrollment_once_on_postgresql(project: Path, pg_url: str) -> None:
    due = _prepare(project, pg_url)
    claimed, report = _race(project, pg_url, workers=4)
    assert report.claimed == N and report.skipped == report.deferred == 0
    _assert_claimed_exactly_once(pg_url, project, due, claimed)
    # The workers really overlapped: SKIP LOCKED shared the work instead of one worker taking it all.
    assert sum(1 for ids in claimed.values() if ids) >= 2


def test_concurrent_workers_claim_each_enrollment_once_on_sqlite(project: Path, sqlite_url: str) -> None:
    due = _prepare(project, sqlite_url)
    # Without a pause the writer that holds the lock re-takes it at once and the other one
    # starves until the end; with it the two take turns, as `cadence run` processes do.
    claimed, report = _race(project, sqlite_url, workers=2, pause=0.005)
    assert report.claimed == N and report.skipped == report.deferred == 0
    _assert_claimed_exactly_once(sqlite_url, project, due, claimed)


@pytest.mark.postgres
def test_concurrent_claims_never_overshoot_a_mailboxs_daily_cap_together(project: Path, pg_url: str) -> None:
    """Claims take turns on PostgreSQL, so each counts what the others claimed, committed or not yet sent."""
    cap = 30  # per mailbox: 60 of the 300 may go today
    _prepare(project, pg_url, daily_cap=cap)
    claimed, report = _race(project, pg_url, workers=4)
    assert report.claimed == 2 * cap and report.deferred == N - 2 * cap
    app = make_app(project, pg_url, CLAIM_AT)
    try:
        with app.engine.connect() as conn:
            per_sender = dict(conn.execute(select(TouchT.c.sender, func.count()).group_by(TouchT.c.sender)).all())
    finally:
        app.close()
    assert per_sender == {"alice": cap, "bob": cap}
    assert sum(1 for ids in claimed.values() if ids) >= 2  # the workers really shared the claims
