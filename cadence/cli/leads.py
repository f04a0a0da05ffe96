"""`cadence leads import`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from cadence.cli.context import state
from cadence.cli.output import console, fail, print_json
from cadence.enrollment.lead_import import LeadError, count_rows, import_leads, read_rows

leads_app = typer.Typer(help="Lead management", no_args_is_help=True)
PROGRESS_FROM_ROWS = 2000


@leads_app.command("import")
def import_(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="CSV with a header row: id, email, phone, first_name, ..."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON"),
) -> None:
    """Import leads from CSV: good rows go in, each bad row is reported with its number and reason."""
    app = state(ctx).app()
    if not file.is_file():
        fail(f"{file}: no such file")
    total = count_rows(file)
    show = not json_out and total >= PROGRESS_FROM_ROWS
    try:
        if show:
            columns = (TextColumn("importing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
            with Progress(*columns, console=console, transient=True) as bar:
                task = bar.add_task("import", total=total)
                report = import_leads(
                    app.engine, read_rows(file), app.settings, app.clock.now(), lambda n: bar.advance(task, n)
                )
        else:
            report = import_leads(app.engine, read_rows(file), app.settings, app.clock.now())
    except (LeadError, UnicodeDecodeError) as exc:
        fail(f"{file}: {exc}")
    if json_out:
        print_json(report.as_json())
        return
    console.print(f"imported {report.imported}, updated {report.updated}, rejected {len(report.rejected)}")
    for bad in report.rejected:
        console.print(f"  {file}: row {bad['row']}: {bad['error']}", markup=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.add_typer(leads_app, name="leads")
