"""The root `cadence` command and its global options."""

from __future__ import annotations

from pathlib import Path

import typer

import cadence
from cadence.cli import analytics, db, edits, engine, enrollments, inbox, leads, outcomes, project, serve, users
from cadence.cli.context import State

HELP = (
    "Multichannel outreach cadences: sequences as files, a timeline you can preview to the minute.\n\n"
    "Run it in a project folder (`cadence init DIR` writes a starter one): every command reads ./config.yaml, "
    "or the file --config (or CADENCE_CONFIG) names, and the database that file points at "
    "(CADENCE_DATABASE_URL overrides it).\n\n"
    'CADENCE_NOW pins "now" for any command, as ISO 8601 with a UTC offset '
    "(CADENCE_NOW=2026-11-23T10:00:00-05:00): previews, enrollments and `cadence run --once` act at that "
    "moment, so weeks can be simulated in seconds. Unset, cadence uses the wall clock."
)

app = typer.Typer(
    name="cadence",
    help=HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(show: bool) -> None:
    if show:
        typer.echo(f"cadence {cadence.__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config: Path = typer.Option(
        Path("config.yaml"),
        "--config",
        "-c",
        help="The project's config.yaml; relative paths in it (sequences, templates, outbox) are read from its folder",
        envvar="CADENCE_CONFIG",
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print cadence's version and exit"
    ),
) -> None:
    """Keep the config path for the command; the App is built only when a command needs it."""
    ctx.obj = State(config=config)
    ctx.call_on_close(ctx.obj.close)


project.register(app)
leads.register(app)
enrollments.register(app)
engine.register(app)
outcomes.register(app)
inbox.register(app)
users.register(app)
serve.register(app)
edits.register(app)
analytics.register(app)
db.register(app)


def main() -> None:
    app()
