"""The SMS channel against a Twilio-shaped server on loopback, through the real twilio client."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cadence.channels.base import OutgoingSms, PermanentError, Receipt, TransientError
from cadence.channels.sms import (
    MissingTwilioCredentials,
    OutboxSmsTransport,
    TwilioSmsTransport,
    make_sms_transport,
)
from cadence.clock import FixedClock
from cadence.config import Settings, SmsSettings, TwilioSettings
from tests.twilio_fake import FakeTwilio, twilio_server

FROM = "+15550100001"
GOOD = "+15550100101"
CALLBACK = "https://cadence.example.com/twilio/status"


@pytest.fixture
def fake() -> Iterator[FakeTwilio]:
    with twilio_server() as server:
        yield server


def env_for(fake: FakeTwilio) -> dict[str, str]:
    return {"TWILIO_ACCOUNT_SID": fake.account_sid, "TWILIO_AUTH_TOKEN": fake.auth_token}


def transport_for(fake: FakeTwilio, concurrency: int = 4) -> TwilioSmsTransport:
    return TwilioSmsTransport(TwilioSettings(api_base=fake.base_url, concurrency=concurrency), env_for(fake))


def sms(touch_id: int, to: str = GOOD, body: str = "Hi Ana, quick question about Acme.", **kw: str) -> OutgoingSms:
    return OutgoingSms(touch_id, to, FROM, body, **kw)


def send(transport: TwilioSmsTransport, *batches: Sequence[OutgoingSms]) -> list[list[Receipt]]:
    """Each batch in turn on one loop, then the transport closed, as `cadence run` does."""

    async def scenario() -> list[list[Receipt]]:
        try:
            return [await transport.send_batch(batch) for batch in batches]
        finally:
            await transport.aclose()

    return asyncio.run(scenario())


def test_sms_is_sent_with_sid_and_status_callback(fake: FakeTwilio) -> None:
    [[receipt]] = send(transport_for(fake), [sms(7, status_callback=CALLBACK)])

    assert receipt.ok and receipt.touch_id == 7
    assert receipt.provider_id is not None and receipt.provider_id.startswith("SM") and len(receipt.provider_id) == 34
    [seen] = fake.messages
    assert (seen.sid, seen.to, seen.from_, seen.status_callback) == (receipt.provider_id, GOOD, FROM, CALLBACK)
    assert seen.body == "Hi Ana, quick question about Acme."


def test_no_status_callback_is_sent_when_the_message_has_none(fake: FakeTwilio) -> None:
    [[receipt]] = send(transport_for(fake), [sms(1)])
    assert receipt.ok
    assert fake.messages[0].status_callback is None


def test_429_is_transient_and_the_client_does_not_retry_it(fake: FakeTwilio) -> None:
    fake.throttle(1)
    [[first], [second]] = send(transport_for(fake), [sms(1)], [sms(1)])

    assert isinstance(first.error, TransientError) and first.error.code == 20429
    assert first.provider_id is None
    assert second.ok
    assert fake.requests == 2  # one answer each: nothing retried behind our back
    assert fake.count == 1


def test_5xx_is_transient(fake: FakeTwilio) -> None:
    fake.fail_next(1, status=503, code=20500)
    [[receipt]] = send(transport_for(fake), [sms(1)])
    assert isinstance(receipt.error, TransientError)
    assert fake.requests == 1


@pytest.mark.parametrize(
    ("code", "event"),
    [(21610, "sms_stop"), (21211, "phone_invalid"), (21614, "not_mobile")],
)
def test_recipient_errors_are_permanent_with_their_event(fake: FakeTwilio, code: int, event: str) -> None:
    fake.fail_to(GOOD, code)
    [[receipt]] = send(transport_for(fake), [sms(3)])

    assert isinstance(receipt.error, PermanentError)
    assert receipt.error.event == event and receipt.error.code == code
    assert "\033[" not in str(receipt.error)  # the twilio exception's colours stay out of our reason text
    assert fake.count == 0


@pytest.mark.parametrize("code", [30003, 30008])
def test_unreachable_and_unknown_are_transient(fake: FakeTwilio, code: int) -> None:
    fake.fail_to(GOOD, code)
    [[receipt]] = send(transport_for(fake), [sms(1)])
    assert isinstance(receipt.error, TransientError) and receipt.error.code == code


def test_other_4xx_is_permanent_without_event(fake: FakeTwilio) -> None:
    fake.fail_to(GOOD, 21408, message="Permission to send an SMS has not been enabled for the region")
    [[receipt]] = send(transport_for(fake), [sms(1)])
    assert isinstance(receipt.error, PermanentError) and receipt.error.event is None
    assert "region" in str(receipt.error)


def test_wrong_auth_token_is_permanent(fake: FakeTwilio) -> None:
    transport = TwilioSmsTransport(
        TwilioSettings(api_base=fake.base_url),
        {"TWILIO_ACCOUNT_SID": fake.account_sid, "TWILIO_AUTH_TOKEN": "not-the-token"},
    )
    [[receipt]] = send(transport, [sms(1)])
    assert isinstance(receipt.error, PermanentError) and receipt.error.code == 20003


def test_mixed_batch_returns_receipts_in_order(fake: FakeTwilio) -> None:
    fake.fail_to("+15550100666", 21610)
    fake.fail_to("+15550100777", 21211)
    recipients = [GOOD, "+15550100666", "+15550100102", "+15550100777", "+15550100103"]
    [receipts] = send(transport_for(fake), [sms(10 + i, to) for i, to in enumerate(recipients)])

    assert [r.touch_id for r in receipts] == [10, 11, 12, 13, 14]
    assert [r.ok for r in receipts] == [True, False, True, False, True]
    assert [getattr(r.error, "event", None) for r in receipts] == [None, "sms_stop", None, "phone_invalid", None]
    assert {m.sid for m in fake.messages} == {r.provider_id for r in receipts if r.ok}


def test_requests_in_flight_never_exceed_concurrency() -> None:
    with twilio_server(delay=0.02) as fake:
        [receipts] = send(transport_for(fake, concurrency=3), [sms(i, f"+1555010{i:04d}") for i in range(12)])
    assert all(r.ok for r in receipts)
    assert fake.max_in_flight <= 3


def test_unreachable_server_is_transient() -> None:
    with socket.socket() as probe:  # a loopback port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    transport = TwilioSmsTransport(
        TwilioSettings(api_base=f"http://127.0.0.1:{port}"),
        {"TWILIO_ACCOUNT_SID": "AC" + "0" * 32, "TWILIO_AUTH_TOKEN": "token"},
    )
    [[receipt]] = send(transport, [sms(1)])
    assert isinstance(receipt.error, TransientError)
    assert "could not reach Twilio" in str(receipt.error)


def test_missing_credentials_fail_at_startup_naming_the_variables() -> None:
    settings = TwilioSettings(account_sid_env="ACME_TWILIO_SID", auth_token_env="ACME_TWILIO_TOKEN")
    with pytest.raises(MissingTwilioCredentials, match="ACME_TWILIO_SID and ACME_TWILIO_TOKEN are not set"):
        TwilioSmsTransport(settings, {})
    with pytest.raises(MissingTwilioCredentials, match="ACME_TWILIO_TOKEN is not set"):
        TwilioSmsTransport(settings, {"ACME_TWILIO_SID": "AC123"})


def test_empty_batch_opens_nothing() -> None:
    transport = TwilioSmsTransport(TwilioSettings(), {"TWILIO_ACCOUNT_SID": "AC1", "TWILIO_AUTH_TOKEN": "t"})
    assert send(transport, []) == [[]]


# -- outbox -------------------------------------------------------------------------------

NOW = datetime(2026, 11, 23, 14, 5, tzinfo=UTC)


def test_outbox_appends_one_json_line_per_message(tmp_path: Path) -> None:
    path = tmp_path / "outbox" / "sms.jsonl"
    transport = OutboxSmsTransport(path, FixedClock(NOW))

    async def scenario() -> list[list[Receipt]]:
        first = await transport.send_batch([sms(1, status_callback=CALLBACK), sms(2, "+15550100102", "Héllo ✓")])
        second = await transport.send_batch([sms(3)])
        await transport.aclose()
        return [first, second]

    receipts = [r for batch in asyncio.run(scenario()) for r in batch]
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]

    assert [r.touch_id for r in receipts] == [1, 2, 3] and all(r.ok for r in receipts)
    assert [line["sid"] for line in lines] == [r.provider_id for r in receipts]
    assert all(line["sid"].startswith("SM") and len(line["sid"]) == 34 for line in lines)
    assert lines[0] == {
        "touch_id": 1,
        "to": GOOD,
        "from": FROM,
        "body": "Hi Ana, quick question about Acme.",
        "status_callback": CALLBACK,
        "at": "2026-11-23T14:05:00+00:00",
        "sid": receipts[0].provider_id,
    }
    assert lines[1]["body"] == "Héllo ✓"


def test_outbox_batches_handed_over_at_once_are_appended_whole_and_in_order(tmp_path: Path) -> None:
    path = tmp_path / "outbox" / "sms.jsonl"
    transport = OutboxSmsTransport(path, FixedClock(NOW))
    batches = [[sms(b * 100 + i) for i in range(50)] for b in range(1, 7)]

    async def scenario() -> list[list[Receipt]]:
        try:
            return list(await asyncio.gather(*(transport.send_batch(b) for b in batches)))
        finally:
            await transport.aclose()

    receipts = asyncio.run(scenario())
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [line["touch_id"] for line in lines] == [m.touch_id for b in batches for m in b]
    assert [line["sid"] for line in lines] == [r.provider_id for batch in receipts for r in batch]


def test_outbox_that_cannot_be_written_is_transient(tmp_path: Path) -> None:
    blocker = tmp_path / "outbox"
    blocker.write_text("a file where the folder should be")
    transport = OutboxSmsTransport(blocker / "sms.jsonl", FixedClock(NOW))
    receipts = asyncio.run(transport.send_batch([sms(1), sms(2)]))
    assert [type(r.error) for r in receipts] == [TransientError, TransientError]


# -- choosing the transport ------------------------------------------------------------------


def test_config_chooses_the_outbox_by_default(tmp_path: Path) -> None:
    transport = make_sms_transport(Settings(root=tmp_path), FixedClock(NOW))
    assert isinstance(transport, OutboxSmsTransport)
    assert transport.path == tmp_path / "outbox" / "sms.jsonl"


def test_config_chooses_twilio_and_it_sends(fake: FakeTwilio, tmp_path: Path) -> None:
    settings = Settings(
        root=tmp_path, sms=SmsSettings(transport="twilio", twilio=TwilioSettings(api_base=fake.base_url))
    )
    transport = make_sms_transport(settings, FixedClock(NOW), env_for(fake))
    assert isinstance(transport, TwilioSmsTransport)
    [[receipt]] = send(transport, [sms(1)])
    assert receipt.ok and fake.count == 1


def test_no_answer_after_sending_is_uncertain_never_transient() -> None:
    """Twilio has no idempotency key: a request that timed out may have been queued, so no blind retry."""
    from cadence.channels.base import UncertainError

    with twilio_server(delay=0.5) as slow:
        transport = TwilioSmsTransport(TwilioSettings(api_base=slow.base_url), env_for(slow), timeout_seconds=0.1)
        (receipts,) = send(transport, [sms(1)])
    assert isinstance(receipts[0].error, UncertainError)
