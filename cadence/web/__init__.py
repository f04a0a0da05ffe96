"""`cadence serve`: what arrives from outside, as a small Starlette app.

    POST /twilio/sms      inbound SMS (Twilio-signed)        cadence.web.webhooks
    POST /twilio/status   delivery reports (Twilio-signed)   cadence.web.webhooks
    GET  /u/{token}       unsubscribe confirmation page      cadence.web.unsubscribe
    POST /u/{token}       unsubscribe (RFC 8058 one-click)   cadence.web.unsubscribe
    POST /events          events from other systems (bearer) cadence.web.api
    POST /leads           inbound leads (bearer)             cadence.web.api

Handlers only check the caller and translate; the work is done by domain functions
(`cadence.outcomes.sms_replies`, `.delivery_reports`, `.unsubscribes`, `.events`, and
`cadence.enrollment.inbound`), each in one transaction, run in the thread pool because
the store is synchronous. Bodies are read by `cadence.web.bodies`, which refuses what no
store could keep before anything is written. Starlette's own refusals (no such route, a
wrong method, a body over MAX_BODY) answer JSON {"error": ...} like ours.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from cadence.web import api, unsubscribe, webhooks
from cadence.web.auth import Keys
from cadence.web.context import Context

if TYPE_CHECKING:
    from cadence.app import App

MAX_BODY = 1024 * 1024


async def refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=exc.headers)
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def create_app(app: App, environ: Mapping[str, str] | None = None) -> Starlette:
    """The ASGI app for one App; secrets are read from `environ` (default: os.environ) now, once."""
    web = Starlette(
        routes=[*webhooks.ROUTES, *unsubscribe.ROUTES, *api.ROUTES],
        max_body_size=MAX_BODY,
        exception_handlers={HTTPException: refused},
    )
    web.state.cadence = Context(app, Keys.load(app, environ))
    return web


__all__ = ["Keys", "create_app"]
