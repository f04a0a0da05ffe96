"""POST /inbound/email: a raw RFC 822 message from an ESP's inbound route or a mail gateway.

Authenticated like /events (`Authorization: Bearer $CADENCE_API_TOKEN`), the body is the
message itself (`Content-Type: message/rfc822`). It goes through exactly the path of a
message read over IMAP (`cadence.outcomes.inbound_mail.take_in`), so it counts once whichever
door it came through, and the answer is the same JSON object `cadence inbox process --json`
prints. Only the first `inbox.max_message_kib` of the body are read: the headers and the text
come first, and a large attachment is neither kept nor needed.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from cadence.outcomes.inbound_mail import Source, take_in
from cadence.web.api import error
from cadence.web.auth import bearer_ok
from cadence.web.bodies import media_type
from cadence.web.context import context

ACCEPTED = ("message/rfc822", "application/octet-stream", "text/plain")
MAX_BODY = 32 * 1024 * 1024  # what this route lets in at all; only the first max_message_kib are read


async def post_inbound_email(request: Request) -> JSONResponse:
    ctx = context(request)
    if not bearer_ok(request, ctx.keys):
        return error(401, "missing or wrong bearer token")
    kind = media_type(request)
    if kind not in ACCEPTED:
        return error(
            415, f"POST /inbound/email takes a raw message (Content-Type: message/rfc822), not {kind or 'none'}"
        )
    cap = ctx.app.settings.inbox.max_message_kib * 1024
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk[: cap - len(raw)]
        if len(raw) >= cap:
            break
    if not raw.strip():
        return error(400, "the body is empty: send the raw message")
    processed = await run_in_threadpool(take_in, ctx.app, bytes(raw), Source("http"))
    return JSONResponse(processed.as_json())


ROUTES = [Route("/inbound/email", post_inbound_email, methods=["POST"])]
