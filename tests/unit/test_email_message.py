"""build_message: the RFC 5322 / RFC 8058 details, without any network; the plain fast path pinned to it."""

from __future__ import annotations

import random
import string
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cadence.channels.base import OutgoingEmail
from cadence.channels.email.mime import _plain_wire, build_message, needs_utf8, wire_bytes

NOW = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)


def mail(**changes: Any) -> OutgoingEmail:
    values: dict[str, Any] = {
        "touch_id": 1,
        "to": "dana@northwind.example",
        "to_name": None,
        "from_addr": "alice@acme.example",
        "from_name": "Alice Ng",
        "subject": "Quick question",
        "text": "Hi Dana\n",
        "html": "<p>Hi Dana</p>",
        "message_id": "<t1@acme.example>",
    }
    values.update(changes)
    return OutgoingEmail(**values)


@pytest.mark.parametrize(
    ("url", "mailto", "header", "one_click"),
    [
        (None, None, None, False),
        ("https://c.example/u/T", None, "<https://c.example/u/T>", True),
        (None, "unsubscribe@acme.example", "<mailto:unsubscribe@acme.example?subject=unsubscribe>", False),
        (None, "mailto:u@acme.example?subject=stop", "<mailto:u@acme.example?subject=stop>", False),
        ("http://localhost:8080/u/T", None, "<http://localhost:8080/u/T>", False),  # RFC 8058 wants https
    ],
)
def test_list_unsubscribe_and_one_click_only_with_https(
    url: str | None, mailto: str | None, header: str | None, one_click: bool
) -> None:
    message = build_message(mail(unsubscribe_url=url, unsubscribe_mailto=mailto), NOW)

    assert message["List-Unsubscribe"] == header
    assert (message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click") is one_click
    if not one_click:
        assert "List-Unsubscribe-Post" not in message


def test_a_long_unsubscribe_url_is_never_encoded_or_split() -> None:
    url = "https://cadence.example.com/u/" + "x" * 150
    wire = wire_bytes(build_message(mail(unsubscribe_url=url, unsubscribe_mailto="u@acme.example"), NOW))

    assert f"List-Unsubscribe: <{url}>,\r\n <mailto:u@acme.example?subject=unsubscribe>\r\n".encode() in wire
    assert b"=?" not in wire


def test_in_reply_to_alone_still_gives_references() -> None:
    message = build_message(mail(in_reply_to="<t0@acme.example>"), NOW)

    assert message["In-Reply-To"] == "<t0@acme.example>"
    assert message["References"] == "<t0@acme.example>"


def test_first_touch_has_no_threading_headers() -> None:
    message = build_message(mail(), NOW)

    assert "In-Reply-To" not in message and "References" not in message


def test_date_comes_from_sent_at_with_its_offset() -> None:
    new_york = timezone(timedelta(hours=-5))
    message = build_message(mail(), datetime(2026, 11, 30, 9, 0, tzinfo=new_york))

    assert message["Date"] == "Mon, 30 Nov 2026 09:00:00 -0500"


def test_text_only_when_there_is_no_html() -> None:
    message = build_message(mail(html=""), NOW)

    assert message.get_content_type() == "text/plain"


def test_body_parts_do_not_repeat_mime_version() -> None:
    message = build_message(mail(), NOW)

    assert message["MIME-Version"] == "1.0"
    assert all("MIME-Version" not in part for part in message.iter_parts())


@pytest.mark.parametrize(
    "changes",
    [
        {"subject": "Hi\r\nBcc: all@example.com"},
        {"headers": {"Subject": "other"}},
        {"headers": {"message-id": "<x@y>"}},
        {"unsubscribe_url": "https://c.example/u/a b"},
        {"unsubscribe_mailto": "u@acme.example>, <https://evil.example"},
    ],
)
def test_what_cannot_be_sent_safely_is_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        build_message(mail(**changes), NOW)


def test_a_naive_sent_at_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        build_message(mail(), datetime(2026, 11, 30, 14, 0))


def test_wire_form_is_7bit_with_crlf() -> None:
    wire = wire_bytes(build_message(mail(to_name="Zoë", subject="Grüße", text="Schöne Grüße\n"), NOW))

    assert wire.isascii()
    assert b"\n" not in wire.replace(b"\r\n", b"")


# -- the hand-written fast path equals the email package, byte for byte -----------------------

_WORD = st.text(alphabet=string.ascii_letters + string.digits, min_size=1, max_size=12)
_PLAIN_NAME = st.lists(_WORD, min_size=1, max_size=4).map(" ".join)
_PLAIN_ADDRESS = st.builds(
    "{}@{}.{}".format, _WORD, _WORD, st.sampled_from(["example", "co.uk", "io"])
)  # fmt: skip
_PLAIN_ID = st.builds("<{}@{}.example>".format, _WORD, _WORD)
# Unicode anywhere (accents, CJK, emoji, controls), long lines and every kind of line end.
_ANY_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=400)
_LONG_LINES = st.lists(st.text(st.characters(exclude_categories=["Cs"]), min_size=60, max_size=300), max_size=12).map(
    "\n".join
)
_LINE_ENDS = st.lists(st.text(string.printable, max_size=90), max_size=14).flatmap(
    lambda lines: st.sampled_from(["\n", "\r\n", "\r"]).map(lambda end: end.join(lines))
)
_BODY = st.one_of(_ANY_TEXT, _LONG_LINES, _LINE_ENDS, st.text(string.ascii_letters + " \n", max_size=400))
_SUBJECT = st.one_of(st.lists(_WORD, min_size=1, max_size=14).map(" ".join), _ANY_TEXT)
_HEADERS = st.dictionaries(st.builds("X-{}".format, _WORD), st.one_of(_WORD, _ANY_TEXT), max_size=2)
_SENT_AT = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)).flatmap(
    lambda at: st.integers(-12 * 60, 14 * 60).map(lambda m: at.replace(tzinfo=timezone(timedelta(minutes=m))))
)


@st.composite
def plain_emails(
    draw: st.DrawFn, subject: st.SearchStrategy[str] = _SUBJECT, headers: st.SearchStrategy[dict[str, str]] = _HEADERS
) -> OutgoingEmail:
    """Messages the fast path is meant for, with the fields it has to get exactly right left random."""
    parent = draw(st.none() | _PLAIN_ID)
    return OutgoingEmail(
        touch_id=1,
        to=draw(_PLAIN_ADDRESS),
        to_name=draw(st.none() | _PLAIN_NAME),
        from_addr=draw(_PLAIN_ADDRESS),
        from_name=draw(_PLAIN_NAME),
        subject=draw(subject),
        text=draw(_BODY),
        html=draw(st.just("") | _BODY),
        message_id=draw(_PLAIN_ID),
        in_reply_to=parent,
        references=tuple(draw(st.lists(_PLAIN_ID, max_size=3))),
        unsubscribe_url=draw(st.none() | st.builds("https://c.example/u/{}".format, _WORD)),
        unsubscribe_mailto=draw(st.none() | _PLAIN_ADDRESS),
        headers=draw(headers),
    )


def _both_paths(msg: OutgoingEmail, sent_at: datetime, seed: int) -> tuple[bytes | None, bytes | None]:
    """(fast path, email package), with the same random boundary; None where a path declines or refuses."""
    random.seed(seed)
    fast = _plain_wire(msg, sent_at)
    random.seed(seed)
    try:
        standard = wire_bytes(build_message(msg, sent_at), needs_utf8(msg))
    except ValueError:  # a CR or LF in a header, say: the message can never be sent
        standard = None
    return fast, standard


@settings(max_examples=300, deadline=None, database=None)
@given(plain_emails(), _SENT_AT, st.integers(0, 2**32))
def test_the_fast_path_writes_the_very_bytes_the_email_package_writes(
    msg: OutgoingEmail, sent_at: datetime, seed: int
) -> None:
    fast, standard = _both_paths(msg, sent_at, seed)
    if fast is not None:  # None: the fast path declined, and the email package writes (or refuses) the message
        assert fast == standard


_PLAIN_SUBJECT = st.lists(_WORD, min_size=1, max_size=6).map(" ".join)
_PLAIN_HEADERS = st.dictionaries(st.builds("X-{}".format, _WORD), _PLAIN_NAME, max_size=2)


@settings(max_examples=100, deadline=None, database=None)
@given(plain_emails(subject=_PLAIN_SUBJECT, headers=_PLAIN_HEADERS), _SENT_AT, st.integers(0, 2**32))
def test_plain_headers_take_the_fast_path_whatever_the_bodies(msg: OutgoingEmail, sent_at: datetime, seed: int) -> None:
    assume(_fits_one_line(msg))  # a longer header is folded: the email package's work
    fast, standard = _both_paths(msg, sent_at, seed)
    assert fast is not None and fast == standard


def _fits_one_line(msg: OutgoingEmail) -> bool:
    threading = [
        *msg.references,
        *([msg.in_reply_to] if msg.in_reply_to and msg.in_reply_to not in msg.references else []),
    ]
    headers = {
        "From": f"{msg.from_name} <{msg.from_addr}>", "To": f"{msg.to_name} <{msg.to}>" if msg.to_name else msg.to,
        "Subject": msg.subject, "References": " ".join(threading), **msg.headers,
    }  # fmt: skip
    return all(len(f"{name}: {value}") <= 78 for name, value in headers.items())
