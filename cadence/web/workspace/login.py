"""GET/POST /login, POST /logout and GET /: signing in and out.

The form has the fields `user` and `password` and its CSRF token. A successful sign-in starts a
new session (the old one, and its token, are dropped, so a session id planted before sign-in is
worth nothing) and goes on to `next` when that is a path of this site, else to My day.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from cadence.web.bodies import Refused
from cadence.web.context import context
from cadence.web.workspace import csrf
from cadence.web.workspace.guard import action, read_form, refuse
from cadence.web.workspace.identity import (
    SESSION_USER,
    LoginLimiter,
    Viewer,
    address_of,
    check_password,
    viewer,
)
from cadence.web.workspace.render import page

HOME = "/today"


def _next(value: str | None) -> str:
    """Only a path on this site: never `//evil.example` or `https://...` (an open redirect)."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return HOME


def limiter(request: Request) -> LoginLimiter:
    state = request.app.state
    if not hasattr(state, "login_limiter"):
        state.login_limiter = LoginLimiter()
    found = state.login_limiter
    assert isinstance(found, LoginLimiter)
    return found


async def login_form(request: Request) -> Response:
    who = viewer(request)
    if who is not None:
        return RedirectResponse(_next(request.query_params.get("next")), status_code=303)
    if context(request).app.settings.auth == "proxy":
        return refuse(request, None, 401, "Sign in through your company's sign-on; it did not name you.")
    return page(request, "login.html", None, next=_next(request.query_params.get("next")), error=None, user="")


async def login(request: Request) -> Response:
    app = context(request).app
    if app.settings.auth == "proxy":
        return refuse(request, None, 404, "Signing in is done by your company's sign-on.")
    if not app.secret:
        return refuse(request, None, 503, "The workspace needs CADENCE_SECRET (it signs the session cookie).")
    try:
        form = await read_form(request)
    except Refused as exc:
        return refuse(request, None, exc.status, str(exc))
    target = _next(form.get("next"))
    user_id, password = form.get("user", "").strip(), form.get("password", "")
    if not csrf.valid(request, form.get(csrf.FIELD)):
        return page(request, "login.html", None, status=403, next=target, user=user_id,
                    error="This form has expired; please sign in again.")  # fmt: skip
    now, address = app.clock.now(), address_of(request)
    guard = limiter(request)
    if (until := guard.blocked(user_id, address, now)) is not None:
        wait = max(1, int((until - now).total_seconds() // 60) + 1)
        return page(request, "login.html", None, status=429, next=target, user=user_id,
                    error=f"Too many failed sign-ins; try again in {wait} minutes.")  # fmt: skip
    user = app.settings.user(user_id)
    if not await run_in_threadpool(check_password, user, password):
        guard.failed(user_id, address, now)
        return page(request, "login.html", None, status=401, next=target, user=user_id,
                    error="Wrong user or password.")  # fmt: skip
    guard.succeeded(user_id)
    request.session.clear()
    request.session[SESSION_USER] = user_id
    csrf.token(request)  # a fresh token for the new session
    return RedirectResponse(target, status_code=303)


async def _logout(request: Request, who: Viewer, form: dict[str, str]) -> Response:
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


async def home(request: Request) -> Response:
    return RedirectResponse(HOME, status_code=303)


ROUTES = [
    Route("/", home, methods=["GET"]),
    Route("/login", login_form, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", action(_logout), methods=["POST"]),
]
