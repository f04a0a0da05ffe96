"""GET /sequences, GET /sequences/{sequence_id} and POST /sequences/{sequence_id}/apply.

Everyone signed in sees how each sequence does and its step funnel, with the numbers of
`cadence report --json`; a manager also sees the unapplied edit as `cadence plan SEQ`
shows it, with what it does to each enrolled lead, and may publish it: the Apply button
runs `cadence apply SEQ --yes` (after a confirmation, behind the CSRF check). The work is
done by `cadence.manage.sequence_overview`; these handlers only translate.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from cadence.manage.edit_apply import ApplyError
from cadence.manage.report import EVENT_KEYS, TOUCH_KEYS
from cadence.manage.sequence_overview import apply_sequence, sequence_detail, sequence_summaries
from cadence.web.context import context
from cadence.web.workspace.guard import action, refuse, signed_in
from cadence.web.workspace.identity import Viewer
from cadence.web.workspace.render import page

CHART_WIDTH = 380  # pixels of the longest bar in the funnel chart


async def sequence_list(request: Request, who: Viewer) -> Response:
    rows = await run_in_threadpool(sequence_summaries, context(request).app)
    return page(request, "sequences.html", who, sequences=rows)


async def _detail_page(request: Request, who: Viewer, *, status: int = 200, **extra: Any) -> Response:
    app = context(request).app
    sequence_id = request.path_params["sequence_id"]
    try:
        detail = await run_in_threadpool(sequence_detail, app, sequence_id, with_plan=who.is_manager)
    except KeyError:
        return refuse(request, who, 404, f"There is no sequence {sequence_id!r}.")
    top = max([1, *(max(row.reached, row.counts["replied"]) for row in detail.funnel)])
    values: dict[str, Any] = {"result": None, "refusal": None, **extra}
    return page(
        request, "sequence.html", who, status=status, detail=detail, seq=detail.report, touch_keys=TOUCH_KEYS,
        event_keys=EVENT_KEYS, scale=CHART_WIDTH / top, chart_width=CHART_WIDTH, timezone=app.settings.timezone,
        **values,
    )  # fmt: skip


async def sequence_page(request: Request, who: Viewer) -> Response:
    return await _detail_page(request, who)


async def apply_edit(request: Request, who: Viewer, form: dict[str, str]) -> Response:
    if not who.is_manager:
        return refuse(request, who, 403, "Only managers may apply an edited sequence.")
    sequence_id = request.path_params["sequence_id"]
    try:
        lines = await run_in_threadpool(apply_sequence, context(request).app, sequence_id)
    except KeyError:
        return refuse(request, who, 404, f"There is no sequence {sequence_id!r}.")
    except ApplyError as exc:
        return await _detail_page(request, who, status=409, refusal=str(exc))
    return await _detail_page(request, who, result=lines)


ROUTES: list[BaseRoute] = [
    Route("/sequences", signed_in(sequence_list), methods=["GET"]),
    Route("/sequences/{sequence_id}", signed_in(sequence_page), methods=["GET"]),
    Route("/sequences/{sequence_id}/apply", action(apply_edit), methods=["POST"]),
]
