"""An SMS whose request reached Twilio but whose answer makes no sense may have gone out: it is uncertain.

A permanent error would tell the rules the message never went; a transient one would
resend it. Only UncertainError (the touch becomes `unknown`, resent by `cadence retry`
alone) is true to what we know. The server here is Twilio-shaped only in its URL: it takes
the request, then answers 201 with a body that is not JSON, through the real twilio client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from cadence.channels.base import OutgoingSms, Receipt, UncertainError
from cadence.channels.sms import TwilioSmsTransport
from cadence.config import TwilioSettings
from tests.http_server import serving

ACCOUNT = "AC" + "0" * 32


@pytest.fixture
def garbling_twilio() -> Iterator[tuple[str, list[bytes]]]:
    """A server that records each message request and answers it with a broken page."""
    received: list[bytes] = []

    async def messages(request: Request) -> PlainTextResponse:
        received.append(await request.body())
        return PlainTextResponse("<html>proxy error</html>", status_code=201)

    app = Starlette(routes=[Route(f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json", messages, methods=["POST"])])
    with serving(app) as base:
        yield base, received


def test_an_unexpected_error_after_the_request_went_out_is_uncertain(
    garbling_twilio: tuple[str, list[bytes]],
) -> None:
    base, received = garbling_twilio
    transport = TwilioSmsTransport(
        TwilioSettings(api_base=base), {"TWILIO_ACCOUNT_SID": ACCOUNT, "TWILIO_AUTH_TOKEN": "token"}
    )

    async def send() -> list[Receipt]:
        try:
            return await transport.send_batch([OutgoingSms(7, "+15550100101", "+15550100001", "Hi Ana")])
        finally:
            await transport.aclose()

    [receipt] = asyncio.run(send())

    assert len(received) == 1  # the request reached the server
    assert isinstance(receipt.error, UncertainError), receipt.error
    assert "unexpected error after sending" in str(receipt.error)
