"""`cadence serve`: the HTTP service (Twilio webhooks, unsubscribe links, /events, /leads) under uvicorn."""

from __future__ import annotations

import typer

from cadence.cli.context import state
from cadence.cli.output import errors


def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (0.0.0.0 for all)"),
    port: int = typer.Option(8080, "--port", help="TCP port"),
) -> None:
    """Serve Twilio webhooks, unsubscribe links, POST /events and POST /leads (put it behind HTTPS)."""
    import uvicorn

    from cadence.web import Keys, create_app

    app = state(ctx).app()
    if not app.secret:
        errors.print("warning: CADENCE_SECRET is not set: every unsubscribe link is refused", markup=False)
    for problem in Keys.load(app).problems():
        errors.print(f"warning: {problem}", markup=False)
    uvicorn.run(create_app(app), host=host, port=port, proxy_headers=False, server_header=False)


def register(app: typer.Typer) -> None:
    app.command()(serve)
