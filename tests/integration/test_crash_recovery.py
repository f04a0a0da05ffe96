"""A `cadence run` killed in the middle of a batch never sends twice and loses nothing.

The engine claims a batch (persisting `sending` touches with a lease), sends it,
then records it. Here the real CLI sends to a real SMTP server that holds every 250
back for a moment, and is killed with SIGKILL once half of its second batch has
reached the server: the first batch is recorded `sent`, the second is claimed and
partly delivered, the rest was never claimed. A second `cadence run`, started after
the lease ran out, sends what was never claimed and turns the lost claims into
`unknown` without resending them; `cadence retry` then resends one of them, once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select

from cadence.enrollment.enroll import enroll
from cadence.enrollment.lead_import import import_leads
from cadence.store.tables import EnrollmentT, TouchT
from tests.conftest import Cli, make_app
from tests.smtp_sink import Received, SmtpSink, point_project_at

pytestmark = pytest.mark.slow

N = 40
BATCH = 10
LEASE_SECONDS = 60
ENROLL_AT = "2026-11-30T08:00:00-05:00"  # a Monday, before the window opens
KILLED_AT = "2026-11-30T10:00:00-05:00"  # every first touch is due (09:00 plus at most 45m of spread)
RESTART_AT = "2026-11-30T10:02:00-05:00"  # past KILLED_AT + lease_seconds: the lost claims are swept
SECRET = "crash-test-secret"  # signs the unsubscribe links
REPLY_DELAY = 0.2  # seconds the sink holds each 250 while the first worker runs: the kill's margin
ONE_EMAIL = (
    "id: crash-course\nname: Crash course\nkind: outbound\nsteps:\n"
    "  - {id: only, day: 1, channel: email, subject: hi, template: outbound-saas/bump.md.j2}\n"
)


def _prepare(project: Path, db_url: str, sink: SmtpSink) -> dict[str, str]:
    """N due enrollments of a one-email sequence, email over SMTP to the sink; returns lead id -> email."""
    point_project_at(project, sink, connections=2, engine={"batch_size": BATCH, "lease_seconds": LEASE_SECONDS})
    (project / "sequences" / "crash-course.yaml").write_text(ONE_EMAIL)
    leads = {f"K{i:03d}": f"lead{i}@crash.example" for i in range(N)}
    app = make_app(project, db_url, ENROLL_AT)
    try:
        local = {"company": "Crash", "owner": "alice", "timezone": "America/New_York", "country": "US"}
        rows: list[tuple[int, dict[str, str | None]]] = [
            (row, {"id": lead_id, "email": email, "first_name": f"Lead{row}", **local})
            for row, (lead_id, email) in enumerate(leads.items(), start=2)
        ]
        imported = import_leads(app.engine, rows, app.settings, app.clock.now())
        assert imported.rejected == [] and imported.imported == N
        report = enroll(app, "crash-course", list(leads))
        assert report.refused == [] and len(report.enrolled) == N
    finally:
        app.close()
    return leads


def _cadence(project: Path, db_url: str, now: str, *args: str) -> subprocess.Popen[str]:
    """The real CLI in its own process, as systemd would start it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADENCE_")}
    env.update(CADENCE_NOW=now, CADENCE_DATABASE_URL=db_url, CADENCE_SECRET=SECRET)
    return subprocess.Popen(
        [sys.executable, "-m", "cadence", "--config", str(project / "config.yaml"), *args],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _run_once(project: Path, db_url: str, now: str) -> dict[str, Any]:
    with _cadence(project, db_url, now, "run", "--once", "--json") as proc:
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    report: dict[str, Any] = json.loads(out)
    return report


def _touches(db_url: str) -> list[dict[str, Any]]:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(TouchT).order_by(TouchT.c.id)).mappings()]
    finally:
        engine.dispose()


def _due_enrollments(db_url: str) -> int:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return len(conn.execute(select(EnrollmentT.c.id).where(EnrollmentT.c.next_due_at.is_not(None))).all())
    finally:
        engine.dispose()


def _touch_header(message: Received) -> int:
    return int(message.message["X-Cadence-Touch"])


def test_killed_worker_never_sends_twice_and_loses_nothing(
    project: Path, db_url: str, smtp_sink: SmtpSink, cli: Cli
) -> None:
    leads = _prepare(project, db_url, smtp_sink)

    # 1. A worker is killed while it waits for the server's 250, half-way through its second batch.
    smtp_sink.slow_down(REPLY_DELAY)
    kill_at = BATCH + BATCH // 2
    with _cadence(project, db_url, KILLED_AT, "run", "--once", "--json") as proc:
        try:
            smtp_sink.wait_until(
                lambda: smtp_sink.count >= kill_at or proc.poll() is not None, 60, what=f"{kill_at} messages"
            )
            assert proc.poll() is None, f"cadence run ended before it was killed: {proc.communicate()[1]}"
        finally:
            proc.kill()
            proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    smtp_sink.wait_until(lambda: smtp_sink.open_connections == 0, 10, what="the killed worker's connections to close")
    smtp_sink.slow_down(0)

    at_kill = _touches(db_url)
    sent_before = {t["id"] for t in at_kill if t["status"] == "sent"}
    in_flight = {t["id"]: t for t in at_kill if t["status"] == "sending"}
    assert {t["status"] for t in at_kill} == {"sent", "sending"}
    # Whole batches were claimed: the first (recorded, unless its record was still running), the second
    # on the wire, and at most one more, which the pipeline claims while the one before it drains.
    claimed = len(sent_before) + len(in_flight)
    assert len(sent_before) in (0, BATCH) and claimed in (2 * BATCH, 3 * BATCH)
    assert len({t["claimed_by"] for t in in_flight.values()}) == 1
    assert _due_enrollments(db_url) == N - claimed  # the rest was never claimed
    delivered_unrecorded = {_touch_header(m) for m in smtp_sink.received} & set(in_flight)
    # The kill landed mid-batch: the server holds some of the claimed touches, and not all of them.
    assert BATCH // 2 <= len(delivered_unrecorded) < len(in_flight)
    print(f"killed with {len(delivered_unrecorded)} of {len(in_flight)} claimed emails delivered but not recorded")

    # 2. Restarted after the lease ran out: the rest goes out, the lost claims become unknown, none is resent.
    report = _run_once(project, db_url, RESTART_AT)
    assert report["sweep"]["unknown"] == len(in_flight)
    assert report["dispatch"]["sent"] == {"email": N - claimed}
    assert report["dispatch"]["claimed"] == N - claimed

    touches = _touches(db_url)
    by_id = {t["id"]: t for t in touches}
    per_enrollment = Counter(t["enrollment_id"] for t in touches)
    assert len(per_enrollment) == N and set(per_enrollment.values()) == {1}  # one touch each: none lost or doubled
    sent = {t["id"] for t in touches if t["status"] == "sent"}
    unknown = {t["id"] for t in touches if t["status"] == "unknown"}
    assert sent | unknown == set(by_id) and len(sent) == N - len(in_flight)
    assert unknown == set(in_flight)  # exactly what the killed worker had claimed but not recorded
    assert {by_id[t]["message_id"] for t in unknown} == {t["message_id"] for t in in_flight.values()}

    listed = cli("touches", "--status", "unknown", "--json", now=RESTART_AT)
    assert listed.exit_code == 0, listed.output
    listed_unknown = json.loads(listed.stdout)
    assert {t["id"] for t in listed_unknown} == unknown
    assert all(f"cadence retry {t['id']}" in t["error"] for t in listed_unknown)  # the listing says what to do

    received = smtp_sink.received
    message_ids = Counter(m.message_id for m in received)
    assert max(message_ids.values()) == 1  # no Message-ID ever reached the server twice
    assert max(Counter(m.rcpt_tos for m in received).values()) == 1  # no lead got the step twice
    sent_ids = {by_id[t]["message_id"] for t in sent}
    assert len(sent_ids) == len(sent)
    assert sum(1 for m in received if m.message_id in sent_ids) == len(sent)  # every sent touch arrived, once
    assert all(_touch_header(m) in sent | delivered_unrecorded for m in received)  # and nothing else arrived
    assert all(by_id[_touch_header(m)]["message_id"] == m.message_id for m in received)
    assert {m.rcpt_tos for m in received} <= {(email,) for email in leads.values()}

    # 3. `cadence retry` resends one unknown touch (one the server never got), once, and nothing else moves.
    #    (The passes from here on run the same CLI in this process: nothing is killed any more.)
    never_arrived = sorted(unknown - delivered_unrecorded)
    assert never_arrived
    chosen = never_arrived[0]
    retried = cli("retry", str(chosen), now=RESTART_AT)
    assert retried.exit_code == 0, retried.output
    for expected in (1, 0):  # the pass after the retry sends it; the one after that finds nothing to do
        passed = cli("run", "--once", "--json", now=RESTART_AT, env={"CADENCE_SECRET": SECRET})
        assert passed.exit_code == 0, passed.output
        report = json.loads(passed.stdout)
        assert report["dispatch"]["claimed"] == expected and report["sweep"]["unknown"] == 0
        assert report["dispatch"]["sent"] == ({"email": 1} if expected else {})

    after = smtp_sink.received
    assert len(after) == len(received) + 1
    [resent] = after[len(received) :]
    assert _touch_header(resent) == chosen
    assert resent.rcpt_tos == (leads[by_id[chosen]["lead_id"]],)
    assert max(Counter(m.message_id for m in after).values()) == 1
    final = {t["id"]: t for t in _touches(db_url)}
    assert final[chosen]["status"] == "sent" and final[chosen]["message_id"] == resent.message_id
    assert {t for t, row in final.items() if row["status"] == "unknown"} == unknown - {chosen}
