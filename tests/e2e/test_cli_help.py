"""The CLI explains itself: --version, a root --help that says how "now" and the config are found,
help on every --json, choices checked by the parser, and lists that say when they were cut."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import cadence
from cadence.cli.app import app
from cadence.enrollment.task_queue import DUE_CHOICES
from cadence.names import TouchStatus
from tests.conftest import Cli

MON_11 = "2026-11-23T11:00:00-05:00"  # a Monday in New York, inside the starter's window


def run(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), env={"CADENCE_CONFIG": "/nonexistent/config.yaml"})


def commands(group: Any, prefix: str = "cadence") -> list[tuple[str, Any]]:
    """Every command under `group`, sub-commands too (typer's click objects, duck-typed: typer may vendor click)."""
    found: list[tuple[str, Any]] = []
    for name, command in group.commands.items():
        found.append((f"{prefix} {name}", command))
        if hasattr(command, "commands"):
            found += commands(command, f"{prefix} {name}")
    return found


def test_version_prints_the_package_version() -> None:
    result = run("--version")
    assert result.exit_code == 0
    assert result.stdout == f"cadence {cadence.__version__}\n"


def test_root_help_explains_cadence_now_and_config() -> None:
    result = run("--help")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert "CADENCE_NOW" in text and "ISO 8601 with a UTC offset" in text
    assert "--config" in text and "CADENCE_CONFIG" in text and "./config.yaml" in text


def test_every_json_option_says_what_it_prints() -> None:
    with_json = [
        (name, param)
        for name, command in commands(typer.main.get_command(app))
        for param in command.params
        if "--json" in param.opts
    ]
    assert len(with_json) >= 15
    assert [name for name, param in with_json if not (param.help or "").strip()] == []


@pytest.mark.parametrize(
    ("args", "valid"),
    [
        (["touches", "--status", "bogus"], [s.value for s in TouchStatus]),
        (["tasks", "--due", "soon"], list(DUE_CHOICES)),
        (["run", "--once", "--use", "edited"], ["published", "files"]),
    ],
    ids=["status", "due", "use"],
)
def test_a_bad_choice_exits_2_and_lists_the_valid_values(args: list[str], valid: list[str]) -> None:
    result = run(*args)
    assert result.exit_code == 2
    assert all(f"'{value}'" in result.stderr for value in valid), result.stderr


def _count(cli: Cli, *args: str) -> int:
    everything = cli(*args, "--limit", "10000", "--json", now=MON_11)
    assert everything.exit_code == 0 and "showing" not in everything.stderr
    return len(json.loads(everything.stdout))


def test_a_cut_list_says_how_many_there_are(cli: Cli, project: Path) -> None:
    cli("leads", "import", "leads.csv", now=MON_11)
    assert cli("enroll", "outbound-saas", "L1", "L4", "L6", "L8", now=MON_11).exit_code == 0
    assert cli("run", "--once", now=MON_11).exit_code == 0  # an intro email and a call task each
    touches, tasks = _count(cli, "touches"), _count(cli, "tasks")
    assert touches > 3 and tasks > 2

    cut = cli("touches", "--limit", "3", "--json", now=MON_11)
    assert cut.exit_code == 0
    assert len(json.loads(cut.stdout)) == 3  # the note goes to stderr: stdout stays one JSON document
    assert cut.stderr == f"showing 3 of {touches}; use --limit\n"

    cut = cli("tasks", "--limit", "2", now=MON_11)
    assert cut.exit_code == 0
    assert f"showing 2 of {tasks}; use --limit" in cut.stderr
