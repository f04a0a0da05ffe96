"""`cadence leads import` on a real store, SQLite and PostgreSQL: bad rows reported, good rows in, updates merged."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from cadence.app import App
from cadence.enrollment.lead_import import ImportReport, import_leads, read_rows
from cadence.store.tables import LeadT
from tests.conftest import Cli, make_app

NOW = datetime(2026, 11, 23, 13, 0, tzinfo=UTC)
HEADER = "id,email,phone,first_name,last_name,company,title,owner,timezone,country,sms_consent,industry\n"

# Row numbers as a spreadsheet shows them: the header is row 1, a quoted cell spanning
# two lines is still one row, a blank line is a row of its own.
BAD_ROWS = (
    HEADER
    + 'L1,dana.wu@northwind.example,+12125550101,Dana,Wu,Northwind,VP Sales,alice,America/New_York,US,yes,"SaaS\n'
    + 'and fintech"\n'  # row 2, continued
    + "L2,not-an-email,+12125550102,Sam,Patel,Contoso,Head of SDR,alice,America/New_York,US,yes,\n"  # row 3
    + "L3,jo.kim@stark.example,+1555,Jo,Kim,Stark,VP Sales,alice,America/New_York,US,yes,\n"  # row 4
    + "L4,eve.martin@cyberdyne.example,+33612345678,Eve,Martin,Cyberdyne,CRO,bob,Europe/Moon,FR,yes,\n"  # row 5
    + "L5,max.berg@wayne.example,+4915112345678,Max,Berg,Wayne,CRO,carol,Europe/Berlin,DE,yes,\n"  # row 6
    + ",,+13125550106,Leo,Garcia,Hooli,SDR Manager,bob,America/Chicago,US,no,\n"  # row 7
    + "L7,ana.costa@acme-br.example,,Ana,Costa,Acme,CRO,alice,America/Sao_Paulo,BR,,Retail,surplus\n"  # row 8
    + "\n"  # row 9: blank
    + "L8,,,Chris,Lee,Vandelay,Head of Growth,bob,,US,,\n"  # row 10
    + "L9,priya.nair@globex.example,+919812345678,Priya,Nair,Globex,Director,bob,Asia/Kolkata,ZZ,no,\n"  # row 11
    + "L10,mia.jones@umbrella.example,+61412345678,Mia,Jones,Umbrella,VP,alice,Australia/Sydney,AU,maybe,\n"  # 12
    + ",,,,,,,,,,,\n"  # row 13: an empty spreadsheet row
    + "L11,oliver.smith@initech.example,+447911123456,Oliver,Smith,Initech,CRO,bob,Europe/London,GB,yes,SaaS\n"  # 14
)
BAD_ROWS_REJECTED = [
    {"row": 3, "error": "email 'not-an-email' is invalid: An email address must have an @-sign."},
    {"row": 4, "error": "phone '+1555' is not a valid number"},
    {"row": 5, "error": "unknown time zone 'Europe/Moon' (use an IANA name like America/New_York)"},
    {"row": 6, "error": "owner 'carol' is not a sender in config.yaml (known: alice, bob)"},
    {"row": 7, "error": "row needs an id or an email"},
    {"row": 8, "error": "row has more cells than the header"},
    {"row": 10, "error": "row needs an email or a phone"},
    {"row": 11, "error": "country 'ZZ' is not an ISO 3166 two-letter code"},
    {"row": 12, "error": "sms_consent 'maybe' must be yes/no, true/false or 1/0"},
]


@pytest.fixture
def app(project: Path, db_url: str) -> Iterator[App]:
    application = make_app(project, db_url, NOW)
    yield application
    application.close()


def run_import(app: App, path: Path, text: str, encoding: str = "utf-8") -> ImportReport:
    path.write_text(text, encoding=encoding)
    return import_leads(app.engine, read_rows(path), app.settings, app.clock.now())


def summary(report: ImportReport) -> dict[str, Any]:
    """The keys `--json` has always had (it now adds custom_fields, timezone_fallbacks and dry_run)."""
    return {k: v for k, v in report.as_json().items() if k in ("imported", "updated", "rejected")}


def stored(app: App) -> dict[str, dict[str, Any]]:
    with app.engine.connect() as conn:
        return {row["id"]: dict(row) for row in conn.execute(select(LeadT)).mappings()}


def test_every_bad_row_is_reported_with_its_spreadsheet_row_number_and_reason(app: App, tmp_path: Path) -> None:
    report = run_import(app, tmp_path / "leads.csv", BAD_ROWS)
    assert summary(report) == {"imported": 2, "updated": 0, "rejected": BAD_ROWS_REJECTED}


def test_a_bad_row_imports_nothing_and_good_rows_are_imported(app: App, tmp_path: Path) -> None:
    run_import(app, tmp_path / "leads.csv", BAD_ROWS)
    leads = stored(app)
    assert sorted(leads) == ["L1", "L11"]
    assert not any(lead["phone"] == "+13125550106" for lead in leads.values())  # row 7 left nothing behind
    l1 = leads["L1"]
    assert {k: l1[k] for k in ("email", "phone", "first_name", "company", "owner", "timezone", "country")} == {
        "email": "dana.wu@northwind.example",
        "phone": "+12125550101",
        "first_name": "Dana",
        "company": "Northwind",
        "owner": "alice",
        "timezone": "America/New_York",
        "country": "US",
    }
    assert l1["sms_consent"] is True
    assert l1["stage"] == "new"
    assert l1["fields"] == {"industry": "SaaS\nand fintech"}


def test_updates_match_by_id_or_email_and_blank_cells_keep_stored_values(app: App, tmp_path: Path) -> None:
    first = run_import(
        app,
        tmp_path / "first.csv",
        HEADER
        + "L1,dana.wu@northwind.example,+12125550101,Dana,Wu,Northwind,VP Sales,alice,America/New_York,US,yes,SaaS\n"
        + "L2,sam.patel@contoso.example,+14155550102,Sam,Patel,Contoso,Head of SDR,alice,America/Los_Angeles,US,no,\n",
    )
    assert summary(first) == {"imported": 2, "updated": 0, "rejected": []}
    second = run_import(
        app,
        tmp_path / "second.csv",
        "id,email,phone,first_name,last_name,company,title,owner,timezone,country,sms_consent,industry,territory\n"
        + "L1,,,,,,CRO,,,,,,EMEA\n"  # matched by id: only title and territory change
        + ",SAM.PATEL@contoso.example,,,,,,bob,,,yes,Fintech,\n"  # matched by email (no id): L2
        + "L3,priya.nair@globex.example,+919812345678,Priya,Nair,Globex,Director,bob,Asia/Kolkata,IN,no,\n",
    )
    assert summary(second) == {"imported": 1, "updated": 2, "rejected": []}
    leads = stored(app)
    assert sorted(leads) == ["L1", "L2", "L3"]
    l1, l2 = leads["L1"], leads["L2"]
    assert (l1["title"], l1["company"], l1["email"], l1["phone"], l1["owner"], l1["sms_consent"]) == (
        "CRO",
        "Northwind",
        "dana.wu@northwind.example",
        "+12125550101",
        "alice",
        True,
    )
    assert l1["fields"] == {"industry": "SaaS", "territory": "EMEA"}
    assert (l2["owner"], l2["sms_consent"], l2["title"], l2["timezone"]) == (
        "bob",
        True,
        "Head of SDR",
        "America/Los_Angeles",
    )
    assert l2["fields"] == {"industry": "Fintech"}


def test_an_email_that_belongs_to_another_lead_is_rejected(app: App, tmp_path: Path) -> None:
    run_import(
        app,
        tmp_path / "first.csv",
        "id,email\nL1,dana.wu@northwind.example\nL2,sam.patel@contoso.example\n",
    )
    report = run_import(app, tmp_path / "second.csv", "id,email\nL1,sam.patel@contoso.example\n")
    assert summary(report) == {
        "imported": 0,
        "updated": 0,
        "rejected": [{"row": 2, "error": "email sam.patel@contoso.example already belongs to lead L2"}],
    }
    assert stored(app)["L1"]["email"] == "dana.wu@northwind.example"


def test_custom_columns_land_in_lead_fields(app: App, tmp_path: Path) -> None:
    report = run_import(  # an Excel export: a BOM, capitalised headers with spaces around them
        app,
        tmp_path / "leads.csv",
        "Id, Email ,Company,Industry,Employees,Pain Point\n"
        + "L1,dana.wu@northwind.example,Northwind,SaaS,250,ramp time\n"
        + "L2,sam.patel@contoso.example,Contoso,,40,\n",
        encoding="utf-8-sig",
    )
    assert summary(report) == {"imported": 2, "updated": 0, "rejected": []}
    leads = stored(app)
    assert leads["L1"]["company"] == "Northwind"
    assert leads["L1"]["fields"] == {"industry": "SaaS", "employees": "250", "pain point": "ramp time"}
    assert leads["L2"]["fields"] == {"employees": "40"}


def test_lead_without_owner_gets_a_stable_one(app: App, tmp_path: Path) -> None:
    run_import(app, tmp_path / "leads.csv", "id,email\nL1,dana.wu@northwind.example\n")
    owner = stored(app)["L1"]["owner"]
    assert owner in ("alice", "bob")
    run_import(app, tmp_path / "leads.csv", "id,email,company\nL1,dana.wu@northwind.example,Northwind\n")
    assert stored(app)["L1"]["owner"] == owner


def test_import_json_summary_has_exactly_the_documented_shape(cli: Cli) -> None:
    result = cli("leads", "import", "leads.csv", "--json")
    assert result.exit_code == 1, result.output  # rows were rejected; the good ones still went in
    report = json.loads(result.stdout)
    assert report == {
        "imported": 8,
        "updated": 0,
        "rejected": [
            {"row": 10, "error": "email 'not-an-email' is invalid: An email address must have an @-sign."},
            {"row": 11, "error": "phone '+1555' is not a valid number"},
            {"row": 12, "error": "owner 'carol' is not a sender in config.yaml (known: alice, bob)"},
            {"row": 13, "error": "unknown time zone 'Europe/Moon' (use an IANA name like America/New_York)"},
        ],
        "custom_fields": ["industry"],
        "timezone_fallbacks": 0,
        "dry_run": False,
    }
    again = json.loads(cli("leads", "import", "leads.csv", "--json").stdout)
    assert (again["imported"], again["updated"], len(again["rejected"])) == (0, 8, 4)


def test_import_prints_each_rejected_row(cli: Cli) -> None:
    result = cli("leads", "import", "leads.csv")
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "imported 8, updated 0, rejected 4"
    assert lines[1] == "  leads.csv: row 10: email 'not-an-email' is invalid: An email address must have an @-sign."
