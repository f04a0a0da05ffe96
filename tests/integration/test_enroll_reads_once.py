"""Enrollment reads each lead once, and still refuses exactly as before, on SQLite and PostgreSQL.

The refusal query brings what a template sees of a lead (custom fields included) and
whether a pending recycle or a finished enrollment needs a closer look, so a chunk of
leads costs one read. These tests pin what that read must still decide: the strict
render check (each refused lead named in its own reason, blank custom fields missing),
and the pending-recycle and cool-off refusals with their details.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from cadence.app import App
from cadence.enrollment.enroll import enroll
from cadence.enrollment.lead_import import import_leads
from cadence.store import recycles
from cadence.store.tables import EnrollmentT, LeadT
from tests.conftest import make_app

NOW = datetime(2026, 11, 23, 13, 0, tzinfo=UTC)  # Monday 08:00 in New York
HERE = {"owner": "alice", "timezone": "America/New_York", "country": "US"}
HINT = " (fix the lead, or enroll with --allow-missing)"


@pytest.fixture
def app(project: Path, db_url: str) -> Iterator[App]:
    (project / "templates" / "industry").mkdir()
    (project / "templates" / "industry" / "intro.md.j2").write_text(
        "Hi {{ lead.first_name }}, a note for {{ lead.industry }} teams.\n\n{{ sender.first_name }}\n"
    )
    (project / "sequences" / "industry-intro.yaml").write_text(
        "id: industry-intro\nname: Industry intro\nkind: outbound\nsteps:\n"
        "  - {id: intro, day: 1, channel: email, subject: 'For {{ lead.company }}', template: industry/intro.md.j2}\n"
    )
    application = make_app(project, db_url, NOW)
    yield application
    application.close()


def _import(app: App, *leads: dict[str, str]) -> None:
    rows: list[tuple[int, dict[str, str | None]]] = [
        (n, {**HERE, "email": f"{lead['id'].lower()}@acme.example", **lead}) for n, lead in enumerate(leads, start=2)
    ]
    report = import_leads(app.engine, rows, app.settings, NOW)
    assert report.rejected == [] and report.imported == len(leads)


def _reasons(refused: list[dict[str, str]]) -> dict[str, str]:
    return {r["lead"]: r["reason"] for r in refused}


def test_each_lead_lacking_a_field_is_named_in_its_own_reason(app: App) -> None:
    """Leads of one shape share one render; the reason still names each lead, not the first of them."""
    _import(
        app,
        {"id": "L1", "company": "Northwind"},
        {"id": "L2", "company": "Globex"},
        {"id": "L3", "company": "Initech", "first_name": "Dana"},
    )
    report = enroll(app, "outbound-saas", ["L1", "L2", "L3"])
    assert [e["lead"] for e in report.enrolled] == ["L3"]
    assert _reasons(report.refused) == {
        "L1": "L1 lacks first_name, used by outbound-saas/intro.md.j2" + HINT,
        "L2": "L2 lacks first_name, used by outbound-saas/intro.md.j2" + HINT,
    }
    with app.engine.connect() as conn:
        assert conn.execute(select(EnrollmentT.c.lead_id)).scalars().all() == ["L3"]


def test_a_custom_field_a_template_uses_must_hold_a_value(app: App) -> None:
    _import(
        app,
        {"id": "L1", "first_name": "Dana", "company": "Northwind", "industry": "Fintech – payments"},
        {"id": "L2", "first_name": "Sam", "company": "Globex", "industry": "   "},
        {"id": "L3", "first_name": "Priya", "company": "Initech"},
    )
    report = enroll(app, "industry-intro", ["L1", "L2", "L3"])
    assert [e["lead"] for e in report.enrolled] == ["L1"]
    assert _reasons(report.refused) == {
        "L2": "L2 lacks industry, used by industry/intro.md.j2" + HINT,
        "L3": "L3 lacks industry, used by industry/intro.md.j2" + HINT,
    }


def test_allow_missing_skips_the_check_and_enrolls_everyone_else_refuses_nobody(app: App) -> None:
    _import(app, {"id": "L1", "company": "Northwind"}, {"id": "L2", "company": "Globex", "first_name": "Sam"})
    report = enroll(app, "outbound-saas", ["L1", "L2"], allow_missing=True)
    assert [e["lead"] for e in report.enrolled] == ["L1", "L2"] and report.refused == []


def test_a_pending_recycle_and_the_cool_off_still_refuse_with_their_details(app: App) -> None:
    leads = [{"id": f"L{n}", "first_name": f"Ann{n}", "company": f"Co {n}"} for n in range(1, 5)]
    _import(app, *leads)
    assert len(enroll(app, "outbound-saas", ["L2", "L3"]).enrolled) == 2
    finished: dict[str, Any] = {"state": "finished", "outcome": "replied", "next_due_at": None}
    with app.engine.begin() as conn:
        recycles.add(conn, "L1", "nurture-quarterly", NOW + timedelta(days=30), "no reply", None, NOW)
        conn.execute(
            update(EnrollmentT).where(EnrollmentT.c.lead_id == "L2").values(**finished, finished_at=NOW - timedelta(5))
        )
        conn.execute(
            update(EnrollmentT).where(EnrollmentT.c.lead_id == "L3").values(**finished, finished_at=NOW - timedelta(31))
        )
    report = enroll(app, "outbound-saas", ["L1", "L2", "L3", "L4"])
    assert [e["lead"] for e in report.enrolled] == ["L3", "L4"]
    assert _reasons(report.refused) == {
        "L1": "lead L1 has a pending recycle into nurture-quarterly on 2026-12-23; "
        "use --force to enroll it now (that cancels the recycle)",
        "L2": "lead L2 finished outbound-saas on 2026-11-18 (replied), within the 30-day cool-off (enroll.cooloff); "
        "use --force to enroll it",
    }
    forced = enroll(app, "outbound-saas", ["L1", "L2"], force=True)
    assert [e["lead"] for e in forced.enrolled] == ["L1", "L2"] and forced.refused == []
    with app.engine.connect() as conn:
        assert recycles.pending_of(conn, ["L1"]) == {}  # --force cancelled it
        stages = dict(conn.execute(select(LeadT.c.id, LeadT.c.stage)).all())
    assert set(stages.values()) == {"working"}
