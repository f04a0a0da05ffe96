"""Lifecycle conflicts a rep creates: recycles a later outcome cancels, the cool-off, reassigning work,
return dates in the lead's own zone, replies that reach the owner after the sequence ended, and the
strict render check at enrollment. Through the CLI under CADENCE_NOW, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.e2e.cli_flow import (
    MON,
    as_json,
    at,
    enrollment,
    event,
    history,
    import_two,
    log,
    ok,
    open_task,
    run,
    status,
)

FIRST_PASS = "2026-11-30T10:00:00-05:00"  # Monday: intro sent, call-1 open


@pytest.fixture
def started(cli: Cli, project: Path) -> Cli:
    import_two(cli, project)
    ok(cli("enroll", "outbound-saas", "L1", "L2", now=MON))
    run(cli, FIRST_PASS)
    return cli


def _recycled(cli: Cli) -> None:
    """L1's call is logged not_now: outbound-saas ends and a recycle into nurture-quarterly waits 30 days."""
    done = log(cli, "L1", "not_now", FIRST_PASS)
    assert any(line.startswith("recycled into nurture-quarterly") for line in done)


def _sequences(cli: Cli, lead: str, now: str) -> list[str]:
    return [e["sequence"] for e in status(cli, lead, now)["enrollments"]]


def _actions(cli: Cli, lead: str, now: str) -> list[dict[str, object]]:
    return [h["detail"] for h in history(cli, lead, now) if h["kind"] == "action"]


def test_enrolling_a_lead_with_a_pending_recycle_is_refused_unless_forced(started: Cli) -> None:
    _recycled(started)
    refused = started("enroll", "outbound-hot", "L1", now=at(FIRST_PASS, hours=1))
    assert refused.exit_code == 1
    assert "pending recycle into nurture-quarterly on 2026-12-30" in refused.output and "--force" in refused.output
    assert [e["sequence"] for e in status(started, "L1")["enrollments"]] == ["outbound-saas"]
    forced = as_json(started("enroll", "outbound-hot", "L1", "--force", "--json", now=at(FIRST_PASS, hours=1)))
    assert [e["lead"] for e in forced["enrolled"]] == ["L1"]
    cancelled = [a for a in _actions(started, "L1", at(FIRST_PASS, hours=1)) if a.get("action") == "recycle cancelled"]
    assert cancelled == [
        {
            "action": "recycle cancelled", "sequence": "nurture-quarterly", "due_at": "2026-12-30T15:00:00+00:00",
            "cancelled_by": "enrolled into outbound-hot (enrolled by hand)",
        }
    ]  # fmt: skip
    run(started, at(FIRST_PASS, days=31))  # the cool-off is over: nothing recycles any more
    assert "nurture-quarterly" not in [
        e["sequence"] for e in status(started, "L1", at(FIRST_PASS, days=31))["enrollments"]
    ]


def test_a_lead_that_finished_within_the_cool_off_is_refused_unless_forced(started: Cli) -> None:
    event(started, "L1", "replied", at(FIRST_PASS, hours=2))
    later = at(FIRST_PASS, days=5)
    refused = started("enroll", "outbound-hot", "L1", now=later)
    assert refused.exit_code == 1
    assert "lead L1 finished outbound-saas on 2026-11-30 (replied), within the 30-day cool-off" in refused.output
    assert enrollment(started, "L1", "outbound-saas", later)["state"] == "finished"
    forced = as_json(started("enroll", "outbound-hot", "L1", "--force", "--json", now=later))
    assert [e["lead"] for e in forced["enrolled"]] == ["L1"]


def test_after_the_cool_off_a_finished_lead_enrolls_without_force(started: Cli) -> None:
    event(started, "L1", "replied", at(FIRST_PASS, hours=2))
    after = at(FIRST_PASS, days=31)
    enrolled = as_json(started("enroll", "outbound-hot", "L1", "--json", now=after))
    assert [e["lead"] for e in enrolled["enrolled"]] == ["L1"] and enrolled["refused"] == []


def test_unsubscribing_cancels_a_pending_recycle_and_says_so(started: Cli) -> None:
    _recycled(started)
    done = event(started, "L1", "unsubscribed", at(FIRST_PASS, hours=3))
    assert "cancelled the recycle into nurture-quarterly (unsubscribed)" in done
    run(started, at(FIRST_PASS, days=31))
    assert [e["sequence"] for e in status(started, "L1", at(FIRST_PASS, days=31))["enrollments"]] == ["outbound-saas"]


def test_a_reply_after_the_sequence_ended_reaches_the_owner_and_a_qualified_call_cancels_the_recycle(
    started: Cli,
) -> None:
    _recycled(started)
    done = event(started, "L1", "replied", at(FIRST_PASS, days=2))  # in no live sequence: still the owner's business
    assert done == ["task opened for alice"]
    task = open_task(started, "L1", at(FIRST_PASS, days=2))
    assert task["step"] == "notify-owner" and task["owner"] == "alice"
    logged = as_json(started("log", str(task["id"]), "connected_interested", "--json", now=at(FIRST_PASS, days=2)))
    assert "finished as qualified" in logged["actions"]
    assert any("cancelled the recycle into nurture-quarterly" in line for line in logged["actions"])
    assert status(started, "L1", at(FIRST_PASS, days=2))["lead"]["stage"] == "qualified"
    run(started, at(FIRST_PASS, days=31))
    assert "nurture-quarterly" not in [
        e["sequence"] for e in status(started, "L1", at(FIRST_PASS, days=31))["enrollments"]
    ]


def test_an_sms_reply_notifies_the_owner_and_the_sequence_goes_on(started: Cli) -> None:
    done = event(started, "L1", "sms_reply", at(FIRST_PASS, hours=1))
    assert done == ["task opened for alice"]
    assert enrollment(started, "L1", "outbound-saas", at(FIRST_PASS, hours=1))["state"] == "active"


def test_log_by_records_who_made_the_call_and_refuses_a_stranger(started: Cli) -> None:
    task = open_task(started, "L2", FIRST_PASS)
    stranger = started("log", str(task["id"]), "no_answer", "--by", "mallory", now=FIRST_PASS)
    assert stranger.exit_code == 1 and "'mallory' is not a sender" in stranger.output
    assert open_task(started, "L2", FIRST_PASS)["id"] == task["id"]  # nothing logged
    ok(started("log", str(task["id"]), "no_answer", "--by", "bob", now=FIRST_PASS))
    [logged] = [h for h in history(started, "L2", FIRST_PASS) if h["kind"] == "disposition"]
    assert logged["detail"]["by"] == "bob" and logged["cause"] == "logged by bob"


def test_a_return_date_is_midnight_in_the_leads_own_zone_and_is_shown_there(cli: Cli, project: Path) -> None:
    (project / "denver.csv").write_text(
        "id,email,phone,first_name,company,owner,timezone,country\n"
        "D1,ann@rockies.example,+13035550101,Ann,Rockies,alice,America/Denver,US\n"
    )
    ok(cli("leads", "import", "denver.csv"))
    ok(cli("enroll", "outbound-saas", "D1", now=MON))
    done = event(cli, "D1", "out_of_office", at(MON, hours=4), "--until", "2026-12-09")
    assert done == ["paused outbound-saas until 2026-12-09"]
    paused = enrollment(cli, "D1", "outbound-saas", at(MON, hours=4))
    assert paused["paused_until"] == "2026-12-09T07:00:00+00:00"  # 00:00 in Denver (UTC-7)


def test_enrollment_refuses_a_lead_lacking_a_field_a_template_needs_unless_allowed(cli: Cli, project: Path) -> None:
    (project / "nameless.csv").write_text(
        "id,email,phone,company,owner,timezone,country\nL7,pat@acme.example,+12125550107,Acme,alice,America/New_York,US\n"
    )
    ok(cli("leads", "import", "nameless.csv"))
    result = cli("enroll", "outbound-saas", "L7", "--json", now=MON)
    assert result.exit_code == 1  # nobody enrolled
    refused = json.loads(result.stdout)
    assert refused["enrolled"] == []
    [reason] = [r["reason"] for r in refused["refused"]]
    assert reason.startswith("L7 lacks first_name, used by outbound-saas/intro.md.j2")
    assert status(cli, "L7")["enrollments"] == []
    allowed = as_json(cli("enroll", "outbound-saas", "L7", "--allow-missing", "--json", now=MON))
    assert [e["lead"] for e in allowed["enrolled"]] == ["L7"]


def test_a_refused_enrollment_publishes_no_version(cli: Cli) -> None:
    refused = cli("enroll", "outbound-hot", "nobody", "--json", now=MON)
    assert refused.exit_code == 1
    plan = as_json(cli("plan", "--json", now=MON))
    assert "outbound-hot" in [s["sequence"] for s in plan["sequences"] if s["status"] == "new"]


def test_a_broken_file_no_lead_follows_does_not_stop_the_engine(started: Cli, project: Path) -> None:
    (project / "sequences" / "half-written.yaml").write_text("id: half-written\nname: [unclosed\n")
    report = as_json(started("run", "--once", "--json", now=at(FIRST_PASS, days=1)))
    assert report["dispatch"]["batches"] >= 1
