"""A lead nobody reaches cycles outbound -> nurture -> re-engage, and closes as unresponsive."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from cadence.engine.runner import run_once
from cadence.enrollment.enroll import enroll
from cadence.enrollment.lead_import import import_leads
from cadence.enrollment.status import lead_status
from cadence.outcomes.history import lead_history
from tests.conftest import make_app

ONE_EMAIL = (
    "id: {id}\nname: {id}\nkind: {kind}\nsteps:\n"
    "  - {{id: only, day: 1, channel: email, subject: hi, template: outbound-saas/bump.md.j2}}\n"
)


def test_completed_twice_past_max_recycles_closes_as_unresponsive(project: Path, db_url: str) -> None:
    for seq, kind in (("outbound-saas", "outbound"), ("nurture-monthly", "nurture"), ("outbound-reengage", "outbound")):
        (project / "sequences" / f"{seq}.yaml").write_text(ONE_EMAIL.format(id=seq, kind=kind))
    app = make_app(project, db_url, "2026-11-30T08:00:00-05:00")
    try:
        lead = {"id": "L1", "email": "dana@northwind.example", "first_name": "Dana", "owner": "alice"}
        import_leads(app.engine, [(2, lead)], app.settings, app.clock.now())  # type: ignore[list-item]
        enroll(app, "outbound-saas", ["L1"])
        # Weekly passes on Wednesdays at noon for 40 weeks: every recycle comes due and goes out.
        app.clock.set(app.clock.now() + timedelta(days=2, hours=4))
        for _ in range(40):
            asyncio.run(run_once(app))
            app.clock.set(app.clock.now() + timedelta(weeks=1))
        status = lead_status(app, "L1")
        sequences = [(e["sequence"], e["outcome"]) for e in status["enrollments"]]
        assert sequences == [
            ("outbound-saas", "completed"),
            ("nurture-monthly", "completed"),
            ("outbound-reengage", "completed"),
            ("nurture-monthly", "completed"),
            ("outbound-reengage", "completed"),
            ("nurture-monthly", "completed"),  # ... and with two re-engages behind it, no third
        ]
        assert status["lead"]["stage"] == "unresponsive"
        starts = [e["enrolled_at"] for e in status["enrollments"]]
        assert starts[1] - status["enrollments"][0]["finished_at"] >= timedelta(days=14)  # the cool-off held
        assert starts[2] - status["enrollments"][1]["finished_at"] >= timedelta(days=90)
        story = lead_history(app, "L1")
        assert any("unresponsive" in str(h["detail"]) for h in story)
    finally:
        app.close()
