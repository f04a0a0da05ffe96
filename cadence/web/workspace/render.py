"""Pages from Jinja2 templates (`cadence/web/templates/`), autoescaped, with who is signed in and the CSRF token.

Autoescape is on for every template, so a lead's fields, reply text and notes are always shown
as text: a prospect who writes `<script>` in a reply sees it printed, never run. The
environment is kept apart from the message templates' sandbox: these are our own files.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from cadence.plan.timing import zone
from cadence.web.workspace import csrf
from cadence.web.workspace.identity import Viewer

ENV = Environment(
    loader=PackageLoader("cadence.web", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
HTMX = "/static/htmx-2.0.11.min.js"


def local_time(at: datetime | None, timezone: str | None) -> str:
    """ "2:41 pm" in the given zone (a lead's own clock, as a rep would say it)."""
    if at is None:
        return ""
    local = at.astimezone(zone(timezone or "UTC"))
    return local.strftime("%-I:%M %p").lower()


def local_day(at: datetime | None, timezone: str | None) -> str:
    if at is None:
        return ""
    return at.astimezone(zone(timezone or "UTC")).strftime("%a %b %-d, %Y")


def place_of(timezone: str | None) -> str:
    """ "Denver" from America/Denver: how a rep names a lead's zone."""
    return (timezone or "UTC").rsplit("/", 1)[-1].replace("_", " ")


ENV.filters["local_time"] = local_time
ENV.filters["local_day"] = local_day
ENV.filters["place"] = place_of


def is_htmx(request: Request) -> bool:
    """An htmx request wants a fragment to swap in; a history restore wants the whole page."""
    headers = request.headers
    return headers.get("HX-Request") == "true" and headers.get("HX-History-Restore-Request") != "true"


def page(request: Request, template: str, viewer: Viewer | None, *, status: int = 200, **values: Any) -> HTMLResponse:
    body = ENV.get_template(template).render(
        viewer=viewer, csrf_token=csrf.token(request), htmx=HTMX, path=request.url.path, **values
    )
    return HTMLResponse(body, status_code=status)
