"""GET /team (managers only): each rep's day and the load of the next business days.

The query string may ask `cadence forecast`'s question too: `sequence` and `leads` (how
many more leads would join it now), with `reply_rate` and `connect_rate` as fractions
(0.08, as the CLI takes them), which also apply to the leads already enrolled. The
numbers come from `cadence.manage.team_load`; a question it cannot answer (an unknown
sequence, a rate out of range) is said on the page, beside the load without it.
"""

from __future__ import annotations

from functools import partial

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from cadence.manage.team_load import WhatIf, forecastable, team_load
from cadence.names import CHANNELS
from cadence.web.context import context
from cadence.web.workspace.guard import manager_only, signed_in
from cadence.web.workspace.identity import Viewer
from cadence.web.workspace.render import page


def _fraction(query: QueryParams, name: str, label: str) -> float:
    text = query.get(name, "").strip()
    if not text:
        return 0.0
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"the {label} must be a number between 0 and 1, like 0.08, not {text!r}") from None


def _question(query: QueryParams, reply_rate: float, connect_rate: float) -> WhatIf | None:
    sequence, leads = query.get("sequence", "").strip(), query.get("leads", "").strip()
    if not sequence or not leads:
        return None
    try:
        count = int(leads)
    except ValueError:
        raise ValueError(f"leads must be a whole number, not {leads!r}") from None
    return WhatIf(sequence, count, reply_rate, connect_rate)


async def team_page(request: Request, who: Viewer) -> Response:
    app = context(request).app
    query = request.query_params
    problem = None
    try:
        reply_rate = _fraction(query, "reply_rate", "reply rate")
        connect_rate = _fraction(query, "connect_rate", "connect rate")
        question = _question(query, reply_rate, connect_rate)
        load = await run_in_threadpool(
            partial(team_load, app, reply_rate=reply_rate, connect_rate=connect_rate, what_if=question)
        )
    except (KeyError, ValueError) as exc:
        problem = str(exc.args[0]) if isinstance(exc, KeyError) else str(exc)
        load = await run_in_threadpool(team_load, app)
    sequences = await run_in_threadpool(forecastable, app)
    form = {key: query.get(key, "") for key in ("reply_rate", "connect_rate", "sequence", "leads")}
    return page(
        request, "team.html", who, status=400 if problem else 200, load=load, sequences=sequences, form=form,
        problem=problem, channels=CHANNELS,
    )  # fmt: skip


ROUTES: list[BaseRoute] = [Route("/team", signed_in(manager_only(team_page)), methods=["GET"])]
