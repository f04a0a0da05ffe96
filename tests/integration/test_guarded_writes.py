"""Every state change is a compare-and-set: a stale writer changes nothing, on SQLite and PostgreSQL.

The story that made this necessary: worker A sends the intro, then stalls past its
lease; the sweep releases the touch; worker B claims it and sends it; then A records
late. Before the guards, A's late record marked the intro sent again and moved the
enrollment a second time, so call-1 was claimed twice and a touch was left `sending`.
Now A's result is dropped (B's claim is newer), and each transition below refuses a
writer that expects a state the row has left.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, exc, select

from cadence.app import App
from cadence.channels.email import make_email_transport
from cadence.channels.sms import make_sms_transport
from cadence.clock import FixedClock, parse_instant
from cadence.engine.dispatcher import Dispatcher
from cadence.engine.jobs import Job, PassReport
from cadence.engine.record import RECORD_ATTEMPTS, record_batch
from cadence.engine.retry import retry
from cadence.engine.sweep import sweep
from cadence.enrollment.enroll import enroll
from cadence.enrollment.lead_import import import_leads
from cadence.names import EnrollmentState, TouchStatus
from cadence.outcomes.dispositions import DispositionError, log_disposition
from cadence.store import claims, enrollments, recycles, tasks, touches
from cadence.store.enrollments import Move
from cadence.store.tables import EnrollmentT, HistoryT, TouchT
from cadence.store.touches import Result
from tests.conftest import make_app
from tests.smtp_sink import SmtpSink, point_project_at

ENROLL_AT = "2026-11-30T08:00:00-05:00"  # a Monday, before the window opens
SEND_AT = "2026-11-30T10:00:00-05:00"  # the intro (09:00 plus at most 45m of spread) is due
LEASE = 60


@pytest.fixture
def opened() -> Iterator[list[App]]:
    """Apps a test opens; each is closed at the end, so no pooled connection outlives its test."""
    apps: list[App] = []
    yield apps
    for application in apps:
        application.close()


def _open(project: Path, db_url: str, smtp_sink: SmtpSink, opened: list[App], *, resend: bool) -> App:
    point_project_at(project, smtp_sink, connections=1, engine={"lease_seconds": LEASE, "resend_unknown": resend})
    application = make_app(project, db_url, ENROLL_AT)
    opened.append(application)
    row = {"id": "L1", "email": "ann@northwind.example", "first_name": "Ann", "company": "Northwind"}
    local = {"owner": "alice", "timezone": "America/New_York", "country": "US"}
    imported = import_leads(application.engine, [(2, {**row, **local})], application.settings, application.clock.now())
    assert imported.imported == 1
    assert enroll(application, "outbound-saas", ["L1"]).refused == []
    return application


@pytest.fixture
def app(project: Path, db_url: str, smtp_sink: SmtpSink, opened: list[App]) -> App:
    return _open(project, db_url, smtp_sink, opened, resend=False)


def _clock(app: App) -> FixedClock:
    assert isinstance(app.clock, FixedClock)
    return app.clock


def _worker(app: App, name: str) -> Dispatcher:
    return Dispatcher(
        app, make_email_transport(app.settings, app.clock), make_sms_transport(app.settings, app.clock), name
    )


def _touches(app: App) -> list[dict[str, object]]:
    with app.engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(TouchT).order_by(TouchT.c.id)).mappings()]


async def _a_sends_then_stalls(app: App) -> tuple[Dispatcher, list[Job], PassReport]:
    """Worker A claims and sends the intro, then stalls until its lease has run out."""
    _clock(app).set(parse_instant(SEND_AT))
    a = _worker(app, "worker-A")
    report = PassReport()
    jobs = a.claim(app.clock.now(), report)
    assert [j.step.id for j in jobs] == ["intro"]
    await a.render_and_send(jobs)
    assert jobs[0].error is None
    _clock(app).set(parse_instant(SEND_AT) + timedelta(seconds=LEASE + 5))
    return a, jobs, report


async def _close(*workers: Dispatcher) -> None:
    for w in workers:
        await w.email.aclose()
        await w.sms.aclose()


def _then_the_sequence_goes_on_once(app: App) -> None:
    """Later passes open call-1 exactly once, and nothing is left `sending`."""

    async def later() -> None:
        c = _worker(app, "worker-C")
        for hours in (1, 2, 3):
            _clock(app).set(parse_instant(SEND_AT) + timedelta(hours=hours))
            await c.drain()
        await _close(c)

    asyncio.run(later())
    rows = _touches(app)
    assert [r["step_id"] for r in rows] == ["intro", "call-1"]
    assert [r["status"] for r in rows] == [TouchStatus.SENT, TouchStatus.TASK_OPEN]
    assert all(r["claimed_by"] is None for r in rows)


def test_a_late_worker_records_nothing_over_the_claim_that_resent_its_touch(
    project: Path, db_url: str, smtp_sink: SmtpSink, opened: list[App]
) -> None:
    app = _open(project, db_url, smtp_sink, opened, resend=True)

    async def story() -> tuple[PassReport, PassReport]:
        a, jobs, report_a = await _a_sends_then_stalls(app)
        assert sweep(app, app.clock.now()).resent == 1  # resend_unknown: the operator accepted a duplicate
        b = _worker(app, "worker-B")
        report_b = await b.run_batch()
        await record_batch(app, "worker-A", jobs, report_a, backoff=0)  # A wakes up and records late
        await _close(a, b)
        return report_a, report_b

    report_a, report_b = asyncio.run(story())
    assert report_b.sent["email"] == 1
    assert report_a.dropped == 1 and report_a.sent["email"] == 0
    intro = _touches(app)[0]
    assert (intro["status"], intro["claimed_by"], intro["attempts"]) == (TouchStatus.SENT, None, 1)
    # Two deliveries by the operator's own choice (resend_unknown), one Message-ID, so a receiver can dedupe.
    assert smtp_sink.count == 2 and len(set(smtp_sink.message_ids)) == 1
    with app.engine.connect() as conn:
        sent_rows = conn.execute(
            select(HistoryT.c.detail).where(HistoryT.c.lead_id == "L1", HistoryT.c.kind == "touch")
        ).scalars()
        assert [d.get("status") for d in sent_rows] == ["unknown", "sent"]
    _then_the_sequence_goes_on_once(app)


def test_a_slow_worker_settles_its_unknown_touch_when_nobody_claimed_it_since(app: App, smtp_sink: SmtpSink) -> None:
    async def story() -> PassReport:
        a, jobs, report_a = await _a_sends_then_stalls(app)
        assert sweep(app, app.clock.now()).unknown == 1
        assert _touches(app)[0]["status"] == TouchStatus.UNKNOWN
        await record_batch(app, "worker-A", jobs, report_a, backoff=0)
        await _close(a)
        return report_a

    report_a = asyncio.run(story())
    assert report_a.sent["email"] == 1 and report_a.dropped == 0
    assert _touches(app)[0]["status"] == TouchStatus.SENT  # what really happened, not "unknown"
    assert smtp_sink.count == 1
    _then_the_sequence_goes_on_once(app)


def test_a_late_worker_records_nothing_over_a_retry_by_hand(app: App, smtp_sink: SmtpSink) -> None:
    async def story() -> PassReport:
        a, jobs, report_a = await _a_sends_then_stalls(app)
        assert sweep(app, app.clock.now()).unknown == 1
        retry(app, jobs[0].touch_id)  # a rep decides to resend
        b = _worker(app, "worker-B")
        assert (await b.run_batch()).sent["email"] == 1
        await record_batch(app, "worker-A", jobs, report_a, backoff=0)
        await _close(a, b)
        return report_a

    report_a = asyncio.run(story())
    assert report_a.dropped == 1
    assert smtp_sink.count == 2 and len(set(smtp_sink.message_ids)) == 1
    _then_the_sequence_goes_on_once(app)


def test_a_database_error_while_recording_is_retried_before_anything_becomes_unknown(
    app: App, smtp_sink: SmtpSink
) -> None:
    failures = {"left": RECORD_ATTEMPTS - 1}

    def flaky(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("UPDATE TOUCH") and "RETURNING" in statement and failures["left"]:
            failures["left"] -= 1
            raise exc.OperationalError(statement, parameters, Exception("server closed the connection unexpectedly"))

    event.listen(app.engine, "before_cursor_execute", flaky)

    async def story() -> PassReport:
        a, jobs, report = await _a_sends_then_stalls(app)
        _clock(app).set(parse_instant(SEND_AT))  # still inside the lease
        await record_batch(app, "worker-A", jobs, report, backoff=0)
        await _close(a)
        return report

    report = asyncio.run(story())
    assert failures["left"] == 0 and report.sent["email"] == 1 and report.unknown == 0
    assert _touches(app)[0]["status"] == TouchStatus.SENT


def test_recording_that_keeps_failing_says_the_message_went_out(app: App, smtp_sink: SmtpSink) -> None:
    failures = {"left": RECORD_ATTEMPTS}

    def broken(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("UPDATE TOUCH") and "RETURNING" in statement and failures["left"]:
            failures["left"] -= 1
            raise exc.OperationalError(statement, parameters, Exception("could not connect to server"))

    event.listen(app.engine, "before_cursor_execute", broken)

    async def story() -> PassReport:
        a, jobs, report = await _a_sends_then_stalls(app)
        _clock(app).set(parse_instant(SEND_AT))
        await record_batch(app, "worker-A", jobs, report, backoff=0)
        await _close(a)
        return report

    report = asyncio.run(story())
    assert report.unknown == 1 and report.sent["email"] == 0
    intro = _touches(app)[0]
    assert intro["status"] == TouchStatus.UNKNOWN
    assert "sent, but recording it failed 5 times" in str(intro["error"])
    assert "could not connect to server" in str(intro["error"]) and "cadence retry" in str(intro["error"])
    assert "stopped before" not in str(intro["error"])


# -- one stale writer per guarded transition -------------------------------------------------


def _claimed(app: App) -> Job:
    _clock(app).set(parse_instant(SEND_AT))
    [job] = Dispatcher(app, None, None, "worker-A").claim(app.clock.now(), PassReport())  # type: ignore[arg-type]
    return job


def _row(app: App, table, key: int) -> dict[str, object]:  # type: ignore[no-untyped-def]
    with app.engine.connect() as conn:
        return dict(conn.execute(select(table).where(table.c.id == key)).mappings().one())


def test_settle_by_a_worker_that_does_not_hold_the_claim_changes_nothing(app: App) -> None:
    job = _claimed(app)
    before = _row(app, TouchT, job.touch_id)
    sent = Result(job.touch_id, TouchStatus.SENT, 1, "s", "b")
    with app.engine.begin() as conn:
        assert touches.settle(conn, "worker-B", app.clock.now(), [sent]) == set()
    assert _row(app, TouchT, job.touch_id) == before
    with app.engine.begin() as conn:
        assert touches.settle(conn, "worker-A", app.clock.now(), [sent]) == {job.touch_id}
        assert touches.settle(conn, "worker-A", app.clock.now(), [sent]) == set()  # settled once


def test_a_lost_claim_is_not_released_once_its_worker_recorded_it(app: App) -> None:
    job = _claimed(app)
    with app.engine.begin() as conn:
        touch = touches.get(conn, job.touch_id)
        assert touch is not None
        touches.settle(conn, "worker-A", app.clock.now(), [Result(job.touch_id, TouchStatus.SENT, 1, "s", "b")])
    later = app.clock.now() + timedelta(seconds=LEASE + 1)
    with app.engine.begin() as conn:
        assert not touches.release_lost(conn, touch, later, resend=False, error="lost")
    assert _row(app, TouchT, job.touch_id)["status"] == TouchStatus.SENT


def test_a_retry_by_hand_needs_an_unknown_touch(app: App) -> None:
    job = _claimed(app)
    with app.engine.begin() as conn:
        assert not touches.reschedule_unknown(conn, job.touch_id)
        assert not touches.skip_unknown(conn, job.touch_id, app.clock.now(), "no")
    assert _row(app, TouchT, job.touch_id)["status"] == TouchStatus.SENDING


def test_reclaiming_needs_a_touch_that_waits_for_its_retry(app: App) -> None:
    job = _claimed(app)
    with app.engine.begin() as conn:
        values = {"claimed_by": "worker-B", "lease_until": app.clock.now(), "message_id": None, "owner": "alice"}
        assert claims.reclaim_many(conn, [(job.touch_id, {**values, "variant": None, "sender": "alice"})]) == 0
    assert _row(app, TouchT, job.touch_id)["claimed_by"] == "worker-A"


def test_a_task_closes_once(app: App) -> None:
    with app.engine.begin() as conn:
        task_id = tasks.open_for_owner(conn, "L1", "alice", 1, "Call Ann", "note", app.clock.now())
    with app.engine.begin() as conn:
        assert tasks.complete(conn, task_id, "no_answer", None, app.clock.now())
        assert not tasks.complete(conn, task_id, "not_now", None, app.clock.now())
        assert not tasks.expire(conn, task_id, app.clock.now(), "late")
    row = _row(app, TouchT, task_id)
    assert (row["status"], row["disposition"]) == (TouchStatus.DONE, "no_answer")


def test_logging_a_task_twice_is_refused_and_changes_nothing(app: App) -> None:
    job = _claimed(app)
    with app.engine.begin() as conn:
        touches.settle(conn, "worker-A", app.clock.now(), [Result(job.touch_id, TouchStatus.SENT, 1, "s", "b")])
    with app.engine.begin() as conn:
        task_id = tasks.open_for_owner(conn, "L1", "alice", job.enrollment.id, "Call Ann", "note", app.clock.now())
    log_disposition(app, task_id, "no_answer")
    before = _touches(app)
    with pytest.raises(DispositionError, match="not open"):
        log_disposition(app, task_id, "not_now")
    assert _touches(app) == before


def test_an_enrollment_moves_only_from_where_its_mover_saw_it(app: App) -> None:
    job = _claimed(app)
    enrollment_id = job.enrollment.id
    at = app.clock.now()
    stale = Move(enrollment_id, 0, None, 1, "call-1", at, at)  # the claim set pending_touch_id since
    fresh = Move(enrollment_id, 0, job.touch_id, 1, "call-1", at, at)
    with app.engine.begin() as conn:
        assert not enrollments.move(conn, stale)
        assert enrollments.move_many(conn, [stale]) == set()
    assert _row(app, EnrollmentT, enrollment_id)["next_index"] == 0
    with app.engine.begin() as conn:
        assert enrollments.move(conn, fresh)
        assert not enrollments.move(conn, fresh)  # the same move twice: the second is stale
    assert _row(app, EnrollmentT, enrollment_id)["next_step"] == "call-1"


def test_state_changes_of_an_enrollment_expect_their_state(app: App) -> None:
    job = _claimed(app)
    now = app.clock.now()
    with app.engine.begin() as conn:
        row = enrollments.get(conn, job.enrollment.id)
        assert row is not None
        assert not enrollments.resume(conn, row.id, now)  # active, not paused
        assert not enrollments.defer(conn, row.id, None, now)  # it waits on the claimed touch, not on nothing
        assert enrollments.claim_many(conn, [(row.id, None, job.touch_id)]) == 0  # claimed already
        assert not enrollments.set_pending(conn, row.id, None, job.touch_id, now)
        assert enrollments.finish(conn, row, "replied", now, "test")
        assert not enrollments.finish(conn, row, "qualified", now, "test")
        assert not enrollments.pause(conn, row.id, None)
    after = _row(app, EnrollmentT, job.enrollment.id)
    assert (after["state"], after["outcome"]) == (EnrollmentState.FINISHED, "replied")
    with app.engine.connect() as conn:
        finished = conn.execute(select(HistoryT.c.id).where(HistoryT.c.kind == "finished")).all()
    assert len(finished) == 1


def test_a_pending_recycle_is_carried_out_once(app: App) -> None:
    now = app.clock.now()
    with app.engine.begin() as conn:
        recycles.add(conn, "L1", "nurture-quarterly", now, "test", None, now)
        [due] = recycles.due(conn, now)
        assert recycles.take(conn, due.id)
        assert not recycles.take(conn, due.id)


def test_a_delivery_report_never_moves_a_touch_backwards(app: App) -> None:
    job = _claimed(app)
    with app.engine.begin() as conn:
        assert touches.advance_delivery(conn, job.touch_id, "delivered", ["queued", "sending", "sent"], None)
        assert not touches.advance_delivery(conn, job.touch_id, "sent", ["queued", "sending"], None)
    assert _row(app, TouchT, job.touch_id)["delivery"] == "delivered"


def test_a_batch_of_moves_writes_only_the_ones_still_fresh(app: App) -> None:
    row = {"id": "L2", "email": "sam@contoso.example", "first_name": "Sam", "company": "Contoso"}
    local = {"owner": "alice", "timezone": "America/New_York", "country": "US"}
    assert import_leads(app.engine, [(2, {**row, **local})], app.settings, app.clock.now()).imported == 1
    assert enroll(app, "outbound-saas", ["L2"]).refused == []
    _clock(app).set(parse_instant(SEND_AT))
    jobs = Dispatcher(app, None, None, "worker-A").claim(app.clock.now(), PassReport())  # type: ignore[arg-type]
    assert len(jobs) == 2
    at = app.clock.now()
    fresh = Move(jobs[0].enrollment.id, 0, jobs[0].touch_id, 1, "call-1", at, at)
    stale = Move(jobs[1].enrollment.id, 0, None, 1, "call-1", at, at)  # expects no pending touch: stale
    with app.engine.begin() as conn:
        assert enrollments.move_many(conn, [fresh, stale]) == {fresh.id}
    assert _row(app, EnrollmentT, fresh.id)["next_step"] == "call-1"
    assert _row(app, EnrollmentT, stale.id)["next_step"] == "intro"


def test_a_paused_enrollment_moves_past_its_step_with_nothing_due(app: App) -> None:
    job = _claimed(app)
    at = app.clock.now()
    with app.engine.begin() as conn:
        assert enrollments.pause(conn, job.enrollment.id, None)
        assert enrollments.move(conn, Move(job.enrollment.id, 0, job.touch_id, 1, "call-1", at, at))
    row = _row(app, EnrollmentT, job.enrollment.id)
    assert (row["state"], row["next_step"], row["next_due_at"]) == (EnrollmentState.PAUSED, "call-1", None)
