"""The door of every page and action: signed in (else to /login), the right role, and a valid CSRF token.

`signed_in` wraps a page handler `(request, viewer) -> Response`; `action` wraps a state-changing
handler `(request, viewer, form) -> Response`, reading the url-encoded form and refusing (403,
nothing changed) a request without the session's CSRF token. `manager_only` refuses an SDR.
A request from someone not signed in gets the sign-in page for a GET and 401 for anything else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from cadence.web.bodies import FORM_TYPE, Refused, media_type, parse_form
from cadence.web.context import context
from cadence.web.workspace import csrf
from cadence.web.workspace.identity import Viewer, viewer
from cadence.web.workspace.render import is_htmx, page

PageHandler = Callable[[Request, Viewer], Awaitable[Response]]
ActionHandler = Callable[[Request, Viewer, dict[str, str]], Awaitable[Response]]


def refuse(request: Request, who: Viewer | None, status: int, message: str) -> Response:
    """The refusal as a page, or as a fragment when htmx asked (it lands inside a pane, not a page in a page)."""
    return page(request, "_error.html" if is_htmx(request) else "error.html", who, status=status, message=message)


def _not_ready(request: Request) -> Response | None:
    if not context(request).app.secret and context(request).app.settings.auth == "password":
        return refuse(request, None, 503, "The workspace needs CADENCE_SECRET (it signs the session cookie).")
    return None


def signed_in(handler: PageHandler) -> Callable[[Request], Awaitable[Response]]:
    @wraps(handler)
    async def door(request: Request) -> Response:
        if (problem := _not_ready(request)) is not None:
            return problem
        who = viewer(request)
        if who is None:
            if request.method == "GET":
                return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
            return refuse(request, None, 401, "Sign in first.")
        return await handler(request, who)

    return door


def manager_only(handler: PageHandler) -> PageHandler:
    @wraps(handler)
    async def door(request: Request, who: Viewer) -> Response:
        if not who.is_manager:
            return refuse(request, who, 403, "Only managers may open this page.")
        return await handler(request, who)

    return door


async def read_form(request: Request) -> dict[str, str]:
    kind = media_type(request)
    if kind not in ("", FORM_TYPE):
        raise Refused(415, f"this form is sent as {FORM_TYPE}, not {kind}")
    return parse_form(await request.body(), request)


def action(handler: ActionHandler) -> Callable[[Request], Awaitable[Response]]:
    async def checked(request: Request, who: Viewer) -> Response:
        try:
            form = await read_form(request)
        except Refused as exc:
            return refuse(request, who, exc.status, str(exc))
        if not csrf.valid(request, form.pop(csrf.FIELD, None)):
            return refuse(request, who, 403, "This form has expired or did not come from cadence; reload the page.")
        return await handler(request, who, form)

    checked.__name__ = handler.__name__
    return signed_in(checked)
