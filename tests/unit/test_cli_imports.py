"""A rep's `cadence --help` and `--version` are instant: they load neither the store nor the models;
and a command on a store already at head reads one row to know it, without alembic.

Each case runs cadence's `__main__` (what `python -m cadence` runs) in a fresh interpreter, since the
modules a test process already holds would hide a regression, and lists the heavy packages it
imported. bench/cli_startup.py times the same commands; this only keeps the imports from coming back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import cadence

HEAVY = ("sqlalchemy", "sqlmodel", "alembic", "pydantic", "holidays", "phonenumbers", "jinja2", "yaml")
CADENCE_HEAVY = ("cadence.app", "cadence.config", "cadence.spec.model", "cadence.store", "cadence.enrollment")
PROBE = """
import atexit, json, sys
heavy = sys.argv[1].split(",")
atexit.register(lambda: print("\\nIMPORTED " + json.dumps(sorted(m for m in heavy if m in sys.modules))))
sys.argv = ["cadence", *sys.argv[2:]]
import runpy
runpy.run_module("cadence", run_name="__main__", alter_sys=True)
"""


MON_11 = "2026-11-23T11:00:00-05:00"


def imported(*args: str, watch: tuple[str, ...] = HEAVY, project: Path | None = None) -> tuple[int, str, list[str]]:
    """Run `cadence ARGS` in `project` (else with no config file): its exit code, its output, and which
    of `watch` it imported."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADENCE_") or k == "CADENCE_CACHE_DIR"}
    env |= {"CADENCE_NOW": MON_11} if project else {"CADENCE_CONFIG": "/nonexistent/config.yaml"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, ",".join(watch), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=project,
    )
    out, _, found = done.stdout.rpartition("\nIMPORTED ")
    return done.returncode, out, json.loads(found)


@pytest.mark.parametrize("args", [["--help"], ["--version"]])
def test_help_and_version_import_no_store_models_or_templates(args: list[str]) -> None:
    # Not rich either: typer's rich help renderer alone doubled the time of `cadence --help` (BENCHMARKS.md).
    code, out, heavy = imported(*args, watch=(*HEAVY, "rich"))
    assert code == 0 and out.strip()
    assert heavy == []


@pytest.mark.parametrize("args", [["tasks", "--help"], ["leads", "import", "--help"], ["validate", "--help"]])
def test_a_commands_help_loads_no_config_store_or_templates(args: list[str]) -> None:
    """pydantic is typer's here: typer 0.29 coerces the root --config through a pydantic TypeAdapter."""
    code, out, heavy = imported(*args, watch=(*CADENCE_HEAVY, *HEAVY))
    assert code == 0 and out.strip()
    assert heavy == ["pydantic"]


def test_version_does_not_import_rich() -> None:
    code, out, heavy = imported("--version", watch=("rich",))
    assert (code, out.strip(), heavy) == (0, f"cadence {cadence.__version__}", [])


def test_a_store_at_head_is_opened_without_alembic_and_validate_opens_no_store(tmp_path: Path) -> None:
    project = tmp_path / "p"
    assert imported("init", str(project), project=tmp_path)[0] == 0
    code, out, heavy = imported("leads", "import", "leads.csv", watch=("alembic",), project=project)
    assert (code, heavy) == (0, ["alembic"]), out  # a new database: the migrations create it
    for args in (["tasks"], ["status", "L1"]):
        # Nor PostgreSQL's dialect on SQLite (a partial index's WHERE, an upsert, would load it).
        code, out, heavy = imported(*args, watch=("alembic", "mako", "sqlalchemy.dialects.postgresql"), project=project)
        assert (code, heavy) == (0, []), out
    code, out, heavy = imported("validate", watch=("sqlalchemy", "sqlmodel", "alembic"), project=project)
    assert (code, heavy) == (0, []), out


def test_a_config_validated_before_is_not_validated_again(tmp_path: Path) -> None:
    """The second `cadence tasks` on an unchanged config.yaml reads its settings from the cache: no YAML,
    no email-validator, holidays or phonenumbers. Editing the file brings them back."""
    project = tmp_path / "p"
    assert imported("init", str(project), project=tmp_path)[0] == 0
    watch = ("yaml", "email_validator", "holidays", "phonenumbers")
    code, out, first = imported("tasks", watch=watch, project=project)
    assert code == 0 and first == sorted(watch), out  # a project never seen: validated, then kept
    code, out, again = imported("tasks", watch=watch, project=project)
    assert (code, again) == (0, []), out
    config = project / "config.yaml"
    config.write_text(config.read_text().replace("America/New_York", "America/Chicago", 1))
    code, out, edited = imported("tasks", watch=watch, project=project)
    assert code == 0 and edited == sorted(watch), out


def test_schema_head_is_alembics_head() -> None:
    """Every command compares the store with SCHEMA_HEAD; a migration added without bumping it fails here."""
    from alembic.script import ScriptDirectory

    from cadence.store.db import SCHEMA_HEAD, alembic_config, head_revision

    scripts = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert scripts.get_heads() == [SCHEMA_HEAD]
    assert head_revision() == SCHEMA_HEAD


def test_the_console_made_on_first_use_serves_rich_like_a_console() -> None:
    """`cadence leads import` hands the console to rich's Progress, which enters it (`with console:`)."""
    from rich.progress import Progress

    from cadence.cli.output import console

    with console.capture() as captured, Progress(console=console, transient=True) as bar:
        task = bar.add_task("import", total=3)
        for _ in range(3):
            bar.advance(task)
        console.print("done", markup=False)
    assert "done" in captured.get()
