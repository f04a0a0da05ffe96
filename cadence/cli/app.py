"""The root `cadence` command and its global options."""

from __future__ import annotations

from pathlib import Path

import typer

from cadence.cli import analytics, edits, engine, enrollments, leads, outcomes, project, serve
from cadence.cli.context import State

app = typer.Typer(
    name="cadence",
    help="Multichannel outreach cadences: sequences as files, a timeline you can preview to the minute.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def root(
    ctx: typer.Context,
    config: Path = typer.Option(
        Path("config.yaml"), "--config", "-c", help="Path to config.yaml", envvar="CADENCE_CONFIG"
    ),
) -> None:
    """Set CADENCE_NOW (ISO 8601 with offset) to pin "now" for any command."""
    ctx.obj = State(config=config)
    ctx.call_on_close(ctx.obj.close)


project.register(app)
leads.register(app)
enrollments.register(app)
engine.register(app)
outcomes.register(app)
serve.register(app)
edits.register(app)
analytics.register(app)


def main() -> None:
    app()
