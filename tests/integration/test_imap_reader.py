"""The IMAP reader against a real Dovecot: it reads without marking anything \\Seen, cuts big messages,
moves and files mail, and turns every failure into one clear MailboxError line."""

from __future__ import annotations

import base64
import random
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP

import pytest

from cadence.channels.imap import FetchedMessage, LoginRefused, MailboxError, MailboxReader, _parse_fetch
from cadence.inbox_settings import Mailbox
from tests.dovecot import Dovecot
from tests.smtp_sink import TlsFiles

ALICE = "alice@acme.example"
ENV = {"IMAP_USER": ALICE, "IMAP_PASSWORD": "secret"}


def mailbox(port: int, **overrides: object) -> Mailbox:
    fields: dict[str, object] = {
        "id": "alice",
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "username_env": "IMAP_USER",
        "password_env": "IMAP_PASSWORD",
        "timeout_seconds": 5,
    }
    return Mailbox.model_validate({**fields, **overrides})


@contextmanager
def reading(server: Dovecot, *, environ: dict[str, str] = ENV, max_bytes: int = 512 * 1024) -> Iterator[MailboxReader]:
    with MailboxReader(mailbox(server.port), environ=environ, max_bytes=max_bytes) as reader:
        yield reader


def email(subject: str, body: str = "Thanks, let's talk next week.\n") -> bytes:
    msg = EmailMessage()
    msg["From"] = "Lee Prospect <lee@prospect.example>"
    msg["To"] = ALICE
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{subject.replace(' ', '-')}@prospect.example>"
    msg.set_content(body)
    return msg.as_bytes(policy=SMTP)


def email_with_attachment(subject: str, size: int) -> bytes:
    """A reply carrying `size` random bytes as a base64 attachment, built by hand (the email package takes 0.4 s)."""
    encoded = base64.encodebytes(random.Random(13).randbytes(size)).replace(b"\n", b"\r\n")
    head = (
        f"From: Lee Prospect <lee@prospect.example>\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nThe deck is attached.\r\n"
        "--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
        'Content-Disposition: attachment; filename="deck.bin"\r\n\r\n'
    )
    return head.encode() + encoded + b"--b--\r\n"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_logs_in_and_fetches_appended_messages_in_uid_order(dovecot: Dovecot) -> None:
    raws = [email(f"reply {i}") for i in range(3)]
    uids = [dovecot.append(ALICE, "INBOX", raw) for raw in raws]

    with reading(dovecot) as reader:
        reader.open_folder("INBOX")
        assert reader.new_uids(0) == uids
        fetched = list(reader.fetch([*reversed(uids), 999], chunk=2))  # 999 does not exist: skipped

    assert [m.uid for m in fetched] == uids
    assert [m.raw for m in fetched] == raws
    assert all(m.size == len(m.raw) and not m.truncated for m in fetched)


def test_reading_marks_nothing_seen_and_deletes_nothing(dovecot: Dovecot) -> None:
    dovecot.append(ALICE, "INBOX", email("unread"))
    dovecot.append(ALICE, "INBOX", email("read already"), flags=("\\Seen",))
    dovecot.append(ALICE, "INBOX", email("starred"), flags=("\\Flagged",))
    before = dovecot.messages(ALICE, "INBOX")

    with reading(dovecot) as reader:
        reader.open_folder("INBOX")
        assert len(list(reader.fetch(reader.new_uids(0)))) == 3

    assert dovecot.messages(ALICE, "INBOX") == before
    assert before[0][1] == frozenset()


def test_new_uids_returns_only_uids_after_the_cursor(dovecot: Dovecot) -> None:
    first, second, third = (dovecot.append(ALICE, "INBOX", email(f"m{i}")) for i in range(3))

    with reading(dovecot) as reader:
        reader.open_folder("INBOX")
        assert reader.new_uids(first) == [second, third]
        assert reader.new_uids(third) == []  # the server still answers `UID 4:*` with 3
        assert reader.new_uids(third + 50) == []
        dovecot.append(ALICE, "INBOX", email("arrives while reading"))
        assert reader.new_uids(third) == [third + 1]


def test_uidvalidity_is_returned_and_stable_across_sessions(dovecot: Dovecot) -> None:
    last = [dovecot.append(ALICE, "INBOX", email(f"m{i}")) for i in range(2)][-1]

    with reading(dovecot) as reader:
        state = reader.open_folder("INBOX")
    with reading(dovecot) as reader:
        again = reader.open_folder("INBOX")

    assert state.uidvalidity > 0
    assert again == state
    assert state.uidnext == last + 1


def test_a_message_over_max_bytes_is_cut_at_the_cap(dovecot: Dovecot) -> None:
    big = email_with_attachment("the deck", 5 * 1024 * 1024)
    small = email("short reply")
    big_uid = dovecot.append(ALICE, "INBOX", big)
    small_uid = dovecot.append(ALICE, "INBOX", small)
    cap = 64 * 1024

    with reading(dovecot, max_bytes=cap) as reader:
        reader.open_folder("INBOX")
        cut, whole = reader.fetch([big_uid, small_uid])

    assert cut == FetchedMessage(uid=big_uid, raw=big[:cap], size=len(big), truncated=True)
    assert b"Subject: the deck" in cut.raw
    assert whole == FetchedMessage(uid=small_uid, raw=small, size=len(small), truncated=False)
    assert dovecot.messages(ALICE, "INBOX") == [(big_uid, frozenset()), (small_uid, frozenset())]


def test_move_uses_MOVE_into_a_folder_that_does_not_exist_yet(dovecot: Dovecot) -> None:
    bounce = dovecot.append(ALICE, "INBOX", email("undeliverable"))
    reply = dovecot.append(ALICE, "INBOX", email("a real reply"))
    binned = dovecot.append(ALICE, "INBOX", email("the rep deleted this"), flags=("\\Deleted",))

    with reading(dovecot) as reader:
        assert "MOVE" in reader.capabilities  # announced only after login: the list was refreshed
        reader.open_folder("INBOX")
        reader.move([bounce], "Cadence/Processed")
        assert reader.new_uids(0) == [reply, binned]

    assert "Cadence/Processed" in dovecot.folders(ALICE)
    assert [flags for _, flags in dovecot.messages(ALICE, "Cadence/Processed")] == [frozenset()]
    # Nothing else went: not the reply, and not the rep's own \Deleted mail (no bare EXPUNGE).
    assert dovecot.messages(ALICE, "INBOX") == [(reply, frozenset()), (binned, frozenset({"\\Deleted"}))]


def test_without_MOVE_a_move_expunges_only_the_moved_messages(
    dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    bounce = dovecot.append(ALICE, "INBOX", email("undeliverable"))
    binned = dovecot.append(ALICE, "INBOX", email("the rep deleted this"), flags=("\\Deleted",))
    without_move = property(lambda reader: tuple(c for c in reader._client.capabilities if c != "MOVE"))
    monkeypatch.setattr(MailboxReader, "capabilities", without_move)

    with reading(dovecot) as reader:
        reader.open_folder("INBOX")
        reader.move([bounce], "Processed")

    assert [uid for uid, _ in dovecot.messages(ALICE, "Processed")] == [1]
    assert dovecot.messages(ALICE, "INBOX") == [(binned, frozenset({"\\Deleted"}))]


def test_append_files_a_sent_email_into_a_new_sent_folder(dovecot: Dovecot) -> None:
    sent = email("Quick question")
    when = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)

    with reading(dovecot) as reader:
        reader.append("Sent", sent, when=when)
        reader.append("Sent", email("Following up"), when=when, flags=())
        state = reader.open_folder("Sent")
        (first, second) = reader.fetch(reader.new_uids(0))

    assert state.uidnext == 3
    assert first.raw == sent
    assert dovecot.messages(ALICE, "Sent") == [(first.uid, frozenset({"\\Seen"})), (second.uid, frozenset())]


def test_wrong_password_is_login_refused_naming_the_mailbox(dovecot: Dovecot) -> None:
    with pytest.raises(LoginRefused) as caught, reading(dovecot, environ={**ENV, "IMAP_PASSWORD": "wrong"}):
        pass

    message = str(caught.value)
    assert message.startswith(f"mailbox alice (127.0.0.1:{dovecot.port}): login refused for {ALICE}")
    assert "\n" not in message and "Traceback" not in message and "wrong" not in message
    assert caught.value.transient is False


def test_nothing_listening_is_a_transient_error() -> None:
    port = closed_port()
    with pytest.raises(MailboxError) as caught, MailboxReader(mailbox(port), environ=ENV):
        pass

    assert caught.value.transient is True
    assert str(caught.value) == f"mailbox alice (127.0.0.1:{port}): connection refused (is the server down?)"


def test_a_server_that_never_greets_times_out_as_transient() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        with pytest.raises(MailboxError) as caught, MailboxReader(mailbox(port, timeout_seconds=0.2), environ=ENV):
            pass

    assert caught.value.transient is True
    assert "timed out while connecting" in str(caught.value)


def test_missing_credentials_name_the_environment_variable(dovecot: Dovecot) -> None:
    with pytest.raises(MailboxError) as caught, reading(dovecot, environ={"IMAP_USER": ALICE}):
        pass

    assert not isinstance(caught.value, LoginRefused)
    assert caught.value.transient is False
    assert str(caught.value) == f"mailbox alice (127.0.0.1:{dovecot.port}): set IMAP_PASSWORD in the environment"


def test_a_missing_folder_is_not_transient(dovecot: Dovecot) -> None:
    with reading(dovecot) as reader, pytest.raises(MailboxError) as caught:
        reader.open_folder("Does Not Exist")

    assert caught.value.transient is False
    assert "folder Does Not Exist not found" in str(caught.value)


def test_tls_against_a_plain_server_is_a_configuration_error(dovecot: Dovecot) -> None:
    with pytest.raises(MailboxError) as caught, MailboxReader(mailbox(dovecot.port, security="tls"), environ=ENV):
        pass

    assert caught.value.transient is False
    assert "TLS failed while connecting" in str(caught.value)


def test_the_server_going_down_mid_session_is_transient_and_reading_resumes(dovecot: Dovecot) -> None:
    uid = dovecot.append(ALICE, "INBOX", email("before the outage"))

    with reading(dovecot) as reader:
        reader.open_folder("INBOX")
        dovecot.stop_server()
        with pytest.raises(MailboxError) as caught:
            reader.new_uids(0)
    # leaving the block did not raise, though LOGOUT had no server to talk to

    assert caught.value.transient is True
    assert str(caught.value).startswith(f"mailbox alice (127.0.0.1:{dovecot.port}): connection dropped while searching")
    dovecot.restart()
    with reading(dovecot) as reader:
        reader.open_folder("INBOX")
        assert reader.new_uids(0) == [uid]


@pytest.mark.parametrize(
    "data",
    [
        [(b"7 (UID 42 RFC822.SIZE 900 BODY[]<0> {5}", b"Hello"), b")"],
        [(b"7 (BODY[]<0> {5}", b"Hello"), b" UID 42 RFC822.SIZE 900)"],
        [(b"7 (RFC822.SIZE 900 BODY[]<0> {5}", b"Hello"), b" UID 42)", b"8 (FLAGS (\\Seen))"],
        [b"6 (FLAGS (\\Seen) UID 41)", (b"7 (UID 42 BODY[]<0> {5}", b"Hello"), b" RFC822.SIZE 900)"],
    ],
    ids=["uid-first", "uid-after-literal", "unsolicited-after", "unsolicited-before"],
)
def test_fetch_responses_parse_whatever_the_order(data: list[object]) -> None:
    assert list(_parse_fetch(data)) == [FetchedMessage(uid=42, raw=b"Hello", size=900, truncated=True)]


def test_a_literal_that_looks_like_protocol_is_kept_as_mail() -> None:
    body = b"UID 1 RFC822.SIZE 2 BODY[]<0> {3}\r\n"
    data = [(b"1 (UID 5 RFC822.SIZE %d BODY[]<0> {%d}" % (len(body), len(body)), body), b")"]
    assert list(_parse_fetch(data)) == [FetchedMessage(uid=5, raw=body, size=len(body), truncated=False)]


@pytest.fixture
def tls_dovecot(tls_files: TlsFiles) -> Iterator[Dovecot]:
    server = Dovecot.start({ALICE: "secret"}, tls=(tls_files.cert, tls_files.key))
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_reads_over_tls_when_the_certificate_is_trusted(
    tls_dovecot: Dovecot, tls_files: TlsFiles, security: str
) -> None:
    uid = tls_dovecot.append(ALICE, "INBOX", email("over TLS"))
    port = (tls_dovecot.tls_port or 0) if security == "tls" else tls_dovecot.port
    trusting = ssl.create_default_context(cafile=str(tls_files.cert))

    with MailboxReader(mailbox(port, security=security), environ=ENV, ssl_context=trusting) as reader:
        reader.open_folder("INBOX")
        assert [m.uid for m in reader.fetch(reader.new_uids(0))] == [uid]


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_an_untrusted_certificate_is_refused_and_not_transient(tls_dovecot: Dovecot, security: str) -> None:
    """imaplib alone would not check the certificate at all: the reader must."""
    port = (tls_dovecot.tls_port or 0) if security == "tls" else tls_dovecot.port
    with pytest.raises(MailboxError) as caught, MailboxReader(mailbox(port, security=security), environ=ENV):
        pass

    assert caught.value.transient is False
    assert f"(127.0.0.1:{port}): certificate rejected: " in str(caught.value)
