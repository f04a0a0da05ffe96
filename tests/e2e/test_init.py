"""`cadence init` writes a project that works as it is: it validates, its leads import cleanly, and they get
their first touches. The starter comes from inside the package (importlib.resources), as it does in a wheel;
the CI step in .ci/run repeats this with the wheel installed in a fresh virtualenv outside the checkout."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cadence.cli.app import app
from tests.conftest import Cli

MON_11 = "2026-11-23T11:00:00-05:00"  # a Monday in New York, inside the starter's window


def test_a_new_project_validates_imports_enrolls_and_sends(tmp_path: Path, db_url: str) -> None:
    made = Cli(tmp_path, db_url, CliRunner())("init", "acme", now=MON_11)
    assert made.exit_code == 0, made.output
    cli = Cli(tmp_path / "acme", db_url, CliRunner())

    assert cli("validate", now=MON_11).exit_code == 0
    imported = cli("leads", "import", "leads.csv", "--json", now=MON_11)
    assert imported.exit_code == 0, imported.output
    report = json.loads(imported.stdout)
    assert (report["imported"], report["rejected"]) == (8, [])
    enrolled = cli("enroll", "outbound-saas", "--all-new", "--json", now=MON_11)
    assert enrolled.exit_code == 0, enrolled.output
    assert json.loads(enrolled.stdout)["refused"] == []
    ran = cli("run", "--once", "--json", now=MON_11)
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.stdout)["dispatch"]["sent"]["email"] > 0
    assert list((tmp_path / "acme" / "outbox" / "email").glob("*.eml"))


def test_init_refuses_a_folder_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "acme").mkdir()
    (tmp_path / "acme" / "notes.txt").write_text("mine")
    result = CliRunner().invoke(app, ["init", str(tmp_path / "acme")])
    assert result.exit_code == 1 and "not empty" in result.stderr
    assert [p.name for p in (tmp_path / "acme").iterdir()] == ["notes.txt"]
