"""`cadence run`, `cadence touches`, `cadence retry`, `cadence tasks`."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

import typer

from cadence.cli.context import state
from cadence.cli.output import console, errors, fail, print_json, say_when_cut
from cadence.names import TouchStatus

if TYPE_CHECKING:
    from cadence.app import App

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
    migrate: bool = typer.Option(
        False, "--migrate", help="Bring a schema that is behind this release to head first (else the run refuses)"
    ),
    metrics_port: int | None = typer.Option(
        None, "--metrics-port", min=1, max=65535, help="Serve Prometheus metrics on this port (GET /metrics)"
    ),
    metrics_host: str = typer.Option(
        "127.0.0.1", "--metrics-host", help="Interface for --metrics-port (0.0.0.0 lets a remote Prometheus scrape)"
    ),
    log_json: bool = typer.Option(
        False, "--log-json", help="Log one JSON object per line (worker id, pass id, counts, durations, failures)"
    ),
) -> None:
    """The engine: drain due touches every few seconds (APScheduler), sweep lost claims and stale tasks."""
    import asyncio
    import logging

    from cadence.cli.logs import configured
    from cadence.engine.metrics import Metrics
    from cadence.engine.runner import run_forever, run_once, worker_id
    from cadence.manage.schema import schema_state, upgrade_schema

    app = state(ctx).app(migrate=False)
    try:
        schema = upgrade_schema(app)[1] if migrate else schema_state(app)
    except Exception as exc:  # an unreachable store, or a migration that failed: say so, plainly
        fail(f"the database: {type(exc).__name__}: {exc}")
    if not schema.at_head:
        fail(f"{schema.describe()}: run `cadence db upgrade` (once per release), or start with --migrate")
    if app.settings.public_url and not app.secret and app.settings.email.transport == "smtp":
        fail("set CADENCE_SECRET: unsubscribe links are signed with it")
    log = logging.getLogger("cadence.engine")
    worker = worker_id()
    with configured(worker, as_json=log_json, level=logging.WARNING if once and not log_json else logging.INFO):
        _settle_edits(app, EditSource.FILES if use is None and app.settings.auto_apply else use)
        metrics = Metrics(worker, app)
        if metrics_port is not None:
            _serve_metrics(metrics, metrics_host, metrics_port)
        if once:
            report = asyncio.run(run_once(app, worker=worker, metrics=metrics))
        else:
            started = f"cadence engine running (every {app.settings.engine.interval_seconds}s); Ctrl-C to stop"
            if log_json:  # the journal gets JSON only
                log.info(started, extra={"metrics_port": metrics_port})
            else:
                console.print(started)
            report = asyncio.run(run_forever(app, worker=worker, metrics=metrics))
        if json_out:
            print_json(report.as_json())
            return
        if log_json:
            log.info("engine stopped", extra=report.as_json())
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


def _serve_metrics(metrics: Any, host: str, port: int) -> None:
    """Prometheus' own HTTP server, in a daemon thread: a worker runs no other HTTP service."""
    from prometheus_client import start_http_server

    try:
        start_http_server(port, addr=host, registry=metrics.registry)
    except OSError as exc:
        fail(f"--metrics-port {port}: cannot listen on {host}:{port} ({exc.strerror or exc})")


def _settle_edits(app: App, use: EditSource | None) -> None:
    """Never mix versions silently: edited files are applied, knowingly ignored, or the engine won't start."""
    from cadence.manage.edit_apply import ApplyError, apply
    from cadence.manage.edit_plan import pending_changes

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
    """List touches, earliest due first; `--status unknown` lists sends a dead worker may or may not have made."""
    from rich.table import Table

    from cadence.store import listings

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
    from cadence.engine.retry import RetryError, retry

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
    from rich.table import Table

    from cadence.enrollment.task_queue import task_queue

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
