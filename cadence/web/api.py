"""The API for other systems, behind `Authorization: Bearer $CADENCE_API_TOKEN`.

- POST /events: {"lead": id or email, "event": one of OUTSIDE_EVENTS, "until": date, "note": text}
  -> {"lead", "event", "actions"}; the same as `cadence event`.
- POST /leads: a lead as a JSON object with the CSV's column names (custom fields
  too), plus an optional "sequence" -> {"lead", "owner", "created", "enrolled", "refused"}.

Errors answer JSON {"error": message}: 401 without the token, 400 for a body that
is not JSON, 404 for an unknown lead, 422 for a value that cannot be used.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from cadence.enrollment.inbound import IntakeError, find_lead, take_lead
from cadence.names import OUTSIDE_EVENTS
from cadence.outcomes.events import record_event
from cadence.outcomes.return_dates import return_date
from cadence.web.auth import bearer_ok
from cadence.web.context import context

if TYPE_CHECKING:
    from cadence.app import App


class Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def error(status: int, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _body(request: Request) -> dict[str, Any]:
    if not bearer_ok(request, context(request).keys):
        raise Refused(401, "missing or wrong bearer token")
    try:
        body = json.loads(await request.body())
    except ValueError as exc:
        raise Refused(400, f"the body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise Refused(422, "the body must be a JSON object")
    return body


def _until(app: App, lead_id: str, value: Any) -> datetime | None:
    """A return date (YYYY-MM-DD: midnight in the lead's own zone, as the CLI reads it) or an ISO 8601 time."""
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise Refused(422, "until must be a date (YYYY-MM-DD) or an ISO 8601 time")
    try:
        return return_date(app, lead_id, value)
    except ValueError as exc:
        raise Refused(422, f"until: {exc}") from exc


async def post_event(request: Request) -> JSONResponse:
    try:
        body = await _body(request)
        ref, event, note = body.get("lead"), body.get("event"), body.get("note")
        if not isinstance(ref, str) or not ref.strip():
            raise Refused(422, "lead (an id or an email) is required")
        if event not in OUTSIDE_EVENTS:
            raise Refused(422, f"unknown event {event!r}; use one of {', '.join(OUTSIDE_EVENTS)}")
        if note is not None and not isinstance(note, str):
            raise Refused(422, "note must be text")
        app = context(request).app
        lead_id = await run_in_threadpool(find_lead, app, ref)
        if lead_id is None:
            raise Refused(404, f"no lead with id or email {ref!r}")
        until = await run_in_threadpool(_until, app, lead_id, body.get("until"))
        try:
            done = await run_in_threadpool(record_event, app, lead_id, event, until=until, note=note, source="api")
        except KeyError as exc:  # deleted meanwhile
            raise Refused(404, str(exc.args[0])) from exc
    except Refused as exc:
        return error(exc.status, str(exc))
    return JSONResponse({"lead": lead_id, "event": event, "actions": done})


async def post_lead(request: Request) -> JSONResponse:
    try:
        body = await _body(request)
        try:
            result = await run_in_threadpool(take_lead, context(request).app, body)
        except IntakeError as exc:
            raise Refused(422, str(exc)) from exc
    except Refused as exc:
        return error(exc.status, str(exc))
    return JSONResponse(result.as_json(), status_code=201 if result.created else 200)


ROUTES = [
    Route("/events", post_event, methods=["POST"]),
    Route("/leads", post_lead, methods=["POST"]),
]
