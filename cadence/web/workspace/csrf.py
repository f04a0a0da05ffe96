"""A CSRF token per session: every state-changing request must carry it, or it changes nothing.

The token lives in the signed session and goes out in each form's hidden `csrf` field and, for
htmx requests, in the `X-CSRF-Token` header (set once on the page's body). SameSite=Lax cookies
already stop most cross-site posts; the token also stops a same-site page or a form on another
origin that a browser would let through.
"""

from __future__ import annotations

import hmac
import secrets

from starlette.requests import Request

SESSION_KEY = "csrf"
FIELD = "csrf"
HEADER = "X-CSRF-Token"


def token(request: Request) -> str:
    """The session's token, made on first use."""
    value = request.session.get(SESSION_KEY)
    if not isinstance(value, str) or len(value) < 32:
        value = secrets.token_urlsafe(32)
        request.session[SESSION_KEY] = value
    return value


def valid(request: Request, form_value: object) -> bool:
    """Whether the request carries the session's token (form field or header)."""
    expected = request.session.get(SESSION_KEY)
    given = request.headers.get(HEADER) or (form_value if isinstance(form_value, str) else "")
    return isinstance(expected, str) and bool(given) and hmac.compare_digest(expected.encode(), given.encode())
