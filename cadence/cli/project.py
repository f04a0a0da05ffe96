"""`cadence init` and `cadence validate`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from cadence.cli.context import state
from cadence.cli.output import console, errors, fail, print_json

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

    from cadence.spec.source import Diagnostic


def starter() -> Traversable:
    """The starter project shipped inside the package (read through importlib.resources, so a wheel has it)."""
    from importlib.resources import files

    return files("cadence") / "starter"


def _copy(source: Traversable, target: Path) -> None:
    if source.is_dir():
        target.mkdir(exist_ok=True)
        for child in source.iterdir():
            if child.name != "__pycache__":
                _copy(child, target / child.name)
    else:
        target.write_bytes(source.read_bytes())


def init(directory: Path = typer.Argument(..., help="Folder for the new project")) -> None:
    """Write a working starter project: config.yaml, five sequences, their templates, eight example leads."""
    if directory.exists() and not directory.is_dir():
        fail(f"{directory} is a file; choose a new folder")
    if directory.exists() and any(directory.iterdir()):
        fail(f"{directory} is not empty; choose a new folder")
    directory.mkdir(parents=True, exist_ok=True)
    _copy(starter(), directory)
    console.print(f"Starter project written to [bold]{directory}[/]. Next:")
    console.print(f"  cd {directory} && cadence validate && cadence leads import leads.csv")


def validate(
    ctx: typer.Context, json_out: bool = typer.Option(False, "--json", help="Print diagnostics as JSON")
) -> None:
    """Check config.yaml, every sequence and every template; exit 1 on any error."""
    from cadence.config import check_references, check_settings, quiet_window
    from cadence.spec.load import Windows, load_catalog
    from cadence.spec.templates import TemplateFolder
    from cadence.spec.values import Window

    path = state(ctx).config
    settings, diags = check_settings(path)
    sequences = 0
    if settings is not None:
        # `at` times are checked against the window a sequence inherits, and templates rendered within the limits
        windows = Windows(Window.parse(settings.schedule.window), quiet_window(settings.sms.quiet_hours))
        templates = TemplateFolder(settings.templates_dir, settings.render.limits)
        catalog = load_catalog(settings.sequences_dir, templates, base=Path.cwd(), windows=windows)
        diags = diags + catalog.diagnostics + check_references(path, settings, set(catalog.sequences))
        sequences = len(catalog.sequences)
    has_errors = any(d.is_error for d in diags)
    if json_out:
        print_json(
            {
                "ok": not has_errors,
                "sequences": sequences,
                "diagnostics": [
                    {"path": d.path, "line": d.line, "col": d.col, "severity": d.severity, "message": d.message}
                    for d in diags
                ],
            }
        )
    else:
        _report(diags)
        n_err = sum(d.is_error for d in diags)
        summary = f"{sequences} sequence(s) valid, {n_err} error(s), {len(diags) - n_err} warning(s)"
        (errors if has_errors else console).print(summary, markup=False)
    raise typer.Exit(1 if has_errors else 0)


def _report(diags: list[Diagnostic]) -> None:
    for d in diags:
        errors.print(str(d), markup=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command()(init)
    app.command()(validate)
