"""The API for other systems and web forms (README "HTTP API").

- POST /events, JSON, `Authorization: Bearer $CADENCE_API_TOKEN`:
  {"lead": id or email, "event": one of OUTSIDE_EVENTS, "until": date, "note": text}
  -> {"lead", "event", "actions"}; the same as `cadence event`.
- POST /leads, JSON or an HTML form (application/x-www-form-urlencoded), with
  CADENCE_API_TOKEN or CADENCE_FORM_TOKEN as the bearer token or in a field named
  `token`: a lead with the CSV's column names (custom fields too), plus an optional
  "sequence" -> {"lead", "owner", "created", "enrolled", "refused"} (201 when created).

Errors answer JSON {"error": message}: 401 without a right token, 400 for a body that
cannot be read (not UTF-8, not JSON, nested too deeply, NaN or a number out of range),
415 for a Content-Type the route does not take, 404 for an unknown lead, 422 for a
value that cannot be used (a wrong type, a NUL byte, a lone surrogate, a bad email...);
see `cadence.web.bodies`. A refused request changes nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from cadence.enrollment.inbound import IntakeError, take_lead
from cadence.names import OUTSIDE_EVENTS
from cadence.outcomes.events import record_event_by_ref
from cadence.web.auth import bearer, bearer_ok, token_ok
from cadence.web.bodies import FORM_TYPE, Refused, check_storable, is_json, media_type, parse_form, parse_json
from cadence.web.context import context

if TYPE_CHECKING:
    from cadence.app import App


def error(status: int, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _json_object(raw: bytes, request: Request) -> dict[str, Any]:
    body = parse_json(raw, request)
    if not isinstance(body, dict):
        raise Refused(422, "the body must be a JSON object")
    return body


async def _event_body(request: Request) -> dict[str, Any]:
    if not bearer_ok(request, context(request).keys):
        raise Refused(401, "missing or wrong bearer token")
    kind = media_type(request)
    if kind and not is_json(kind):
        raise Refused(415, f"POST /events takes JSON (Content-Type: application/json), not {kind}")
    body = _json_object(await request.body(), request)
    check_storable(body)
    return body


async def _lead_body(request: Request) -> dict[str, Any]:
    """A JSON object or a url-encoded form; the token may also come as its `token` field (never saved)."""
    keys = context(request).keys
    kind = media_type(request)
    if kind and kind != FORM_TYPE and not is_json(kind):
        raise Refused(
            415,
            f"POST /leads takes JSON or an HTML form sent as {FORM_TYPE} (a form's default enctype), not {kind}",
        )
    raw = await request.body()
    body: dict[str, Any] = parse_form(raw, request) if kind == FORM_TYPE else _json_object(raw, request)
    field = body.pop("token", None)
    accepted = (keys.api_token, keys.form_token)
    if not token_ok(bearer(request), *accepted) and not (isinstance(field, str) and token_ok(field, *accepted)):
        raise Refused(401, "missing or wrong token (the bearer token, or a form field named token)")
    check_storable(body)
    return body


def _take_event(app: App, ref: str, event: str, until: Any, note: str | None) -> tuple[str, list[str]]:
    """Find the lead, read its return date, record the event: one trip to the thread pool (each trip
    waits for a thread to wake, which under load costs more than the work) and one transaction."""
    if until is not None and not isinstance(until, str):
        raise Refused(422, "until must be a date (YYYY-MM-DD) or an ISO 8601 time")
    try:
        return record_event_by_ref(app, ref, event, until=until, note=note, source="api")
    except KeyError as exc:
        raise Refused(404, str(exc.args[0])) from exc
    except ValueError as exc:
        raise Refused(422, str(exc)) from exc


async def post_event(request: Request) -> JSONResponse:
    try:
        body = await _event_body(request)
        ref, event, note = body.get("lead"), body.get("event"), body.get("note")
        if not isinstance(ref, str) or not ref.strip():
            raise Refused(422, "lead (an id or an email) is required")
        if event not in OUTSIDE_EVENTS:
            raise Refused(422, f"unknown event {event!r}; use one of {', '.join(OUTSIDE_EVENTS)}")
        if note is not None and not isinstance(note, str):
            raise Refused(422, "note must be text")
        lead_id, done = await run_in_threadpool(_take_event, context(request).app, ref, event, body.get("until"), note)
    except Refused as exc:
        return error(exc.status, str(exc))
    return JSONResponse({"lead": lead_id, "event": event, "actions": done})


async def post_lead(request: Request) -> JSONResponse:
    try:
        body = await _lead_body(request)
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
