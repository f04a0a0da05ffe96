"""My day: GET /today, and the task routes it works through (issue 14).

    GET  /today                 overdue, then today's tasks (a manager may add ?owner=ID; ?task=ID opens one)
    GET  /tasks/{id}            a task's detail: the pane's content for htmx, My day with it open otherwise
    POST /tasks/{id}/log        code, note[, view]: log a disposition, the rules run, the next task opens
    POST /tasks/{id}/snooze     until (1h | tomorrow | YYYY-MM-DD)[, view]: move the task, the next one opens

For htmx the POSTs answer the pane's new content (`#task-pane`) with the refreshed list as an
out-of-band swap (`#task-list`); without JavaScript they redirect to My day with the next task
open. `view` is whose list the page shows (a manager's ?owner; "" is an SDR's own, or a
manager's everyone's). A refusal
(someone else's task 403, no such task 404, already logged 409, an unknown code or a bad date
422) changes nothing; htmx shows it in the pane (today.js lets htmx swap those answers).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from cadence.enrollment.my_day import MyDay, TaskDetail, following, my_day, task_detail, worker_for
from cadence.outcomes.dispositions import DispositionError, log_disposition
from cadence.outcomes.snooze import SnoozeError, snooze_task
from cadence.web.context import context
from cadence.web.workspace.guard import action, refuse, signed_in
from cadence.web.workspace.identity import Viewer
from cadence.web.workspace.render import is_htmx, local_day, local_time, page, place_of

_INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:[+-]\d{2}:\d{2}|Z)")


class Refusal(Exception):
    """A request this viewer may not make, or one that cannot be carried out: status and message."""

    def __init__(self, status: int, message: str, detail: TaskDetail | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.detail = status, message, detail


def _view(who: Viewer, asked: str | None) -> str:
    """Whose list was asked for ("" for the default: an SDR's own, a manager's everyone's)."""
    asked = (asked or "").strip()
    if who.is_manager:
        return asked
    if asked and asked != who.id:
        raise Refusal(403, "You can only see your own day.")
    return ""


def _owner(who: Viewer, view: str) -> str | None:
    """The owner whose tasks to list: an SDR always their own; a manager the one asked for, or everyone (None)."""
    return (view or None) if who.is_manager else who.id


def _query(view: str, task: int | None = None) -> str:
    params: dict[str, str | int] = {"owner": view} if view else {}
    if task is not None:
        params["task"] = task
    return "?" + urlencode(params) if params else ""


def _values(request: Request, view: str, **values: Any) -> dict[str, Any]:
    settings = context(request).app.settings
    base: dict[str, Any] = {
        "view": view, "query": _query(view), "dispositions": list(settings.dispositions.items()),
        "labels": dict(settings.dispositions), "owners": [s.id for s in settings.senders],
        "detail": None, "day": None, "refresh": None, "flash": None, "error": None, "selected": None,
        "now": context(request).app.clock.now(),
    }  # fmt: skip
    base.update(values)
    return base


async def _detail(request: Request, who: Viewer, task_id: int) -> TaskDetail:
    found = await run_in_threadpool(task_detail, context(request).app, task_id)
    if found is None:
        raise Refusal(404, f"There is no call or task {task_id}.")
    if not who.may_see(found.owner):
        raise Refusal(403, "This task belongs to another rep.")
    return found


async def _day(request: Request, who: Viewer, view: str) -> MyDay:
    return await run_in_threadpool(my_day, context(request).app, _owner(who, view))


def _refused(request: Request, who: Viewer, refusal: Refusal, view: str, refresh: MyDay | None = None) -> Response:
    if not is_htmx(request):
        return refuse(request, who, refusal.status, refusal.message)
    values = _values(request, view, detail=refusal.detail, error=refusal.message, refresh=refresh)
    return page(request, "_task_pane.html", who, status=refusal.status, **values)


async def today(request: Request, who: Viewer) -> Response:
    try:
        view = _view(who, request.query_params.get("owner"))
        day = await _day(request, who, view)
        detail = None
        asked = request.query_params.get("task", "")
        if asked.isdigit():
            detail = await _detail(request, who, int(asked))
        elif day.tasks:
            detail = await _detail(request, who, day.tasks[0].id)
    except Refusal as refusal:
        return refuse(request, who, refusal.status, refusal.message)
    selected = detail.id if detail else None
    return page(request, "today.html", who, **_values(request, view, day=day, detail=detail, selected=selected))


async def open_task(request: Request, who: Viewer) -> Response:
    task_id = int(request.path_params["task_id"])
    try:
        view = _view(who, request.query_params.get("owner"))
        detail = await _detail(request, who, task_id)
    except Refusal as refusal:
        return _refused(request, who, refusal, "")
    if is_htmx(request):
        return page(request, "_task_pane.html", who, **_values(request, view, detail=detail))
    day = await _day(request, who, view)
    return page(request, "today.html", who, **_values(request, view, day=day, detail=detail, selected=task_id))


async def _moved_on(request: Request, who: Viewer, view: str, before: MyDay, task_id: int, flash: str) -> Response:
    """After a log or a snooze: the next task in the pane and the list refreshed (htmx), or My day (a plain form)."""
    after = await _day(request, who, view)
    nxt = following(before.tasks, after.tasks, task_id)
    if not is_htmx(request):
        return RedirectResponse("/today" + _query(view, nxt.id if nxt else None), status_code=303)
    detail = await _detail(request, who, nxt.id) if nxt else None
    values = _values(request, view, detail=detail, refresh=after, flash=flash, selected=nxt.id if nxt else None)
    answer = page(request, "_task_pane.html", who, **values)
    # The address bar follows the pane: a reload opens the task now shown, not the one just logged.
    answer.headers["HX-Push-Url"] = f"/tasks/{nxt.id}" + _query(view, None) if nxt else "/today" + _query(view, None)
    return answer


async def _log(request: Request, who: Viewer, form: dict[str, str]) -> Response:
    app = context(request).app
    task_id, view = int(request.path_params["task_id"]), ""
    code, note = form.get("code", "").strip(), form.get("note", "").strip() or None
    try:
        view = _view(who, form.get("view"))
        detail = await _detail(request, who, task_id)
        if code not in app.settings.dispositions:
            shown = f"{code[:60]!r}" if code else "none"
            raise Refusal(422, f"Unknown disposition ({shown}): pick one of the buttons.", detail)
        if not detail.is_open:
            raise Refusal(409, _already(app.settings.dispositions, detail), detail)
        before = await _day(request, who, view)
        try:
            done = await run_in_threadpool(log_disposition, app, task_id, code, note, by=worker_for(app, who.id))
        except DispositionError as exc:
            now = await _detail(request, who, task_id)
            status = 422 if now.is_open else 409
            raise Refusal(status, _already(app.settings.dispositions, now, str(exc)), now) from None
    except Refusal as refusal:
        refresh = await _day(request, who, view) if refusal.status == 409 else None
        return _refused(request, who, refusal, view, refresh)
    return await _moved_on(request, who, view, before, task_id, _said(done, detail.reach.timezone))


def _said(done: list[str], timezone: str) -> str:
    """What logging did, as a rep reads it: times on the lead's clock ("9:17 am Wed Nov 25, 2026 in Denver")."""

    def local(found: re.Match[str]) -> str:
        at = datetime.fromisoformat(found.group(0).replace("Z", "+00:00"))
        return f"{local_time(at, timezone)} {local_day(at, timezone)} in {place_of(timezone)}"

    return " · ".join(_INSTANT.sub(local, line) for line in done)


def _already(labels: dict[str, str], detail: TaskDetail, fallback: str = "") -> str:
    if detail.is_open:
        return fallback
    if detail.disposition:
        label = labels.get(detail.disposition, detail.disposition)
        return f"This task was already logged ({label}); nothing was changed."
    return f"This task is already {detail.status}; nothing was changed."


async def _snooze(request: Request, who: Viewer, form: dict[str, str]) -> Response:
    app = context(request).app
    task_id, view = int(request.path_params["task_id"]), ""
    choice = form.get("until", "").strip()
    try:
        view = _view(who, form.get("view"))
        detail = await _detail(request, who, task_id)
        if not detail.is_open:
            raise Refusal(409, _already(app.settings.dispositions, detail), detail)
        before = await _day(request, who, view)
        try:
            snoozed = await run_in_threadpool(snooze_task, app, task_id, choice, owner=detail.owner, by=who.id)
        except SnoozeError as exc:
            now = await _detail(request, who, task_id)
            raise Refusal(422 if now.is_open else 409, str(exc), now) from None
    except Refusal as refusal:
        refresh = await _day(request, who, view) if refusal.status == 409 else None
        return _refused(request, who, refusal, view, refresh)
    when = f"{local_time(snoozed.until, snoozed.timezone)} {local_day(snoozed.until, snoozed.timezone)}"
    flash = f"Snoozed {detail.lead.name} until {when} in {place_of(snoozed.timezone)}."
    return await _moved_on(request, who, view, before, task_id, flash)


ROUTES: list[BaseRoute] = [
    Route("/today", signed_in(today), methods=["GET"]),
    Route("/tasks/{task_id:int}", signed_in(open_task), methods=["GET"]),
    Route("/tasks/{task_id:int}/log", action(_log), methods=["POST"]),
    Route("/tasks/{task_id:int}/snooze", action(_snooze), methods=["POST"]),
]
