"""Dispositions and events through the CLI under CADENCE_NOW: each rule and built-in, end to end."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from cadence.clock import parse_instant
from tests.conftest import Cli

MON = "2026-11-30T08:00:00-05:00"
LEAD_CSV = (
    "id,email,phone,first_name,last_name,company,owner,timezone,country,sms_consent,score\n"
    "L1,dana@northwind.example,+12125550101,Dana,Wu,Northwind,alice,America/New_York,US,yes,90\n"
    "L2,sam@contoso.example,+12125550102,Sam,Patel,Contoso,alice,America/New_York,US,yes,40\n"
)


def _ok(result) -> str:  # type: ignore[no-untyped-def]
    assert result.exit_code == 0, result.output
    return str(result.stdout)


def _json(result):  # type: ignore[no-untyped-def]
    return json.loads(_ok(result))


def _iso(text: str, days: float = 0, hours: float = 0) -> str:
    return (parse_instant(text) + timedelta(days=days, hours=hours)).astimezone(parse_instant(MON).tzinfo).isoformat()


def _local(when: str) -> str:
    return datetime.fromisoformat(when).astimezone(parse_instant("2026-11-30T00:00:00-05:00").tzinfo).isoformat()


@pytest.fixture
def started(cli: Cli, project: Path) -> Cli:
    """L1 and L2 enrolled in outbound-saas on Monday; the day-1 email went out and call-1 is open."""
    (project / "two.csv").write_text(LEAD_CSV)
    _ok(cli("leads", "import", "two.csv"))
    _ok(cli("enroll", "outbound-saas", "L1", "L2", now=MON))
    _ok(cli("run", "--once", now="2026-11-30T10:00:00-05:00"))
    return cli


def _task(cli: Cli, lead: str, now: str) -> dict:  # type: ignore[type-arg]
    tasks = _json(cli("tasks", "--owner", "alice", "--json", now=now))
    return next(t for t in tasks if t["lead"]["id"] == lead)


def _status(cli: Cli, lead: str, now: str = MON) -> dict:  # type: ignore[type-arg]
    return _json(cli("status", lead, "--json", now=now))  # type: ignore[no-any-return]


def test_task_queue_puts_overdue_first_then_hottest(started: Cli) -> None:
    tasks = _json(started("tasks", "--owner", "alice", "--json", now="2026-11-30T11:00:00-05:00"))
    assert [t["lead"]["id"] for t in tasks] == ["L1", "L2"]  # both due today: score 90 before 40
    assert tasks[0]["script"] and "Dana" in tasks[0]["script"]
    assert _json(started("tasks", "--due", "overdue", "--json", now="2026-11-30T11:00:00-05:00")) == []
    overdue = _json(started("tasks", "--due", "overdue", "--json", now="2026-12-01T11:00:00-05:00"))
    assert len(overdue) == 2


def test_unknown_disposition_is_refused_with_the_valid_codes(started: Cli) -> None:
    task = _task(started, "L1", "2026-11-30T11:00:00-05:00")
    result = started("log", str(task["id"]), "maybe", now="2026-11-30T11:00:00-05:00")
    assert result.exit_code == 1
    assert "unknown disposition 'maybe'" in result.output and "not_now" in result.output
    assert _task(started, "L1", "2026-11-30T11:05:00-05:00")["id"] == task["id"]  # still open, nothing changed


def test_connected_interested_finishes_as_qualified(started: Cli) -> None:
    task = _task(started, "L1", "2026-11-30T11:00:00-05:00")
    _ok(started("log", str(task["id"]), "connected_interested", now="2026-11-30T11:00:00-05:00"))
    status = _status(started, "L1")
    assert status["lead"]["stage"] == "qualified"
    assert status["enrollments"][0]["state"] == "finished"
    assert status["enrollments"][0]["outcome"] == "qualified"


def test_not_now_recycles_into_nurture_exactly_thirty_days_later(started: Cli, project: Path) -> None:
    task = _task(started, "L1", "2026-12-01T11:00:00-05:00")
    _ok(started("log", str(task["id"]), "not_now", "--note", "call back in Q1", now="2026-12-01T11:00:00-05:00"))
    status = _status(started, "L1", "2026-12-01T11:00:00-05:00")
    assert status["lead"]["stage"] == "nurture"
    assert status["enrollments"][0]["state"] == "finished" and status["enrollments"][0]["outcome"] == "recycled"
    _ok(started("run", "--once", now="2026-12-31T10:59:00-05:00"))  # a minute early: still cooling off
    assert len(_status(started, "L1", "2026-12-31T11:00:00-05:00")["enrollments"]) == 1
    _ok(started("run", "--once", now="2026-12-31T11:00:00-05:00"))  # exactly 30 days later
    enrollments = _status(started, "L1", "2026-12-31T11:00:00-05:00")["enrollments"]
    assert [e["sequence"] for e in enrollments] == ["outbound-saas", "nurture-quarterly"]
    assert enrollments[1]["enrolled_at"] == parse_instant("2026-12-31T11:00:00-05:00").isoformat()
    _ok(started("run", "--once", now="2026-12-31T15:00:00-05:00"))  # Thursday, inside 10:00-16:00
    touches = _status(started, "L1", "2026-12-31T15:00:00-05:00")["touches"]
    recap = next(t for t in touches if t["step"] == "recap")
    assert recap["status"] == "sent" and recap["sequence"] == "nurture-quarterly"
    story = [h["kind"] for h in _json(started("history", "L1", "--json", now="2026-12-31T15:00:00-05:00"))]
    assert "disposition" in story and story.count("enrolled") == 2


def test_reply_during_nurture_enrolls_hot_and_opens_an_owner_task(cli: Cli, project: Path) -> None:
    (project / "two.csv").write_text(LEAD_CSV)
    _ok(cli("leads", "import", "two.csv"))
    _ok(cli("enroll", "nurture-monthly", "L1", now=MON))
    done = _json(
        cli("event", "L1", "replied", "--note", "sounds interesting", "--json", now="2026-12-01T09:00:00-05:00")
    )
    assert any("enrolled into outbound-hot" in a for a in done["actions"])
    status = _status(cli, "L1", "2026-12-01T09:00:00-05:00")
    states = {e["sequence"]: (e["state"], e["outcome"]) for e in status["enrollments"]}
    assert states == {"nurture-monthly": ("finished", "replied"), "outbound-hot": ("active", None)}
    tasks = _json(cli("tasks", "--owner", "alice", "--json", now="2026-12-01T09:00:00-05:00"))
    assert [t["step"] for t in tasks] == ["notify-owner"]
    # Speed to lead: the hot sequence's immediate email goes on the next pass, no spread.
    _ok(cli("run", "--once", now="2026-12-01T09:00:30-05:00"))
    thanks = next(t for t in _status(cli, "L1", "2026-12-01T09:01:00-05:00")["touches"] if t["step"] == "thanks")
    assert thanks["status"] == "sent"


def test_wrong_number_drops_call_and_sms_steps_but_email_goes_on(started: Cli) -> None:
    task = _task(started, "L1", "2026-11-30T11:00:00-05:00")
    _ok(started("log", str(task["id"]), "wrong_number", now="2026-11-30T11:00:00-05:00"))
    for day in range(1, 16):
        _ok(started("run", "--once", now=_iso("2026-11-30T15:30:00-05:00", days=day)))
    by_step = {t["step"]: t for t in _status(started, "L1", "2026-12-20T12:00:00-05:00")["touches"] if t["id"]}
    assert by_step["sms-1"]["status"] == "skipped" and by_step["sms-1"]["error"] == "sms dropped for this lead"
    assert by_step["call-2"]["status"] == "skipped"
    assert by_step["case-study"]["status"] == "sent"


def test_do_not_call_suppresses_call_and_sms_across_sequences(started: Cli) -> None:
    task = _task(started, "L1", "2026-11-30T11:00:00-05:00")
    _ok(started("log", str(task["id"]), "do_not_call", now="2026-11-30T11:00:00-05:00"))
    for day in range(1, 6):
        _ok(started("run", "--once", now=_iso("2026-11-30T15:30:00-05:00", days=day)))
    by_step = {t["step"]: t for t in _status(started, "L1", "2026-12-07T12:00:00-05:00")["touches"] if t["id"]}
    assert (by_step["sms-1"]["status"] == "skipped" and "STOP" in by_step["sms-1"]["error"]) or "opted out" in (
        by_step["sms-1"]["error"] or ""
    )


def test_sms_stop_stops_sms_everywhere_and_email_continues(started: Cli) -> None:
    done = _json(started("event", "L1", "sms_stop", "--json", now="2026-11-30T12:00:00-05:00"))
    assert any("suppressed SMS" in a for a in done["actions"])
    task = _task(started, "L1", "2026-11-30T12:00:00-05:00")
    _ok(started("log", str(task["id"]), "no_answer", now="2026-11-30T12:00:00-05:00"))
    for day in range(1, 6):
        _ok(started("run", "--once", now=_iso("2026-11-30T15:30:00-05:00", days=day)))
    by_step = {t["step"]: t for t in _status(started, "L1", "2026-12-07T12:00:00-05:00")["touches"] if t["id"]}
    assert by_step["sms-1"]["status"] == "skipped"
    assert by_step["bump"]["status"] == "sent"
    assert _status(started, "L1")["enrollments"][0]["state"] == "active"


def test_out_of_office_pauses_until_the_return_date_then_resumes(started: Cli) -> None:
    _ok(started("event", "L2", "out_of_office", "--until", "2026-12-14", now="2026-11-30T12:00:00-05:00"))
    assert _status(started, "L2")["enrollments"][0]["state"] == "paused"
    _ok(started("run", "--once", now="2026-12-10T12:00:00-05:00"))
    assert _status(started, "L2")["enrollments"][0]["state"] == "paused"
    _ok(started("run", "--once", now="2026-12-14T12:00:00-05:00"))
    enrollment = _status(started, "L2", "2026-12-14T12:00:00-05:00")["enrollments"][0]
    assert enrollment["state"] == "active"


def test_meeting_booked_event_ends_the_sequence(started: Cli) -> None:
    _ok(started("event", "L1", "meeting_booked", now="2026-11-30T12:00:00-05:00"))
    enrollment = _status(started, "L1")["enrollments"][0]
    assert (enrollment["state"], enrollment["outcome"]) == ("finished", "meeting_booked")
    assert _task(started, "L2", "2026-11-30T12:00:00-05:00")  # the other lead is untouched


def test_pause_and_resume_by_hand(started: Cli) -> None:
    _ok(started("pause", "L2", now="2026-11-30T12:00:00-05:00"))
    assert _status(started, "L2")["enrollments"][0]["state"] == "paused"
    _ok(started("resume", "L2", now="2026-12-02T12:00:00-05:00"))
    assert _status(started, "L2")["enrollments"][0]["state"] == "active"


def test_unknown_event_and_lead_are_refused(started: Cli) -> None:
    assert started("event", "L1", "exploded").exit_code == 1
    assert started("event", "nobody", "replied").exit_code == 1
