"""Who may call: Twilio's signature on its webhooks, a bearer token on the API.

Secrets come only from the environment, read once when the app is built:
the Twilio auth token from the variable named by `sms.twilio.auth_token_env`
(TWILIO_AUTH_TOKEN by default), the API token from CADENCE_API_TOKEN, and the form
token from CADENCE_FORM_TOKEN. A secret that is not set refuses every request it
guards; it never opens the door.

The form token exists because a token in a web page's hidden field is public: it may
only post leads (POST /leads), never report events for them, so the API token never
has to appear in a page.

Twilio signs the exact URL it called. Behind a proxy the Host header and scheme
are the proxy's, so the URL is rebuilt from config.yaml's `public_url` plus the
request's path and query string, never from the request's own host.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from starlette.datastructures import ImmutableMultiDict
from starlette.requests import Request
from twilio.request_validator import RequestValidator

if TYPE_CHECKING:
    from cadence.app import App

API_TOKEN_ENV = "CADENCE_API_TOKEN"
FORM_TOKEN_ENV = "CADENCE_FORM_TOKEN"
log = logging.getLogger("cadence.web")


@dataclass(frozen=True)
class Keys:
    public_url: str | None
    twilio_token: str | None
    api_token: str | None
    twilio_token_env: str = "TWILIO_AUTH_TOKEN"
    form_token: str | None = None

    @classmethod
    def load(cls, app: App, environ: Mapping[str, str] | None = None) -> Keys:
        env = os.environ if environ is None else environ
        token_env = app.settings.sms.twilio.auth_token_env
        return cls(
            public_url=app.settings.public_url,
            twilio_token=(env.get(token_env) or "").strip() or None,
            api_token=(env.get(API_TOKEN_ENV) or "").strip() or None,
            twilio_token_env=token_env,
            form_token=(env.get(FORM_TOKEN_ENV) or "").strip() or None,
        )

    def problems(self) -> list[str]:
        """What will be refused for want of configuration (printed when the server starts)."""
        out = []
        if not self.public_url:
            out.append("public_url is not set in config.yaml: Twilio webhooks cannot be verified and get 403")
        if not self.twilio_token:
            out.append(f"{self.twilio_token_env} is not set: Twilio webhooks cannot be verified and get 403")
        if not self.api_token:
            out.append(f"{API_TOKEN_ENV} is not set: POST /events and POST /leads answer 401")
        return out


def public_url_of(request: Request, public_url: str) -> str:
    """The URL Twilio called: our public base, the path and the query string exactly as sent."""
    query = request.scope.get("query_string", b"").decode("latin-1")
    return public_url.rstrip("/") + request.url.path + (f"?{query}" if query else "")


async def twilio_form(request: Request, keys: Keys) -> ImmutableMultiDict[str, str] | None:
    """The POSTed form if Twilio signed it, else None (the caller answers 403)."""
    body = (await request.body()).decode("utf-8", errors="replace")
    form: ImmutableMultiDict[str, str] = ImmutableMultiDict(parse_qsl(body, keep_blank_values=True))
    signature = request.headers.get("x-twilio-signature")
    if not signature or not keys.twilio_token or not keys.public_url:
        log.warning(
            "Twilio webhook %s refused: %s", request.url.path, "no signature" if not signature else "not set up"
        )
        return None
    url = public_url_of(request, keys.public_url)
    if not RequestValidator(keys.twilio_token).validate(url, form, signature):
        log.warning("Twilio webhook %s refused: the signature does not match %s", request.url.path, url)
        return None
    return form


def bearer(request: Request) -> str | None:
    """The token of `Authorization: Bearer <token>`, if the request has one."""
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return (given.strip() or None) if scheme.lower() == "bearer" else None


def token_ok(given: str | None, *accepted: str | None) -> bool:
    """Whether `given` is one of the tokens that are set, compared in constant time."""
    if not given:
        return False
    found = False
    for token in accepted:
        if token and hmac.compare_digest(given.encode(), token.encode()):
            found = True
    return found


def bearer_ok(request: Request, keys: Keys) -> bool:
    """`Authorization: Bearer <CADENCE_API_TOKEN>`."""
    return token_ok(bearer(request), keys.api_token)
