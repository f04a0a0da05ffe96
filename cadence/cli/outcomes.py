"""`cadence log`, `cadence event`, `cadence pause`, `cadence resume`, `cadence history`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from cadence.cli.context import state
from cadence.cli.output import console, fail, print_json

if TYPE_CHECKING:
    from datetime import datetime

    from cadence.app import App


def _until(app: App, lead_id: str, text: str | None) -> datetime | None:
    """A date (the lead is back that day, from midnight in the lead's own time zone) or an ISO time."""
    from cadence.outcomes.return_dates import return_date

    try:
        return return_date(app, lead_id, text)
    except ValueError as exc:
        fail(f"--until: {exc}")


def log(
    ctx: typer.Context,
    task_id: int = typer.Argument(..., metavar="TASK_ID"),
    disposition: str = typer.Argument(..., metavar="DISPOSITION"),
    note: str | None = typer.Option(None, "--note", help="Free text kept with the disposition"),
    by: str | None = typer.Option(
        None, "--by", help="The SDR who made the call (a sender id); default: the task's owner"
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the actions the rules took as JSON"),
) -> None:
    """Complete a call or task with a configured disposition code; the rules run at once."""
    from cadence.outcomes.dispositions import DispositionError, log_disposition

    app = state(ctx).app()
    try:
        done = log_disposition(app, task_id, disposition, note, by=by)
    except DispositionError as exc:
        fail(str(exc))
    if json_out:
        print_json({"task": task_id, "disposition": disposition, "actions": done})
    else:
        for line in done:
            console.print(line, markup=False)


def event(
    ctx: typer.Context,
    lead_id: str = typer.Argument(..., metavar="LEAD_ID"),
    name: str = typer.Argument(..., metavar="EVENT"),
    until: str | None = typer.Option(
        None, "--until", help="Return date (out_of_office): YYYY-MM-DD, from midnight in the lead's time zone"
    ),
    note: str | None = typer.Option(None, "--note", help="Free text kept with the event"),
    json_out: bool = typer.Option(False, "--json", help="Print the actions the rules took as JSON"),
) -> None:
    """Record an event from outside: replied, meeting_booked, out_of_office, unsubscribed, ..."""
    from cadence.outcomes.events import record_event

    app = state(ctx).app()
    try:
        done = record_event(app, lead_id, name, until=_until(app, lead_id, until), note=note)
    except (KeyError, ValueError) as exc:
        fail(str(exc.args[0]) if isinstance(exc, KeyError) else str(exc))
    if json_out:
        print_json({"lead": lead_id, "event": name, "actions": done})
    else:
        console.print(f"{name} recorded for {lead_id}", markup=False)
        for line in done:
            console.print(f"  {line}", markup=False)


def pause(
    ctx: typer.Context,
    lead_id: str = typer.Argument(..., metavar="LEAD_ID"),
    until: str | None = typer.Option(None, "--until", help="Resume automatically then (YYYY-MM-DD or ISO time)"),
) -> None:
    """Pause every live sequence of a lead."""
    from cadence.outcomes.pauses import LeadNotFound, pause_lead

    app = state(ctx).app()
    try:
        paused = pause_lead(app, lead_id, _until(app, lead_id, until))
    except LeadNotFound as exc:
        fail(str(exc))
    console.print(f"paused {', '.join(paused) or 'nothing'} for {lead_id}", markup=False)


def resume(ctx: typer.Context, lead_id: str = typer.Argument(..., metavar="LEAD_ID")) -> None:
    """Resume a lead's paused sequences; the next step goes at the next allowed slot."""
    from cadence.outcomes.pauses import LeadNotFound, resume_lead

    app = state(ctx).app()
    try:
        resumed = resume_lead(app, lead_id)
    except LeadNotFound as exc:
        fail(str(exc))
    console.print(f"resumed {', '.join(resumed) or 'nothing'} for {lead_id}", markup=False)


def history(
    ctx: typer.Context,
    lead_id: str = typer.Argument(..., metavar="LEAD_ID"),
    json_out: bool = typer.Option(False, "--json", help="Print [{at, kind, detail, cause}] as JSON"),
) -> None:
    """The whole story of a lead: enrollments, touches, events, dispositions and actions, with causes."""
    from rich.table import Table

    from cadence.outcomes.history import lead_history

    app = state(ctx).app()
    try:
        items = lead_history(app, lead_id)
    except KeyError as exc:
        fail(str(exc.args[0]))
    if json_out:
        print_json(items)
        return
    table = Table("at (UTC)", "what", "detail", "cause")
    for item in items:
        detail = ", ".join(f"{k}={v}" for k, v in item["detail"].items() if v is not None)
        table.add_row(item["at"].isoformat()[:16], item["kind"], detail, item["cause"] or "")
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command()(log)
    app.command()(event)
    app.command()(pause)
    app.command()(resume)
    app.command()(history)
