"""Editing a live sequence: the plan says exactly what apply will do, and apply does exactly that.

Three groups of leads sit at different positions of `edit-me` (in New York, spread 0):
- A: enrolled Mon 2026-11-30, got `a` and `b`; next `c`, due Fri 12-04 09:00;
- B: enrolled Wed 12-02, got `a` (Wed 09:30); next `b`, due Fri 12-04 09:00;
- C: enrolled Thu 12-03 10:00; next `a`, due at once.
The edit moves `b` from day 3 to 4, removes `c`, adds `e` on day 7 and moves `d` to day 8.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from cadence.app import App
from cadence.engine.dispatcher import Dispatcher, PassReport
from cadence.engine.runner import run_once
from cadence.enrollment.enroll import enroll
from cadence.enrollment.lead_import import import_leads
from cadence.manage.edit_apply import ApplyError, apply
from cadence.manage.edit_plan import make_plan
from cadence.store.tables import EnrollmentT, HistoryT, TouchT, VersionT
from tests.conftest import make_app

V1 = """id: edit-me
name: Edit me
kind: outbound
schedule: {spread: 0}
steps:
  - {id: a, day: 1, channel: email, subject: "A for {{ lead.first_name }}", template: edit-me/a.md.j2}
  - {id: b, day: 3, channel: email, subject: B, template: edit-me/b.md.j2}
  - {id: c, day: 5, channel: email, subject: C, template: edit-me/c.md.j2}
  - {id: d, day: 7, channel: email, subject: D, template: edit-me/d.md.j2}
"""
V2 = """id: edit-me
name: Edit me
kind: outbound
schedule: {spread: 0}
steps:
  - {id: a, day: 1, channel: email, subject: "A for {{ lead.first_name }}", template: edit-me/a.md.j2}
  - {id: b, day: 4, channel: email, subject: B, template: edit-me/b.md.j2}
  - {id: e, day: 7, channel: email, subject: E, template: edit-me/e.md.j2}
  - {id: d, day: 8, channel: email, subject: D, template: edit-me/d.md.j2}
"""
GROUPS = {"A": "2026-11-30T08:00:00-05:00", "B": "2026-12-02T08:00:00-05:00", "C": "2026-12-03T10:00:00-05:00"}
PASSES = ("2026-11-30T09:30:00-05:00", "2026-12-02T09:30:00-05:00")
PLAN_AT = "2026-12-03T10:00:00-05:00"


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


@pytest.fixture
def edited(project: Path) -> Path:
    (project / "sequences" / "edit-me.yaml").write_text(V1)
    folder = project / "templates" / "edit-me"
    folder.mkdir()
    for step in "abcde":
        (folder / f"{step}.md.j2").write_text(f"Hi {{{{ lead.first_name }}}}, this is step {step}.\n")
    return project


def _app(project: Path, db_url: str, now: str) -> App:
    return make_app(project, db_url, now)


def _seed(project: Path, db_url: str) -> None:
    """Leads A1 A2 B1 B2 C1 C2 in their positions (the real engine sends what they got)."""
    app = _app(project, db_url, GROUPS["A"])
    try:
        rows: list[tuple[int, dict[str, str | None]]] = [
            (i + 2, {"id": f"{g}{n}", "email": f"{g.lower()}{n}@lead.example", "first_name": f"{g}{n}",
                     "owner": "alice", "timezone": "America/New_York", "country": "US"})
            for i, (g, n) in enumerate((g, n) for g in "ABC" for n in (1, 2))
        ]  # fmt: skip
        assert import_leads(app.engine, rows, app.settings, app.clock.now()).rejected == []
    finally:
        app.close()
    events = sorted([(GROUPS[g], "enroll", g) for g in GROUPS] + [(p, "run", "") for p in PASSES])
    for at, what, group in events:
        app = _app(project, db_url, at)
        try:
            if what == "enroll":
                assert enroll(app, "edit-me", [f"{group}1", f"{group}2"]).refused == []
            else:
                import asyncio

                asyncio.run(run_once(app))
        finally:
            app.close()


def _snapshot(app: App) -> dict[str, dict[str, Any]]:
    with app.engine.connect() as conn:
        rows = conn.execute(
            select(EnrollmentT).where(EnrollmentT.c.sequence_id == "edit-me", EnrollmentT.c.state == "active")
        ).mappings()
        return {r["lead_id"]: dict(r) for r in rows}


def _versions(app: App, sequence_id: str) -> list[int]:
    with app.engine.connect() as conn:
        return list(conn.execute(select(VersionT.c.version).where(VersionT.c.sequence_id == sequence_id)).scalars())


def test_the_positions_are_as_the_scenario_says(edited: Path, db_url: str) -> None:
    _seed(edited, db_url)
    app = _app(edited, db_url, PLAN_AT)
    try:
        snap = _snapshot(app)
    finally:
        app.close()
    assert {k: (v["next_step"], v["next_due_at"]) for k, v in snap.items()} == {
        "A1": ("c", _utc("2026-12-04T09:00:00-05:00")),
        "A2": ("c", _utc("2026-12-04T09:00:00-05:00")),
        "B1": ("b", _utc("2026-12-04T09:00:00-05:00")),
        "B2": ("b", _utc("2026-12-04T09:00:00-05:00")),
        "C1": ("a", _utc("2026-12-03T10:00:00-05:00")),
        "C2": ("a", _utc("2026-12-03T10:00:00-05:00")),
    }


def test_editing_the_file_changes_nothing_until_applied(edited: Path, db_url: str) -> None:
    _seed(edited, db_url)
    (edited / "sequences" / "edit-me.yaml").write_text(V2)
    (edited / "templates" / "edit-me" / "a.md.j2").write_text("Hi {{ lead.first_name }}, NEW text for a.\n")
    app = _app(edited, db_url, "2026-12-03T10:30:00-05:00")
    try:
        before = _snapshot(app)
        asyncio_run(app)  # C1 and C2 get `a` as published: the old text
        with app.engine.connect() as conn:
            bodies = dict(
                conn.execute(select(TouchT.c.lead_id, TouchT.c.body).where(TouchT.c.lead_id.in_(["C1", "C2"]))).all()
            )
        assert bodies == {"C1": "Hi C1, this is step a.", "C2": "Hi C2, this is step a."}
        after = _snapshot(app)
        assert {k: v["version_id"] for k, v in after.items()} == {k: v["version_id"] for k, v in before.items()}
        assert after["A1"]["next_step"] == "c"  # still the published plan
        assert _versions(app, "edit-me") == [1]
    finally:
        app.close()


def asyncio_run(app: App) -> None:
    import asyncio

    asyncio.run(run_once(app))


def test_plan_names_every_change_and_counts_the_enrollments_it_reaches(edited: Path, db_url: str) -> None:
    _seed(edited, db_url)
    (edited / "sequences" / "edit-me.yaml").write_text(V2)
    app = _app(edited, db_url, PLAN_AT)
    try:
        plan = make_plan(app).as_json()
        assert _versions(app, "edit-me") == [1]  # planning changes nothing
    finally:
        app.close()
    [seq] = [s for s in plan["sequences"] if s["sequence"] == "edit-me"]
    assert (seq["status"], seq["from_version"], seq["to_version"], seq["live_enrollments"]) == ("changed", 1, 2, 6)
    changes = {(c["step"], c["change"]): c for c in seq["changes"]}
    assert set(changes) == {("b", "changed"), ("e", "added"), ("d", "changed"), ("c", "removed")}
    b = changes[("b", "changed")]
    assert (b["fields"], b["enrollments"], b["later"], b["earlier"]) == ({"day": [3, 4]}, 4, 2, 0)
    assert b["summary"] == "b: day: 3 -> 4, 4 active enrollments, next touch moves later for 2 of them"
    assert (changes[("e", "added")]["enrollments"], changes[("e", "added")]["past"]) == (6, 0)
    assert changes[("c", "removed")]["summary"] == "c removed: 6 enrollments will skip it"
    assert changes[("d", "changed")]["fields"] == {"day": [7, 8]}
    assert seq["enrollments"] == {
        "migrated": 6, "next_step_changes": 2, "next_touch_later": 4, "next_touch_earlier": 0,
        "complete": 0, "pending_cancelled": 0, "sending_now": 0,
    }  # fmt: skip


def test_apply_migrates_every_enrollment_exactly_as_the_plan_said(edited: Path, db_url: str) -> None:
    _seed(edited, db_url)
    (edited / "sequences" / "edit-me.yaml").write_text(V2)
    app = _app(edited, db_url, PLAN_AT)
    try:
        before = _snapshot(app)
        planned = make_plan(app, ["edit-me"]).as_json()
        done = apply(app, ["edit-me"]).as_json()
        after = _snapshot(app)
        with app.engine.connect() as conn:
            v2 = conn.execute(
                select(VersionT.c.id).where(VersionT.c.sequence_id == "edit-me", VersionT.c.version == 2)
            ).scalar_one()
            migrated_rows = conn.execute(
                select(HistoryT.c.lead_id, HistoryT.c.detail).where(HistoryT.c.kind == "migrated")
            )
            migrated = {lead: detail for lead, detail in migrated_rows}
    finally:
        app.close()
    assert done["applied"] is True
    assert done["sequences"] == planned["sequences"]  # same numbers, computed in apply's own transaction
    # Derived from the rows alone, not from the plan:
    later = sum(1 for k in after if after[k]["next_due_at"] > before[k]["next_due_at"])
    earlier = sum(1 for k in after if after[k]["next_due_at"] < before[k]["next_due_at"])
    step_changes = sum(1 for k in after if after[k]["next_step"] != before[k]["next_step"])
    counts = planned["sequences"][0]["enrollments"]
    assert (later, earlier, step_changes) == (
        counts["next_touch_later"],
        counts["next_touch_earlier"],
        counts["next_step_changes"],
    )
    assert {k: (v["next_step"], v["next_index"], v["next_due_at"]) for k, v in after.items()} == {
        "A1": ("e", 2, _utc("2026-12-07T09:00:00-05:00")),  # c removed; e is 3 allowed days after b (Wed)
        "A2": ("e", 2, _utc("2026-12-07T09:00:00-05:00")),
        "B1": ("b", 1, _utc("2026-12-07T09:00:00-05:00")),  # day 4 now: 3 allowed days after `a` on Wed
        "B2": ("b", 1, _utc("2026-12-07T09:00:00-05:00")),
        "C1": ("a", 0, _utc("2026-12-03T10:00:00-05:00")),  # untouched
        "C2": ("a", 0, _utc("2026-12-03T10:00:00-05:00")),
    }
    assert {v["version_id"] for v in after.values()} == {v2}
    assert sorted(migrated) == sorted(after)  # every migration is in the lead's history
    # and says what moved: the step always, the due time when it changed (C1 and C2 keep both, and
    # their rows are the ones the database writes itself, INSERT ... SELECT, on both stores)
    expected = {}
    for lead, was in before.items():
        now_at = after[lead]
        detail = {"sequence": "edit-me", "from_version": 1, "to_version": 2}
        detail["next_step"] = [was["next_step"], now_at["next_step"]]
        if was["next_due_at"] != now_at["next_due_at"]:
            detail["next_due_at"] = [was["next_due_at"].isoformat(), now_at["next_due_at"].isoformat()]
        expected[lead] = detail
    assert migrated == expected
    assert sorted(lead for lead, d in migrated.items() if "next_due_at" not in d) == ["C1", "C2"]


def test_after_apply_the_engine_follows_the_new_version_and_never_repeats_a_step(edited: Path, db_url: str) -> None:
    _seed(edited, db_url)
    (edited / "sequences" / "edit-me.yaml").write_text(V2)
    app = _app(edited, db_url, PLAN_AT)
    try:
        apply(app)
    finally:
        app.close()
    for day in range(3, 18):
        app = _app(edited, db_url, f"2026-12-{day:02d}T10:30:00-05:00")
        try:
            asyncio_run(app)
        finally:
            app.close()
    app = _app(edited, db_url, "2026-12-18T12:00:00-05:00")
    try:
        with app.engine.connect() as conn:
            sent = conn.execute(
                select(TouchT.c.lead_id, TouchT.c.step_id)
                .where(TouchT.c.status == "sent")
                .order_by(TouchT.c.lead_id, TouchT.c.id)
            ).all()
    finally:
        app.close()
    by_lead: dict[str, list[str]] = {}
    for lead, step in sent:
        by_lead.setdefault(lead, []).append(step)
    assert by_lead == {
        "A1": ["a", "b", "e", "d"], "A2": ["a", "b", "e", "d"],
        "B1": ["a", "b", "e", "d"], "B2": ["a", "b", "e", "d"],
        "C1": ["a", "b", "e", "d"], "C2": ["a", "b", "e", "d"],
    }  # fmt: skip
    assert max(Counter(sent).values()) == 1


def test_pinned_sequence_keeps_enrollments_on_their_version(edited: Path, db_url: str) -> None:
    _seed(edited, db_url)
    (edited / "sequences" / "edit-me.yaml").write_text(V2.replace("kind: outbound\n", "kind: outbound\nmigrate: pin\n"))
    app = _app(edited, db_url, PLAN_AT)
    try:
        before = _snapshot(app)
        plan = apply(app).as_json()
        after = _snapshot(app)
        import_leads(
            app.engine,
            [(2, {"id": "D1", "email": "d1@lead.example", "first_name": "D1", "owner": "alice"})],
            app.settings,
            app.clock.now(),
        )
        assert enroll(app, "edit-me", ["D1"]).version == 2
        with app.engine.connect() as conn:
            d1 = conn.execute(select(EnrollmentT.c.version_id).where(EnrollmentT.c.lead_id == "D1")).scalar_one()
    finally:
        app.close()
    [seq] = [s for s in plan["sequences"] if s["sequence"] == "edit-me"]
    assert seq["pinned"] is True and seq["enrollments"] == {"migrated": 0, "stay_on_old_version": 6}
    assert after == before  # not a column moved
    assert d1 not in {v["version_id"] for v in after.values()}


def test_apply_is_atomic_when_one_sequence_cannot_be_applied(edited: Path, db_url: str) -> None:
    """`zz-later` has a touch being sent right now, so apply refuses, and `edit-me` is not applied either."""
    nurture = V1.replace("edit-me\n", "zz-later\n", 1).replace("kind: outbound", "kind: nurture")
    (edited / "sequences" / "zz-later.yaml").write_text(nurture)
    _seed(edited, db_url)
    app = _app(edited, db_url, "2026-12-03T10:30:00-05:00")
    try:
        asyncio_run(app)  # C1 and C2 get edit-me's `a`; nothing of edit-me is in flight now
        assert enroll(app, "zz-later", ["C1"]).refused == []
    finally:
        app.close()
    app = _app(edited, db_url, "2026-12-03T10:31:00-05:00")
    try:
        # A worker has claimed zz-later's first touch and is sending it (no result recorded yet).
        jobs = Dispatcher(app, None, None, "w-sending").claim(app.clock.now(), PassReport())  # type: ignore[arg-type]
        assert [(j.spec.id, j.enrollment.lead_id) for j in jobs] == [("zz-later", "C1")]
    finally:
        app.close()
    (edited / "sequences" / "edit-me.yaml").write_text(V2)
    (edited / "sequences" / "zz-later.yaml").write_text(
        V2.replace("edit-me\n", "zz-later\n", 1).replace("kind: outbound", "kind: nurture")
    )
    app = _app(edited, db_url, "2026-12-03T10:32:00-05:00")
    try:
        before = _snapshot(app)
        with pytest.raises(ApplyError, match="being sent right now"):
            apply(app)  # edit-me (first in order) is fine; zz-later is not: neither is applied
        assert _versions(app, "edit-me") == [1] and _versions(app, "zz-later") == [1]
        assert _snapshot(app) == before
        with app.engine.connect() as conn:
            assert conn.execute(select(HistoryT.c.id).where(HistoryT.c.kind == "migrated")).first() is None
    finally:
        app.close()


CALLS = """id: calls
name: Calls
kind: outbound
schedule: {spread: 0}
steps:
  - {id: c1, day: 1, channel: call, template: outbound-saas/call-script.md.j2}
  - {id: e1, day: 2, channel: email, subject: Hello, template: edit-me/a.md.j2}
  - {id: c2, day: 3, channel: call, template: outbound-saas/call-script.md.j2}
"""


def _open_call(edited: Path, db_url: str) -> int:
    """Lead A1 in `calls` with the c1 call task open (Mon 2026-11-30 09:30)."""
    (edited / "sequences" / "calls.yaml").write_text(CALLS)
    app = _app(edited, db_url, GROUPS["A"])
    try:
        rows: list[tuple[int, dict[str, str | None]]] = [
            (2, {"id": "A1", "email": "a1@lead.example", "first_name": "A1", "owner": "alice", "company": "Co",
                 "phone": "+12125550123", "timezone": "America/New_York", "country": "US"})
        ]  # fmt: skip
        import_leads(app.engine, rows, app.settings, app.clock.now())
        assert enroll(app, "calls", ["A1"]).refused == []
    finally:
        app.close()
    app = _app(edited, db_url, PASSES[0])
    try:
        asyncio_run(app)
        with app.engine.connect() as conn:
            task_id: int = conn.execute(
                select(TouchT.c.id).where(TouchT.c.step_id == "c1", TouchT.c.status == "task_open")
            ).scalar_one()
    finally:
        app.close()
    return task_id


def test_an_open_task_keeps_its_step_and_the_sequence_goes_on_by_the_new_days(edited: Path, db_url: str) -> None:
    from cadence.outcomes.dispositions import log_disposition

    task_id = _open_call(edited, db_url)
    (edited / "sequences" / "calls.yaml").write_text(
        CALLS.replace(
            "{id: e1, day: 2,", "{id: e0, day: 1, channel: task, title: Research}\n  - {id: e1, day: 3,"
        ).replace("{id: c2, day: 3,", "{id: c2, day: 4,")
    )
    app = _app(edited, db_url, "2026-11-30T10:00:00-05:00")
    try:
        plan = apply(app, ["calls"]).as_json()
        assert plan["sequences"][0]["enrollments"]["pending_cancelled"] == 0
        with app.engine.connect() as conn:
            task = conn.execute(select(TouchT.c.status, TouchT.c.step_index).where(TouchT.c.id == task_id)).one()
            row = conn.execute(select(EnrollmentT).where(EnrollmentT.c.lead_id == "A1")).mappings().one()
        assert tuple(task) == ("task_open", 0)
        assert (row["next_step"], row["pending_touch_id"], row["next_due_at"]) == ("c1", task_id, None)
    finally:
        app.close()
    app = _app(edited, db_url, "2026-11-30T11:00:00-05:00")
    try:
        log_disposition(app, task_id, "left_voicemail")  # a `continue` rule: on to the next step of v2
        with app.engine.connect() as conn:
            row = conn.execute(select(EnrollmentT).where(EnrollmentT.c.lead_id == "A1")).mappings().one()
        assert (row["next_step"], row["next_due_at"]) == ("e0", _utc("2026-11-30T11:00:00-05:00"))
    finally:
        app.close()


def test_an_open_task_of_a_removed_step_is_cancelled_and_the_lead_moves_on(edited: Path, db_url: str) -> None:
    task_id = _open_call(edited, db_url)
    (edited / "sequences" / "calls.yaml").write_text(
        CALLS.replace("  - {id: c1, day: 1, channel: call, template: outbound-saas/call-script.md.j2}\n", "")
    )
    app = _app(edited, db_url, "2026-11-30T10:00:00-05:00")
    try:
        [seq] = apply(app, ["calls"]).as_json()["sequences"]
        assert seq["enrollments"]["pending_cancelled"] == 1
        [removed] = seq["changes"]
        assert (removed["step"], removed["change"], removed["enrollments"], removed["cancelled"]) == (
            "c1",
            "removed",
            0,
            1,
        )
        assert removed["summary"] == "c1 removed: 0 enrollments will skip it; 1 of its touches in flight are cancelled"
        with app.engine.connect() as conn:
            status = conn.execute(select(TouchT.c.status).where(TouchT.c.id == task_id)).scalar_one()
            row = conn.execute(select(EnrollmentT).where(EnrollmentT.c.lead_id == "A1")).mappings().one()
        assert status == "cancelled"
        # e1 (day 2) is one allowed day after the moment the task was taken away
        assert (row["next_step"], row["next_index"], row["pending_touch_id"]) == ("e1", 0, None)
        assert row["next_due_at"] == _utc("2026-12-01T09:00:00-05:00")
    finally:
        app.close()
