"""Twilio's webhooks: inbound SMS (POST /twilio/sms) and delivery reports (POST /twilio/status).

Both check `X-Twilio-Signature` first: a forged or unsigned request gets 403 and
records nothing. A signed form that no store could keep (a NUL byte, a MessageSid longer
than a SID) gets 422 and records nothing either. Twilio retries a webhook whose answer it
did not get; a replay with the same MessageSid (and MessageStatus) is recorded once. What a
message or a report means is the business of `cadence.outcomes.sms_replies` and
`cadence.outcomes.delivery_reports`.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import ImmutableMultiDict
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from twilio.twiml.messaging_response import MessagingResponse

from cadence.outcomes.delivery_reports import record_delivery
from cadence.outcomes.sms_replies import receive_sms
from cadence.store.receipts import MAX_SID
from cadence.web.auth import twilio_form
from cadence.web.bodies import Refused, check_storable
from cadence.web.context import context

TWIML = "application/xml"


def twiml(message: str | None = None) -> Response:
    answer = MessagingResponse()
    if message:
        answer.message(message)
    return Response(str(answer), media_type=TWIML)


def forbidden() -> Response:
    return PlainTextResponse("invalid Twilio signature", status_code=403)


def unusable(form: ImmutableMultiDict[str, str]) -> Response | None:
    """A 422 for a signed form whose values no store could keep, else None."""
    try:
        for name, value in form.multi_items():
            check_storable({name: value})
    except Refused as exc:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)
    sid = form.get("MessageSid") or form.get("SmsSid") or ""
    if len(sid) > MAX_SID:
        return JSONResponse({"error": f"MessageSid is longer than {MAX_SID} characters"}, status_code=422)
    return None


async def inbound_sms(request: Request) -> Response:
    """STOP and friends suppress, START restores, HELP is answered, other text is a reply."""
    ctx = context(request)
    form = await twilio_form(request, ctx.keys)
    if form is None:
        return forbidden()
    if (refusal := unusable(form)) is not None:
        return refusal
    answer = await run_in_threadpool(
        receive_sms, ctx.app, form.get("From", ""), form.get("Body", ""), form.get("MessageSid")
    )
    return twiml(answer.reply)


async def status_callback(request: Request) -> Response:
    """A delivery report: moves the touch's delivery forward only, acts on error codes."""
    ctx = context(request)
    form = await twilio_form(request, ctx.keys)
    if form is None:
        return forbidden()
    if (refusal := unusable(form)) is not None:
        return refusal
    await run_in_threadpool(
        record_delivery,
        ctx.app,
        form.get("MessageSid") or form.get("SmsSid") or "",
        form.get("MessageStatus") or form.get("SmsStatus") or "",
        form.get("ErrorCode"),
    )
    return Response(status_code=200)


ROUTES = [
    Route("/twilio/sms", inbound_sms, methods=["POST"]),
    Route("/twilio/status", status_callback, methods=["POST"]),
]
