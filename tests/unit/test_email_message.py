"""build_message: the RFC 5322 / RFC 8058 details, without any network."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from cadence.channels.base import OutgoingEmail
from cadence.channels.email.mime import build_message, wire_bytes

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
