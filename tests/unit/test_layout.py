"""The house keeps its shape: imports run down the flow, only store/ speaks SQL, modules stay small.

The contracts themselves live in pyproject.toml ([tool.importlinter]) and `make test`
runs `lint-imports`; these tests also prove the contract bites (SQL added to the CLI
fails it) and check what import-linter cannot see.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cadence.store import rows, tables

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "cadence"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
MAX_LINES = 420  # "about 400": a module past it usually holds two ideas
SQL_CALLS = {"execute", "exec_driver_sql", "scalar", "scalars", "begin_nested"}


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_import_contracts_hold() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_sql_added_to_the_cli_breaks_the_contract(tmp_path: Path) -> None:
    shutil.copytree(PACKAGE, tmp_path / "cadence", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    leads_cli = tmp_path / "cadence" / "cli" / "leads.py"
    leads_cli.write_text(leads_cli.read_text() + "\nfrom sqlalchemy import select  # noqa: E402\n")
    result = _lint_imports(tmp_path)
    assert result.returncode != 0
    assert "cadence.cli is not allowed to import sqlalchemy" in result.stdout


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_outside_the_store_runs_a_statement(path: Path) -> None:
    if path.is_relative_to(PACKAGE / "store"):
        return
    calls = [
        f"{path.name}:{node.lineno}: .{node.func.attr}()"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in SQL_CALLS
    ]
    assert calls == []


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_module_is_small_and_says_what_it_is_for(path: Path) -> None:
    source = path.read_text()
    assert len(source.splitlines()) <= MAX_LINES
    if path.name == "__main__.py" or (path.name == "__init__.py" and not source.strip()):
        return
    doc = ast.get_docstring(ast.parse(source))
    assert doc, f"{path.relative_to(ROOT)} has no opening docstring"
    assert doc.splitlines()[0].strip()


@pytest.mark.parametrize(
    ("row", "table"),
    [
        (rows.LeadRow, tables.LeadT),
        (rows.EnrollmentRow, tables.EnrollmentT),
        (rows.TouchRow, tables.TouchT),
        (rows.HistoryRow, tables.HistoryT),
        (rows.RecycleRow, tables.RecycleT),
        (rows.VersionRow, tables.VersionT),
        (rows.InboundRow, tables.InboundMessageT),
    ],
)
def test_typed_rows_match_their_tables_column_for_column(row: type, table: tables.Table) -> None:
    assert list(row._fields) == [c.name for c in table.columns]  # type: ignore[attr-defined]
