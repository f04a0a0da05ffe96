"""One lead never stops the engine: whatever one lead, file or rule does wrong fails that item with a
reason, and every other lead's touches go out and are recorded. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select, update

from cadence.app import App
from cadence.engine.runner import run_once
from cadence.engine.sweep import sweep
from cadence.enrollment.enroll import enroll
from cadence.enrollment.lead_import import import_leads
from cadence.outcomes.dispositions import log_disposition
from cadence.store.tables import EnrollmentT, HistoryT, RecycleT, TouchT
from tests.conftest import make_app

ENROLL_AT = "2026-11-30T08:00:00-05:00"  # a Monday, before the window
SEND_AT = "2026-11-30T10:00:00-05:00"


def _project(project: Path, sequences: dict[str, str], templates: dict[str, str], **config: Any) -> None:
    for name, text in sequences.items():
        (project / "sequences" / f"{name}.yaml").write_text(text)
    for name, text in templates.items():
        path = project / "templates" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if config:
        path = project / "config.yaml"
        settings = yaml.safe_load(path.read_text())
        for key, value in config.items():
            settings[key] = {**settings.get(key, {}), **value} if isinstance(value, dict) else value
        path.write_text(yaml.safe_dump(settings, sort_keys=False))


def _leads(app: App, *rows: dict[str, str]) -> None:
    local = {"owner": "alice", "timezone": "America/New_York", "country": "US", "company": "Acme"}
    cells: list[tuple[int, dict[str, str | None]]] = [(n, {**local, **row}) for n, row in enumerate(rows, start=2)]
    assert import_leads(app.engine, cells, app.settings, app.clock.now()).rejected == []


def _pass(app: App, at: str) -> dict[str, Any]:
    from cadence.clock import FixedClock, parse_instant

    assert isinstance(app.clock, FixedClock)
    app.clock.set(parse_instant(at))
    return asyncio.run(run_once(app)).as_json()


def _touches(app: App) -> dict[str, dict[str, Any]]:
    with app.engine.connect() as conn:
        rows = conn.execute(select(TouchT).where(TouchT.c.step_index >= 0).order_by(TouchT.c.id)).mappings()
        return {f"{r['lead_id']}/{r['step_id']}": dict(r) for r in rows}


def _attention(app: App, lead: str) -> list[dict[str, Any]]:
    with app.engine.connect() as conn:
        rows = conn.execute(
            select(HistoryT.c.detail).where(HistoryT.c.lead_id == lead, HistoryT.c.kind == "action")
        ).scalars()
        return [d for d in rows if d.get("action") == "needs attention"]


def _state(app: App, lead: str) -> tuple[str, Any]:
    with app.engine.connect() as conn:
        row = conn.execute(select(EnrollmentT.c.state, EnrollmentT.c.paused_until).where(EnrollmentT.c.lead_id == lead))
        return tuple(row.one())  # type: ignore[return-value]


@pytest.fixture
def opened() -> Any:
    apps: list[App] = []
    yield apps
    for app in apps:
        app.close()


def test_a_template_that_raises_for_one_lead_fails_that_touch_and_the_batch_goes_out(
    project: Path, db_url: str, opened: list[App]
) -> None:
    _project(
        project,
        {"per-seat": "id: per-seat\nname: p\nsteps:\n  - {id: pitch, day: 1, channel: email, subject: hi, "
                     "template: per-seat.md.j2}\n"},
        {"per-seat.md.j2": "That is {{ 100 / lead.score }} dollars a seat, {{ lead.first_name }}.\n"},
    )  # fmt: skip
    app = make_app(project, db_url, ENROLL_AT)
    opened.append(app)
    _leads(app, *({"id": f"L{n}", "email": f"l{n}@acme.example", "first_name": f"Lead{n}", "score": str(n)}
                  for n in range(4)))  # fmt: skip
    assert len(enroll(app, "per-seat", ["L0", "L1", "L2", "L3"], allow_missing=True).enrolled) == 4
    report = _pass(app, SEND_AT)
    assert report["dispatch"]["sent"] == {"email": 3} and report["dispatch"]["failed"] == 1
    touches = _touches(app)
    assert touches["L0/pitch"]["status"] == "failed"
    assert "ZeroDivisionError" in touches["L0/pitch"]["error"] and "not sent" in touches["L0/pitch"]["error"]
    assert {touches[f"L{n}/pitch"]["status"] for n in (1, 2, 3)} == {"sent"}


def test_the_enrollment_check_names_a_template_that_raises_for_a_lead(
    project: Path, db_url: str, opened: list[App]
) -> None:
    _project(
        project,
        {"per-seat": "id: per-seat\nname: p\nsteps:\n  - {id: pitch, day: 1, channel: email, subject: hi, "
                     "template: per-seat.md.j2}\n"},
        {"per-seat.md.j2": "That is {{ 100 / lead.score }} dollars a seat.\n"},
    )  # fmt: skip
    app = make_app(project, db_url, ENROLL_AT)
    opened.append(app)
    _leads(
        app,
        {"id": "L0", "email": "l0@acme.example", "score": "0"},
        {"id": "L1", "email": "l1@acme.example", "score": "1"},
    )
    report = enroll(app, "per-seat", ["L0", "L1"])
    assert [e["lead"] for e in report.enrolled] == ["L1"]
    [refused] = report.refused
    assert refused["lead"] == "L0" and "per-seat.md.j2 cannot be rendered" in refused["reason"]


def test_a_due_enrollment_whose_step_no_longer_exists_is_set_aside_and_the_others_go_out(
    project: Path, db_url: str, opened: list[App]
) -> None:
    app = make_app(project, db_url, ENROLL_AT)
    opened.append(app)
    _leads(app, *({"id": f"L{n}", "email": f"l{n}@acme.example", "first_name": f"Lead{n}"} for n in range(1, 4)))
    enroll(app, "outbound-saas", ["L1", "L2", "L3"])
    with app.engine.begin() as conn:  # a row a bad hand edit left pointing past the sequence's last step
        conn.execute(update(EnrollmentT).where(EnrollmentT.c.lead_id == "L2").values(next_index=99))
    report = _pass(app, SEND_AT)
    assert report["dispatch"]["sent"] == {"email": 2}
    touches = _touches(app)
    assert touches["L1/intro"]["status"] == touches["L3/intro"]["status"] == "sent"
    assert not [key for key in touches if key.startswith("L2/")]
    [attention] = _attention(app, "L2")
    assert attention["reason"].startswith("claiming outbound-saas/intro failed: IndexError")
    assert _state(app, "L2") == ("paused", None)  # until someone looks: it does not come back every pass
    _pass(app, "2026-11-30T10:05:00-05:00")
    assert len(_attention(app, "L2")) == 1 and not [key for key in _touches(app) if key.startswith("L2/")]


def test_a_move_that_fails_after_a_send_sets_that_lead_aside_and_records_the_others(
    project: Path, db_url: str, opened: list[App]
) -> None:
    # SMS may go out 07:00-08:00 only, and the send window is 09:00-17:00: after the email is sent,
    # planning the text fails for leads of that sequence; the one-email sequence's lead is not affected.
    _project(
        project,
        {
            "mail-then-text": "id: mail-then-text\nname: m\nsteps:\n"
            "  - {id: mail, day: 1, channel: email, subject: hi, template: outbound-saas/bump.md.j2}\n"
            "  - {id: text, day: 1, channel: sms, template: outbound-saas/sms-1.txt.j2}\n",
            "mail-only": "id: mail-only\nname: o\nsteps:\n"
            "  - {id: mail, day: 1, channel: email, subject: hi, template: outbound-saas/bump.md.j2}\n",
        },
        {},
        sms={"quiet_hours": "08:00-07:00"},
    )
    app = make_app(project, db_url, ENROLL_AT)
    opened.append(app)
    _leads(
        app,
        {"id": "T1", "email": "t1@acme.example", "first_name": "Tess"},
        {"id": "M1", "email": "m1@acme.example", "first_name": "Max"},
    )
    assert enroll(app, "mail-then-text", ["T1"]).refused == [] and enroll(app, "mail-only", ["M1"]).refused == []
    report = _pass(app, SEND_AT)
    assert report["dispatch"]["sent"] == {"email": 2}
    touches = _touches(app)
    assert touches["T1/mail"]["status"] == touches["M1/mail"]["status"] == "sent"  # the send is recorded either way
    [attention] = _attention(app, "T1")
    assert "ValueError" in attention["reason"] and "quiet hours" in attention["reason"]
    assert _state(app, "T1")[0] == "paused"
    assert _state(app, "M1")[0] == "finished"


def test_a_recycle_into_a_deleted_sequence_is_refused_once_and_the_sweep_goes_on(
    project: Path, db_url: str, opened: list[App]
) -> None:
    app = make_app(project, db_url, ENROLL_AT)
    opened.append(app)
    _leads(app, {"id": "L1", "email": "l1@acme.example", "first_name": "Ann"})
    enroll(app, "outbound-saas", ["L1"])
    _pass(app, SEND_AT)
    with app.engine.connect() as conn:
        task_id = conn.execute(select(TouchT.c.id).where(TouchT.c.step_id == "call-1")).scalar_one()
    log_disposition(app, task_id, "not_now")  # recycle into nurture-quarterly in 30 days
    (project / "sequences" / "nurture-quarterly.yaml").unlink()  # then someone deletes the file
    later = make_app(project, db_url, "2027-01-05T10:00:00-05:00")
    opened.append(later)
    report = sweep(later, later.clock.now())
    assert report.recycled == 0
    with later.engine.connect() as conn:
        assert conn.execute(select(RecycleT.c.id)).all() == []  # it does not come back every minute
        refused = [
            d
            for d in conn.execute(select(HistoryT.c.detail).where(HistoryT.c.kind == "action")).scalars()
            if d.get("action") == "recycle refused"
        ]
    assert len(refused) == 1 and "nurture-quarterly" in refused[0]["reason"]
    assert sweep(later, later.clock.now()).recycled == 0
