"""`make demo` tells the whole story: every scripted moment happens, and the outcomes are the ones it narrates."""

from __future__ import annotations

import pytest
from rich.console import Console
from typer.testing import CliRunner

from cadence.cli import demo
from tests.conftest import Cli
from tests.e2e.cli_flow import as_json, status


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Cli, str]:
    """Run the demo once (SQLite and the file outbox, as `make demo` does); the CLI on its folder, and its output."""
    with pytest.MonkeyPatch.context() as env:
        for name in ("CADENCE_NOW", "CADENCE_SECRET", "CADENCE_DATABASE_URL"):
            env.setenv(name, "-")  # recorded, so what the demo sets is undone afterwards
            env.delenv(name)
        env.setenv("COLUMNS", "120")
        # The demo's console is made when its module is imported, and reads COLUMNS only then: under
        # pytest-xdist that can be before this fixture, and the summary table would wrap at 80.
        env.setattr(demo, "console", Console(highlight=False, width=120))
        folder = tmp_path_factory.mktemp("make-demo") / "demo"
        capture = tmp_path_factory.getbasetemp() / "demo-output.txt"
        with capture.open("w") as out:
            env.setattr("sys.stdout", out)
            demo.main(folder)
    return Cli(folder, f"sqlite:///{folder / 'cadence.db'}", CliRunner()), capture.read_text()


LATER = "2027-02-01T12:00:00-05:00"


def path(cli: Cli, lead: str) -> list[tuple[str, str | None]]:
    return [(e["sequence"], e["outcome"] or e["state"]) for e in status(cli, lead, LATER)["enrollments"]]


def test_demo_ends_every_lead_where_its_story_says(demo_run: tuple[Cli, str]) -> None:
    cli, _ = demo_run
    stages = {lead: status(cli, lead, LATER)["lead"]["stage"] for lead in [f"L{n}" for n in range(1, 9)]}
    assert stages == {
        "L1": "qualified", "L2": "qualified", "L3": "nurture", "L4": "bounced", "L5": "nurture",
        "L6": "replied", "L7": "nurture", "L8": "nurture",
    }  # fmt: skip
    assert path(cli, "L1") == [("outbound-saas", "qualified")]
    assert path(cli, "L2") == [
        ("outbound-saas", "recycled"), ("nurture-quarterly", "replied"), ("outbound-hot", "qualified")
    ]  # fmt: skip
    assert path(cli, "L6") == [("outbound-saas", "replied")]
    assert path(cli, "L4") == [("outbound-saas", "bounced")]
    assert path(cli, "L8")[:3] == [
        ("outbound-saas", "completed"), ("nurture-monthly", "replied"), ("outbound-hot", "completed")
    ]  # fmt: skip
    for lead in ("L3", "L5", "L7"):  # completed outbound, recycled into the monthly nurture
        assert path(cli, lead) == [("outbound-saas", "completed"), ("nurture-monthly", "active")]


def test_demo_dispositions_and_events_had_their_effect(demo_run: tuple[Cli, str]) -> None:
    cli, _ = demo_run

    def skipped(lead: str) -> set[str]:
        return {t["error"] for t in status(cli, lead, LATER)["touches"] if t["status"] == "skipped"}

    assert skipped("L3") >= {"call dropped for this lead", "sms dropped for this lead"}  # wrong_number
    assert "lead asked not to be called" in skipped("L4")  # do_not_call
    assert skipped("L5") == {"phone opted out of SMS (STOP)"}  # sms_stop: only the SMS after it
    l5_sent = {t["channel"] for t in status(cli, "L5", LATER)["touches"] if t["status"] == "sent"}
    assert l5_sent == {"email", "sms"}  # the SMS before STOP went; email went on after it
    story = as_json(cli("history", "L7", "--json", now=LATER))
    assert [h["detail"].get("action") for h in story if h["kind"] == "action"].count("resume") == 1  # out of office
    nurture_emails = [
        t for t in status(cli, "L3", LATER)["touches"] if t["sequence"] == "nurture-monthly" and t["status"] == "sent"
    ]
    assert nurture_emails  # recycled leads get their nurture emails


def test_demo_outbox_holds_exactly_what_was_recorded_as_sent(demo_run: tuple[Cli, str]) -> None:
    cli, _ = demo_run
    sent = as_json(cli("touches", "--status", "sent", "--limit", "100000", "--json", now=LATER))
    emails = sorted((cli.project / "outbox" / "email").glob("*.eml"))
    texts = (cli.project / "outbox" / "sms.jsonl").read_text().splitlines()
    assert len(emails) == sum(t["channel"] == "email" for t in sent) > 30
    assert len(texts) == sum(t["channel"] == "sms" for t in sent) > 0


def test_demo_prints_the_summary_table_outbox_counts_and_a_history(demo_run: tuple[Cli, str]) -> None:
    _, output = demo_run
    for expected in ("cadence log", "cadence event L5 sms_stop", "Every lead", "Outbox", "cadence history L2"):
        assert expected in output
    assert "outbound-saas → nurture-quarterly →" in output
    assert output.count("$ CADENCE_NOW=") == 7 + len(demo.BEATS) + 3  # set-up, every scripted moment, the end


def test_demo_hears_the_reply_the_out_of_office_and_the_bounce_as_email(demo_run: tuple[Cli, str]) -> None:
    cli, output = demo_run
    read = as_json(cli("inbox", "list", "--json", now=LATER))
    assert sorted((m["kind"], m["lead"]) for m in read) == [
        ("bounce", "L4"), ("out_of_office", "L7"), ("reply", "L6")
    ]  # fmt: skip
    assert all(m["source"] == "file" for m in read)
    assert "cadence inbox process inbox/L6-reply.eml" in output
    report = as_json(cli("report", "--json", now=LATER))
    assert report["inbox"]["read"]["reply"] == 1 and report["inbox"]["read"]["bounce"] == 1
    assert report["inbox"]["senders"]["bob"]["hard_bounces"] == 1
    story = as_json(cli("history", "L6", "--json", now=LATER))
    titles = [h["detail"].get("title", "") for h in story if h["kind"] == "task_opened"]
    assert any(t.startswith("Reply from Leo Garcia (Hooli): Thanks for following up") for t in titles)


def test_demo_ends_with_the_workspace_ready_to_click_through(demo_run: tuple[Cli, str]) -> None:
    import yaml

    cli, output = demo_run
    config = yaml.safe_load((cli.project / "config.yaml").read_text())
    assert [(u["id"], u["role"]) for u in config["users"]] == [("alice", "sdr"), ("bob", "sdr"), ("maria", "manager")]
    assert all(u["password_hash"].startswith("$argon2id$") for u in config["users"])
    assert config["public_url"] == demo.SERVE_URL
    assert (cli.project / ".demo-now").read_text().startswith("2027-")
    assert "make serve-demo, then open http://127.0.0.1:8080" in output
    assert all(password in output for _, _, _, password in demo.DEMO_USERS)
    assert cli("validate").exit_code == 0
