"""GET /metrics for Prometheus, and the count of webhook and API requests by route and status.

The route label is the route's template (`/u/{token}`), never the raw path: a label per
unsubscribe token would grow without end. Requests to routes outside the webhook and API
set (the workspace, static files, the probes) are not counted.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cadence.engine.metrics import Metrics
from cadence.web.context import context


async def metrics(request: Request) -> Response:
    found = context(request).metrics
    body = await run_in_threadpool(generate_latest, found.scrape)  # the store gauges query the database
    return Response(body, media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})


ROUTES = [Route("/metrics", metrics, methods=["GET"])]


class CountRequests:
    """Count each request that reaches one of `routes`, under the route's template and the status answered."""

    def __init__(self, app: ASGIApp, routes: Sequence[Route], metrics: Metrics) -> None:
        self.app = app
        self.routes = routes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self._route(scope) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        status = 500  # what the server answers if the app raises before starting a response

        async def noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting_status)
        finally:
            self.metrics.count_request(route, status)

    def _route(self, scope: Scope) -> str | None:
        for route in self.routes:
            match, _ = route.matches(scope)
            if match != Match.NONE:  # PARTIAL: the path, with a method it does not take (405)
                return route.path
        return None
