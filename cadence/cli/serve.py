"""`cadence serve`: the HTTP service (Twilio webhooks, unsubscribe links, /events, /leads) under uvicorn."""

from __future__ import annotations

import os
import tempfile

import typer

from cadence.cli.context import state
from cadence.cli.output import errors


def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (0.0.0.0 for all)"),
    port: int = typer.Option(8080, "--port", help="TCP port"),
    workers: int = typer.Option(
        1, "--workers", min=1, help="Processes answering on the port (one per core); they share /metrics"
    ),
) -> None:
    """Serve Twilio webhooks, unsubscribe links, POST /events and POST /leads (put it behind HTTPS)."""
    import uvicorn

    from cadence.web import CONFIG_ENV, SHARED_METRICS_ENV, Keys, create_app

    app = state(ctx).app()
    if not app.secret:
        errors.print("warning: CADENCE_SECRET is not set: every unsubscribe link is refused", markup=False)
    for problem in Keys.load(app).problems():
        errors.print(f"warning: {problem}", markup=False)
    if workers == 1:
        uvicorn.run(create_app(app), host=host, port=port, proxy_headers=False, server_header=False)
        return
    # Several processes: uvicorn starts each afresh, and each builds its own App from the environment.
    # The store is brought to head here, once, so that they all find it there; their counters meet in
    # a folder of this run's own, which goes when the service stops.
    app.engine.dispose()
    with tempfile.TemporaryDirectory(prefix="cadence-metrics-") as shared:
        os.environ[SHARED_METRICS_ENV] = shared
        os.environ[CONFIG_ENV] = str(state(ctx).config.resolve())
        uvicorn.run(
            "cadence.web:app_from_environment", factory=True, workers=workers, host=host, port=port,
            proxy_headers=False, server_header=False,
        )  # fmt: skip


def register(app: typer.Typer) -> None:
    app.command()(serve)
