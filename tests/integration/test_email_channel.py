"""The email channel against a real SMTP server on loopback (aiosmtpd), and the outbox on disk."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest

from cadence.channels.base import (
    EmailTransport,
    OutgoingEmail,
    PermanentError,
    Receipt,
    TransientError,
    UncertainError,
)
from cadence.channels.email import make_email_transport
from cadence.channels.email.mime import build_message
from cadence.channels.email.outbox import OutboxEmailTransport
from cadence.channels.email.smtp import MissingSmtpCredentials, SmtpEmailTransport
from cadence.clock import FixedClock
from cadence.config import EmailSettings, Settings, SmtpSettings
from tests.smtp_sink import SmtpSink, TlsFiles, running_sink

NOW = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)
UNSUBSCRIBE_URL = "https://cadence.example.com/u/L1.c2lnbmF0dXJl"
USER_ENV, PASSWORD_ENV = "CADENCE_TEST_SMTP_USER", "CADENCE_TEST_SMTP_PASSWORD"


def mail(touch_id: int, **changes: Any) -> OutgoingEmail:
    values: dict[str, Any] = {
        "touch_id": touch_id,
        "to": f"lead{touch_id}@northwind.example",
        "to_name": "Dana Wu",
        "from_addr": "alice@acme.example",
        "from_name": "Alice Ng",
        "subject": f"Quick question {touch_id}",
        "text": "Hi Dana,\n\nOne short question.\n.\nAlice\n",
        "html": "<p>Hi Dana,</p><p>One short question.</p>",
        "message_id": f"<t{touch_id}.5f2c@acme.example>",
        "unsubscribe_url": UNSUBSCRIBE_URL,
        "unsubscribe_mailto": "unsubscribe@acme.example",
        "headers": {"X-Cadence-Touch": str(touch_id)},
    }
    values.update(changes)
    return OutgoingEmail(**values)


def plain_settings(sink: SmtpSink, connections: int = 1, **changes: Any) -> SmtpSettings:
    values: dict[str, Any] = {"security": "none", "timeout_seconds": 5, **changes}
    return SmtpSettings(host=sink.host, port=sink.port, connections=connections, **values)


def smtp(settings: SmtpSettings, environ: dict[str, str] | None = None) -> SmtpEmailTransport:
    return SmtpEmailTransport(settings, FixedClock(NOW), environ or {})


def send(transport: EmailTransport, *batches: Sequence[OutgoingEmail]) -> list[list[Receipt]]:
    """Each batch in turn on one loop, then the transport closed, as `cadence run` does."""

    async def scenario() -> list[list[Receipt]]:
        try:
            return [await transport.send_batch(batch) for batch in batches]
        finally:
            await transport.aclose()

    return asyncio.run(scenario())


def ids(receipts: Sequence[Receipt]) -> list[int]:
    return [r.touch_id for r in receipts if r.ok]


def content(message: EmailMessage, subtype: str) -> str:
    """A body part's decoded text, with line ends as Python writes them (the wire has CRLF)."""
    part = message.get_body((subtype,))
    assert part is not None, f"no text/{subtype} part"
    text: str = part.get_content()
    return text.replace("\r\n", "\n")


def delivered(sink: SmtpSink) -> Counter[str | None]:
    return Counter(sink.message_ids)


@pytest.fixture
def free_port() -> Iterator[int]:
    """A port that refuses connections: bound (so nobody else takes it) but never listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


# -- what arrives -------------------------------------------------------------------------


def test_smtp_delivers_headers_threading_unsubscribe_and_both_parts(smtp_sink: SmtpSink) -> None:
    follow_up = mail(
        3,
        subject="Re: Quick question",
        in_reply_to="<t2.5f2c@acme.example>",
        references=("<t1.5f2c@acme.example>", "<t2.5f2c@acme.example>"),
    )
    [[receipt]] = send(smtp(plain_settings(smtp_sink)), [follow_up])

    assert receipt == Receipt(3, provider_id="<t3.5f2c@acme.example>")
    [got] = smtp_sink.received
    assert got.mail_from == "alice@acme.example"
    assert got.rcpt_tos == ("lead3@northwind.example",)
    assert b"\r\n" in got.data and b"\n" not in got.data.replace(b"\r\n", b"")
    m = got.message
    assert m["From"] == "Alice Ng <alice@acme.example>"
    assert m["To"] == "Dana Wu <lead3@northwind.example>"
    assert m["Subject"] == "Re: Quick question"
    assert m["Message-ID"] == "<t3.5f2c@acme.example>"
    assert m["Date"] == format_datetime(NOW)
    assert parsedate_to_datetime(m["Date"]) == NOW
    assert m["In-Reply-To"] == "<t2.5f2c@acme.example>"
    assert m["References"] == "<t1.5f2c@acme.example> <t2.5f2c@acme.example>"
    assert m["List-Unsubscribe"] == f"<{UNSUBSCRIBE_URL}>, <mailto:unsubscribe@acme.example?subject=unsubscribe>"
    assert m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert m["X-Cadence-Touch"] == "3"
    assert m.get_content_type() == "multipart/alternative"
    assert content(m, "plain") == "Hi Dana,\n\nOne short question.\n.\nAlice\n"  # the lone "." survived dot-stuffing
    assert content(m, "html") == "<p>Hi Dana,</p><p>One short question.</p>\n"


def test_non_ascii_text_and_names_arrive_intact_on_a_7bit_wire(smtp_sink: SmtpSink) -> None:
    message = mail(1, to_name="Zoë Müller", from_name="Ålice Ng", subject="Grüße aus Köln", text="Schöne Grüße\n")
    [[receipt]] = send(smtp(plain_settings(smtp_sink)), [message])

    assert receipt.ok
    [got] = smtp_sink.received
    assert got.data.isascii()
    assert got.message["To"] == "Zoë Müller <lead1@northwind.example>"
    assert got.message["From"] == "Ålice Ng <alice@acme.example>"
    assert got.message["Subject"] == "Grüße aus Köln"
    assert content(got.message, "plain") == "Schöne Grüße\n"


def test_connections_are_reused_across_messages_and_batches(smtp_sink: SmtpSink) -> None:
    first = [mail(i) for i in range(1, 21)]
    second = [mail(i) for i in range(21, 41)]
    receipts = send(smtp(plain_settings(smtp_sink, connections=3)), first, second)

    assert all(r.ok for batch in receipts for r in batch)
    assert [r.touch_id for r in receipts[0] + receipts[1]] == list(range(1, 41))  # receipts in order
    assert smtp_sink.count == 40
    assert smtp_sink.connections == 3  # 40 messages, 3 connections, none opened twice
    assert {r.connection for r in smtp_sink.received} == {1, 2, 3}  # all three carried mail
    smtp_sink.wait_until(lambda: smtp_sink.open_connections == 0, what="QUIT to close every connection")


def test_batches_sent_at_once_share_the_connections_and_keep_their_receipts(smtp_sink: SmtpSink) -> None:
    # The dispatcher hands a slice to the transport while the slice before it is still going out.
    smtp_sink.slow_down(0.002)  # so the three batches really are on the wire together
    batches = [[mail(i) for i in range(start, start + 15)] for start in (1, 16, 31)]
    transport = smtp(plain_settings(smtp_sink, connections=3))

    async def scenario() -> list[list[Receipt]]:
        try:
            return list(await asyncio.gather(*(transport.send_batch(b) for b in batches)))
        finally:
            await transport.aclose()

    receipts = asyncio.run(scenario())
    for batch, got in zip(batches, receipts, strict=True):
        assert [r.touch_id for r in got] == [m.touch_id for m in batch]  # each batch gets its own receipts
        assert all(r.ok and r.provider_id == m.message_id for r, m in zip(got, batch, strict=True))
    assert delivered(smtp_sink) == Counter(f"<t{i}.5f2c@acme.example>" for i in range(1, 46))  # each once
    assert smtp_sink.connections == 3  # never more than configured, none opened twice
    smtp_sink.wait_until(lambda: smtp_sink.open_connections == 0, what="QUIT to close every connection")


# -- what goes wrong ----------------------------------------------------------------------


def test_recipient_refused_with_550_bounces_and_the_rest_of_the_batch_goes(smtp_sink: SmtpSink) -> None:
    smtp_sink.reject("lead2@northwind.example")
    [receipts] = send(smtp(plain_settings(smtp_sink)), [mail(i) for i in range(1, 5)])

    assert ids(receipts) == [1, 3, 4]
    error = receipts[1].error
    assert isinstance(error, PermanentError)
    assert error.event == "bounced" and error.code == 550
    assert "5.1.1" in str(error)
    assert set(delivered(smtp_sink)) == {"<t1.5f2c@acme.example>", "<t3.5f2c@acme.example>", "<t4.5f2c@acme.example>"}
    assert smtp_sink.connections == 1  # RSET cleared the envelope; the connection carried on


def test_policy_refusal_at_rcpt_is_permanent_but_not_a_bounce(smtp_sink: SmtpSink) -> None:
    # Relay denied or our IP blocked: the lead's address is fine and must not be marked bounced.
    smtp_sink.reject("lead1@northwind.example", "554 5.7.1 <{rcpt}>: Relay access denied")
    [[receipt]] = send(smtp(plain_settings(smtp_sink)), [mail(1)])

    assert isinstance(receipt.error, PermanentError)
    assert receipt.error.event is None and receipt.error.code == 554


@pytest.mark.parametrize("stage", ["rcpt", "data"])
def test_451_is_transient_and_the_message_is_not_delivered(smtp_sink: SmtpSink, stage: str) -> None:
    smtp_sink.defer(1, stage=stage)
    transport = smtp(plain_settings(smtp_sink))
    [first, retry] = send(transport, [mail(1), mail(2), mail(3)], [mail(1)])

    error = first[0].error
    assert isinstance(error, TransientError) and error.code == 451
    assert ids(first) == [2, 3]
    assert ids(retry) == [1]  # the retry goes through once the server is willing
    assert delivered(smtp_sink) == Counter(f"<t{i}.5f2c@acme.example>" for i in (1, 2, 3))


@pytest.mark.parametrize("connections", [1, 3])
def test_dropped_connection_is_transient_then_reconnects_and_nothing_goes_twice(
    smtp_sink: SmtpSink, connections: int
) -> None:
    smtp_sink.drop_after(4)
    batch = [mail(i) for i in range(1, 13)]
    [receipts] = send(smtp(plain_settings(smtp_sink, connections=connections)), batch)

    failed = [r for r in receipts if not r.ok]
    assert len(failed) == 1 and isinstance(failed[0].error, TransientError)
    assert not isinstance(failed[0].error, UncertainError)
    assert "MAIL FROM" in str(failed[0].error)
    counts = delivered(smtp_sink)
    assert max(counts.values()) == 1  # nothing delivered twice
    assert set(counts) == {f"<t{i}.5f2c@acme.example>" for i in ids(receipts)}
    assert f"<t{failed[0].touch_id}.5f2c@acme.example>" not in counts  # transient means unsent
    assert smtp_sink.connections == connections + 1  # the dropped one was reopened for the next message


def test_dropped_connection_in_the_batch_with_one_connection_fails_only_that_message(smtp_sink: SmtpSink) -> None:
    smtp_sink.drop_after(2)
    transport = smtp(plain_settings(smtp_sink))
    [receipts, retry] = send(transport, [mail(i) for i in range(1, 6)], [mail(3)])

    assert ids(receipts) == [1, 2, 4, 5]
    assert isinstance(receipts[2].error, TransientError)
    assert ids(retry) == [3]
    assert smtp_sink.message_ids == [f"<t{i}.5f2c@acme.example>" for i in (1, 2, 4, 5, 3)]


def test_connection_lost_after_the_text_is_uncertain_not_transient(smtp_sink: SmtpSink) -> None:
    # The server took the text and then vanished: it may deliver, so a blind resend could mail the lead twice.
    smtp_sink.drop_before_reply(1)
    [receipts] = send(smtp(plain_settings(smtp_sink)), [mail(1), mail(2), mail(3)])

    assert isinstance(receipts[0].error, UncertainError)
    assert ids(receipts) == [2, 3]
    assert smtp_sink.message_ids == [f"<t{i}.5f2c@acme.example>" for i in (1, 2, 3)]
    assert smtp_sink.connections == 2


def test_nothing_listening_makes_every_message_transient(free_port: int) -> None:
    settings = SmtpSettings(host="127.0.0.1", port=free_port, security="none", connections=2, timeout_seconds=5)
    [receipts] = send(smtp(settings), [mail(i) for i in range(1, 7)])

    assert [r.touch_id for r in receipts] == list(range(1, 7))
    for receipt in receipts:
        assert isinstance(receipt.error, TransientError)
        assert not isinstance(receipt.error, UncertainError)
        assert f"127.0.0.1:{free_port}" in str(receipt.error)


def test_a_message_that_cannot_be_built_fails_alone(smtp_sink: SmtpSink) -> None:
    broken = [
        mail(2, subject="Hello\r\nBcc: everyone@example.com"),  # header injection
        mail(3, headers={"Message-ID": "<other@acme.example>"}),  # would break the recorded provider id
        mail(4, unsubscribe_url="https://cadence.example.com/u/x> <https://evil.example"),
    ]
    [receipts] = send(smtp(plain_settings(smtp_sink)), [mail(1), *broken, mail(5)])

    assert ids(receipts) == [1, 5]
    for receipt in receipts[1:4]:
        assert isinstance(receipt.error, PermanentError) and receipt.error.event is None
        assert "cannot build" in str(receipt.error)
    assert smtp_sink.count == 2


# -- TLS and credentials --------------------------------------------------------------------


@pytest.fixture
def trusted(tls_files: TlsFiles, monkeypatch: pytest.MonkeyPatch) -> TlsFiles:
    """Make the test certificate trusted the way an operator trusts a private CA: SSL_CERT_FILE."""
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files.cert))
    return tls_files


def test_starttls_and_login_with_credentials_from_the_environment(trusted: TlsFiles) -> None:
    environ = {USER_ENV: "alice", PASSWORD_ENV: "s3cret pass"}
    with running_sink(tls_context=trusted.server_context(), credentials=("alice", "s3cret pass")) as sink:
        settings = plain_settings(sink, security="starttls", username_env=USER_ENV, password_env=PASSWORD_ENV)
        [receipts] = send(smtp(settings, environ), [mail(1), mail(2)])

        assert all(r.ok for r in receipts)
        assert [(r.tls, r.login) for r in sink.received] == [(True, "alice"), (True, "alice")]


def test_wrong_password_is_transient_and_sends_nothing(trusted: TlsFiles) -> None:
    environ = {USER_ENV: "alice", PASSWORD_ENV: "wrong"}
    with running_sink(tls_context=trusted.server_context(), credentials=("alice", "s3cret")) as sink:
        settings = plain_settings(sink, security="starttls", username_env=USER_ENV, password_env=PASSWORD_ENV)
        [receipts] = send(smtp(settings, environ), [mail(1), mail(2)])

        for receipt in receipts:
            assert isinstance(receipt.error, TransientError)  # the server's setup, not the lead's address
        assert "535" in str(receipts[0].error)
        assert sink.count == 0


def test_implicit_tls(trusted: TlsFiles) -> None:
    with running_sink(tls_context=trusted.server_context(), implicit_tls=True) as sink:
        [[receipt]] = send(smtp(plain_settings(sink, security="tls")), [mail(1)])

        assert receipt.ok
        assert [r.tls for r in sink.received] == [True]


def test_starttls_never_falls_back_to_plaintext(smtp_sink: SmtpSink) -> None:
    # This server offers no STARTTLS: nothing may be sent in the clear.
    [receipts] = send(smtp(plain_settings(smtp_sink, security="starttls")), [mail(1), mail(2)])

    assert all(isinstance(r.error, TransientError) for r in receipts)
    assert "STARTTLS" in str(receipts[0].error)
    assert smtp_sink.count == 0


def test_missing_credentials_stop_the_transport_at_startup() -> None:
    settings = SmtpSettings(username_env=USER_ENV, password_env=PASSWORD_ENV)
    with pytest.raises(MissingSmtpCredentials, match=PASSWORD_ENV):
        SmtpEmailTransport(settings, FixedClock(NOW), {USER_ENV: "alice"})
    with pytest.raises(MissingSmtpCredentials, match="both"):
        SmtpEmailTransport(SmtpSettings(username_env=USER_ENV), FixedClock(NOW), {USER_ENV: "alice"})


# -- outbox -----------------------------------------------------------------------------------


def read_eml(path: Path) -> EmailMessage:
    parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_outbox_writes_one_parseable_eml_per_touch(tmp_path: Path) -> None:
    folder = tmp_path / "outbox" / "email"
    messages = [mail(1), mail(12, in_reply_to="<t1.5f2c@acme.example>", references=("<t1.5f2c@acme.example>",))]
    [receipts] = send(OutboxEmailTransport(folder, FixedClock(NOW)), messages)

    assert receipts == [Receipt(1, "<t1.5f2c@acme.example>"), Receipt(12, "<t12.5f2c@acme.example>")]
    assert sorted(p.name for p in folder.iterdir()) == ["touch-000001.eml", "touch-000012.eml"]  # no temp files
    for message in messages:
        path = folder / f"touch-{message.touch_id:06d}.eml"
        assert b"\r\n" in path.read_bytes()
        on_disk, expected = read_eml(path), build_message(message, NOW)
        # Same headers in the same order; the multipart boundary is only chosen when the message is written.
        assert [(k, v) for k, v in on_disk.items() if k != "Content-Type"] == [
            (k, str(v)) for k, v in expected.items() if k != "Content-Type"
        ]
        assert on_disk.get_content_type() == expected.get_content_type() == "multipart/alternative"
        assert on_disk["Date"] == format_datetime(NOW) and on_disk["Message-ID"] == message.message_id
        assert content(on_disk, "plain") == message.text


def test_outbox_resend_replaces_the_file(tmp_path: Path) -> None:
    transport = OutboxEmailTransport(tmp_path, FixedClock(NOW))
    send(transport, [mail(1)], [mail(1, subject="Second try")])

    assert [p.name for p in tmp_path.iterdir()] == ["touch-000001.eml"]
    assert read_eml(tmp_path / "touch-000001.eml")["Subject"] == "Second try"


def test_outbox_that_cannot_be_written_is_transient(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    [[receipt]] = send(OutboxEmailTransport(blocker / "email", FixedClock(NOW)), [mail(1)])

    assert isinstance(receipt.error, TransientError)


# -- composition --------------------------------------------------------------------------------


def test_make_email_transport_follows_config(tmp_path: Path) -> None:
    clock = FixedClock(NOW)
    outbox = make_email_transport(Settings(root=tmp_path), clock)
    assert isinstance(outbox, OutboxEmailTransport) and outbox.directory == tmp_path / "outbox" / "email"

    settings = Settings(root=tmp_path, email=EmailSettings(transport="smtp", smtp=SmtpSettings(connections=2)))
    assert isinstance(make_email_transport(settings, clock, environ={}), SmtpEmailTransport)

    with_login = EmailSettings(transport="smtp", smtp=SmtpSettings(username_env=USER_ENV, password_env=PASSWORD_ENV))
    with pytest.raises(MissingSmtpCredentials):
        make_email_transport(Settings(root=tmp_path, email=with_login), clock, environ={})
