"""Recording a batch writes exactly what each result says, and only on claims still held, on SQLite and PostgreSQL.

`touches.settle` sends each status's writes to the driver itself (compiled once, each value
converted once), bypassing SQLAlchemy's per-row handling; these tests pin that the rows hold
what SQLAlchemy would have written: the status's own columns, aware UTC times, the provider
id, the claim released, and nothing at all for a claim the worker lost.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from cadence.app import App
from cadence.engine.claim import claim_batch
from cadence.engine.jobs import Job, PassReport
from cadence.enrollment.enroll import enroll
from cadence.enrollment.lead_import import import_leads
from cadence.names import TouchStatus
from cadence.store import touches
from cadence.store.tables import TouchT
from cadence.store.touches import Result
from tests.conftest import make_app

ENROLLED = datetime(2026, 11, 23, 13, 0, tzinfo=UTC)  # Monday 08:00 in New York
SEND = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)  # 10:00: every intro (09:00 plus its spread) is due


@pytest.fixture
def app(project: Path, db_url: str) -> Iterator[App]:
    application = make_app(project, db_url, ENROLLED)
    rows: list[tuple[int, dict[str, str | None]]] = [
        (
            n + 2,
            {
                "id": f"L{n}", "email": f"l{n}@acme.example", "first_name": f"Ann{n}", "company": f"Co {n}",
                "owner": "alice", "timezone": "America/New_York", "country": "US",
            },
        )
        for n in range(6)
    ]  # fmt: skip
    assert import_leads(application.engine, rows, application.settings, ENROLLED).imported == 6
    assert len(enroll(application, "outbound-saas", [f"L{n}" for n in range(6)]).enrolled) == 6
    application.clock.set(SEND)  # type: ignore[attr-defined]
    yield application
    application.close()


def _claim(app: App, worker: str) -> list[Job]:
    jobs = claim_batch(app, worker, SEND, PassReport())
    assert len(jobs) == 6
    return jobs


def _rows(app: App) -> dict[int, dict[str, Any]]:
    with app.engine.connect() as conn:
        return {r["id"]: dict(r) for r in conn.execute(select(TouchT)).mappings()}


def test_each_status_writes_its_own_columns(app: App) -> None:
    jobs = _claim(app, "worker-A")
    t = [j.touch_id for j in jobs]
    now = SEND + timedelta(seconds=7, microseconds=123456)
    retry_at = datetime(2026, 11, 23, 16, 5, 30, 250000, tzinfo=UTC)
    results = [
        Result(t[0], TouchStatus.SENT, 1, "Hello", "Body 0"),
        Result(t[1], TouchStatus.SENT, 2, None, "Body 1", provider_id="SM0001"),
        Result(t[2], TouchStatus.TASK_OPEN, 0, "Call Ann2", "Script"),
        Result(t[3], TouchStatus.SCHEDULED, 1, "Hi", "Body 3", "timed out", None, retry_at),
        Result(t[4], TouchStatus.FAILED, 3, "Hi", "Body 4", error="550 no such user"),
        Result(t[5], TouchStatus.UNKNOWN, 1, "Hi", "Body 5", error="maybe sent; check"),
    ]
    with app.engine.begin() as conn:
        assert touches.settle(conn, "worker-A", now, results) == set(t)
    rows = _rows(app)
    for touch_id in t:
        assert rows[touch_id]["claimed_by"] is None and rows[touch_id]["lease_until"] is None
    sent, texted, task, retry, failed, unknown = (rows[i] for i in t)
    assert (sent["status"], sent["attempts"], sent["subject"], sent["body"]) == ("sent", 1, "Hello", "Body 0")
    assert sent["sent_at"] == now and sent["error"] is None and sent["provider_id"] is None
    assert (texted["attempts"], texted["subject"], texted["provider_id"]) == (2, None, "SM0001")
    assert (task["status"], task["sent_at"], task["due_at"], task["attempts"]) == ("task_open", now, now, 0)
    assert (retry["status"], retry["due_at"], retry["error"]) == ("scheduled", retry_at, "timed out")
    assert retry["sent_at"] is None
    assert retry["due_at"].tzinfo is not None and retry["due_at"].utcoffset() == timedelta(0)
    assert (failed["status"], failed["attempts"], failed["done_at"], failed["error"]) == (
        "failed", 3, now, "550 no such user",
    )  # fmt: skip
    assert (unknown["status"], unknown["error"], unknown["sent_at"]) == ("unknown", "maybe sent; check", None)
    with app.engine.connect() as conn:  # the stored instants compare as instants, as any other write's do
        assert conn.execute(select(TouchT.c.id).where(TouchT.c.due_at == retry_at)).scalars().all() == [t[3]]


def test_a_claim_lost_in_the_middle_of_a_batch_keeps_the_newer_claims_row(app: App) -> None:
    jobs = _claim(app, "worker-A")
    t = [j.touch_id for j in jobs]
    with app.engine.begin() as conn:  # the sweep released t[2] and worker-B claimed it again
        conn.execute(update(TouchT).where(TouchT.c.id == t[2]).values(claimed_by="worker-B"))
    before = _rows(app)[t[2]]
    results = [Result(i, TouchStatus.SENT, 1, "Hello", f"Body {i}", provider_id=f"SM{i}") for i in t]
    with app.engine.begin() as conn:
        won = touches.settle(conn, "worker-A", SEND, results)
    assert won == set(t) - {t[2]}
    rows = _rows(app)
    assert rows[t[2]] == before  # untouched: still worker-B's, still sending
    assert all(rows[i]["status"] == "sent" and rows[i]["provider_id"] == f"SM{i}" for i in won)
    with app.engine.begin() as conn:  # and a second record of the same batch wins nothing
        assert touches.settle(conn, "worker-A", SEND, results) == set()
