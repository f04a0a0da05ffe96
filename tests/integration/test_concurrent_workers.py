"""Four `cadence run --once` processes sharing one PostgreSQL database send every touch exactly once.

The thread-based claim race (test_claim_concurrency.py) proves that claims never
overlap; this is the same promise end to end, as a deployment runs it: separate
processes of the real CLI, each with its own SMTP connections to one real server,
draining 2,000 due emails in small batches so that they contend for every batch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import create_engine, select

from cadence.enrollment.enroll import enroll
from cadence.enrollment.lead_import import import_leads
from cadence.store.tables import EnrollmentT, TouchT
from tests.conftest import make_app
from tests.smtp_sink import SmtpSink, point_project_at

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

N = 2_000
WORKERS = 4
BATCH = 50  # 40 batches for 4 workers: every batch is contended
ENROLL_AT = "2026-11-30T08:00:00-05:00"  # a Monday, before the window opens
RUN_AT = "2026-11-30T10:00:00-05:00"  # every first touch is due (09:00 plus at most 45m of spread)
ONE_EMAIL = (
    "id: fan-out\nname: Fan out\nkind: outbound\nsteps:\n"
    "  - {id: only, day: 1, channel: email, subject: hi, template: outbound-saas/bump.md.j2}\n"
)


def _prepare(project: Path, db_url: str, sink: SmtpSink) -> dict[str, str]:
    """N due enrollments, caps raised so none is deferred; returns email -> lead id."""
    # rules off: what happens after the last step is not this test's subject, and costs a recycle each
    point_project_at(project, sink, connections=4, engine={"batch_size": BATCH}, rules=[])
    (project / "sequences" / "fan-out.yaml").write_text(ONE_EMAIL)
    leads = {f"lead{i}@fan.example": f"F{i:04d}" for i in range(N)}
    app = make_app(project, db_url, ENROLL_AT)
    try:
        local = {"company": "Fan", "timezone": "America/New_York", "country": "US"}
        rows: list[tuple[int, dict[str, str | None]]] = [
            (
                row,
                {
                    "id": lead_id,
                    "email": email,
                    "first_name": f"Lead{row}",
                    "owner": ("alice", "bob")[row % 2],
                    **local,
                },
            )
            for row, (email, lead_id) in enumerate(leads.items(), start=2)
        ]
        imported = import_leads(app.engine, rows, app.settings, app.clock.now())
        assert imported.rejected == [] and imported.imported == N
        report = enroll(app, "fan-out", list(leads.values()))
        assert report.refused == [] and len(report.enrolled) == N
    finally:
        app.close()
    return leads


def _worker(project: Path, db_url: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADENCE_")}
    env.update(CADENCE_NOW=RUN_AT, CADENCE_DATABASE_URL=db_url, CADENCE_SECRET="fan-out-secret")
    return subprocess.Popen(
        [sys.executable, "-m", "cadence", "--config", str(project / "config.yaml"), "run", "--once", "--json"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop_all(procs: list[subprocess.Popen[str]]) -> None:
    """Reap every worker (killing any still running after a failure), so no pipe or process outlives the test."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def test_four_worker_processes_send_each_due_email_exactly_once(
    project: Path, pg_url: str, smtp_sink: SmtpSink
) -> None:
    leads = _prepare(project, pg_url, smtp_sink)

    started = time.monotonic()
    procs = [_worker(project, pg_url) for _ in range(WORKERS)]
    reports: list[dict[str, Any]] = []
    deadline = started + 300  # generous: the two cores are shared, and each process renders its own mail
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            assert proc.returncode == 0, err
            reports.append(json.loads(out))
    finally:
        _stop_all(procs)
    elapsed = time.monotonic() - started
    smtp_sink.wait_until(lambda: smtp_sink.open_connections == 0, 10, what="every worker's connections to close")

    # The server got each email once: 2,000 messages, no Message-ID twice, no lead twice.
    received = smtp_sink.received
    assert len(received) == N
    message_ids = Counter(m.message_id for m in received)
    assert None not in message_ids and len(message_ids) == N
    assert Counter(m.rcpt_tos for m in received) == Counter({(email,): 1 for email in leads})

    # The store agrees: one sent touch per enrollment, carrying the Message-ID the server saw.
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            touches = conn.execute(select(TouchT.c.enrollment_id, TouchT.c.status, TouchT.c.message_id)).all()
            states = Counter(conn.execute(select(EnrollmentT.c.state)).scalars())
    finally:
        engine.dispose()
    assert states == Counter({"finished": N})  # one step: each enrollment is done
    assert Counter(status for _, status, _ in touches) == Counter({"sent": N})
    assert len({enrollment for enrollment, _, _ in touches}) == len(touches) == N
    assert {message_id for _, _, message_id in touches} == set(message_ids)

    # Each process reported its own share, the shares add up, and the work was really shared.
    sent = [r["dispatch"]["sent"].get("email", 0) for r in reports]
    assert sum(sent) == sum(r["dispatch"]["claimed"] for r in reports) == N
    assert all(r["dispatch"]["deferred"] == r["dispatch"]["skipped"] == r["dispatch"]["failed"] == 0 for r in reports)
    assert all(sent), sent  # all four took part
    print(f"{WORKERS} workers sent {sent} in {elapsed:.1f}s over {smtp_sink.connections} SMTP connections")


CAPPED = 400  # due emails, half alice's, half bob's
CAP = 50  # each mailbox's daily cap: 100 may go today, 300 wait for tomorrow


def test_four_workers_together_keep_each_mailboxs_daily_cap(project: Path, pg_url: str, smtp_sink: SmtpSink) -> None:
    """Each claim counts what the claims before it took, so four workers never overshoot a cap together.

    End to end, as a deployment runs it. Processes start a little apart, so this does not
    force claims to collide; test_claim_concurrency's cap race does (and fails without the turn).
    """
    point_project_at(project, smtp_sink, connections=2, engine={"batch_size": 10}, rules=[])
    config_path = project / "config.yaml"
    config = yaml.safe_load(config_path.read_text())
    for sender in config["senders"]:
        sender["daily_cap"] = CAP
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    (project / "sequences" / "fan-out.yaml").write_text(ONE_EMAIL)
    app = make_app(project, pg_url, ENROLL_AT)
    try:
        local = {"company": "Fan", "timezone": "America/New_York", "country": "US"}
        rows: list[tuple[int, dict[str, str | None]]] = [
            (i + 2, {"id": f"C{i:04d}", "email": f"capped{i}@fan.example", "first_name": f"Lead{i}",
                     "owner": ("alice", "bob")[i % 2], **local})
            for i in range(CAPPED)
        ]  # fmt: skip
        assert import_leads(app.engine, rows, app.settings, app.clock.now()).imported == CAPPED
        assert len(enroll(app, "fan-out", [f"C{i:04d}" for i in range(CAPPED)]).enrolled) == CAPPED
    finally:
        app.close()

    procs = [_worker(project, pg_url) for _ in range(WORKERS)]
    reports: list[dict[str, Any]] = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err
            reports.append(json.loads(out))
    finally:
        _stop_all(procs)

    senders = Counter(m.mail_from for m in smtp_sink.received)
    assert senders == Counter({"alice@acme.example": CAP, "bob@acme.example": CAP})
    assert len(set(smtp_sink.message_ids)) == 2 * CAP
    assert sum(r["dispatch"]["sent"].get("email", 0) for r in reports) == 2 * CAP
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            statuses = Counter(conn.execute(select(TouchT.c.status)).scalars())
            waiting = (
                conn.execute(select(EnrollmentT.c.next_due_at).where(EnrollmentT.c.state == "active")).scalars().all()
            )
    finally:
        engine.dispose()
    assert statuses == Counter({"sent": 2 * CAP})
    tomorrow = datetime.fromisoformat("2026-12-01T09:00:00-05:00")
    assert len(waiting) == CAPPED - 2 * CAP and all(due is not None and due >= tomorrow for due in waiting)
