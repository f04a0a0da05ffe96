"""The engine end to end on each store: claim, render, send to the outbox, record, plan next."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from cadence.app import App
from cadence.clock import FixedClock, parse_instant
from cadence.engine.retry import retry
from cadence.engine.runner import run_once
from cadence.engine.sweep import sweep
from cadence.enrollment.enroll import enroll
from cadence.enrollment.lead_import import import_leads
from cadence.enrollment.status import lead_status
from cadence.outcomes.events import on_event
from cadence.store.tables import EnrollmentT, LeadT, TouchT
from tests.conftest import make_app

MONDAY_0800 = "2026-11-30T08:00:00-05:00"  # New York; no holiday that week


def _lead(**values: str) -> dict[str, str | None]:
    base = {
        "id": "L1", "email": "dana@northwind.example", "phone": "+12125550101", "first_name": "Dana",
        "last_name": "Wu", "company": "Northwind", "owner": "alice", "timezone": "America/New_York",
        "country": "US", "sms_consent": "yes",
    }  # fmt: skip
    base.update(values)
    return base  # type: ignore[return-value]


def _app(project: Path, db_url: str, now: str = MONDAY_0800) -> App:
    app = make_app(project, db_url, now)
    return app


def _add(app: App, *rows: dict[str, str | None]) -> None:
    report = import_leads(app.engine, list(enumerate(rows, start=2)), app.settings, app.clock.now())
    assert not report.rejected, report.rejected


def _at(app: App, when: str) -> None:
    assert isinstance(app.clock, FixedClock)
    app.clock.set(parse_instant(when))


def _pass(app: App):  # type: ignore[no-untyped-def]
    return asyncio.run(run_once(app))


def _touches(app: App, lead_id: str = "L1") -> list[dict]:  # type: ignore[type-arg]
    return [t for t in lead_status(app, lead_id)["touches"] if t["id"] is not None]


def _emails(project: Path) -> list[Path]:
    return sorted((project / "outbox" / "email").glob("*.eml"))


def _sms_lines(project: Path) -> list[dict]:  # type: ignore[type-arg]
    path = project / "outbox" / "sms.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _write_sequence(project: Path, name: str, body: str) -> None:
    (project / "sequences" / f"{name}.yaml").write_text(body)


@pytest.fixture
def app(project: Path, db_url: str):  # type: ignore[no-untyped-def]
    app = _app(project, db_url)
    yield app
    app.close()


def test_nothing_goes_out_before_the_window_opens(app: App, project: Path) -> None:
    _add(app, _lead())
    enroll(app, "outbound-saas", ["L1"])
    report = _pass(app)
    assert report.dispatch.claimed == 0
    assert not _emails(project)


def test_due_email_goes_out_once_and_call_task_opens(app: App, project: Path) -> None:
    _add(app, _lead())
    enroll(app, "outbound-saas", ["L1"])
    _at(app, "2026-11-30T10:00:00-05:00")
    report = _pass(app)
    assert report.dispatch.sent["email"] == 1
    assert report.dispatch.tasks_opened == 1
    assert len(_emails(project)) == 1
    again = _pass(app)
    assert again.dispatch.claimed == 0 and len(_emails(project)) == 1
    touches = {t["step"]: t for t in _touches(app)}
    assert touches["intro"]["status"] == "sent"
    assert touches["intro"]["subject"] == "Northwind + Acme"
    assert touches["call-1"]["status"] == "task_open"
    enrollment = lead_status(app, "L1")["enrollments"][0]
    assert enrollment["next_due_at"] is None  # waiting for the call task


def test_follow_up_is_threaded_under_the_first_email(app: App, project: Path) -> None:
    _add(app, _lead())
    _write_sequence(
        project,
        "two-emails",
        "id: two-emails\nname: t\nsteps:\n"
        "  - {id: intro, day: 1, channel: email, subject: 'Hello {{ lead.company }}',"
        " template: outbound-saas/intro.md.j2}\n"
        "  - {id: bump, day: 2, channel: email, reply_to: intro, template: outbound-saas/bump.md.j2}\n",
    )
    enroll(app, "two-emails", ["L1"])
    _at(app, "2026-11-30T10:00:00-05:00")
    _pass(app)
    _at(app, "2026-12-01T16:00:00-05:00")
    _pass(app)
    touches = {t["step"]: t for t in _touches(app)}
    assert touches["bump"]["status"] == "sent"
    assert touches["bump"]["subject"] == "Re: Hello Northwind"
    import email

    bump_file = [p for p in _emails(project) if touches["bump"]["message_id"] in p.read_text()]
    message = email.message_from_bytes(bump_file[0].read_bytes())
    assert message["In-Reply-To"] == touches["intro"]["message_id"]
    assert message["References"].split() == [touches["intro"]["message_id"]]


def test_template_missing_a_field_is_not_sent_and_says_why(app: App, project: Path) -> None:
    _add(app, _lead(company=""))
    enroll(app, "outbound-saas", ["L1"], allow_missing=True)  # past the enrollment check: the send-time one holds
    _at(app, "2026-11-30T10:00:00-05:00")
    _pass(app)
    intro = next(t for t in _touches(app) if t["step"] == "intro")
    assert intro["status"] == "failed"
    assert "company" in intro["error"]
    assert not _emails(project)


def test_sms_needs_consent_and_skips_without_it(app: App, project: Path) -> None:
    _add(app, _lead(sms_consent="no"))
    _write_sequence(
        project,
        "texts",
        "id: texts\nname: t\nsteps:\n  - {id: s1, day: 1, channel: sms, template: outbound-saas/sms-1.txt.j2}\n",
    )
    enroll(app, "texts", ["L1"])
    _at(app, "2026-11-30T10:00:00-05:00")
    _pass(app)
    (touch,) = _touches(app)
    assert touch["status"] == "skipped" and touch["error"] == "no SMS consent"
    assert _sms_lines(project) == []


def test_sms_never_sent_in_quiet_hours(app: App, project: Path) -> None:
    _add(app, _lead())
    _write_sequence(
        project,
        "night",
        "id: night\nname: t\nschedule: {window: always, days: [mon, tue, wed, thu, fri, sat, sun]}\n"
        "steps:\n  - {id: s1, day: 1, channel: sms, template: outbound-saas/sms-1.txt.j2}\n",
    )
    _at(app, "2026-11-30T22:30:00-05:00")
    report = enroll(app, "night", ["L1"])
    due = parse_instant(report.enrolled[0]["next_due_at"])
    assert due >= parse_instant("2026-12-01T08:00:00-05:00")
    _pass(app)
    assert _sms_lines(project) == []
    _at(app, "2026-12-01T08:00:00-05:00")
    # Even if the plan were wrong, the claim re-checks the window: force the due time into quiet hours.
    with app.engine.begin() as conn:
        conn.execute(update(EnrollmentT).values(next_due_at=parse_instant("2026-12-01T03:00:00-05:00")))
    _at(app, "2026-12-01T03:30:00-05:00")
    report2 = _pass(app)
    assert report2.dispatch.deferred == 1 and _sms_lines(project) == []
    _at(app, "2026-12-01T09:00:00-05:00")
    _pass(app)
    (line,) = _sms_lines(project)
    assert line["to"] == "+12125550101"


def test_unsubscribed_email_is_never_contacted_again_even_after_reimport(app: App, project: Path) -> None:
    _add(app, _lead())
    enroll(app, "nurture-monthly", ["L1"])
    with app.engine.begin() as conn:
        on_event(conn, app, "L1", "unsubscribed", app.clock.now(), cause="test")
    _add(app, _lead())  # imported again: the address stays suppressed
    refused = enroll(app, "outbound-saas", ["L1"]).refused
    assert refused and "opted out" in refused[0]["reason"]
    with app.engine.begin() as conn:  # even a live enrollment cannot reach a suppressed address
        conn.execute(update(EnrollmentT).values(state="active", next_due_at=app.clock.now(), outcome=None))
    _at(app, "2026-12-01T11:00:00-05:00")
    _pass(app)
    assert not _emails(project)


def test_per_lead_daily_cap_defers_and_never_drops(app: App, project: Path) -> None:
    _add(app, _lead())
    _write_sequence(
        project,
        "burst",
        "id: burst\nname: t\nsteps:\n"
        + "".join(
            f"  - {{id: e{i}, day: 1, channel: email, subject: 's{i}', template: outbound-saas/bump.md.j2}}\n"
            for i in range(3)
        ),
    )
    enroll(app, "burst", ["L1"])
    _at(app, "2026-11-30T10:00:00-05:00")
    _pass(app)
    assert len(_emails(project)) == 2  # limits.per_lead_daily = 2
    _at(app, "2026-11-30T16:00:00-05:00")
    _pass(app)
    assert len(_emails(project)) == 2
    _at(app, "2026-12-01T16:00:00-05:00")
    _pass(app)
    assert len(_emails(project)) == 3


def test_task_expires_after_allowed_days_and_sequence_moves_on(app: App, project: Path) -> None:
    _add(app, _lead())
    _write_sequence(
        project,
        "calls",
        "id: calls\nname: t\nsteps:\n"
        "  - {id: c1, day: 1, channel: call, template: outbound-saas/call-script.md.j2}\n"
        "  - {id: e1, day: 2, channel: email, subject: hi, template: outbound-saas/bump.md.j2}\n",
    )
    enroll(app, "calls", ["L1"])
    _at(app, "2026-11-30T10:00:00-05:00")
    _pass(app)
    _at(app, "2026-12-02T16:00:00-05:00")  # Wednesday: still within 2 allowed days
    _pass(app)
    assert {t["step"]: t["status"] for t in _touches(app)} == {"c1": "task_open"}
    _at(app, "2026-12-02T17:30:00-05:00")  # after Wednesday's window closed: expired
    report = _pass(app)
    assert report.sweep.expired == 1
    _at(app, "2026-12-03T16:30:00-05:00")
    _pass(app)
    statuses = {t["step"]: t["status"] for t in _touches(app)}
    assert statuses == {"c1": "expired", "e1": "sent"}


def test_lost_claim_becomes_unknown_and_only_retry_resends_it(app: App, project: Path) -> None:
    _add(app, _lead())
    _write_sequence(
        project,
        "one",
        "id: one\nname: t\nsteps:\n"
        "  - {id: e1, day: 1, channel: email, subject: hi, template: outbound-saas/bump.md.j2}\n",
    )
    enroll(app, "one", ["L1"])
    _at(app, "2026-11-30T10:00:00-05:00")
    from cadence.engine.dispatcher import Dispatcher, PassReport

    claimed = Dispatcher(app, None, None, "dead-worker").claim(app.clock.now(), PassReport())  # type: ignore[arg-type]
    assert len(claimed) == 1  # ... and the worker dies before sending or recording
    _at(app, "2026-11-30T10:04:00-05:00")
    assert _pass(app).dispatch.claimed == 0  # still leased: nobody touches it
    _at(app, "2026-11-30T10:06:00-05:00")
    report = _pass(app)
    assert report.sweep.unknown == 1 and not _emails(project)
    (touch,) = _touches(app)
    assert touch["status"] == "unknown"
    _at(app, "2026-11-30T11:00:00-05:00")
    assert _pass(app).dispatch.claimed == 0 and not _emails(project)
    retry(app, touch["id"])
    _pass(app)
    (touch,) = _touches(app)
    assert touch["status"] == "sent" and len(_emails(project)) == 1
    # the resend carries the Message-ID of the lost attempt, so a receiver that got both can drop one
    assert touch["message_id"] == claimed[0].message_id is not None
    assert f"Message-ID: {claimed[0].message_id}" in _emails(project)[0].read_text()


def test_engine_down_past_the_window_replans_instead_of_sending_late(app: App, project: Path) -> None:
    _add(app, _lead())
    enroll(app, "nurture-monthly", ["L1"])  # tue-thu, 10:00-16:00
    _at(app, "2026-12-01T19:00:00-05:00")  # due Tuesday 10:xx; the engine comes back at 19:00
    report = _pass(app)
    assert report.dispatch.deferred == 1 and not _emails(project)
    with app.engine.connect() as conn:
        due = conn.execute(select(EnrollmentT.c.next_due_at)).scalar_one()
    local = due.astimezone(parse_instant(MONDAY_0800).tzinfo)
    assert due > parse_instant("2026-12-02T10:00:00-05:00") - timedelta(seconds=1)
    assert local.date().isoformat() == "2026-12-02" or due.date().isoformat() == "2026-12-02"


def test_bounce_marks_email_invalid_and_ends_enrollment(app: App) -> None:
    _add(app, _lead())
    enroll(app, "outbound-saas", ["L1"])
    with app.engine.begin() as conn:
        on_event(conn, app, "L1", "bounced", app.clock.now(), cause="test")
        lead = conn.execute(select(LeadT.c.email_invalid)).scalar_one()
        state = conn.execute(select(EnrollmentT.c.state, EnrollmentT.c.outcome)).one()
    assert lead is True
    assert tuple(state) == ("finished", "bounced")
    with app.engine.connect() as conn:
        assert conn.execute(select(TouchT.c.id)).first() is None


def test_sweep_is_harmless_when_nothing_is_stale(app: App) -> None:
    assert sweep(app, app.clock.now()).as_json() == {
        "unknown": 0,
        "resent": 0,
        "expired": 0,
        "resumed": 0,
        "recycled": 0,
    }


def test_an_unknown_email_counts_towards_the_mailbox_daily_cap(project: Path, db_url: str) -> None:
    """It may have reached the lead, so the mailbox may have sent it: the cap must not be exceeded."""
    import yaml

    config = yaml.safe_load((project / "config.yaml").read_text())
    config["senders"][0]["daily_cap"] = 1  # alice
    (project / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    _write_sequence(
        project,
        "one",
        "id: one\nname: t\nschedule: {spread: 0}\nsteps:\n"
        "  - {id: e1, day: 1, channel: email, subject: hi, template: outbound-saas/bump.md.j2}\n",
    )
    app = _app(project, db_url)
    try:
        _add(app, _lead(), _lead(id="L2", email="sam@contoso.example", phone="+12125550102", first_name="Sam"))
        enroll(app, "one", ["L1"])
        _at(app, "2026-11-30T10:00:00-05:00")
        from cadence.engine.dispatcher import Dispatcher, PassReport

        claimed = Dispatcher(app, None, None, "dead-worker").claim(app.clock.now(), PassReport())  # type: ignore[arg-type]
        assert [j.enrollment.lead_id for j in claimed] == ["L1"]  # the worker dies mid-send
        enroll(app, "one", ["L2"])
        _at(app, "2026-11-30T10:06:00-05:00")
        report = _pass(app)
        assert report.sweep.unknown == 1
        assert report.dispatch.deferred == 1 and not _emails(project)  # L2 waits for tomorrow's cap
        with app.engine.connect() as conn:
            due = conn.execute(select(EnrollmentT.c.next_due_at).where(EnrollmentT.c.lead_id == "L2")).scalar_one()
        assert due.astimezone(parse_instant(MONDAY_0800).tzinfo).date().isoformat() == "2026-12-01"
    finally:
        app.close()
