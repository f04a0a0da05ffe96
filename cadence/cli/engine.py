"""`cadence run`, `cadence touches`, `cadence retry`, `cadence tasks`."""

from __future__ import annotations

import asyncio
from enum import StrEnum
from typing import Any

import typer
from rich.table import Table

from cadence.app import App
from cadence.cli.context import state
from cadence.cli.output import console, errors, fail, print_json, say_when_cut
from cadence.engine.retry import RetryError, retry
from cadence.engine.runner import run_forever, run_once
from cadence.enrollment.task_queue import task_queue
from cadence.manage.edit_apply import ApplyError, apply
from cadence.manage.edit_plan import pending_changes
from cadence.names import TouchStatus
from cadence.store import listings

JSON_HELP = "Print JSON for scripts instead of a table"


class EditSource(StrEnum):
    """What `cadence run --use` runs while sequence files have unapplied edits."""

    PUBLISHED = "published"
    FILES = "files"


class Due(StrEnum):
    """`cadence tasks --due`: the values `task_queue` filters on."""

    TODAY = "today"
    OVERDUE = "overdue"
    ALL = "all"


def run(
    ctx: typer.Context,
    once: bool = typer.Option(False, "--once", help="One full pass at CADENCE_NOW, then exit"),
    use: EditSource | None = typer.Option(
        None,
        "--use",
        help="With unapplied sequence edits: `published` runs the published versions, `files` applies the edits first",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print what the pass did as JSON"),
) -> None:
    """The engine: drain due touches every few seconds (APScheduler), sweep lost claims and stale tasks."""
    app = state(ctx).app()
    if app.settings.public_url and not app.secret and app.settings.email.transport == "smtp":
        fail("set CADENCE_SECRET: unsubscribe links are signed with it")
    _settle_edits(app, EditSource.FILES if use is None and app.settings.auto_apply else use)
    if once:
        report = asyncio.run(run_once(app))
    else:
        console.print(f"cadence engine running (every {app.settings.engine.interval_seconds}s); Ctrl-C to stop")
        report = asyncio.run(run_forever(app))
    if json_out:
        print_json(report.as_json())
        return
    d = report.dispatch
    sent = ", ".join(f"{n} {ch}" for ch, n in sorted(d.sent.items())) or "nothing"
    console.print(
        f"sent {sent}; tasks opened {d.tasks_opened}; skipped {d.skipped}; deferred {d.deferred}; "
        f"retrying {d.retrying}; failed {d.failed}; unknown {report.sweep.unknown + d.unknown}; "
        f"expired tasks {report.sweep.expired}"
    )
    if report.inbox:
        read = ", ".join(f"{n} {kind}" for kind, n in sorted(report.inbox.items()))
        console.print(f"inbox: read {read}", markup=False)
    for problem in report.inbox_errors:
        errors.print(f"inbox: {problem}", markup=False)


def _settle_edits(app: App, use: EditSource | None) -> None:
    """Never mix versions silently: edited files are applied, knowingly ignored, or the engine won't start."""
    with app.engine.connect() as conn:
        pending = pending_changes(app, conn)
    if not pending:
        return
    if use == EditSource.PUBLISHED:
        errors.print(f"note: running the published versions; unapplied edits in {', '.join(pending)}")
        return
    if use == EditSource.FILES:
        try:
            plan = apply(app, pending)
        except ApplyError as exc:
            fail(str(exc))
        for s in plan.sequences:
            errors.print(f"applied {s.sequence} v{s.to_version} ({s.counts.get('migrated', 0):,} enrollments migrated)")
        return
    fail(
        f"sequence files differ from their published versions: {', '.join(pending)}. "
        "Review with `cadence plan`, publish with `cadence apply`, or start with "
        "`--use published` (ignore the edits for now) or `--use files` (apply them first)"
    )


def touches(
    ctx: typer.Context,
    status: TouchStatus | None = typer.Option(None, "--status", help="Only touches in this status"),
    lead: str | None = typer.Option(None, "--lead", help="Only this lead's touches"),
    limit: int = typer.Option(200, "--limit", min=1, help="Show at most this many (the earliest due first)"),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """List touches, e.g. `--status unknown` for sends a dead worker may or may not have made."""
    app = state(ctx).app()
    with app.engine.connect() as conn:
        rows = listings.touches(conn, status=status, lead_id=lead, limit=limit)
        total = len(rows) if len(rows) < limit else listings.count_touches(conn, status=status, lead_id=lead)
    items: list[dict[str, Any]] = [
        {
            "id": r.id, "lead": r.lead_id, "sequence": r.sequence_id, "step": r.step_id, "channel": r.channel,
            "status": r.status, "due_at": r.due_at, "sent_at": r.sent_at, "subject": r.subject,
            "message_id": r.message_id, "attempts": r.attempts, "error": r.error,
        }
        for r in rows
    ]  # fmt: skip
    if json_out:
        print_json(items)
        say_when_cut(len(items), total)
        return
    table = Table("id", "lead", "sequence", "step", "channel", "status", "due (UTC)", "error")
    for t in items:
        table.add_row(
            str(t["id"]), t["lead"], t["sequence"], t["step"], t["channel"], t["status"],
            t["due_at"].isoformat()[:16], t["error"] or "",
        )  # fmt: skip
    console.print(table)
    say_when_cut(len(items), total)


def retry_cmd(
    ctx: typer.Context,
    touch_id: int = typer.Argument(..., metavar="TOUCH_ID", help="The touch's id (`cadence touches --status unknown`)"),
    skip: bool = typer.Option(False, "--skip", help="Do not resend: record it as skipped and move the lead on"),
) -> None:
    """Resend an `unknown` touch (one a dead worker may or may not have sent)."""
    app = state(ctx).app()
    try:
        console.print(retry(app, touch_id, skip=skip))
    except RetryError as exc:
        fail(str(exc))


def tasks(
    ctx: typer.Context,
    owner: str | None = typer.Option(None, "--owner", help="Sender id (an SDR)"),
    due: Due = typer.Option(Due.ALL, "--due", help="Only tasks due today, only overdue ones, or all"),
    limit: int = typer.Option(200, "--limit", min=1, help="Show at most this many (in queue order)"),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """A rep's open call and manual tasks: overdue and due today first, then the hottest leads."""
    app = state(ctx).app()
    try:
        queue = task_queue(app, owner=owner, due=due.value)
    except ValueError as exc:
        fail(str(exc))
    items = queue[:limit]
    if json_out:
        print_json(items)
        say_when_cut(len(items), len(queue))
        return
    table = Table("task", "due", "lead", "company", "phone", "score", "step", "title")
    for t in items:
        lead = t["lead"]
        table.add_row(
            str(t["id"]), f"{t['due']} {t['due_on']}", f"{lead['name']} ({lead['id']})", lead["company"] or "",
            lead["phone"] or "", str(lead["score"] or ""), f"{t['sequence']}/{t['step']}", t["title"] or "",
        )  # fmt: skip
    console.print(table)
    say_when_cut(len(items), len(queue))


def register(app: typer.Typer) -> None:
    app.command()(run)
    app.command()(touches)
    app.command("retry")(retry_cmd)
    app.command()(tasks)
