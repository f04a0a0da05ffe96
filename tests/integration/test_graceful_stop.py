"""SIGTERM (or Ctrl-C) stops claiming, lets the batch in hand finish sending and recording, and exits 0.

A real `cadence run` sends to a real SMTP server that holds every reply back a moment;
it is told to stop while its first batch is half on the wire. Every message the server
received must be recorded `sent`, none may be left `sending` (which would turn `unknown`
once its lease ran out), and nothing more is claimed after the signal.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from cadence.enrollment.enroll import enroll
from cadence.enrollment.lead_import import import_leads
from cadence.store.tables import TouchT
from tests.conftest import make_app
from tests.smtp_sink import SmtpSink, point_project_at

pytestmark = pytest.mark.slow

N = 30
BATCH = 10
ENROLL_AT = "2026-11-30T08:00:00-05:00"
RUN_AT = "2026-11-30T10:00:00-05:00"
ONE_EMAIL = (
    "id: one-email\nname: One email\nkind: outbound\nsteps:\n"
    "  - {id: only, day: 1, channel: email, subject: hi, template: outbound-saas/bump.md.j2}\n"
)


def _prepare(project: Path, db_url: str, sink: SmtpSink) -> None:
    point_project_at(project, sink, connections=2, engine={"batch_size": BATCH, "interval_seconds": 1})
    (project / "sequences" / "one-email.yaml").write_text(ONE_EMAIL)
    app = make_app(project, db_url, ENROLL_AT)
    try:
        local = {"company": "Stop Co", "owner": "alice", "timezone": "America/New_York", "country": "US"}
        rows: list[tuple[int, dict[str, str | None]]] = [
            (n, {"id": f"S{n:03d}", "email": f"lead{n}@stop.example", "first_name": f"Lead{n}", **local})
            for n in range(2, N + 2)
        ]
        assert import_leads(app.engine, rows, app.settings, app.clock.now()).rejected == []
        assert len(enroll(app, "one-email", [f"S{n:03d}" for n in range(2, N + 2)]).enrolled) == N
    finally:
        app.close()


def _start_worker(project: Path, db_url: str) -> subprocess.Popen[str]:
    """`cadence run` in its own process, as systemd would start it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADENCE_")}
    env.update(CADENCE_NOW=RUN_AT, CADENCE_DATABASE_URL=db_url, CADENCE_SECRET="graceful-stop-secret")
    return subprocess.Popen(
        [sys.executable, "-m", "cadence", "--config", str(project / "config.yaml"), "run"],
        cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_sigterm_finishes_and_records_the_batch_in_hand_then_exits_0(
    project: Path, db_url: str, smtp_sink: SmtpSink
) -> None:
    _prepare(project, db_url, smtp_sink)
    smtp_sink.slow_down(0.15)  # each 250 waits: a batch of 10 over 2 connections takes most of a second
    worker = _start_worker(project, db_url)
    try:
        smtp_sink.wait_until(
            lambda: smtp_sink.count >= 3 or worker.poll() is not None,
            timeout=30,
            what="the first messages of the batch",
        )
        assert worker.poll() is None, worker.communicate()[1]
        assert smtp_sink.count < BATCH  # the batch is still on the wire
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == 0, err
    assert "Traceback" not in err
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(TouchT.c.status, TouchT.c.message_id)).all()
    finally:
        engine.dispose()
    statuses = [status for status, _ in rows]
    assert "sending" not in statuses and "unknown" not in statuses
    sent = {message_id for status, message_id in rows if status == "sent"}
    received = set(smtp_sink.message_ids)
    assert sent == received  # every message the server got is recorded sent, and only those
    # The batches in hand were finished: the one on the wire and the one the pipeline claimed while it
    # drained (one batch ahead at most); no batch was claimed after the signal.
    assert len(received) in (BATCH, 2 * BATCH)
    assert len(rows) == len(received)  # nothing claimed that was not sent


def test_on_start_lost_claims_are_released_before_the_first_batch_is_claimed(
    project: Path, db_url: str, smtp_sink: SmtpSink
) -> None:
    from cadence.engine.dispatcher import Dispatcher
    from cadence.engine.jobs import PassReport
    from cadence.store.tables import HistoryT

    _prepare(project, db_url, smtp_sink)
    app = make_app(project, db_url, "2026-11-30T09:50:00-05:00")
    try:  # a worker that died ten minutes ago left a claim behind
        lost = Dispatcher(app, None, None, "dead-worker").claim(app.clock.now(), PassReport())  # type: ignore[arg-type]
        assert lost
    finally:
        app.close()
    worker = _start_worker(project, db_url)
    try:
        smtp_sink.wait_until(lambda: smtp_sink.count >= 1 or worker.poll() is not None, timeout=30, what="a send")
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == 0, err
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(HistoryT.c.id, HistoryT.c.detail).where(HistoryT.c.kind == "touch")).all()
    finally:
        engine.dispose()
    released = [i for i, detail in rows if detail.get("status") == "unknown"]
    sent = [i for i, detail in rows if detail.get("status") == "sent"]
    assert len(released) == len(lost) and sent
    assert max(released) < min(sent)  # the sweep ran before the first batch was recorded
