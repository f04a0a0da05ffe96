"""Imports a sales-ops person can trust, on a real store (SQLite and PostgreSQL).

Any delimiter and the encodings Excel writes, headers as CRMs spell them, every problem
of a row at once, duplicates named with both rows, all or nothing (a database refusal
rejects only its row), time zones inferred, regions checked, and an owner changed by a
re-import taking the lead's open tasks along.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from cadence.app import App
from cadence.enrollment.enroll import enroll
from cadence.enrollment.lead_import import CHUNK, CsvRefused, ImportReport, import_leads, read_rows
from cadence.names import HistoryKind, TouchStatus
from cadence.store import enrollments, history, leads, listings, tasks
from cadence.store.rows import LeadRow
from tests.conftest import make_app

NOW = datetime(2026, 11, 23, 13, 0, tzinfo=UTC)
ROWS = [
    ("L1", "dana.wu@northwind.example", "+12125550101", "Dana", "Wu", "Northwind", "alice", "US"),
    ("L2", "sam.patel@contoso.example", "+14155550102", "Sam", "Patel", "Contoso, Inc", "bob", "US"),
    ("L3", "jurgen.muller@wayne.example", "+4915112345678", "Jürgen", "Müller", "Wayne GmbH", "alice", "DE"),
]
HEADER = ("id", "email", "phone", "first_name", "last_name", "company", "owner", "country")


@pytest.fixture
def app(project: Path, db_url: str) -> Iterator[App]:
    application = make_app(project, db_url, NOW)
    yield application
    application.close()


def csv_text(delimiter: str, rows: list[tuple[str, ...]] = ROWS, header: tuple[str, ...] = HEADER) -> str:
    def line(cells: tuple[str, ...]) -> str:
        return delimiter.join(f'"{c}"' if delimiter in c else c for c in cells)

    return "\r\n".join(line(r) for r in [header, *rows]) + "\r\n"


def run_import(app: App, path: Path, content: str | bytes, *, dry_run: bool = False) -> ImportReport:
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return import_leads(app.engine, read_rows(path), app.settings, app.clock.now(), dry_run=dry_run)


def stored(app: App) -> dict[str, LeadRow]:
    with app.engine.connect() as conn:
        return leads.by_ids(conn, [f"L{i}" for i in range(1, 5000)] + ["H1", "H2", "T1", "T2", "T3", "T4", "T5", "T6"])


def picture(app: App) -> dict[str, tuple[Any, ...]]:
    return {lead_id: tuple(lead) for lead_id, lead in stored(app).items()}


@pytest.mark.parametrize("delimiter", [",", ";", "\t"], ids=["comma", "semicolon", "tab"])
def test_comma_semicolon_and_tab_files_import_the_same_leads(app: App, tmp_path: Path, delimiter: str) -> None:
    report = run_import(app, tmp_path / "leads.csv", csv_text(delimiter))
    assert (report.imported, report.rejected) == (3, [])
    leads_in = stored(app)
    assert leads_in["L2"].company == "Contoso, Inc"
    assert (leads_in["L3"].first_name, leads_in["L3"].phone) == ("Jürgen", "+4915112345678")


@pytest.mark.parametrize(
    "encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-be-bom"], ids=["utf8", "utf8-bom", "utf16-le", "utf16-be"]
)
def test_utf8_with_or_without_bom_and_utf16_with_bom_read_the_same_names(
    app: App, tmp_path: Path, encoding: str
) -> None:
    content = csv_text(",")
    data = b"\xfe\xff" + content.encode("utf-16-be") if encoding == "utf-16-be-bom" else content.encode(encoding)
    report = run_import(app, tmp_path / "leads.csv", data)
    assert (report.imported, report.rejected) == (3, [])
    assert (stored(app)["L3"].first_name, stored(app)["L3"].last_name) == ("Jürgen", "Müller")


def test_a_file_in_another_encoding_is_refused_whole_naming_the_byte_and_save_as_utf8(app: App, tmp_path: Path) -> None:
    run_import(app, tmp_path / "first.csv", csv_text(",", ROWS[:1]))
    before = picture(app)
    latin1 = csv_text(",", ROWS).encode("latin-1")
    offset = latin1.index("ü".encode("latin-1"))
    with pytest.raises(CsvRefused) as refused:
        run_import(app, tmp_path / "leads.csv", latin1)
    assert str(refused.value) == (
        f"the file is not UTF-8 at byte {offset} (line 4); save it as UTF-8 (in Excel: Save As > CSV UTF-8)"
        " and import again"
    )
    assert picture(app) == before


def test_common_header_spellings_map_to_the_standard_columns(app: App, tmp_path: Path) -> None:
    header = (
        "Lead ID,First Name,LAST-NAME,E-mail,Mobile,Time Zone,Company Name,Job Title,Lead Owner,Country,"
        "SMS Opt-In,Lead Score,Phone,Emial\n"
    )
    row = "L1,Dana,Wu,Dana.Wu@Northwind.example,+14155550102,America/Chicago,Northwind,VP Sales,bob,US,yes,92,"
    report = run_import(app, tmp_path / "leads.csv", header + row + "+12125550101,dana@typo.example\n")
    assert report.rejected == []
    assert report.custom_fields == ["Mobile", "Emial"]  # "Phone" takes the phone column: Mobile is kept, visibly
    lead = stored(app)["L1"]
    assert (lead.first_name, lead.last_name, lead.email, lead.phone) == (
        "Dana", "Wu", "dana.wu@northwind.example", "+12125550101",
    )  # fmt: skip
    assert (lead.timezone, lead.company, lead.title, lead.owner, lead.country) == (
        "America/Chicago", "Northwind", "VP Sales", "bob", "US",
    )  # fmt: skip
    assert (lead.sms_consent, lead.score) == (True, 92.0)
    assert lead.fields == {"mobile": "+14155550102", "emial": "dana@typo.example"}


def test_email_address_and_phone_number_spellings_are_standard_columns(app: App, tmp_path: Path) -> None:
    report = run_import(app, tmp_path / "leads.csv", "Email Address,Phone Number\nann@acme.example,+12125550101\n")
    assert (report.imported, report.custom_fields) == (1, [])
    with app.engine.connect() as conn:
        lead = leads.get(conn, "ann@acme.example")
    assert lead is not None and lead.phone == "+12125550101"


def test_duplicates_in_one_file_are_rejected_naming_both_rows_and_the_first_stands(app: App, tmp_path: Path) -> None:
    content = (
        "id,email,company\n"
        "L1,dana.wu@northwind.example,Northwind\n"  # row 2
        "L2,sam.patel@contoso.example,Contoso\n"  # row 3
        "L1,other@northwind.example,Second Northwind\n"  # row 4: same id as row 2
        "L3,DANA.WU@Northwind.example,Third\n"  # row 5: same email as row 2, in another case
        ",Sam.Patel@contoso.example,Fourth\n"  # row 6: no id, same email as row 3
    )
    report = run_import(app, tmp_path / "leads.csv", content)
    assert report.imported == 2
    assert report.rejected == [
        {"row": 4, "error": "same id L1 as row 2 (the first row stands)"},
        {"row": 5, "error": "same email dana.wu@northwind.example as row 2 (the first row stands)"},
        {"row": 6, "error": "same email sam.patel@contoso.example as row 3 (the first row stands)"},
    ]
    assert (stored(app)["L1"].company, stored(app)["L2"].company) == ("Northwind", "Contoso")


def test_two_rows_matching_one_stored_lead_by_email_are_duplicates(app: App, tmp_path: Path) -> None:
    run_import(app, tmp_path / "first.csv", "id,email\nL1,dana.wu@northwind.example\n")
    content = "id,email,company\nL9,dana.wu@northwind.example,By email\nL1,,By id\n"
    report = run_import(app, tmp_path / "second.csv", content)
    assert (report.updated, report.rejected) == (
        1, [{"row": 3, "error": "updates lead L1, as does row 2 (the first row stands)"}],
    )  # fmt: skip
    assert stored(app)["L1"].company == "By email"


def test_a_rejected_row_reports_every_problem_it_has(app: App, tmp_path: Path) -> None:
    content = (
        "id,email,phone,owner,timezone,country,region,sms_consent,score,notes\n"
        "L1,not-an-email,+1555,carol,Europe/Moon,ZZ,US-XX,maybe,lots,fine,surplus\n"
    )
    report = run_import(app, tmp_path / "leads.csv", content)
    assert report.rejected == [
        {
            "row": 2,
            "error": "; ".join(
                [
                    "row has more cells than the header",
                    "country 'ZZ' is not an ISO 3166 two-letter code",
                    "email 'not-an-email' is invalid: An email address must have an @-sign.",
                    "phone '+1555' is not a valid number",
                    "unknown time zone 'Europe/Moon' (use an IANA name like America/New_York)",
                    "owner 'carol' is not a sender in config.yaml (known: alice, bob)",
                    "sms_consent 'maybe' must be yes/no, true/false or 1/0",
                    "score 'lots' is not a number",
                ]
            ),
        }
    ]
    assert stored(app) == {}


def test_an_unterminated_quote_after_many_rows_refuses_the_file_and_writes_nothing(app: App, tmp_path: Path) -> None:
    run_import(app, tmp_path / "first.csv", "id,email\nL1,dana.wu@northwind.example\n")
    before = picture(app)
    good = "".join(f"L{i},lead{i}@example.com,Acme\n" for i in range(2, CHUNK * 2 + 500))
    content = "id,email,company\n" + good + 'L4000,late@example.com,"Never closed\nL4001,x@example.com,Acme\n'
    with pytest.raises(CsvRefused, match=r"row 2500 \(line 2500\): a quote opened here is never closed"):
        run_import(app, tmp_path / "leads.csv", content)
    assert picture(app) == before  # the two chunks written before the bad row were rolled back


def test_an_import_that_stops_midway_leaves_the_store_as_it_was(app: App, tmp_path: Path) -> None:
    run_import(app, tmp_path / "first.csv", "id,email,company\nL1,dana.wu@northwind.example,Northwind\n")
    before = picture(app)
    path = tmp_path / "leads.csv"
    path.write_text("id,email,company\n" + "".join(f"L{i},lead{i}@example.com,New\n" for i in range(1, CHUNK * 3)))
    seen: list[int] = []

    def stop_after_two_chunks(done: int) -> None:
        seen.append(done)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        import_leads(app.engine, read_rows(path), app.settings, app.clock.now(), stop_after_two_chunks)
    assert picture(app) == before


@pytest.fixture
def refusing_store(app: App) -> Iterator[App]:
    """The store refuses to write a lead of company 'Refused Inc' (a trigger: a real database error)."""
    with app.engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            for event in ("INSERT", "UPDATE"):
                conn.execute(
                    text(
                        f"CREATE TRIGGER refuse_{event.lower()} BEFORE {event} ON lead WHEN NEW.company = 'Refused Inc'"
                        " BEGIN SELECT RAISE(ABORT, 'refused by the test trigger'); END"
                    )
                )
        else:
            conn.execute(
                text(
                    "CREATE FUNCTION refuse_lead() RETURNS trigger AS $$ BEGIN IF NEW.company = 'Refused Inc' THEN"
                    " RAISE EXCEPTION 'refused by the test trigger'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
                )
            )
            conn.execute(
                text(
                    "CREATE TRIGGER refuse_lead BEFORE INSERT OR UPDATE ON lead"
                    " FOR EACH ROW EXECUTE FUNCTION refuse_lead()"
                )
            )
    yield app
    with app.engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.execute(text("DROP TRIGGER IF EXISTS refuse_insert"))
            conn.execute(text("DROP TRIGGER IF EXISTS refuse_update"))
        else:
            conn.execute(text("DROP TRIGGER IF EXISTS refuse_lead ON lead"))
            conn.execute(text("DROP FUNCTION IF EXISTS refuse_lead()"))


def test_a_row_the_database_refuses_becomes_a_reject_and_every_other_row_goes_in(
    refusing_store: App, tmp_path: Path
) -> None:
    app = refusing_store
    run_import(app, tmp_path / "first.csv", "id,email,company\nL2,sam.patel@contoso.example,Contoso\n")
    rows = [f"L{i},lead{i}@example.com,{'Refused Inc' if i in (1800, 2) else 'Acme'}\n" for i in range(1, 2501)]
    report = run_import(app, tmp_path / "leads.csv", "id,email,company\n" + "".join(rows))
    assert (report.imported, report.updated) == (2498, 0)
    assert [r["row"] for r in report.rejected] == [3, 1801]  # L2's update and L1800's insert
    assert all(r["error"].startswith("the database refused it: refused by the test trigger") for r in report.rejected)
    leads_in = stored(app)
    assert len(leads_in) == 2499 and "L1800" not in leads_in
    assert leads_in["L2"].company == "Contoso"


def test_a_dry_run_reports_what_an_import_would_do_and_writes_nothing(app: App, tmp_path: Path) -> None:
    run_import(app, tmp_path / "first.csv", csv_text(",", ROWS[:1]))
    before = picture(app)
    content = csv_text(",") + "L4,not-an-email,,Bad,Row,Nowhere,alice,US\r\n"
    dry = run_import(app, tmp_path / "leads.csv", content, dry_run=True)
    assert picture(app) == before
    real = run_import(app, tmp_path / "leads.csv", content)
    assert dry.as_json() == {**real.as_json(), "dry_run": True}
    assert (real.imported, real.updated, [r["row"] for r in real.rejected]) == (2, 1, [5])


def test_a_lead_without_a_time_zone_gets_its_phones_or_countrys_and_fallbacks_are_counted(
    app: App, tmp_path: Path
) -> None:
    content = (
        "id,email,phone,country,timezone\n"
        "T1,t1@example.com,+4915112345678,,\n"  # a German mobile: Europe/Berlin
        "T2,t2@example.com,+447911123456,GB,\n"  # a UK mobile is also Jersey's and Guernsey's: the country decides
        "T3,t3@example.com,,JP,\n"  # one zone in the country
        "T4,t4@example.com,,US,\n"  # several zones, no phone: config's default applies
        "T5,t5@example.com,+13125550106,US,\n"  # a Chicago number
        "T6,t6@example.com,,,\n"  # nothing to go by
        "L7,l7@example.com,+12125550101,US,Europe/Paris\n"  # a zone given is kept
    )
    report = run_import(app, tmp_path / "leads.csv", content)
    assert (report.imported, report.timezone_fallbacks) == (7, 2)
    with app.engine.connect() as conn:
        zones = {
            lead_id: lead.timezone
            for lead_id, lead in leads.by_ids(conn, ["T1", "T2", "T3", "T4", "T5", "T6", "L7"]).items()
        }
    assert zones == {
        "T1": "Europe/Berlin", "T2": "Europe/London", "T3": "Asia/Tokyo", "T4": None, "T5": "America/Chicago",
        "T6": None, "L7": "Europe/Paris",
    }  # fmt: skip
    again = run_import(app, tmp_path / "update.csv", "id,phone\nT4,+14155550102\nT6,\n")
    assert (again.updated, again.timezone_fallbacks) == (2, 1)
    with app.engine.connect() as conn:
        assert leads.timezone_of(conn, "T4") == "America/Los_Angeles"


def test_a_region_is_validated_stored_and_names_its_country(app: App, tmp_path: Path) -> None:
    content = (
        "id,email,country,region\n"
        "L1,l1@example.com,GB,gb-sct\n"
        "L2,l2@example.com,,US-CA\n"  # a region alone names its country
        "L3,l3@example.com,CA-QC,\n"  # so does a country with its subdivision
        "L4,l4@example.com,US,US-XX\n"
        "L5,l5@example.com,US,GB-SCT\n"
    )
    report = run_import(app, tmp_path / "leads.csv", content)
    assert report.rejected == [
        {"row": 5, "error": "region 'US-XX' is not a subdivision with a known holiday calendar"},
        {"row": 6, "error": "region 'GB-SCT' is not in country US"},
    ]
    places = {lead_id: (lead.country, lead.region) for lead_id, lead in stored(app).items()}
    assert places == {"L1": ("GB", "GB-SCT"), "L2": ("US", "US-CA"), "L3": ("CA", "CA-QC")}
    moved = run_import(app, tmp_path / "moved.csv", "id,country\nL2,GB\nL1,GB\n")
    assert moved.rejected == []
    places = {lead_id: (lead.country, lead.region) for lead_id, lead in stored(app).items()}
    assert places["L2"] == ("GB", None)  # California's holidays do not follow a lead to Britain
    assert places["L1"] == ("GB", "GB-SCT")


def test_a_change_of_owner_through_a_reimport_moves_open_tasks_and_is_in_the_history(app: App, tmp_path: Path) -> None:
    lead_row = "L1,dana.wu@northwind.example,+12125550101,Dana,Wu,Northwind,{owner},US\n"
    header = ",".join(HEADER) + "\n"
    run_import(app, tmp_path / "first.csv", header + lead_row.format(owner="alice"))
    assert enroll(app, "outbound-saas", ["L1"]).enrolled
    with app.engine.begin() as conn:
        enrollment = enrollments.live_of_lead(conn, "L1")[0]
        tasks.open_for_owner(conn, "L1", "alice", enrollment.id, "Call Dana", "she asked for a call", NOW)
    report = run_import(app, tmp_path / "second.csv", header + lead_row.format(owner="bob"))
    assert report.updated == 1
    with app.engine.connect() as conn:
        open_tasks = listings.touches(conn, status=TouchStatus.TASK_OPEN, lead_id="L1", limit=10)
        changes = [h for h in history.of_lead(conn, "L1") if h.kind == HistoryKind.UPDATED]
    assert [t.owner for t in open_tasks] == ["bob"]
    assert [(h.detail, h.cause) for h in changes] == [({"owner": ["alice", "bob"]}, "leads import")]
    assert stored(app)["L1"].owner == "bob"
