"""Reading a raw message never raises: hostile and broken input gives an Inbound that says what went wrong."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from cadence.outcomes.inbox import InboundKind, classify, read_message
from cadence.outcomes.inbox.read import MAX_BYTES, TEXT_LIMIT

AT = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
HEAD = b"From: Bob Jones <Bob.Jones@Northwind.example>\r\nTo: alice@acme.example\r\nSubject: Re: Acme\r\n"


def _junk(size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    return bytes(rng.randrange(256) for _ in range(size))


HOSTILE = {
    "empty": b"",
    "whitespace": b" \r\n\t\r\n",
    "binary": _junk(2048, 1),
    "binary after headers": HEAD + b"\r\n" + _junk(2048, 2),
    "nul bytes in headers": b"From: a\x00b@x.example\r\nSubject: \x00\x00\r\n\r\nhi",
    "a header line of a megabyte": b"Subject: " + b"A" * 1_000_000 + b"\r\n\r\nhi",
    "ten thousand headers": b"".join(b"X-H%d: v\r\n" % i for i in range(10_000)) + b"\r\nhi",
    "boundary never given": HEAD + b"Content-Type: multipart/mixed\r\n\r\n--x\r\nhi\r\n",
    "part with no header end": HEAD + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type',
    "base64 that is not": HEAD + b"Content-Transfer-Encoding: base64\r\n\r\n!!!*&^%$#\r\n",
    "quoted-printable cut": HEAD + b"Content-Transfer-Encoding: quoted-printable\r\n\r\nYes=\r\n=E2=8",
    "charset that is a path": HEAD + b'Content-Type: text/plain; charset="../../etc/passwd"\r\n\r\nhi',
    "delivery status of garbage": HEAD
    + b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
    + b"--b\r\nContent-Type: message/delivery-status\r\n\r\n\x00\xff\xfe: ::\r\nFinal-Recipient: ;;;\r\n--b--\r\n",
    "rfc822 part that is empty": HEAD
    + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n--b--\r\n',
    "encoded words everywhere": b"From: =?utf-8?b?=?= <=?x?q?=?=>\r\nSubject: =?utf-8?q?=FF=FE?=\r\n\r\nhi",
    "address list of commas": b"From: ,,,,,,,,<>,,\r\nIn-Reply-To: <<<>>>\r\nReferences: <\r\n\r\nhi",
}


@pytest.mark.parametrize("raw", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_input_never_raises_and_still_classifies(raw: bytes) -> None:
    message = read_message(raw, AT)
    verdict = classify(message)
    assert message.message_id and message.size == len(raw)
    assert verdict.kind in InboundKind and verdict.reason


def test_something_that_is_not_bytes_is_reported_not_raised() -> None:
    message = read_message("From: a@b.example\n\nhi", AT)  # type: ignore[arg-type]
    assert message.problem == "not bytes but str"


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"", "empty message"),
        (_junk(2048, 1), "binary data with no headers, not a mail message"),
        (HEAD + b'Content-Type: text/plain; charset="x-nope"\r\n\r\nhi', "unknown charset 'x-nope', read as UTF-8"),
        (HEAD + b"Content-Type: text/plain; charset=utf-8\r\n\r\nGr\xfc\xdfe", "text is not valid utf-8"),
        (HEAD + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n\r\nhi', "broken MIME"),
    ],
    ids=["empty", "binary", "unknown charset", "lying charset", "unclosed multipart"],
)
def test_the_problem_says_what_could_not_be_read(raw: bytes, problem: str) -> None:
    assert problem in (read_message(raw, AT).problem or "")


def test_a_thirty_megabyte_attachment_is_not_parsed_and_the_reply_is_still_read() -> None:
    line = b"QUJD" * 19 + b"\r\n"  # base64 lines of 76 characters
    attachment = line * (30 * 1024 * 1024 // len(line))
    raw = (
        HEAD + b'Message-ID: <big@northwind.example>\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nYes, see the deck attached.\r\n"
        b'--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename="deck.pdf"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + attachment + b"\r\n--b--\r\n"
    )
    assert len(raw) > 25 * 1024 * 1024
    message = read_message(raw, AT)
    assert message.text == "Yes, see the deck attached."
    assert message.message_id == "<big@northwind.example>" and message.size == len(raw)
    assert f"only the first {MAX_BYTES // (1024 * 1024)} MiB were read" in (message.problem or "")
    assert classify(message).kind is InboundKind.REPLY


def test_the_sender_is_lower_cased_and_its_domain_split_off() -> None:
    message = read_message(HEAD + b"\r\nhi", AT)
    assert (message.sender, message.sender_domain, message.sender_name) == (
        "bob.jones@northwind.example",
        "northwind.example",
        "Bob Jones",
    )


def test_the_text_is_cut_at_two_thousand_characters() -> None:
    message = read_message(HEAD + b"\r\n" + b"word " * 2000, AT)
    assert len(message.text) == TEXT_LIMIT


def test_the_same_bytes_without_message_id_always_get_the_same_id() -> None:
    raw = HEAD + b"\r\nYes."
    first, second = read_message(raw, AT), read_message(raw, datetime(2030, 1, 1, tzinfo=UTC))
    assert first.id_is_hash and first.message_id == second.message_id
    assert first.message_id != read_message(raw + b"!", AT).message_id


def test_thread_ids_name_the_direct_parent_first_each_once() -> None:
    raw = HEAD + b"In-Reply-To: <c@acme.example>\r\nReferences: <a@acme.example> <b@acme.example>\r\n"
    raw += b" <c@acme.example>\r\n\r\nok"
    assert read_message(raw, AT).thread_ids == ("<c@acme.example>", "<b@acme.example>", "<a@acme.example>")


def test_raw_eight_bit_headers_are_read_as_utf8() -> None:
    raw = "From: Zoë Ångström <zoe@stark.example>\r\nSubject: nästa vecka\r\n\r\nja".encode()
    message = read_message(raw, AT)
    assert (message.sender_name, message.subject, message.problem) == ("Zoë Ångström", "nästa vecka", None)
