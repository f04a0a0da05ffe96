"""`cadence enroll`, `cadence status`, `cadence preview`."""

from __future__ import annotations

from pathlib import Path

import typer

from cadence.cli.context import state
from cadence.cli.output import console, fail, print_json
from cadence.clock import parse_instant


def enroll_cmd(
    ctx: typer.Context,
    sequence_id: str = typer.Argument(..., metavar="SEQUENCE_ID"),
    lead_ids: list[str] = typer.Argument(None, metavar="LEAD_ID...", help="Lead ids"),
    csv_file: Path | None = typer.Option(None, "--csv", help="CSV with an `id` (or `email`) column"),
    all_new: bool = typer.Option(False, "--all-new", help="Every lead in stage `new` never enrolled anywhere"),
    force: bool = typer.Option(
        False,
        "--force",
        help="Enroll past a pending recycle or the cool-off after a finished sequence (cancels the recycle)",
    ),
    allow_missing: bool = typer.Option(
        False, "--allow-missing", help="Enroll leads lacking a field a template needs (that touch fails when due)"
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the enrolled and refused leads as JSON"),
) -> None:
    """Enroll leads into a sequence; refused leads are listed with the reason, and left unchanged."""
    import csv
    from itertools import chain

    from cadence.enrollment.enroll import all_new_leads, enroll

    app = state(ctx).app()
    wanted = list(lead_ids or [])
    if csv_file is not None:
        if not csv_file.is_file():
            fail(f"{csv_file}: no such file")
        with csv_file.open(newline="", encoding="utf-8-sig") as fh:
            for row in csv.DictReader(fh):
                value = (row.get("id") or row.get("email") or "").strip()
                if value:
                    wanted.append(value if row.get("id") else value.lower())
    streamed = all_new_leads(app) if all_new else iter(())
    first = next(streamed, None)  # --all-new streams page by page: a million leads are never in memory at once
    if not wanted and first is None:
        fail("name at least one lead (LEAD_ID..., --csv FILE or --all-new)")
    leads = chain(wanted, [first] if first is not None else [], streamed)
    try:
        # Only --all-new: the store vouches each id comes once; the enrolled leads are listed only for --json.
        report = enroll(
            app, sequence_id, leads, force=force, allow_missing=allow_missing, unique=not wanted, keep=json_out
        )
    except KeyError as exc:
        fail(str(exc.args[0]))
    if json_out:
        print_json(report.as_json())
    else:
        console.print(f"enrolled {report.count} lead(s) into {sequence_id} v{report.version}")
        for r in report.refused:
            console.print(f"  refused {r['lead']}: {r['reason']}", markup=False, soft_wrap=True)
    if report.refused and not report.count:
        raise typer.Exit(1)


def status(
    ctx: typer.Context,
    lead_id: str = typer.Argument(..., metavar="LEAD_ID"),
    json_out: bool = typer.Option(False, "--json", help="Print {lead, enrollments, touches, inbox} as JSON"),
) -> None:
    """A lead, its enrollments, every touch, and the latest replies read from the inbox."""
    from rich.table import Table

    from cadence.enrollment.status import UnknownLead, lead_status

    app = state(ctx).app()
    try:
        data = lead_status(app, lead_id)
    except UnknownLead as exc:
        fail(str(exc))
    if json_out:
        print_json(data)
        return
    lead = data["lead"]
    name = " ".join(filter(None, [lead["first_name"], lead["last_name"]])) or lead["id"]
    console.print(f"[bold]{name}[/] ({lead['id']}) {lead['company'] or ''} stage={lead['stage']} owner={lead['owner']}")
    table = Table("sequence", "state", "version", "next step", "next due (UTC)", title="Enrollments")
    for e in data["enrollments"]:
        due = e["next_due_at"].isoformat() if e["next_due_at"] else "-"
        table.add_row(e["sequence"], e["state"], str(e["version"]), e["next_step"] or "-", due)
    console.print(table)
    if data["touches"]:
        touches = Table("id", "sequence", "step", "channel", "status", "due (UTC)", "sent", "error", title="Touches")
        for t in data["touches"]:
            touches.add_row(
                str(t["id"] or "-"),
                t["sequence"],
                t["step"],
                t["channel"] or "-",
                t["status"],
                t["due_at"].isoformat(),
                t["sent_at"].isoformat() if t["sent_at"] else "-",
                t["error"] or "",
            )
        console.print(touches)
    for m in data["inbox"]:
        said = (m["text"] or m["subject"] or "").strip()
        console.print(
            f"{m['kind'].replace('_', ' ')} from {m['from'] or '?'} on {m['read_at'].isoformat(timespec='minutes')}: "
            f"{said[:500]}",
            markup=False,
            soft_wrap=True,
        )


def preview_cmd(
    ctx: typer.Context,
    sequence_id: str = typer.Argument(..., metavar="SEQUENCE_ID"),
    lead: str | None = typer.Option(None, "--lead", help="Preview for this lead"),
    timezone: str | None = typer.Option(None, "--timezone", help="Hypothetical lead's IANA time zone"),
    country: str | None = typer.Option(None, "--country", help="Hypothetical lead's country (holidays)"),
    start: str | None = typer.Option(None, "--start", help="Enrollment time, ISO 8601 with offset (default: now)"),
    render: bool = typer.Option(False, "--render", help="Render subjects and bodies"),
    json_out: bool = typer.Option(False, "--json", help="Print the steps as JSON"),
) -> None:
    """Every step's date and time, lead-local and UTC, before anything is sent."""
    from rich.table import Table

    from cadence.enrollment.preview import Hypothetical, preview

    app = state(ctx).app()
    if lead and (timezone or country):
        fail("use --lead, or --timezone/--country for a hypothetical lead, not both")
    try:
        begin = parse_instant(start) if start else None
        data = preview(
            app, sequence_id, lead_id=lead, hypothetical=Hypothetical(timezone, country), start=begin, render=render
        )
    except (KeyError, ValueError) as exc:
        fail(str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc))
    if json_out:
        print_json(data["steps"])
        return
    who = f"lead {lead}" if lead else "a hypothetical lead"
    console.print(
        f"[bold]{data['sequence']}[/] for {who} in {data['timezone']} ({data['country']}), enrolled {data['start']}"
    )
    table = Table("step", "day", "channel", "lead-local", "UTC")
    for s in data["steps"]:
        local = s["due_local"][:16].replace("T", " ") + " " + _weekday(s["due_local"])
        table.add_row(s["step"], str(s["day"]), s["channel"], local, s["due_utc"][:16].replace("T", " "))
    console.print(table)
    if render:
        for s in data["steps"]:
            console.rule(f"{s['step']} ({s['channel']})")
            if "render_error" in s:
                console.print(f"[red]cannot render:[/] {s['render_error']}")
            if s.get("subject"):
                console.print(f"Subject: {s['subject']}", markup=False)
            if s.get("body"):
                console.print(s["body"], markup=False)


def _weekday(iso: str) -> str:
    from datetime import datetime

    return datetime.fromisoformat(iso).strftime("%a")


def register(app: typer.Typer) -> None:
    app.command("enroll")(enroll_cmd)
    app.command()(status)
    app.command("preview")(preview_cmd)
