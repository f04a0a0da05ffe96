"""The built-in behaviours of events (cadence/outcomes/events.py), through the CLI under CADENCE_NOW.

Safety built-ins hold whatever the rules say: `unsubscribed` suppresses the email
address everywhere, `sms_stop` suppresses SMS to the number everywhere while the
other channels go on, `bounced` marks the email invalid. Without a matching rule an
`exit_on` event ends the enrollment, `out_of_office` pauses it until the return date
(14 days if none), and anything else lets it go on. A task nobody works expires and
the sequence moves on; `cadence history` tells the whole story.

The starter config tells the owner about every reply (a rule); these tests are about what
happens without one, so their project drops that rule.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from cadence.clock import parse_instant
from tests.conftest import Cli
from tests.e2e.cli_flow import (
    LEAD_CSV,
    MON,
    as_json,
    at,
    enrollment,
    event,
    events,
    history,
    import_two,
    insert_rules,
    iso,
    log,
    next_due,
    ok,
    open_task,
    outbox_emails,
    outbox_sms,
    run,
    run_next,
    status,
    touches,
)

DANA, DANA_PHONE, SAM_PHONE = "dana@northwind.example", "+12125550101", "+12125550102"
FIRST_PASS = "2026-11-30T10:00:00-05:00"
NOON = "2026-11-30T12:00:00-05:00"
# A nurture sequence with an SMS step, to show that STOP holds across sequences.
NURTURE_TEXTS = """\
id: nurture-texts
name: Nurture by text
kind: nurture
exit_on: [replied]                # neither unsubscribed nor bounced: it stays live after them
steps:
  - {id: text, day: 1, channel: sms, template: outbound-saas/sms-1.txt.j2}
  - {id: note, day: 2, channel: email, subject: "A note for {{ lead.company }}", template: outbound-saas/bump.md.j2}
"""


@pytest.fixture(autouse=True)
def no_reply_rule(project: Path) -> None:
    """The starter config without its notify-on-any-reply rule: what events do when no rule matches."""
    path = project / "config.yaml"
    lines = path.read_text().splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("- when: {event: [replied, sms_reply]}"))
    assert lines[start + 1].strip() == "then: {notify_owner: true}"
    path.write_text("".join(lines[:start] + lines[start + 2 :]))
    assert all(rule["then"] != {"notify_owner": True} for rule in yaml.safe_load(path.read_text())["rules"])


@pytest.fixture
def started(cli: Cli, project: Path) -> Cli:
    """L1 and L2 enrolled in outbound-saas on Monday; the day-1 email went out and call-1 is open."""
    import_two(cli, project)
    ok(cli("enroll", "outbound-saas", "L1", "L2", now=MON))
    run(cli, FIRST_PASS)
    return cli


# -- exit_on, and events the sequence does not exit on -----------------------------------------


@pytest.mark.parametrize("name", ["replied", "meeting_booked"])
def test_an_exit_on_event_without_a_rule_ends_the_enrollment_and_cancels_its_open_task(
    started: Cli, project: Path, name: str
) -> None:
    done = event(started, "L1", name, NOON)
    assert done == [f"ended outbound-saas ({name})"]
    e = enrollment(started, "L1", "outbound-saas", NOON)
    assert (e["state"], e["outcome"], e["next_due_at"]) == ("finished", name, None)
    assert touches(started, "L1", NOON)["call-1"]["status"] == "cancelled"
    assert [t["lead"]["id"] for t in as_json(started("tasks", "--json", now=NOON))] == ["L2"]
    for day in range(1, 8):
        run(started, at("2026-11-30T15:30:00-05:00", days=day))
    assert outbox_emails(project, DANA) == ["Northwind + Acme"]
    assert outbox_sms(project, DANA_PHONE) == []
    assert touches(started, "L2", "2026-12-08T12:00:00-05:00")["bump"]["status"] == "sent"  # the other lead went on
    kinds = [h["kind"] for h in history(started, "L1", NOON)]
    assert kinds[-3:] == ["event", "finished", "action"]


def test_an_event_outside_exit_on_without_a_rule_lets_the_sequence_go_on(started: Cli, project: Path) -> None:
    assert event(started, "L1", "sms_reply", NOON) == []
    assert enrollment(started, "L1", "outbound-saas", NOON)["state"] == "active"
    log(started, "L1", "no_answer", NOON)
    run_next(started, "L1", NOON)
    assert outbox_emails(project, DANA) == ["Northwind + Acme", "Re: Northwind + Acme"]
    assert events(started, "L1", NOON) == ["sms_reply"]


# -- safety built-ins ---------------------------------------------------------------------------


def test_unsubscribed_suppresses_the_email_address_everywhere_even_after_reimport(cli: Cli, project: Path) -> None:
    (project / "sequences" / "nurture-texts.yaml").write_text(NURTURE_TEXTS)
    import_two(cli, project)
    ok(cli("enroll", "outbound-saas", "L1", now=MON))
    ok(cli("enroll", "nurture-texts", "L1", now=MON))
    run(cli, FIRST_PASS)  # the intro and the nurture's text go out
    done = event(cli, "L1", "unsubscribed", NOON)
    assert f"suppressed email {DANA}" in done and "ended outbound-saas (unsubscribed)" in done
    assert enrollment(cli, "L1", "outbound-saas", NOON)["outcome"] == "unsubscribed"
    assert enrollment(cli, "L1", "nurture-texts", NOON)["state"] == "active"  # it does not exit on unsubscribe
    due = run_next(cli, "L1", NOON)  # Tuesday: the nurture's email is due, and skipped at claim time
    note = touches(cli, "L1", due, "nurture-texts")["note"]
    assert note["status"] == "skipped" and note["error"] == "email address is suppressed (unsubscribed)"
    assert outbox_emails(project, DANA) == ["Northwind + Acme"]
    assert len(outbox_sms(project, DANA_PHONE)) == 1  # email opt-out is not an SMS opt-out
    (project / "two.csv").write_text(LEAD_CSV)
    ok(cli("leads", "import", "two.csv", now=due))  # importing the address again changes nothing
    refused = cli("enroll", "nurture-monthly", "L1", now=due)
    assert refused.exit_code == 1 and "opted out of email (unsubscribed)" in refused.output


def test_bounced_marks_the_email_invalid_ends_the_enrollment_and_no_email_goes_to_it(cli: Cli, project: Path) -> None:
    (project / "sequences" / "nurture-texts.yaml").write_text(NURTURE_TEXTS)
    import_two(cli, project)
    ok(cli("enroll", "outbound-saas", "L1", now=MON))
    ok(cli("enroll", "nurture-texts", "L1", now=MON))
    run(cli, FIRST_PASS)
    done = event(cli, "L1", "bounced", NOON)
    assert "marked email invalid" in done and "ended outbound-saas (bounced)" in done
    assert status(cli, "L1", NOON)["lead"]["email_invalid"] is True
    assert enrollment(cli, "L1", "outbound-saas", NOON)["outcome"] == "bounced"
    assert enrollment(cli, "L1", "nurture-texts", NOON)["state"] == "active"
    due = run_next(cli, "L1", NOON)
    note = touches(cli, "L1", due, "nurture-texts")["note"]
    assert note["status"] == "skipped" and note["error"] == "email address bounced"
    assert outbox_emails(project, DANA) == ["Northwind + Acme"]


def test_sms_stop_stops_sms_to_that_number_from_every_sequence_and_email_steps_continue(
    cli: Cli, project: Path
) -> None:
    (project / "sequences" / "nurture-texts.yaml").write_text(NURTURE_TEXTS)
    import_two(cli, project)
    ok(cli("enroll", "outbound-saas", "L1", "L2", now=MON))
    ok(cli("enroll", "nurture-texts", "L1", now=MON))
    done = event(cli, "L1", "sms_stop", "2026-11-30T08:30:00-05:00")  # before any text went out
    assert done == [f"suppressed SMS to {DANA_PHONE}"]
    run(cli, FIRST_PASS)
    log(cli, "L1", "no_answer", NOON)
    log(cli, "L2", "no_answer", NOON)
    for day in range(1, 6):
        run(cli, at("2026-11-30T15:30:00-05:00", days=day))
    outbound = touches(cli, "L1", "2026-12-07T12:00:00-05:00", "outbound-saas")
    nurture = touches(cli, "L1", "2026-12-07T12:00:00-05:00", "nurture-texts")
    assert outbound["sms-1"]["status"] == "skipped" and outbound["sms-1"]["error"] == "phone opted out of SMS (STOP)"
    assert nurture["text"]["status"] == "skipped" and nurture["text"]["error"] == "phone opted out of SMS (STOP)"
    assert outbound["bump"]["status"] == nurture["note"]["status"] == "sent"
    assert outbox_sms(project, DANA_PHONE) == []
    assert "A note for Northwind" in outbox_emails(project, DANA)
    assert len(outbox_sms(project, SAM_PHONE)) == 1  # only the number that said STOP
    assert enrollment(cli, "L1", "outbound-saas", NOON)["state"] == "active"


# -- out of office ------------------------------------------------------------------------------


def test_out_of_office_pauses_until_the_return_date_then_the_sequence_resumes(started: Cli, project: Path) -> None:
    log(started, "L2", "left_voicemail", "2026-11-30T11:00:00-05:00")
    done = event(started, "L2", "out_of_office", NOON, "--until", "2026-12-14")
    assert done == ["paused outbound-saas until 2026-12-14"]
    paused = enrollment(started, "L2", "outbound-saas", NOON)
    assert paused["state"] == "paused"
    # a bare date is the start of that day where the lead is (Sam is in New York), not midnight UTC
    assert parse_instant(paused["paused_until"]) == parse_instant("2026-12-14T00:00:00-05:00")
    run(started, "2026-12-10T12:00:00-05:00")
    assert enrollment(started, "L2", "outbound-saas", NOON)["state"] == "paused"
    assert outbox_emails(project, "sam@contoso.example") == ["Contoso + Acme"]
    run(started, "2026-12-14T12:00:00-05:00")  # back: the bump that waited goes on this pass
    e = enrollment(started, "L2", "outbound-saas", "2026-12-14T12:00:00-05:00")
    assert e["state"] == "active" and e["next_step"] == "sms-1"
    bump = touches(started, "L2", "2026-12-14T12:00:00-05:00")["bump"]
    assert bump["status"] == "sent" and iso(bump["sent_at"]) == "2026-12-14T12:00:00-05:00"
    assert outbox_emails(project, "sam@contoso.example") == ["Contoso + Acme", "Re: Contoso + Acme"]


def test_out_of_office_while_a_task_is_open_resumes_once_the_task_expires(started: Cli, project: Path) -> None:
    """The call task expires during the pause; when the lead is back, the sequence must not stall."""
    event(started, "L2", "out_of_office", NOON, "--until", "2026-12-14")
    run(started, "2026-12-10T12:00:00-05:00")  # the untouched call-1 expires meanwhile
    assert touches(started, "L2", "2026-12-10T12:00:00-05:00")["call-1"]["status"] == "expired"
    assert enrollment(started, "L2", "outbound-saas", "2026-12-10T12:00:00-05:00")["state"] == "paused"
    assert outbox_emails(project, "sam@contoso.example") == ["Contoso + Acme"]  # the sequence moved on, paused
    run(started, "2026-12-14T12:00:00-05:00")
    assert outbox_emails(project, "sam@contoso.example") == ["Contoso + Acme", "Re: Contoso + Acme"]
    assert next_due(started, "L2", "2026-12-14T12:00:00-05:00") is not None


def test_out_of_office_without_a_date_pauses_for_14_days(started: Cli, project: Path) -> None:
    log(started, "L1", "no_answer", "2026-11-30T11:00:00-05:00")
    assert event(started, "L1", "out_of_office", NOON) == ["paused outbound-saas until 2026-12-14"]
    paused = enrollment(started, "L1", "outbound-saas", NOON)
    assert paused["state"] == "paused"
    assert parse_instant(paused["paused_until"]) - parse_instant(NOON) == timedelta(days=14)
    run(started, at(NOON, days=14, minutes=-1))
    assert enrollment(started, "L1", "outbound-saas", NOON)["state"] == "paused"
    assert outbox_emails(project, DANA) == ["Northwind + Acme"]  # the day-3 bump waited
    run(started, at(NOON, days=14))
    assert enrollment(started, "L1", "outbound-saas", NOON)["state"] == "active"
    run_next(started, "L1", at(NOON, days=14))
    assert outbox_emails(project, DANA) == ["Northwind + Acme", "Re: Northwind + Acme"]


# -- the pause action of a rule -----------------------------------------------------------------

PAUSE_RULES = """\
  - when: {event: sms_reply}
    then: {pause: 14d}
  - when: {event: out_of_office}
    then: {pause: until}
"""


def test_a_pause_rule_pauses_for_its_duration(cli: Cli, project: Path) -> None:
    insert_rules(project, PAUSE_RULES)
    import_two(cli, project)
    ok(cli("enroll", "outbound-saas", "L1", now=MON))
    run(cli, FIRST_PASS)
    assert event(cli, "L1", "sms_reply", NOON) == ["paused until 2026-12-14"]
    e = enrollment(cli, "L1", "outbound-saas", NOON)
    assert e["state"] == "paused" and parse_instant(e["paused_until"]) - parse_instant(NOON) == timedelta(days=14)
    run(cli, at(NOON, days=14))
    assert enrollment(cli, "L1", "outbound-saas", NOON)["state"] == "active"


@pytest.mark.parametrize(("until", "back"), [("2026-12-21", "2026-12-21"), (None, "2026-12-14")])
def test_a_pause_until_rule_pauses_until_the_return_date_or_14_days(
    cli: Cli, project: Path, until: str | None, back: str
) -> None:
    insert_rules(project, PAUSE_RULES)
    import_two(cli, project)
    ok(cli("enroll", "outbound-saas", "L1", now=MON))
    run(cli, FIRST_PASS)
    extra = ("--until", until) if until else ()
    assert event(cli, "L1", "out_of_office", NOON, *extra) == [f"paused until {back}"]
    e = enrollment(cli, "L1", "outbound-saas", NOON)
    assert e["state"] == "paused" and e["paused_until"][:10] == back


def test_pause_and_resume_by_hand(started: Cli) -> None:
    ok(started("pause", "L2", now=NOON))
    assert enrollment(started, "L2", "outbound-saas", NOON)["state"] == "paused"
    ok(started("resume", "L2", now="2026-12-02T12:00:00-05:00"))
    assert enrollment(started, "L2", "outbound-saas", NOON)["state"] == "active"


# -- tasks that nobody works --------------------------------------------------------------------


def test_an_untouched_task_expires_after_two_allowed_days_and_the_sequence_moves_on(
    started: Cli, project: Path
) -> None:
    run(started, "2026-12-02T16:59:00-05:00")  # Wednesday, the second allowed day after Monday: still open
    assert touches(started, "L1", "2026-12-02T16:59:00-05:00")["call-1"]["status"] == "task_open"
    report = run(started, "2026-12-02T17:00:00-05:00")  # the window has closed on it
    assert report["sweep"]["expired"] == 2
    call = touches(started, "L1", "2026-12-02T17:00:00-05:00")["call-1"]
    assert (call["status"], call["error"]) == ("expired", "not worked within 2 allowed days")
    expired = [h for h in history(started, "L1", "2026-12-02T17:00:00-05:00") if h["kind"] == "event"]
    assert [(h["detail"]["event"], h["detail"]["touch"], h["cause"]) for h in expired] == [
        ("expired", call["id"], "task expired")
    ]
    e = enrollment(started, "L1", "outbound-saas", "2026-12-02T17:00:00-05:00")
    assert (e["state"], e["next_step"]) == ("active", "bump")
    run_next(started, "L1", "2026-12-02T17:00:00-05:00")
    assert outbox_emails(project, DANA) == ["Northwind + Acme", "Re: Northwind + Acme"]


# -- history ------------------------------------------------------------------------------------


def test_history_json_tells_the_whole_story_oldest_first_with_causes(started: Cli) -> None:
    task = open_task(started, "L1", "2026-11-30T11:00:00-05:00")
    ok(started("log", str(task["id"]), "not_now", "--note", "call back in Q1", now="2026-11-30T11:00:00-05:00"))
    story = history(started, "L1", "2026-11-30T11:00:00-05:00")
    assert all(set(item) == {"at", "kind", "detail", "cause"} for item in story)
    times = [parse_instant(item["at"]) for item in story]
    assert times == sorted(times)
    assert [item["kind"] for item in story] == ["enrolled", "touch", "task_opened", "disposition", "finished", "action"]
    enrolled, sent, _, disposition, finished, action = story
    assert enrolled["detail"]["sequence"] == "outbound-saas" and enrolled["cause"] == "enrolled by hand"
    assert (sent["detail"]["step"], sent["detail"]["status"]) == ("intro", "sent")
    assert disposition["detail"] == {
        "task": task["id"], "step": "call-1", "code": "not_now", "label": "Connected - bad timing",
        "note": "call back in Q1", "by": "alice",
    }  # fmt: skip
    assert disposition["cause"] == "logged by alice"
    assert (finished["detail"]["outcome"], finished["cause"]) == ("recycled", "rule 2: not_now")
    assert action["detail"]["actions"] == ["recycled into nurture-quarterly on 2026-12-30"]
    table = ok(started("history", "L1", now="2026-11-30T11:00:00-05:00"))
    assert "disposition" in table and "rule 2: not_now" in table


def test_history_of_an_unknown_lead_is_refused(started: Cli) -> None:
    result = started("history", "nobody", "--json", now=NOON)
    assert result.exit_code == 1 and "no lead with id 'nobody'" in result.output


def test_unknown_event_and_lead_are_refused(started: Cli) -> None:
    unknown_event = started("event", "L1", "exploded", now=NOON)
    assert unknown_event.exit_code == 1 and "unknown event 'exploded'" in unknown_event.output
    unknown_lead = started("event", "nobody", "replied", now=NOON)
    assert unknown_lead.exit_code == 1 and "no lead with id 'nobody'" in unknown_lead.output
    assert events(started, "L1", NOON) == []
