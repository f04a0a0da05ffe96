"""`cadence serve`: what arrives from outside, as a small Starlette app.

    POST /twilio/sms      inbound SMS (Twilio-signed)        cadence.web.webhooks
    POST /twilio/status   delivery reports (Twilio-signed)   cadence.web.webhooks
    GET  /u/{token}       unsubscribe confirmation page      cadence.web.unsubscribe
    POST /u/{token}       unsubscribe (RFC 8058 one-click)   cadence.web.unsubscribe
    POST /events          events from other systems (bearer) cadence.web.api
    POST /leads           inbound leads (bearer)             cadence.web.api
    POST /inbound/email   a raw inbound email (bearer)       cadence.web.inbound_mail
    GET  /healthz, /readyz  liveness and readiness probes    cadence.web.health
    GET  /metrics         Prometheus metrics                 cadence.web.metrics
    GET  /, /login, ...   the web workspace (signed in)       cadence.web.workspace

Handlers only check the caller and translate; the work is done by domain functions
(`cadence.outcomes.sms_replies`, `.delivery_reports`, `.unsubscribes`, `.events`, and
`cadence.enrollment.inbound`), each in one transaction, run in the thread pool because
the store is synchronous. Bodies are read by `cadence.web.bodies`, which refuses what no
store could keep before anything is written. Starlette's own refusals (no such route, a
wrong method, a body over MAX_BODY) answer JSON {"error": ...} like ours.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from cadence.engine.metrics import Metrics
from cadence.web import api, health, inbound_mail, metrics, unsubscribe, webhooks
from cadence.web.auth import Keys
from cadence.web.context import Context
from cadence.web.workspace.routes import workspace_routes
from cadence.web.workspace.security import SecurityHeaders

if TYPE_CHECKING:
    from cadence.app import App

MAX_BODY = 1024 * 1024
SHARED_METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client's own name: it reads it when imported
CONFIG_ENV = "CADENCE_CONFIG"
SESSION_SECONDS = 12 * 3600  # a working day and then some: sign in again each morning


async def refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=exc.headers)
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


class BodyLimits:
    """MAX_BODY for every request, except the routes that take whole messages (which read only their head)."""

    def __init__(self, app: ASGIApp, larger: Mapping[str, int]) -> None:
        self.default = RequestBodyLimitMiddleware(app, MAX_BODY)
        self.larger = {path: RequestBodyLimitMiddleware(app, size) for path, size in larger.items()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limited = self.larger.get(scope.get("path", ""), self.default) if scope["type"] == "http" else self.default
        await limited(scope, receive, send)


def create_app(app: App, environ: Mapping[str, str] | None = None) -> Starlette:
    """The ASGI app for one App; secrets are read from `environ` (default: os.environ) now, once."""
    secure = bool(app.settings.public_url and app.settings.public_url.lower().startswith("https://"))
    counted = [*webhooks.ROUTES, *unsubscribe.ROUTES, *api.ROUTES, *inbound_mail.ROUTES]
    env = os.environ if environ is None else environ
    found = Metrics(f"serve:{socket.gethostname()}:{os.getpid()}", app, env.get(SHARED_METRICS_ENV) or None)
    web = Starlette(
        routes=[
            *counted, *health.ROUTES, *metrics.ROUTES,
            *workspace_routes(),
            Mount("/static", StaticFiles(packages=[("cadence.web", "static")]), name="static"),
        ],
        middleware=[
            Middleware(metrics.CountRequests, routes=counted, metrics=found),
            Middleware(SecurityHeaders),
            Middleware(BodyLimits, larger={"/inbound/email": inbound_mail.MAX_BODY}),
            Middleware(
                SessionMiddleware, secret_key=app.secret or secrets.token_hex(32), session_cookie="cadence_session",
                max_age=SESSION_SECONDS, same_site="lax", https_only=secure,
            ),
        ],
        exception_handlers={HTTPException: refused},
    )  # fmt: skip
    web.state.cadence = Context(app, Keys.load(app, environ), found)
    return web


def app_from_environment() -> Starlette:
    """The ASGI app of one of `cadence serve --workers N`'s processes (uvicorn imports and calls this in
    each): the project and the clock come from the environment the command set for them."""
    from cadence.app import App
    from cadence.clock import clock_from_env

    return create_app(App.load(Path(os.environ[CONFIG_ENV]), clock_from_env()))


__all__ = ["Keys", "app_from_environment", "create_app"]
