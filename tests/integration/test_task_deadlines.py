"""An open task carries its deadline: set in the lead's calendar when it opens, and the sweep
expires every task past it with one UPDATE (migration 0007, `touch.expires_at`).

A task opened before the column existed has none; the sweep dates it the way it would have
been dated on opening, then expires it on time. One task whose follow-up fails is set aside
and never holds up the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select, update

from cadence.app import App
from cadence.clock import FixedClock, parse_instant
from cadence.engine import sweep as sweep_module
from cadence.engine.runner import run_once
from cadence.engine.sweep import sweep
from cadence.enrollment.enroll import enroll
from cadence.enrollment.lead_import import import_leads
from cadence.names import TouchStatus
from cadence.store.tables import EnrollmentT, TouchT
from tests.conftest import make_app

CALLS = (
    "id: calls\nname: t\nsteps:\n"
    "  - {id: c1, day: 1, channel: call, template: outbound-saas/call-script.md.j2}\n"
    "  - {id: e1, day: 2, channel: email, subject: hi, template: outbound-saas/bump.md.j2}\n"
)


def _lead(lead_id: str) -> dict[str, str | None]:
    return {
        "id": lead_id, "email": f"{lead_id.lower()}@northwind.example", "phone": None, "first_name": lead_id,
        "last_name": "Wu", "company": "Northwind", "owner": "alice", "timezone": "America/New_York", "country": "US",
        "sms_consent": "no",
    }  # fmt: skip


@pytest.fixture
def app(project: Path, db_url: str) -> Iterator[App]:
    (project / "sequences" / "calls.yaml").write_text(CALLS)
    app = make_app(project, db_url, "2026-11-23T08:00:00-05:00")
    rows = [_lead(lead_id) for lead_id in ("L1", "L2")]
    assert not import_leads(app.engine, list(enumerate(rows, start=2)), app.settings, app.clock.now()).rejected
    enroll(app, "calls", ["L1", "L2"])
    yield app
    app.close()


def _at(app: App, when: str) -> datetime:
    assert isinstance(app.clock, FixedClock)
    app.clock.set(parse_instant(when))
    return app.clock.now()


def _open_calls(app: App, when: str) -> None:
    """The call tasks of L1 and L2 open at `when` (their enrollments fall due then)."""
    now = _at(app, when)
    with app.engine.begin() as conn:
        conn.execute(update(EnrollmentT).values(next_due_at=now))
    assert asyncio.run(run_once(app)).dispatch.tasks_opened == 2


def _tasks(app: App) -> dict[str, Any]:
    with app.engine.connect() as conn:
        rows = conn.execute(
            select(TouchT.c.lead_id, TouchT.c.status, TouchT.c.expires_at, TouchT.c.error).where(
                TouchT.c.step_id == "c1"
            )
        ).all()
    return {lead: row for lead, *row in rows}


def test_a_task_opens_with_its_deadline_in_the_leads_calendar(app: App) -> None:
    """Opened the day before Thanksgiving: two allowed days are Friday and Monday (not the holiday, nor the weekend)."""
    _open_calls(app, "2026-11-25T10:00:00-05:00")
    deadline = parse_instant("2026-11-30T17:00:00-05:00")  # the close of Monday's window, the lead's time
    assert {lead: expires for lead, (_, expires, _) in _tasks(app).items()} == {"L1": deadline, "L2": deadline}


def test_an_undated_task_is_dated_by_the_sweep_and_expires_on_time(app: App) -> None:
    """A task opened before deadlines were stored is dated as if on opening, and expires then, not before."""
    _open_calls(app, "2026-11-30T10:00:00-05:00")
    with app.engine.begin() as conn:
        conn.execute(update(TouchT).where(TouchT.c.lead_id == "L1").values(expires_at=None))
    assert sweep(app, _at(app, "2026-12-02T16:59:00-05:00")).expired == 0
    assert _tasks(app)["L1"][:2] == [TouchStatus.TASK_OPEN, parse_instant("2026-12-02T17:00:00-05:00")]
    assert sweep(app, _at(app, "2026-12-02T17:00:00-05:00")).expired == 2
    assert {status for status, _, _ in _tasks(app).values()} == {TouchStatus.EXPIRED}


def test_every_task_past_its_deadline_expires_in_one_update(app: App) -> None:
    _open_calls(app, "2026-11-30T10:00:00-05:00")
    updates: list[str] = []

    def listen(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        if sql.lstrip().upper().startswith("UPDATE TOUCH"):
            updates.append(sql)

    event.listen(app.engine, "before_cursor_execute", listen)
    try:
        assert sweep(app, _at(app, "2026-12-03T09:00:00-05:00")).expired == 2
    finally:
        event.remove(app.engine, "before_cursor_execute", listen)
    assert len(updates) == 1, updates
    with app.engine.connect() as conn:
        steps = dict(conn.execute(select(EnrollmentT.c.lead_id, EnrollmentT.c.next_step)).all())
    assert steps == {"L1": "e1", "L2": "e1"}  # both sequences moved on


def test_a_task_whose_follow_up_fails_is_set_aside_and_the_others_move_on(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    _open_calls(app, "2026-11-30T10:00:00-05:00")
    real = sweep_module.on_event

    def broken_for_l1(conn: Any, app: App, lead_id: str, *args: Any, **kwargs: Any) -> Any:
        if lead_id == "L1":
            raise RuntimeError("the rules for L1 are broken")
        return real(conn, app, lead_id, *args, **kwargs)

    monkeypatch.setattr(sweep_module, "on_event", broken_for_l1)
    assert sweep(app, _at(app, "2026-12-03T09:00:00-05:00")).expired == 2
    tasks = _tasks(app)
    assert tasks["L1"][0] == tasks["L2"][0] == TouchStatus.EXPIRED
    assert tasks["L1"][2].startswith("not worked within 2 allowed days; expiring task")
    assert "the rules for L1 are broken" in tasks["L1"][2]
    assert tasks["L2"][2] == "not worked within 2 allowed days"
    with app.engine.connect() as conn:
        states = {
            lead: (state, step)
            for lead, state, step in conn.execute(
                select(EnrollmentT.c.lead_id, EnrollmentT.c.state, EnrollmentT.c.next_step)
            )
        }
    assert states == {"L1": ("paused", "c1"), "L2": ("active", "e1")}  # L1 set aside until someone looks
