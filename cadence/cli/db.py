"""`cadence db upgrade` and `cadence db current`: the schema, moved explicitly once per release."""

from __future__ import annotations

import typer

from cadence.cli.context import state
from cadence.cli.output import console, fail, print_json

db = typer.Typer(
    name="db",
    help="The database schema: `cadence db upgrade` once per release, before restarting the workers.",
    no_args_is_help=True,
)


@db.command()
def upgrade(
    ctx: typer.Context,
    json_out: bool = typer.Option(False, "--json", help="Print the revisions before and after as JSON"),
) -> None:
    """Run the migrations to this release's head (a no-op when the schema is there already)."""
    from cadence.manage.schema import upgrade_schema

    app = state(ctx).app(migrate=False)
    try:
        before, after = upgrade_schema(app)
    except Exception as exc:  # the store's own message says what went wrong; no traceback
        fail(f"the migrations failed: {type(exc).__name__}: {exc}")
    if json_out:
        print_json({"before": before.as_json(), "after": after.as_json()})
        return
    if before.at_head:
        console.print(f"nothing to do: {after.describe()}", markup=False)
    else:
        console.print(f"upgraded from {before.current or 'an empty database'} to {after.current}", markup=False)


@db.command()
def current(
    ctx: typer.Context,
    check: bool = typer.Option(False, "--check", help="Exit with status 1 when the schema is behind this release"),
    json_out: bool = typer.Option(False, "--json", help="Print the revisions as JSON"),
) -> None:
    """Show the schema's revision and this release's head."""
    from cadence.manage.schema import schema_state

    app = state(ctx).app(migrate=False)
    try:
        found = schema_state(app)
    except Exception as exc:
        fail(f"cannot read the schema's revision: {type(exc).__name__}: {exc}")
    if json_out:
        print_json(found.as_json())
    else:
        console.print(found.describe(), markup=False)
    if check and not found.at_head:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(db)
