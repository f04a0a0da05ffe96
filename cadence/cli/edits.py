"""`cadence plan` and `cadence apply`: see an edit's effect on every enrolled lead, then publish it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from cadence.cli.context import state
from cadence.cli.output import console, fail, print_json

if TYPE_CHECKING:
    from cadence.manage.edit_plan import Plan, SequencePlan

MARKS = {"added": "[green]+[/]", "removed": "[red]-[/]", "changed": "[yellow]~[/]", "moved": "[yellow]~[/]"}


def _header(s: SequencePlan) -> str:
    from rich.markup import escape

    if s.status == "new":
        return f"[green]+ {s.sequence}[/]: {escape(s.message or 'new sequence')} ({s.path})"
    if s.status == "deleted":
        return f"[red]- {s.sequence}[/]: {escape(s.message or 'deleted')}"
    if s.status == "broken":
        return f"[red]! {s.sequence}[/]: {escape(s.message or '')} ({s.path})"
    return (
        f"[yellow]~ {s.sequence}[/]: v{s.from_version} -> v{s.to_version} "
        f"({s.live:,} live enrollments{', pinned' if s.pinned else ''})"
    )


def show(plan: Plan) -> None:
    from rich.markup import escape

    if plan.empty:
        console.print("No changes: every sequence file matches its published version.")
        return
    for s in plan.sequences:
        console.print(_header(s))
        for name, (old, new) in s.sequence_fields.items():
            console.print(f"    [yellow]~[/] {name}: {escape(str(old))} -> {escape(str(new))}")
        for c in s.changes:
            console.print(f"    {MARKS.get(c.change, '[yellow]~[/]')} {escape(c.summary())}")
        if s.status == "changed" and s.message:
            console.print(f"    {escape(s.message)}")
        counts = s.counts
        if s.status == "changed" and not s.pinned and counts:
            console.print(
                f"    enrollments: {counts['migrated']:,} migrate; next step changes for "
                f"{counts['next_step_changes']:,}; next touch later for {counts['next_touch_later']:,}, "
                f"earlier for {counts['next_touch_earlier']:,}; {counts['complete']:,} complete; "
                f"{counts['pending_cancelled']:,} pending touches cancelled"
            )


def plan_cmd(
    ctx: typer.Context,
    sequence_ids: list[str] = typer.Argument(
        None, metavar="[SEQUENCE_ID]...", show_default=False, help="Only these sequences (default: every one)"
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the plan as JSON"),
) -> None:
    """What applying the sequence files would change, for every enrolled lead (changes nothing)."""
    from cadence.manage.edit_plan import make_plan

    app = state(ctx).app()
    try:
        plan = make_plan(app, sequence_ids or None)
    except KeyError as exc:
        fail(str(exc.args[0]))
    if json_out:
        print_json(plan.as_json())
    else:
        show(plan)


def apply_cmd(
    ctx: typer.Context,
    sequence_ids: list[str] = typer.Argument(
        None, metavar="[SEQUENCE_ID]...", show_default=False, help="Only these sequences (default: every one)"
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation"),
    json_out: bool = typer.Option(False, "--json", help="Print what was applied as JSON"),
) -> None:
    """Publish the sequence files and migrate enrolled leads by step id, atomically."""
    from cadence.manage.edit_apply import ApplyError, applied_lines, apply
    from cadence.manage.edit_plan import make_plan

    app = state(ctx).app()
    ids = sequence_ids or None
    try:
        if not yes:
            preview = make_plan(app, ids)
            if preview.empty:
                console.print("No changes to apply.")
                return
            show(preview)
            if not typer.confirm("Apply these changes?", default=False):
                raise typer.Exit(1)
        plan = apply(app, ids)
    except KeyError as exc:
        fail(str(exc.args[0]))
    except ApplyError as exc:
        fail(str(exc))
    if json_out:
        print_json(plan.as_json())
        return
    for line in applied_lines(plan):
        console.print(line, markup=False)


def register(app: typer.Typer) -> None:
    app.command("plan")(plan_cmd)
    app.command("apply")(apply_cmd)
