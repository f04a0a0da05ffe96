"""GET /healthz and GET /readyz: the probes a process supervisor and a load balancer call.

`/healthz` answers while the process can answer at all (it touches nothing). `/readyz` answers
200 only when the database is reachable and its schema is at head (`cadence.manage.health`),
else 503 with the reason. Neither needs a token: they say nothing a stranger could use.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from cadence.manage.health import readiness
from cadence.web.context import context


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})


async def readyz(request: Request) -> JSONResponse:
    found = await run_in_threadpool(readiness, context(request).app)
    return JSONResponse(found.as_json(), status_code=200 if found.ready else 503, headers={"Cache-Control": "no-store"})


ROUTES = [Route("/healthz", healthz, methods=["GET"]), Route("/readyz", readyz, methods=["GET"])]
