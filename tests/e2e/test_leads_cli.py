"""`cadence leads import | list | export | assign` through the CLI, as a sales-ops person and a rep use them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from tests.conftest import Cli
from tests.e2e.cli_flow import MON, as_json, history, ok, open_task, run_next

LEADS = (
    "id,email,phone,first_name,last_name,company,title,owner,timezone,country,score,industry\n"
    "L1,dana.wu@northwind.example,+12125550101,Dana,Wu,Northwind,VP Sales,alice,America/New_York,US,92,SaaS\n"
    "L2,sam.patel@contoso.example,+14155550102,Sam,Patel,Contoso,Head of SDR,alice,America/Los_Angeles,US,-5,\n"
    "L3,priya.nair@globex.example,+919812345678,Priya,Nair,Globex,Director,bob,Asia/Kolkata,IN,64,IT\n"
    'L4,oliver.smith@initech.example,+447911123456,Oliver,Smith,"=HYPERLINK(""http://x.example"")",CRO,bob,'
    "Europe/London,GB,81,@risk\n"
)


def import_leads(cli: Cli, project: Path, content: str = LEADS) -> None:
    (project / "mine.csv").write_text(content, encoding="utf-8")
    ok(cli("leads", "import", "mine.csv"))


def test_leads_import_exits_1_when_a_row_is_rejected_and_still_imports_the_good_rows(cli: Cli, project: Path) -> None:
    (project / "mixed.csv").write_text(LEADS + "L5,not-an-email,,,,,,,,US,,\n", encoding="utf-8")
    result = cli("leads", "import", "mixed.csv")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0] == "imported 4, updated 0, rejected 1"
    assert lines[1] == "  mixed.csv: row 6: email 'not-an-email' is invalid: An email address must have an @-sign."
    assert "custom fields: industry" in lines
    listed = as_json(cli("leads", "list", "--json"))
    assert [lead["id"] for lead in listed] == ["L1", "L2", "L3", "L4"]


def test_leads_import_json_keeps_its_keys_and_adds_the_summary(cli: Cli, project: Path) -> None:
    (project / "mixed.csv").write_text(
        "id,email,country,Pain Point\nL1,dana@northwind.example,US,ramp\nL2,bad,US,\n", encoding="utf-8"
    )
    result = cli("leads", "import", "mixed.csv", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {
        "imported": 1,
        "updated": 0,
        "rejected": [{"row": 3, "error": "email 'bad' is invalid: An email address must have an @-sign."}],
        "custom_fields": ["Pain Point"],
        "timezone_fallbacks": 1,
        "dry_run": False,
    }


def test_leads_import_dry_run_reports_and_writes_nothing(cli: Cli, project: Path) -> None:
    (project / "mine.csv").write_text(LEADS, encoding="utf-8")
    result = cli("leads", "import", "mine.csv", "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "would be imported 4, would be updated 0, rejected 0"
    assert "dry run: nothing was written" in result.stdout
    assert as_json(cli("leads", "list", "--json")) == []


def test_leads_import_of_an_unreadable_file_names_the_file_and_exits_1(cli: Cli, project: Path) -> None:
    (project / "latin1.csv").write_bytes("id,email,first_name\nL1,j@wayne.example,Jürgen\n".encode("latin-1"))
    result = cli("leads", "import", "latin1.csv")
    assert result.exit_code == 1
    assert "latin1.csv: the file is not UTF-8 at byte 40 (line 2); save it as UTF-8" in result.output
    assert "Traceback" not in result.output


def test_leads_list_filters_by_owner_stage_sequence_and_search(cli: Cli, project: Path) -> None:
    import_leads(cli, project)
    ok(cli("enroll", "outbound-saas", "L2", "L3", now=MON))

    def ids(*options: str) -> list[str]:
        return [lead["id"] for lead in as_json(cli("leads", "list", "--json", *options, now=MON))]

    assert ids() == ["L1", "L2", "L3", "L4"]
    assert ids("--owner", "bob") == ["L3", "L4"]
    assert ids("--sequence", "outbound-saas") == ["L2", "L3"]
    assert ids("--sequence", "outbound-saas", "--owner", "alice") == ["L2"]
    assert ids("--stage", "new") == ["L1", "L4"]
    assert ids("--stage", "working") == ["L2", "L3"]
    assert ids("--search", "NORTHWIND") == ["L1"]  # company and email, any case
    assert ids("--search", "sam pat") == ["L2"]  # the name as a rep types it
    assert ids("--search", "l4") == ["L4"]
    assert ids("--search", "%") == []  # a wildcard is a plain character
    lead = as_json(cli("leads", "list", "--json", "--search", "Sam", now=MON))[0]
    assert (lead["name"], lead["owner"], lead["stage"], lead["sequences"]) == (
        "Sam Patel", "alice", "working", ["outbound-saas"],
    )  # fmt: skip


def test_leads_list_says_when_it_is_cut(cli: Cli, project: Path) -> None:
    rows = "".join(f"L{i:03d},lead{i}@example.com\n" for i in range(1, 206))
    import_leads(cli, project, "id,email\n" + rows)
    result = cli("leads", "list")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[-1] == "showing 200 of 205; use --limit"
    assert "L200" in result.stdout and "L201" not in result.stdout
    assert result.stdout.count("lead") >= 200
    shown = cli("leads", "list", "--limit", "5", "--json")
    assert [lead["id"] for lead in json.loads(shown.stdout)] == ["L001", "L002", "L003", "L004", "L005"]
    assert "showing 5 of 205; use --limit" in shown.stderr
    whole = cli("leads", "list", "--limit", "500")
    assert whole.stdout.splitlines()[-1] == "205 lead(s)"


def test_leads_export_writes_the_same_filters_and_escapes_formula_cells(cli: Cli, project: Path) -> None:
    import_leads(cli, project)
    result = cli("leads", "export", "bob.csv", "--owner", "bob")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "exported 2 lead(s) to bob.csv"
    with (project / "bob.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [row["id"] for row in rows] == ["L3", "L4"]
    l4 = rows[1]
    assert l4["company"] == '\'=HYPERLINK("http://x.example")'
    assert l4["industry"] == "'@risk"
    assert l4["phone"] == "'+447911123456"
    assert (l4["stage"], l4["owner"], l4["score"]) == ("new", "bob", "81")
    ok(cli("leads", "export", "search.csv", "--search", "contoso"))
    text = (project / "search.csv").read_text(encoding="utf-8")
    assert "L2,sam.patel@contoso.example,'+14155550102" in text and ",'-5," in text
    assert "L1," not in text


def test_an_exported_file_imports_back_without_changing_a_lead(cli: Cli, project: Path) -> None:
    import_leads(cli, project)
    ok(cli("leads", "export", "all.csv"))
    before = as_json(cli("leads", "list", "--json"))
    result = cli("leads", "import", "all.csv", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["updated"], report["rejected"], report["custom_fields"]) == (4, [], ["industry"])
    assert as_json(cli("leads", "list", "--json")) == before


def test_leads_assign_moves_leads_their_open_tasks_and_records_history(cli: Cli, project: Path) -> None:
    import_leads(cli, project)
    ok(cli("enroll", "outbound-saas", "L1", now=MON))
    now = run_next(cli, "L1", MON)  # day 1: the intro email, and the first call as a task for alice
    task = open_task(cli, "L1", now, "call-1")
    assert task["owner"] == "alice"
    result = cli("leads", "assign", "L1", "L2", "--owner", "bob", now=now)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "assigned 2 lead(s) to bob, 0 already theirs, refused 0",
        "  L1: alice -> bob, 1 open task(s) moved",
        "  L2: alice -> bob",
    ]
    bobs = as_json(cli("tasks", "--owner", "bob", "--json", now=now))
    assert [(t["id"], t["lead"]["id"]) for t in bobs] == [(task["id"], "L1")]
    assert as_json(cli("tasks", "--owner", "alice", "--json", now=now)) == []
    changes = [h for h in history(cli, "L1", now) if h["kind"] == "updated"]
    assert [(h["detail"], h["cause"]) for h in changes] == [({"owner": ["alice", "bob"]}, "leads assign")]
    assert [lead["id"] for lead in as_json(cli("leads", "list", "--owner", "bob", "--json", now=now))] == [
        "L1", "L2", "L3", "L4",
    ]  # fmt: skip


def test_leads_assign_refuses_unknown_leads_and_assigns_the_others(cli: Cli, project: Path) -> None:
    import_leads(cli, project)
    result = cli("leads", "assign", "L1", "L99", "L3", "--owner", "bob", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {
        "owner": "bob",
        "assigned": [{"lead": "L1", "from": "alice", "tasks_moved": 0}],
        "unchanged": ["L3"],
        "refused": [{"lead": "L99", "reason": "no lead with id 'L99'"}],
    }


def test_leads_assign_to_someone_not_in_config_changes_nothing(cli: Cli, project: Path) -> None:
    import_leads(cli, project)
    result = cli("leads", "assign", "L1", "--owner", "carol")
    assert result.exit_code == 1
    assert "owner 'carol' is not a sender in config.yaml (known: alice, bob)" in result.output
    assert as_json(cli("leads", "list", "--owner", "alice", "--json"))[0]["id"] == "L1"
    assert history(cli, "L1", MON) == []
