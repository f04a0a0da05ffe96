"""Hostile and merely odd lead files (tests/hostile/csv/), imported through the CLI on SQLite and PostgreSQL.

Each file is either refused as a whole with a clear error naming the place (the file, the
byte or the row) and the store left exactly as it was, or handled: its good rows imported,
each bad row reported with its number. Never a traceback, never a hang: every import takes
a few seconds at most.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cli

CORPUS = Path(__file__).resolve().parent / "csv"
SECONDS = 5.0
BASELINE = "id,email,company\nB0,base.line@example.com,Baseline\n"


@dataclass(frozen=True)
class Case:
    file: str
    exit_code: int
    says: tuple[str, ...]  # what the output must say
    imported: tuple[str, ...] = ()  # the leads the file adds; none when it is refused
    stored: dict[str, dict[str, Any]] = field(default_factory=dict)  # lead id -> values `leads list --json` shows


REFUSED = [
    Case("latin1.csv", 1, ("latin1.csv: the file is not UTF-8 at byte 97 (line 2)", "save it as UTF-8")),
    Case("windows1252_smart_quotes.csv", 1, ("not UTF-8 at byte 96 (line 2)", "save it as UTF-8")),
    Case("utf8_bad_byte_late.csv", 1, ("not UTF-8 at byte 12420 (line 301)", "save it as UTF-8")),
    Case("utf8_bom_then_latin1.csv", 1, ("not UTF-8 at byte 49 (line 2)", "save it as UTF-8")),
    Case("excel_workbook_saved_as_csv.csv", 1, ("the file is an Excel workbook (or another zip file), not CSV",)),
    Case("utf16_no_bom.csv", 1, ("UTF-16 without a byte order mark", "save it as UTF-8")),
    Case("utf32_bom.csv", 1, ("the file is UTF-32", "save it as UTF-8")),
    Case("empty.csv", 1, ("empty.csv: the file is empty: the first row must be the header",)),
    Case("bom_only.csv", 1, ("bom_only.csv: the file is empty",)),
    Case("blank_lines_only.csv", 1, ("blank_lines_only.csv: the file is empty",)),
    Case("no_header.csv", 1, ("the header (row 1) has no id or email column (it has: H1, ann.lee@example.com",)),
    Case("unterminated_quote.csv", 1, ("row 3 (line 3): a quote opened here is never closed",)),
]
HANDLED = [
    Case(
        "utf8_bom.csv", 0, ("imported 1",), ("H1",),
        {"H1": {"name": "Inés García", "company": "Telefónica", "phone": "+34612345678"}},
    ),
    Case(
        "utf16_bom_tab.csv", 0, ("imported 2",), ("H1", "H2"),
        {"H1": {"name": "Zoë", "company": "Schmidt & Söhne"}, "H2": {"name": "李", "company": "北京公司"}},
    ),
    Case("utf16_be_bom.csv", 0, ("imported 1",), ("H1",), {"H1": {"name": "Ana"}}),
    Case(
        "excel_semicolon.csv", 0, ("imported 2",), ("claire.dubois@example.fr", "jurgen.muller@example.de"),
        {
            "jurgen.muller@example.de": {"company": "Müller GmbH", "phone": "+4915112345678"},
            "claire.dubois@example.fr": {"company": "Dubois, Fils & Cie", "title": "Directrice", "country": "FR"},
        },
    ),
    Case("excel_sep_line.csv", 0, ("imported 2",), ("H1", "H2"), {"H1": {"company": "Acme, Inc"}}),
    Case("tab_delimited.csv", 0, ("imported 2",), ("H1", "H2"), {"H1": {"fields": {"notes": "likes; semicolons"}}}),
    Case(
        "quoted_header_with_delimiters.csv", 0, ("custom fields: company, legal name",), ("H1",),
        {"H1": {"fields": {"company, legal name": "Acme, Inc"}}},
    ),
    Case(
        "mixed_line_endings.csv", 0, ("imported 4",), ("H1", "H2", "H3", "H4"),
        {"H3": {"company": "Initech"}, "H4": {"company": "Hooli\r\nLabs"}},
    ),
    Case("old_mac_line_endings.csv", 0, ("imported 2",), ("H1", "H2")),
    Case("header_only.csv", 0, ("imported 0, updated 0, rejected 0",)),
    Case("header_and_blank_rows.csv", 0, ("imported 0, updated 0, rejected 0",)),
    Case("wide_header.csv", 0, ("imported 1", "custom fields: c0, c1", "and 4970 more"), ("H1",)),
    Case(
        "duplicate_headers.csv", 0, ("custom fields: Email (2)",), ("H1",),
        {"H1": {"email": "ann.lee@example.com", "fields": {"email (2)": "ann.private@example.com"}}},
    ),
    Case(
        "header_spellings.csv", 0, ("imported 1", "custom fields: Emial"), ("H1",),
        {"H1": {"name": "Ann Lee", "email": "ann.lee@example.com", "phone": "+12125550101", "company": "Acme",
                "title": "VP Sales", "country": "US", "timezone": "America/New_York",
                "fields": {"emial": "typo@example.com"}}},
    ),
    Case(
        "formula_cells.csv", 0, ("imported 2",), ("H1", "H2"),
        {"H1": {"company": '=HYPERLINK("http://evil.example","Acme")', "title": "+1 Growth",
                "fields": {"notes": "@SUM(A1:A9)"}},
         "H2": {"company": "-Globex", "title": "=1+2", "fields": {"notes": "=already escaped"}}},
    ),
    Case("huge_cell.csv", 1, ("row 3: a cell is longer than the limit of 131,072 characters",), ("H1", "H3")),
    Case("nul_byte.csv", 1, ("row 3: first_name contains a NUL byte",), ("H1", "H3")),
    Case("more_cells_than_header.csv", 1, ("row 3: row has more cells than the header",), ("H1",)),
    Case("trailing_delimiters.csv", 1, ("row 3: row has more cells than the header",), ("H1",)),
    Case("value_under_blank_header.csv", 1, ("row 3: a cell has a value but its column has no name",), ("H1",)),
    Case("text_after_quote.csv", 1, ("row 2: a quoted cell has text after its closing quote (line 2)",), ("H2",)),
    Case(
        "runaway_quote.csv", 1,
        ("row 3: lines 3-5 read as one row: a quote opened on line 3 closes only on line 5",), ("H1", "H5"),
    ),
    Case(
        "quote_swallowing_a_row.csv", 1,
        ("row 2: lines 2-3 read as one row: a quoted cell holds lines that look like rows",), ("H3",),
    ),
    Case(
        "multiline_notes.csv", 0, ("imported 2",), ("H1", "H2"),
        {"H1": {"fields": {"notes": "Called, left voicemail.\nWill try again Tuesday, 10am."}}},
    ),
    Case(
        "duplicate_ids.csv", 1,
        ("row 4: same id H1 as row 2 (the first row stands)",
         "row 5: same email ann.lee@example.com as row 2 (the first row stands)",
         "row 6: same email bo.chen@example.com as row 3 (the first row stands)"),
        ("H1", "H2"), {"H1": {"name": "Ann Lee"}},
    ),
    Case(
        "every_problem.csv", 1,
        ("country 'ZZ' is not an ISO 3166 two-letter code", "email 'not-an-email' is invalid",
         "phone '+1555' is not a valid number", "unknown time zone 'Europe/Moon'", "owner 'carol' is not a sender",
         "sms_consent 'maybe' must be yes/no", "score 'lots' is not a number"),
    ),
    Case(
        "regions.csv", 1,
        ("row 4: region 'US-XX' is not a subdivision with a known holiday calendar",
         "row 5: region 'GB-SCT' is not in country US",
         "row 7: region 'EMEA' is not an ISO 3166-2 subdivision like US-CA or GB-SCT"),
        ("H1", "H2", "H5"),
        {"H1": {"country": "GB", "region": "GB-SCT"}, "H2": {"country": "US", "region": "US-CA"},
         "H5": {"country": "CA", "region": "CA-QC"}},
    ),
]  # fmt: skip


def listed(cli: Cli) -> dict[str, dict[str, Any]]:
    result = cli("leads", "list", "--json", "--limit", "100000")
    assert result.exit_code == 0, result.output
    return {lead["id"]: lead for lead in json.loads(result.stdout)}


def exported(cli: Cli, project: Path) -> str:
    result = cli("leads", "export", "snapshot.csv")
    assert result.exit_code == 0, result.output
    return (project / "snapshot.csv").read_text(encoding="utf-8")


def test_the_corpus_has_a_case_for_every_file() -> None:
    assert sorted(p.name for p in CORPUS.glob("*.csv")) == sorted(c.file for c in REFUSED + HANDLED)


@pytest.mark.parametrize("case", REFUSED, ids=lambda c: c.file)
def test_an_unreadable_file_is_refused_whole_naming_the_place_and_changes_nothing(
    cli: Cli, project: Path, case: Case
) -> None:
    (project / "baseline.csv").write_text(BASELINE)
    assert cli("leads", "import", "baseline.csv").exit_code == 0
    before = exported(cli, project)
    started = time.monotonic()
    result = cli("leads", "import", str(CORPUS / case.file))
    assert time.monotonic() - started < SECONDS
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == case.exit_code, result.output
    assert "Traceback" not in result.output
    for words in case.says:
        assert words in result.output
    assert exported(cli, project) == before


@pytest.mark.parametrize("case", HANDLED, ids=lambda c: c.file)
def test_an_odd_file_imports_its_good_rows_and_names_each_bad_one(cli: Cli, project: Path, case: Case) -> None:
    (project / "baseline.csv").write_text(BASELINE)
    assert cli("leads", "import", "baseline.csv").exit_code == 0
    started = time.monotonic()
    result = cli("leads", "import", str(CORPUS / case.file))
    assert time.monotonic() - started < SECONDS
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == case.exit_code, result.output
    for words in case.says:
        assert words in result.output
    leads = listed(cli)
    assert sorted(leads) == sorted(["B0", *case.imported])
    for lead_id, values in case.stored.items():
        assert {k: leads[lead_id][k] for k in values} == values
