"""Prometheus metrics: scraped after real passes, the counters equal what the store recorded.

A worker's pass sends to a real SMTP server that refuses one recipient for good, opens call
tasks, skips a lead it cannot reach, and leaves one claim to expire; its metrics are scraped
over HTTP (prometheus_client's own server, as `cadence run --metrics-port` serves them) and
compared with the store's counts per channel and status. `cadence serve`'s /metrics counts
webhook requests by route template and status, and reads the due backlog and open tasks
from the store.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client import start_http_server
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from cadence.app import App
from cadence.clock import FixedClock, parse_instant
from cadence.engine.dispatcher import Dispatcher, PassReport
from cadence.engine.metrics import Metrics
from cadence.engine.runner import run_once
from cadence.enrollment.enroll import enroll
from cadence.enrollment.lead_import import import_leads
from cadence.web import create_app
from tests.conftest import make_app
from tests.http_server import Switchboard, serving
from tests.smtp_sink import SmtpSink, point_project_at

ENROLL_AT = "2026-11-30T08:00:00-05:00"  # a Monday
RUN_AT = "2026-11-30T10:00:00-05:00"
ONE_EMAIL = (
    "id: one-email\nname: One email\nkind: outbound\nsteps:\n"
    "  - {id: only, day: 1, channel: email, subject: hi, template: outbound-saas/bump.md.j2}\n"
)
ONE_CALL = (
    "id: one-call\nname: One call\nkind: outbound\nsteps:\n"
    "  - {id: ring, day: 1, channel: call, template: outbound-saas/call-script.md.j2}\n"
)
ENV = {"CADENCE_SECRET": "s", "CADENCE_API_TOKEN": "a", "TWILIO_AUTH_TOKEN": "t"}
LOCAL = {"company": "Metric Co", "timezone": "America/New_York", "country": "US"}


def _seed(project: Path, db_url: str, sink: SmtpSink) -> None:
    """12 emails (one to a refused address), 3 call tasks for bob, 1 email to a lead with no address."""
    point_project_at(project, sink, connections=2, engine={"batch_size": 5})
    (project / "sequences" / "one-email.yaml").write_text(ONE_EMAIL)
    (project / "sequences" / "one-call.yaml").write_text(ONE_CALL)
    sink.reject("refused@metric.example")
    app = make_app(project, db_url, ENROLL_AT)
    try:
        rows: list[tuple[int, dict[str, str | None]]] = [
            (n, {"id": f"M{n:02d}", "email": f"lead{n}@metric.example", "first_name": f"L{n}", "owner": "alice",
                 **LOCAL})
            for n in range(11)
        ]  # fmt: skip
        rows.append(
            (11, {"id": "M11", "email": "refused@metric.example", "first_name": "R", "owner": "alice", **LOCAL})
        )
        rows.append((12, {"id": "M12", "email": None, "phone": "+12125550142", "first_name": "P", "owner": "alice",
                          **LOCAL}))  # fmt: skip
        rows += [
            (13 + n, {"id": f"C{n}", "email": f"call{n}@metric.example", "first_name": "C", "owner": "bob", **LOCAL})
            for n in range(3)
        ]
        assert import_leads(app.engine, rows, app.settings, app.clock.now()).rejected == []
        assert len(enroll(app, "one-email", [f"M{n:02d}" for n in range(11)] + ["M11", "M12"]).enrolled) == 13
        assert len(enroll(app, "one-call", ["C0", "C1", "C2"]).enrolled) == 3
    finally:
        app.close()


@contextmanager
def _scraped(metrics: Metrics) -> Iterator[str]:
    """The metrics served over HTTP, as `cadence run --metrics-port` serves them."""
    server, thread = start_http_server(0, addr="127.0.0.1", registry=metrics.registry)
    try:
        yield f"http://127.0.0.1:{server.server_port}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _samples(body: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def _value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _store_counts(app: App) -> dict[tuple[str, str], int]:
    with app.engine.connect() as conn:
        rows = conn.execute(text("SELECT channel, status, count(*) FROM touch GROUP BY channel, status")).all()
    return {(channel, status): n for channel, status, n in rows}


def test_a_workers_counters_equal_the_stores_counts_after_its_passes(
    project: Path, db_url: str, smtp_sink: SmtpSink
) -> None:
    _seed(project, db_url, smtp_sink)
    app = make_app(project, db_url, RUN_AT)
    metrics = Metrics("w-test", app)
    try:
        report = asyncio.run(run_once(app, worker="w-test", metrics=metrics))
        with _scraped(metrics) as url:
            samples = _samples(httpx.get(url, timeout=10).text)
        store = _store_counts(app)
    finally:
        app.close()
    touches = "cadence_touches_total"
    w = {"worker": "w-test"}
    assert store[("email", "sent")] == 11 == smtp_sink.count
    assert _value(samples, touches, **w, channel="email", outcome="sent") == store[("email", "sent")]
    assert _value(samples, touches, **w, channel="email", outcome="failed") == store[("email", "failed")] == 1
    assert _value(samples, touches, **w, channel="email", outcome="skipped") == store[("email", "skipped")] == 1
    assert _value(samples, touches, **w, channel="call", outcome="tasks_opened") == store[("call", "task_open")] == 3
    assert report.dispatch.by_channel[("sent", "email")] == 11
    batches = report.dispatch.batches
    assert _value(samples, "cadence_batches_total", **w) == batches
    # One claim per batch, one send and one record per batch that claimed something.
    assert _value(samples, "cadence_claim_seconds_count", **w) == batches
    assert _value(samples, "cadence_send_seconds_count", **w) == _value(samples, "cadence_record_seconds_count", **w)
    assert 0 < _value(samples, "cadence_record_seconds_count", **w) < batches + 1
    assert _value(samples, "cadence_claim_seconds_sum", **w) > 0
    # Read from the store at the scrape: nothing left due, bob's three calls open.
    assert _value(samples, "cadence_store_up", **w) == 1
    assert _value(samples, "cadence_due_backlog", **w) == 0
    assert _value(samples, "cadence_open_tasks", **w, owner="bob") == 3


def test_expired_leases_are_counted_and_the_backlog_reports_its_oldest_touch(project: Path, db_url: str) -> None:
    """A worker that claimed and vanished: the next pass's sweep counts its lease as expired."""
    (project / "sequences" / "one-email.yaml").write_text(ONE_EMAIL)
    app = make_app(project, db_url, ENROLL_AT)
    rows: list[tuple[int, dict[str, str | None]]] = [
        (n, {"id": f"E{n}", "email": f"e{n}@metric.example", "first_name": "E", "owner": "alice", **LOCAL})
        for n in range(4)
    ]
    assert import_leads(app.engine, rows, app.settings, app.clock.now()).rejected == []
    assert len(enroll(app, "one-email", [f"E{n}" for n in range(4)]).enrolled) == 4
    app.close()

    late = make_app(project, db_url, RUN_AT)
    metrics = Metrics("w-sweep", late)
    try:
        with _scraped(metrics) as url:
            before = _samples(httpx.get(url, timeout=10).text)
        assert _value(before, "cadence_due_backlog", worker="w-sweep") == 4
        assert _value(before, "cadence_oldest_due_age_seconds", worker="w-sweep") > 0
        # A worker claims a batch and dies before sending: its claims hold until the lease runs out.
        dead = Dispatcher(late, None, None, "dead-worker")  # type: ignore[arg-type]  # it never sends
        assert len(dead.claim(late.clock.now(), PassReport())) == 4
        lease = late.settings.engine.lease_seconds
        after_lease = make_app(project, db_url, late.clock.now() + timedelta(seconds=lease + 60))
        try:
            report = asyncio.run(run_once(after_lease, worker="w-sweep", metrics=metrics))
        finally:
            after_lease.close()
        with _scraped(metrics) as url:
            after = _samples(httpx.get(url, timeout=10).text)
        store = _store_counts(late)
    finally:
        late.close()
    assert report.sweep.unknown == 4 == store[("email", "unknown")]
    assert _value(after, "cadence_leases_expired_total", worker="w-sweep") == 4
    assert _value(after, "cadence_touches_total", worker="w-sweep", channel="email", outcome="unknown") == 4


def test_serve_counts_webhook_requests_by_route_template_and_status(project: Path, db_url: str) -> None:
    app = App.load(project / "config.yaml", FixedClock(parse_instant(RUN_AT)), database_url=db_url, environ=ENV)
    switchboard = Switchboard()
    switchboard.target = create_app(app, environ=ENV)
    try:
        with serving(switchboard) as base, httpx.Client(base_url=base, timeout=30) as client:
            assert client.post("/events", json={"lead": "x", "event": "replied"}).status_code == 401  # no token
            assert client.post("/events", json={}, headers={"Authorization": "Bearer a"}).status_code == 422
            assert client.get("/u/not-a-real-token").status_code in (400, 404)
            assert client.get("/u/another-token").status_code in (400, 404)
            assert client.get("/healthz").status_code == 200  # a probe: not a webhook, not counted
            answer = client.get("/metrics")
    finally:
        app.close()
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    samples = _samples(answer.text)
    counted = {
        (dict(labels)["route"], dict(labels)["status"]): value
        for (name, labels), value in samples.items()
        if name == "cadence_webhook_requests_total"
    }
    unsubscribe = [status for route, status in counted if route == "/u/{token}"]
    assert counted[("/events", "401")] == 1 and counted[("/events", "422")] == 1
    assert len(unsubscribe) == 1 and counted[("/u/{token}", unsubscribe[0])] == 2  # one label for every token
    assert not any(route == "/healthz" for route, _ in counted)
    worker = next(dict(labels)["worker"] for (name, labels) in samples if name == "cadence_store_up")
    assert worker.startswith("serve:")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_cadence_run_metrics_port_serves_the_workers_own_labelled_metrics(
    project: Path, db_url: str, smtp_sink: SmtpSink
) -> None:
    _seed(project, db_url, smtp_sink)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADENCE_")}
    env.update(CADENCE_NOW=RUN_AT, CADENCE_DATABASE_URL=db_url, CADENCE_SECRET="metrics-secret")
    worker = subprocess.Popen(
        [sys.executable, "-m", "cadence", "--config", str(project / "config.yaml"), "run", "--metrics-port", str(port),
         "--log-json"],
        cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                samples = _samples(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)
            except httpx.TransportError:
                samples = {}
            sent = [v for (n, labels), v in samples.items() if n == "cadence_touches_total" and ("outcome", "sent")
                    in labels]  # fmt: skip
            if sum(sent) >= 11 and any(n == "cadence_open_tasks" for n, _ in samples):
                break
            time.sleep(0.2)
    finally:
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=60)
    assert worker.returncode == 0, stderr
    workers = {dict(labels)["worker"] for (name, labels) in samples if name == "cadence_touches_total"}
    assert len(workers) == 1
    (worker_id,) = workers
    assert _value(samples, "cadence_touches_total", worker=worker_id, channel="email", outcome="sent") == 11
    assert smtp_sink.count == 11
    # Its JSON log lines carry the same worker id.
    lines = [line for line in stderr.splitlines() if line.startswith("{")]
    assert lines and all(f'"worker": "{worker_id}"' in line for line in lines)


@pytest.mark.slow
def test_serve_with_two_workers_shares_one_port_and_one_metrics_page(project: Path, db_url: str) -> None:
    """`cadence serve --workers 2`: two processes answer the port; whichever one a scrape reaches reports
    every process's requests, each under its own worker label; every event is stored once."""
    app = make_app(project, db_url, RUN_AT)
    try:
        rows = [(n, {"id": f"W{n}", "email": f"w{n}@metric.example", "owner": "alice", **LOCAL}) for n in range(30)]
        assert import_leads(app.engine, rows, app.settings, app.clock.now()).rejected == []
    finally:
        app.close()
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADENCE_") or k == "CADENCE_CACHE_DIR"}
    env.update(CADENCE_NOW=RUN_AT, CADENCE_DATABASE_URL=db_url, CADENCE_SECRET="s", CADENCE_API_TOKEN="a")
    server = subprocess.Popen(
        [sys.executable, "-m", "cadence", "--config", str(project / "config.yaml"), "serve", "--port", str(port),
         "--workers", "2"],
        cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    answers: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
        for n in range(30):  # a new connection each: the kernel spreads them over the processes
            event = {"lead": f"W{n}" if n % 2 else f"w{n}@metric.example", "event": "replied", "note": f"n{n}"}
            answers.append(httpx.post(base + "/events", json=event, headers={"Authorization": "Bearer a"}).status_code)
        samples = _samples(httpx.get(base + "/metrics", timeout=10).text)
        again = _samples(httpx.get(base + "/metrics", timeout=10).text)
    finally:
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=60)
    assert server.returncode == 0, stderr
    assert len(children) >= 2, children  # uvicorn's two workers (and its own helper, if any)
    assert answers == [200] * 30
    for scraped in (samples, again):
        counted = {
            dict(labels)["worker"]: value
            for (name, labels), value in scraped.items()
            if name == "cadence_webhook_requests_total" and dict(labels)["route"] == "/events"
        }
        assert sum(counted.values()) == 30 and all(w.startswith("serve:") for w in counted), counted
    app = make_app(project, db_url, RUN_AT)
    try:
        with app.engine.connect() as conn:
            notes = conn.execute(text("SELECT detail FROM history WHERE kind = 'event'")).scalars().all()
    finally:
        app.close()
    stored = sorted((json.loads(d) if isinstance(d, str) else d)["note"] for d in notes)
    assert stored == sorted(f"n{n}" for n in range(30))  # each event once
