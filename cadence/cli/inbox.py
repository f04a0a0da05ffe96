"""`cadence inbox poll | process | list | unmatched`: what the prospect's answers did.

`process` takes raw RFC 822 files (or `-` for standard input) through exactly the path a
message read from IMAP takes; `--json` prints one JSON object per message, one per line,
with the public fields `file`, `message_id`, `kind`, `lead`, `touch`, `action`, `until`, `reason`.
"""

from __future__ import annotations

import sys
import time
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from cadence.cli.context import state
from cadence.cli.output import console, errors, fail, print_json, say_when_cut
from cadence.clock import parse_instant
from cadence.names import InboundKind

if TYPE_CHECKING:
    from cadence.outcomes.inbound_mail import Processed

inbox_app = typer.Typer(
    help="Replies, out-of-office replies and bounces read from the reps' mailboxes", no_args_is_help=True
)
JSON_HELP = "Print JSON for scripts instead of a table"
STDIN_LIMIT = 64 * 1024 * 1024  # bytes read from standard input at most: only the first max_message_kib are used


def _line(p: Processed) -> str:
    who = f" {p.lead}" if p.lead else ""
    until = f" until {p.until.date().isoformat()}" if p.until else ""
    action = f": {p.action}" if p.action else ""
    return f"{p.file or p.message_id}: {p.kind}{who}{until}{action} ({p.reason})"


@inbox_app.command("process")
def process(
    ctx: typer.Context,
    files: list[str] = typer.Argument(..., metavar="FILE.eml...", help="Raw RFC 822 messages; - reads standard input"),
    json_out: bool = typer.Option(False, "--json", help="One JSON object per message, one per line"),
) -> None:
    """Take raw messages through the same path as the IMAP poll (tests, support, an ESP's inbound route)."""
    import json

    from cadence.outcomes.inbound_mail import Source, take_in

    app = state(ctx).app()
    cap = app.settings.inbox.max_message_kib * 1024
    problems = 0
    for name in files:
        try:
            raw = sys.stdin.buffer.read(STDIN_LIMIT) if name == "-" else _read_file(Path(name), cap)
        except OSError as exc:
            errors.print(f"error: {name}: {exc.strerror or exc}", markup=False)
            problems += 1
            continue
        processed = take_in(app, raw, Source("file", label=name))
        if json_out:
            sys.stdout.write(json.dumps(processed.as_json(), ensure_ascii=False) + "\n")
        else:
            console.print(_line(processed), markup=False, soft_wrap=True)
    if problems:
        raise typer.Exit(1)


def _read_file(path: Path, cap: int) -> bytes:
    with path.open("rb") as f:
        return f.read(cap)


@inbox_app.command("poll")
def poll_command(
    ctx: typer.Context,
    once: bool = typer.Option(True, "--once/--forever", help="Read each mailbox once, then exit (the default)"),
    json_out: bool = typer.Option(False, "--json", help="Print what the poll did as JSON"),
) -> None:
    """Read the configured mailboxes now, apart from `cadence run` (which reads them every inbox.poll)."""
    from cadence.engine.inbox_poll import poll
    from cadence.engine.runner import worker_id

    app = state(ctx).app()
    if not app.settings.inbox.mailboxes:
        fail("no mailboxes: add them under inbox.mailboxes in config.yaml")
    worker = worker_id()
    while True:
        report = poll(app, worker)
        if json_out:
            print_json(report.as_json())
        else:
            for m in report.mailboxes:
                if m.held_by:
                    console.print(f"{m.mailbox}: read by {m.held_by} now; skipped", markup=False)
                    continue
                for p in m.messages:
                    console.print(_line(p), markup=False, soft_wrap=True)
                moved = f", {m.moved} moved" if m.moved else ""
                console.print(f"{m.mailbox}: {len(m.messages)} new{moved}", markup=False)
                if m.error:
                    errors.print(f"error: {m.error}", markup=False)
        if once:
            if any(m.error for m in report.mailboxes):
                raise typer.Exit(1)
            return
        time.sleep(app.settings.inbox.poll_interval.total_seconds())


def _since(ctx: typer.Context, text: str | None) -> datetime | None:
    """A date means from midnight in config.yaml's zone (the office's day); a full time is taken as given."""
    from cadence.outcomes.return_dates import midnight

    if text is None:
        return None
    app = state(ctx).app()
    try:
        return midnight(date.fromisoformat(text.strip()), app.settings.timezone)
    except ValueError:
        try:
            return parse_instant(text)
        except ValueError as exc:
            fail(f"--since: {exc}; give a date (YYYY-MM-DD) or an ISO 8601 time with offset")


def _show(ctx: typer.Context, kinds: list[str], since: str | None, limit: int, json_out: bool) -> None:
    from rich.table import Table

    from cadence.outcomes.inbox_list import messages_read

    app = state(ctx).app()
    rows, total = messages_read(app, kinds=kinds, since=_since(ctx, since), limit=limit)
    if json_out:
        print_json([r.as_json() for r in rows])
    else:
        table = Table("read at", "kind", "from", "lead", "subject", "action / reason")
        for r in rows:
            table.add_row(
                r.read_at.isoformat(timespec="minutes"), r.kind, r.sender or "", r.lead or "", (r.subject or "")[:60],
                r.action or r.reason,
            )  # fmt: skip
        console.print(table)
    say_when_cut(len(rows), total)


@inbox_app.command("list")
def list_command(
    ctx: typer.Context,
    kind: list[InboundKind] = typer.Option([], "--kind", help="Only these kinds (repeatable)"),
    since: str | None = typer.Option(None, "--since", help="Read on or after this date (YYYY-MM-DD) or time"),
    limit: int = typer.Option(200, "--limit", min=1),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """What was read from the inbox, newest first, with what each message did."""
    _show(ctx, [k.value for k in kind], since, limit, json_out)


@inbox_app.command("unmatched")
def unmatched(
    ctx: typer.Context,
    since: str | None = typer.Option(None, "--since", help="Read on or after this date (YYYY-MM-DD) or time"),
    limit: int = typer.Option(200, "--limit", min=1),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Messages no lead could be found for, with why: for a person to look at."""
    _show(ctx, [InboundKind.UNMATCHED.value], since, limit, json_out)


def register(app: typer.Typer) -> None:
    app.add_typer(inbox_app, name="inbox")
