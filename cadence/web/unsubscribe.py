"""The unsubscribe link: GET /u/{token} asks, POST /u/{token} unsubscribes (RFC 8058 one-click).

Link scanners and mail previews fetch GETs, so a GET only shows a page with a
button; the POST (the button, or a mailbox provider's one-click POST with the
body `List-Unsubscribe=One-Click`, without cookies) records `unsubscribed`. The
token alone says who: it is HMAC-signed with CADENCE_SECRET, and a forged or
altered one gets 400 and changes nothing. Unsubscribing twice is harmless.
"""

from __future__ import annotations

from html import escape

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from cadence.outcomes.unsubscribes import unsubscribe
from cadence.plan.tokens import verify
from cadence.web.context import context

HEADERS = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex"}


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    html = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{escape(title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}"
        "button{font-size:1rem;padding:.5rem 1.25rem}</style></head>"
        f"<body><h1>{escape(title)}</h1>{body}</body></html>\n"
    )
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def invalid() -> HTMLResponse:
    return page(
        "This link is not valid",
        "<p>The unsubscribe link is incomplete or was altered. Please use the link from the email itself,"
        " or reply to the email and ask to be removed.</p>",
        status=400,
    )


def _lead_of(request: Request) -> str | None:
    secret = context(request).app.secret
    token = request.path_params["token"]
    return verify(token, secret) if secret else None


async def confirm(request: Request) -> HTMLResponse:
    """GET: a page with the button; nothing changes."""
    if _lead_of(request) is None:
        return invalid()
    return page(
        "Unsubscribe",
        "<p>Stop receiving these emails?</p>"
        '<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
        '<button type="submit">Unsubscribe</button></form>',
    )


async def unsubscribe_now(request: Request) -> HTMLResponse:
    """POST: record `unsubscribed` (the body is not needed: the signed token is the proof)."""
    lead_id = _lead_of(request)
    if lead_id is None:
        return invalid()
    await run_in_threadpool(unsubscribe, context(request).app, lead_id)
    return page("You are unsubscribed", "<p>You will not receive these emails any more.</p>")


ROUTES = [
    Route("/u/{token}", confirm, methods=["GET"]),
    Route("/u/{token}", unsubscribe_now, methods=["POST"]),
]
