"""`cadence leads import`, `leads list`, `leads export` and `leads assign`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from cadence.cli.context import state
from cadence.cli.output import console, errors, fail, print_json

if TYPE_CHECKING:
    from cadence.enrollment.lead_import import ImportReport

leads_app = typer.Typer(help="Lead management", no_args_is_help=True)
PROGRESS_FROM_ROWS = 2000
CUSTOM_FIELDS_SHOWN = 30  # --json lists them all

OWNER = typer.Option(None, "--owner", help="Only leads this sender (an SDR) owns")
STAGE = typer.Option(None, "--stage", help="Only leads in this stage (new, working, nurture, qualified, ...)")
SEQUENCE = typer.Option(None, "--sequence", help="Only leads with a live (active or paused) enrollment in it")
SEARCH = typer.Option(None, "--search", help="Only leads whose id, name, email or company contains this")


@leads_app.command("import")
def import_(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="CSV with a header row: id, email, phone, first_name, ..."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check every row and report; write nothing"),
    json_out: bool = typer.Option(
        False, "--json", help='Print {"imported", "updated", "rejected", "custom_fields", ...} as JSON'
    ),
) -> None:
    """Import leads from CSV: good rows go in, each bad row is reported with its number and every problem.

    Exits 1 when any row was rejected (the good rows are still imported), or when the file cannot be read.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from cadence.enrollment.lead_import import LeadError, count_rows, import_leads, read_rows

    app = state(ctx).app()
    if not file.is_file():
        fail(f"{file}: no such file")
    try:
        total = count_rows(file)
        if not json_out and total >= PROGRESS_FROM_ROWS:
            columns = (TextColumn("importing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
            with Progress(*columns, console=console, transient=True) as bar:
                task = bar.add_task("import", total=total)
                report = import_leads(
                    app.engine, read_rows(file), app.settings, app.clock.now(), lambda n: bar.advance(task, n),
                    dry_run=dry_run,
                )  # fmt: skip
        else:
            report = import_leads(app.engine, read_rows(file), app.settings, app.clock.now(), dry_run=dry_run)
    except LeadError as exc:
        fail(f"{file}: {exc}")
    except OSError as exc:
        fail(f"{file}: {exc.strerror or exc}")
    if json_out:
        print_json(report.as_json())
    else:
        _print_import(file, report, app.settings.timezone)
    if report.rejected:
        raise typer.Exit(1)


def _print_import(file: Path, report: ImportReport, default_zone: str) -> None:
    would = "would be " if report.dry_run else ""
    console.print(
        f"{would}imported {report.imported}, {would}updated {report.updated}, rejected {len(report.rejected)}"
    )
    for bad in report.rejected:
        console.print(f"  {file}: row {bad['row']}: {bad['error']}", markup=False, soft_wrap=True)
    if report.custom_fields:
        shown = ", ".join(report.custom_fields[:CUSTOM_FIELDS_SHOWN])
        more = len(report.custom_fields) - CUSTOM_FIELDS_SHOWN
        console.print(f"custom fields: {shown}{f' and {more} more' if more > 0 else ''}", markup=False, soft_wrap=True)
    if report.timezone_fallbacks:
        console.print(
            f"{report.timezone_fallbacks} lead(s) have no time zone (none given, none from the phone or country):"
            f" config.yaml's timezone {default_zone} applies",
            markup=False,
            soft_wrap=True,
        )
    if report.dry_run:
        console.print("dry run: nothing was written")


@leads_app.command("list")
def list_(
    ctx: typer.Context,
    owner: str | None = OWNER,
    stage: str | None = STAGE,
    sequence: str | None = SEQUENCE,
    search: str | None = SEARCH,
    limit: int = typer.Option(200, "--limit", min=1, help="Show at most this many leads"),
    json_out: bool = typer.Option(False, "--json", help="Print the leads as a JSON list"),
) -> None:
    """Leads in id order, with their owner, stage and live sequences; says so when the list is cut."""
    from rich.table import Table

    from cadence.enrollment.lead_lists import LeadFilter, list_leads

    app = state(ctx).app()
    found = list_leads(app, LeadFilter(owner, stage, sequence, search), limit)
    note = found.cut_note
    if json_out:
        print_json(found.leads)
        if note:
            errors.print(note, markup=False)
        return
    table = Table("id", "name", "company", "email", "owner", "stage", "sequences")
    for lead in found.leads:
        table.add_row(
            lead["id"], lead["name"], lead["company"] or "", lead["email"] or "", lead["owner"] or "",
            lead["stage"], ", ".join(lead["sequences"]),
        )  # fmt: skip
    console.print(table)
    console.print(note or f"{found.total} lead(s)", markup=False)


@leads_app.command("export")
def export(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="The CSV file to write (replaced if it exists)"),
    owner: str | None = OWNER,
    stage: str | None = STAGE,
    sequence: str | None = SEQUENCE,
    search: str | None = SEARCH,
) -> None:
    """Write the matching leads as CSV, safe to open in a spreadsheet (formula cells escaped)."""
    from cadence.enrollment.lead_lists import LeadFilter, export_leads

    app = state(ctx).app()
    try:
        written = export_leads(app, LeadFilter(owner, stage, sequence, search), file)
    except OSError as exc:
        fail(f"{file}: {exc.strerror or exc}")
    console.print(f"exported {written} lead(s) to {file}", markup=False)


@leads_app.command("assign")
def assign(
    ctx: typer.Context,
    lead_ids: list[str] = typer.Argument(..., metavar="LEAD_ID...", help="Lead ids"),
    owner: str = typer.Option(..., "--owner", help="The sender (an SDR) who takes the leads and their open tasks"),
    json_out: bool = typer.Option(False, "--json", help='Print {"owner", "assigned", "unchanged", "refused"}'),
) -> None:
    """Give leads to another rep: their open tasks follow, and each lead's history records the change.

    Exits 1 when a lead was refused (unknown); the others are still assigned.
    """
    from cadence.enrollment.lead_owners import UnknownOwner, assign_owner

    app = state(ctx).app()
    try:
        result = assign_owner(app, lead_ids, owner)
    except UnknownOwner as exc:
        fail(str(exc))
    if json_out:
        print_json(result.as_json())
    else:
        console.print(
            f"assigned {len(result.assigned)} lead(s) to {owner}, {len(result.unchanged)} already theirs,"
            f" refused {len(result.refused)}",
            markup=False,
        )
        for done in result.assigned:
            moved = f", {done['tasks_moved']} open task(s) moved" if done["tasks_moved"] else ""
            console.print(f"  {done['lead']}: {done['from'] or '-'} -> {owner}{moved}", markup=False)
        for refused in result.refused:
            console.print(f"  refused {refused['lead']}: {refused['reason']}", markup=False, soft_wrap=True)
    if result.refused:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(leads_app, name="leads")
