"""Twilio's webhooks: inbound SMS (POST /twilio/sms) and delivery reports (POST /twilio/status).

Both check `X-Twilio-Signature` first: a forged or unsigned request gets 403 and
records nothing. What a message or a report means is the business of
`cadence.outcomes.sms_replies` and `cadence.outcomes.delivery_reports`.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from twilio.twiml.messaging_response import MessagingResponse

from cadence.outcomes.delivery_reports import record_delivery
from cadence.outcomes.sms_replies import receive_sms
from cadence.web.auth import twilio_form
from cadence.web.context import context

TWIML = "application/xml"


def twiml(message: str | None = None) -> Response:
    answer = MessagingResponse()
    if message:
        answer.message(message)
    return Response(str(answer), media_type=TWIML)


def forbidden() -> Response:
    return PlainTextResponse("invalid Twilio signature", status_code=403)


async def inbound_sms(request: Request) -> Response:
    """STOP and friends suppress, START restores, HELP is answered, other text is a reply."""
    ctx = context(request)
    form = await twilio_form(request, ctx.keys)
    if form is None:
        return forbidden()
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
