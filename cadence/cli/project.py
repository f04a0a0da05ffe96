"""`cadence init` and `cadence validate`."""

from __future__ import annotations

import shutil
from pathlib import Path

import typer

from cadence.cli.context import state
from cadence.cli.output import console, errors, fail, print_json
from cadence.config import check_references, check_settings
from cadence.spec.load import load_catalog
from cadence.spec.source import Diagnostic
from cadence.spec.templates import TemplateFolder

STARTER = Path(__file__).resolve().parents[2]
STARTER_FILES = ("config.yaml", "sequences", "templates", "examples/leads.csv")


def init(directory: Path = typer.Argument(..., help="Folder for the new project")) -> None:
    """Write a working starter project: config.yaml, two sequences, templates, example leads."""
    if directory.exists() and any(directory.iterdir()):
        fail(f"{directory} is not empty; choose a new folder")
    directory.mkdir(parents=True, exist_ok=True)
    for name in STARTER_FILES:
        source, target = STARTER / name, directory / Path(name).name
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy2(source, target)
    console.print(f"Starter project written to [bold]{directory}[/]. Next:")
    console.print(f"  cd {directory} && cadence validate && cadence leads import leads.csv")


def validate(
    ctx: typer.Context, json_out: bool = typer.Option(False, "--json", help="Print diagnostics as JSON")
) -> None:
    """Check config.yaml, every sequence and every template; exit 1 on any error."""
    path = state(ctx).config
    settings, diags = check_settings(path)
    sequences = 0
    if settings is not None:
        catalog = load_catalog(settings.sequences_dir, TemplateFolder(settings.templates_dir), base=Path.cwd())
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
