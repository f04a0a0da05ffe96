"""The nine rules of the starter config.yaml, one test each, through the CLI under CADENCE_NOW.

Each test logs a disposition with `cadence log` or reports an event with `cadence event`
(or lets a sequence run out), then checks the enrollment, the lead's stage, the history,
and what `cadence run --once` sends afterwards (in the file outbox).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from cadence.clock import parse_instant
from tests.conftest import Cli
from tests.e2e.cli_flow import (
    MON,
    as_json,
    at,
    enrollment,
    event,
    history,
    import_two,
    iso,
    log,
    ok,
    open_task,
    outbox_emails,
    outbox_sms,
    run,
    run_next,
    status,
    touches,
)

DANA, DANA_PHONE = "dana@northwind.example", "+12125550101"


@pytest.fixture
def started(cli: Cli, project: Path) -> Cli:
    """L1 and L2 enrolled in outbound-saas on Monday; the day-1 email went out and call-1 is open."""
    import_two(cli, project)
    ok(cli("enroll", "outbound-saas", "L1", "L2", now=MON))
    run(cli, "2026-11-30T10:00:00-05:00")
    return cli


def daily_runs(cli: Cli, days: range, hour: str = "15:30") -> None:
    """One engine pass each afternoon (Tue Dec 1 is day 1 of the range)."""
    for day in days:
        run(cli, at(f"2026-11-30T{hour}:00-05:00", days=day))


def test_task_queue_puts_overdue_first_then_hottest(started: Cli) -> None:
    tasks = as_json(started("tasks", "--owner", "alice", "--json", now="2026-11-30T11:00:00-05:00"))
    assert [t["lead"]["id"] for t in tasks] == ["L1", "L2"]  # both due today: score 90 before 40
    assert tasks[0]["script"] and "Dana" in tasks[0]["script"]
    assert as_json(started("tasks", "--due", "overdue", "--json", now="2026-11-30T11:00:00-05:00")) == []
    overdue = as_json(started("tasks", "--due", "overdue", "--json", now="2026-12-01T11:00:00-05:00"))
    assert len(overdue) == 2


def test_unknown_disposition_is_refused_with_the_valid_codes(started: Cli) -> None:
    task = open_task(started, "L1", "2026-11-30T11:00:00-05:00")
    result = started("log", str(task["id"]), "maybe", now="2026-11-30T11:00:00-05:00")
    assert result.exit_code == 1
    assert "unknown disposition 'maybe'" in result.output and "not_now" in result.output
    assert open_task(started, "L1", "2026-11-30T11:05:00-05:00")["id"] == task["id"]  # still open, nothing changed


def test_a_task_can_be_logged_only_once(started: Cli) -> None:
    task = open_task(started, "L1", "2026-11-30T11:00:00-05:00")
    ok(started("log", str(task["id"]), "no_answer", now="2026-11-30T11:00:00-05:00"))
    again = started("log", str(task["id"]), "not_now", now="2026-11-30T11:01:00-05:00")
    assert again.exit_code == 1 and "not open" in again.output
    assert enrollment(started, "L1", "outbound-saas")["state"] == "active"  # the second code changed nothing


# Rule 1: {disposition: [connected_interested, meeting_booked]} -> {finish: qualified}
@pytest.mark.parametrize("code", ["connected_interested", "meeting_booked"])
def test_rule_1_interested_or_meeting_booked_finishes_as_qualified_and_nothing_more_goes_out(
    started: Cli, project: Path, code: str
) -> None:
    log(started, "L1", code, "2026-11-30T11:00:00-05:00")
    lead = status(started, "L1", "2026-11-30T11:00:00-05:00")
    assert lead["lead"]["stage"] == "qualified"
    assert [(e["state"], e["outcome"]) for e in lead["enrollments"]] == [("finished", "qualified")]
    daily_runs(started, range(1, 8))  # a week of passes: bump, SMS and calls would all have been due
    assert outbox_emails(project, DANA) == ["Northwind + Acme"]  # only the intro, before the call
    assert outbox_sms(project, DANA_PHONE) == []
    assert touches(started, "L2", "2026-12-08T12:00:00-05:00")["bump"]["status"] == "sent"  # L2 went on
    l1 = touches(started, "L1", "2026-12-08T12:00:00-05:00")
    assert {step: t["status"] for step, t in l1.items()} == {"intro": "sent", "call-1": "done"}


# Rule 2: {disposition: not_now} -> {recycle: nurture-quarterly, after: 30d}
def test_rule_2_not_now_on_day_2_recycles_into_nurture_exactly_30_days_later_and_nurture_emails_go_out(
    started: Cli, project: Path
) -> None:
    logged = "2026-12-01T11:00:00-05:00"  # Tuesday: day 2, the call-1 task is still open
    done = log(started, "L1", "not_now", logged)
    assert "recycled into nurture-quarterly on 2026-12-31" in done
    lead = status(started, "L1", logged)
    assert lead["lead"]["stage"] == "nurture"
    assert [(e["sequence"], e["state"], e["outcome"]) for e in lead["enrollments"]] == [
        ("outbound-saas", "finished", "recycled")
    ]
    daily_runs(started, range(1, 9))  # the cool-off: outbound-saas sends L1 nothing more (bump, SMS, calls)
    assert outbox_emails(project, DANA) == ["Northwind + Acme"]
    run(started, "2026-12-31T10:59:00-05:00")  # a minute early: still cooling off
    assert len(status(started, "L1", "2026-12-31T10:59:00-05:00")["enrollments"]) == 1
    back = "2026-12-31T11:00:00-05:00"  # exactly 30 days later, a Thursday inside 10:00-16:00
    run(started, back)
    nurture = enrollment(started, "L1", "nurture-quarterly", back)
    assert nurture["state"] == "active" and nurture["kind"] == "nurture"
    assert parse_instant(nurture["enrolled_at"]) - parse_instant(logged) == timedelta(days=30)
    recap = touches(started, "L1", back, "nurture-quarterly")["recap"]  # enrolled inside the window: sent at once
    assert recap["status"] == "sent" and recap["sent_at"] == nurture["enrolled_at"]
    assert outbox_emails(project, DANA) == ["Northwind + Acme", "Picking this back up, Dana"]
    later = run_next(started, "L1", back)  # and the nurture goes on to its next email, weeks later
    assert parse_instant(later) - parse_instant(back) > timedelta(weeks=8)
    assert outbox_emails(project, DANA)[-1] == "What changed for sales teams this quarter"
    story = [h["kind"] for h in history(started, "L1", later)]
    assert "disposition" in story and story.count("enrolled") == 2


# Rule 3: {disposition: [left_voicemail, no_answer]} -> continue
@pytest.mark.parametrize("code", ["left_voicemail", "no_answer"])
def test_rule_3_voicemail_or_no_answer_continues_to_the_next_step(started: Cli, project: Path, code: str) -> None:
    done = log(started, "L1", code, "2026-11-30T11:00:00-05:00")
    assert any(line.startswith("next step due") for line in done)
    e = enrollment(started, "L1", "outbound-saas", "2026-11-30T11:00:00-05:00")
    assert (e["state"], e["outcome"], e["next_step"]) == ("active", None, "bump")
    call = touches(started, "L1", "2026-11-30T11:00:00-05:00")["call-1"]
    assert (call["status"], call["disposition"]) == ("done", code)
    sent_at = run_next(started, "L1", "2026-11-30T11:00:00-05:00")
    assert parse_instant(sent_at).astimezone(datetime.fromisoformat(MON).tzinfo).date().isoformat() == "2026-12-02"
    assert outbox_emails(project, DANA) == ["Northwind + Acme", "Re: Northwind + Acme"]
    assert status(started, "L1", sent_at)["lead"]["stage"] == "working"


# Rule 4: {disposition: wrong_number} -> {continue: true, drop_channels: [call, sms]}
def test_rule_4_wrong_number_drops_call_and_sms_steps_but_email_goes_on(started: Cli, project: Path) -> None:
    log(started, "L1", "wrong_number", "2026-11-30T11:00:00-05:00")
    daily_runs(started, range(1, 16))
    by_step = touches(started, "L1", "2026-12-20T12:00:00-05:00")
    assert by_step["sms-1"]["status"] == "skipped" and by_step["sms-1"]["error"] == "sms dropped for this lead"
    assert by_step["call-2"]["status"] == "skipped" and by_step["call-2"]["error"] == "call dropped for this lead"
    assert by_step["case-study"]["status"] == "sent"
    assert outbox_sms(project, DANA_PHONE) == []
    assert "How Northwind cut ramp time by 40%" in outbox_emails(project, DANA)
    assert len(outbox_sms(project, "+12125550102")) >= 1  # L2's number is fine


# Rule 5: {disposition: not_interested} -> {finish: disqualified}
def test_rule_5_not_interested_finishes_as_disqualified_without_a_recycle(started: Cli, project: Path) -> None:
    done = log(started, "L1", "not_interested", "2026-11-30T11:00:00-05:00")
    assert "finished as disqualified" in done
    lead = status(started, "L1", "2026-11-30T11:00:00-05:00")
    assert lead["lead"]["stage"] == "disqualified"
    assert [(e["state"], e["outcome"]) for e in lead["enrollments"]] == [("finished", "disqualified")]
    run(started, "2027-01-20T12:00:00-05:00")  # long past any cool-off: no nurture for a "no"
    assert len(status(started, "L1", "2027-01-20T12:00:00-05:00")["enrollments"]) == 1
    assert outbox_emails(project, DANA) == ["Northwind + Acme"]


# Rule 6: {disposition: do_not_call} -> {continue: true, suppress: [call, sms]}
def test_rule_6_do_not_call_suppresses_call_and_sms_in_every_sequence_and_email_goes_on(
    started: Cli, project: Path
) -> None:
    done = log(started, "L1", "do_not_call", "2026-11-30T11:00:00-05:00")
    assert f"suppressed call to {DANA_PHONE}" in done and f"suppressed sms to {DANA_PHONE}" in done
    daily_runs(started, range(1, 12))
    by_step = touches(started, "L1", "2026-12-12T12:00:00-05:00")
    # The true cause: the do_not_call rule suppressed the number, the lead never texted STOP.
    assert by_step["sms-1"]["status"] == "skipped"
    assert by_step["sms-1"]["error"] == "SMS to this phone is suppressed (rule 6: do_not_call)"
    assert by_step["call-2"]["status"] == "skipped" and by_step["call-2"]["error"] == "lead asked not to be called"
    assert by_step["bump"]["status"] == by_step["case-study"]["status"] == "sent"
    assert outbox_sms(project, DANA_PHONE) == []
    # Everywhere: a reply ends outbound-saas; in outbound-hot the call is skipped too, the email goes.
    event(started, "L1", "replied", "2026-12-14T09:00:00-05:00")
    ok(started("enroll", "outbound-hot", "L1", "--force", now="2026-12-14T09:00:00-05:00"))
    run(started, "2026-12-14T09:00:30-05:00")
    hot = touches(started, "L1", "2026-12-14T09:01:00-05:00", "outbound-hot")
    assert hot["thanks"]["status"] == "sent"
    assert hot["call-now"]["status"] == "skipped" and hot["call-now"]["error"] == "lead asked not to be called"
    assert outbox_emails(project, DANA)[-1] == "Thanks, Dana: next steps"


# Rule 7: {event: replied, kind: nurture} -> {enroll: outbound-hot, notify_owner: true}
def test_rule_7_reply_during_nurture_enrolls_hot_and_opens_an_owner_task(cli: Cli, project: Path) -> None:
    import_two(cli, project)
    ok(cli("enroll", "nurture-monthly", "L1", now=MON))
    done = event(cli, "L1", "replied", "2026-12-01T09:00:00-05:00", "--note", "sounds interesting")
    assert "enrolled into outbound-hot" in done and "task opened for alice" in done
    lead = status(cli, "L1", "2026-12-01T09:00:00-05:00")
    states = {e["sequence"]: (e["state"], e["outcome"]) for e in lead["enrollments"]}
    assert states == {"nurture-monthly": ("finished", "replied"), "outbound-hot": ("active", None)}
    assert lead["lead"]["stage"] == "working"
    task = open_task(cli, "L1", "2026-12-01T09:00:00-05:00")
    assert (task["step"], task["owner"]) == ("notify-owner", "alice") and "replied" in task["title"]
    # Speed to lead: the hot sequence's immediate email goes on the next pass, no spread.
    run(cli, "2026-12-01T09:00:30-05:00")
    hot = touches(cli, "L1", "2026-12-01T09:01:00-05:00", "outbound-hot")
    assert hot["thanks"]["status"] == "sent"
    # ... and so does the call: the owner's own task reached nobody, so it does not use up the lead's daily cap.
    assert hot["call-now"]["status"] == "task_open" and hot["call-now"]["sent_at"] == hot["thanks"]["sent_at"]
    assert outbox_emails(project, DANA) == ["Thanks, Dana: next steps"]  # and no nurture digest
    opened = [h["detail"] for h in history(cli, "L1", "2026-12-01T09:01:00-05:00") if h["kind"] == "task_opened"]
    assert [(d.get("step"), d["owner"]) for d in opened] == [(None, "alice"), ("call-now", "alice")]


# Rule 8: {event: completed, kind: outbound} -> {recycle: nurture-monthly, after: 14d}
def test_rule_8_completed_outbound_recycles_into_nurture_monthly_exactly_14_days_later(cli: Cli, project: Path) -> None:
    import_two(cli, project)
    ok(cli("enroll", "outbound-reengage", "L1", now=MON))  # outbound: email, call, email
    now = run_next(cli, "L1", MON)
    now = run_next(cli, "L1", now)  # day 2: the call task opens and the sequence waits for it
    log(cli, "L1", "left_voicemail", now)
    completed_at = run_next(cli, "L1", now)  # the last email: the sequence runs out of steps
    lead = status(cli, "L1", completed_at)
    assert [(e["sequence"], e["state"], e["outcome"]) for e in lead["enrollments"]] == [
        ("outbound-reengage", "finished", "completed")
    ]
    assert lead["lead"]["stage"] == "nurture"
    assert "completed" in [h["detail"].get("event") for h in history(cli, "L1", completed_at)]
    run(cli, at(completed_at, days=14, minutes=-1))
    assert len(status(cli, "L1", completed_at)["enrollments"]) == 1
    back = at(completed_at, days=14)
    run(cli, back)
    nurture = enrollment(cli, "L1", "nurture-monthly", back)
    assert nurture["state"] == "active" and iso(nurture["enrolled_at"]) == iso(parse_instant(back))
    run_next(cli, "L1", back)
    assert outbox_emails(project, DANA)[-1] == "Three ideas for Northwind's pipeline"


ONE_EMAIL = (
    "id: {id}\nname: {id}\nkind: {kind}\nsteps:\n"
    "  - {{id: only, day: 1, channel: email, subject: '{id}', template: outbound-saas/bump.md.j2}}\n"
)


# Rule 9: {event: completed, kind: nurture} -> {recycle: outbound-reengage, after: 90d, max_recycles: 2}
def test_rule_9_completed_nurture_recycles_after_90_days_and_past_max_recycles_closes_as_unresponsive(
    cli: Cli, project: Path
) -> None:
    """One-email sequences, so each cycle is a single touch: the rules are what is under test."""
    for seq, kind in (("outbound-saas", "outbound"), ("nurture-monthly", "nurture"), ("outbound-reengage", "outbound")):
        (project / "sequences" / f"{seq}.yaml").write_text(ONE_EMAIL.format(id=seq, kind=kind))
    import_two(cli, project)
    ok(cli("enroll", "outbound-saas", "L1", now=MON))
    now = MON
    cool_off = {"outbound": timedelta(days=14), "nurture": timedelta(days=90)}
    for _ in range(6):
        if status(cli, "L1", now)["enrollments"][-1]["state"] == "active":
            now = run_next(cli, "L1", now)  # the only email goes, the sequence completes
        last = status(cli, "L1", now)["enrollments"][-1]
        assert last["outcome"] == "completed"
        now = iso(parse_instant(last["finished_at"]) + cool_off[last["kind"]])
        run(cli, now)  # the cool-off is over: enrolled, and (inside the window) its email goes at once
    lead = status(cli, "L1", now)
    assert [(e["sequence"], e["outcome"]) for e in lead["enrollments"]] == [
        ("outbound-saas", "completed"),
        ("nurture-monthly", "completed"),
        ("outbound-reengage", "completed"),
        ("nurture-monthly", "completed"),
        ("outbound-reengage", "completed"),
        ("nurture-monthly", "completed"),  # ... and with two re-engages behind it, no third
    ]
    assert lead["lead"]["stage"] == "unresponsive"
    starts = [parse_instant(e["enrolled_at"]) for e in lead["enrollments"]]
    ends = [parse_instant(e["finished_at"]) for e in lead["enrollments"]]
    assert [b - a for a, b in zip(ends, starts[1:], strict=False)] == [timedelta(days=d) for d in (14, 90, 14, 90, 14)]
    actions = [a for h in history(cli, "L1", now) if h["kind"] == "action" for a in h["detail"].get("actions", [])]
    assert actions[-1] == "closed as unresponsive (2 recycles into outbound-reengage already)"
    run(cli, at(now, days=365))  # a year on, nothing is pending: the lead stays closed
    assert len(status(cli, "L1", at(now, days=365))["enrollments"]) == 6
    assert outbox_emails(project, DANA) == [
        "outbound-saas", "nurture-monthly", "outbound-reengage", "nurture-monthly", "outbound-reengage",
        "nurture-monthly",
    ]  # fmt: skip
