"""The quoted-text stripper keeps what the sender wrote and drops history and signatures, in every client's style."""

from __future__ import annotations

import pytest

from cadence.outcomes.inbox import html_to_text, strip_quoted

NEW = "Yes, Thursday works for me."


@pytest.mark.parametrize(
    "history",
    [
        "On Fri, Nov 20, 2026 at 3:05 PM Alice Smith <alice@acme.example> wrote:\n> Hi Bob\n> Worth a call?",
        "On Fri, Nov 20, 2026 at 3:05 PM Alice Smith from Acme <\nalice@acme.example> wrote:\n\n> Hi Bob",
        "On 20 Nov 2026, at 15:05, Alice Smith <alice@acme.example> wrote:\n\nHi Bob, unquoted by the client",
        "Am Fr., 20. Nov. 2026 um 15:05 Uhr schrieb Alice Smith <alice@acme.example>:\n> Hallo Bob",
        "Alice Smith <alice@acme.example> schrieb am Fr., 20. Nov. 2026, 15:05:\n> Hallo Bob",
        "Le ven. 20 nov. 2026 à 15:05, Alice Smith <alice@acme.example> a écrit :\n> Bonjour",
        "El vie, 20 nov 2026 a las 15:05, Alice Smith (<alice@acme.example>)\nescribió:\n> Hola",
        "Em sex., 20 de nov. de 2026 às 15:05, Alice Smith <alice@acme.example>\nescreveu:\n> Olá",
        "Op vr 20 nov. 2026 om 15:05 schreef Alice Smith <alice@acme.example>:\n> Hoi",
        "Il giorno ven 20 nov 2026 alle ore 15:05 Alice Smith <alice@acme.example> ha\nscritto:\n> Ciao",
        "-----Original Message-----\nFrom: Alice Smith\nSent: Friday\nSubject: Acme\n\nHi Bob",
        "-----Ursprüngliche Nachricht-----\nVon: Alice Smith\nGesendet: Freitag\n\nHallo",
        "________________________________\nFrom: Alice Smith <alice@acme.example>\nSent: 20 November 2026 14:05\nHi",
        "From: Alice Smith <alice@acme.example>\nSent: Friday, November 20, 2026 2:05 PM\nTo: Bob\n\nHi Bob",
        "Von: Alice Smith <alice@acme.example>\nGesendet: Freitag, 20. November 2026 15:05\nAn: Bob\n\nHallo",
        "De : Alice Smith <alice@acme.example>\nEnvoyé : vendredi 20 novembre 2026 15:05\nÀ : Bob\n\nBonjour",
        "De: Alice Smith <alice@acme.example>\nEnviado: viernes, 20 de noviembre de 2026 15:05\nPara: Bob\n\nHola",
        "Från: Alice Smith <alice@acme.example>\nSkickat: den 20 november 2026 15:05\nTill: Bob\n\nHej",
        "---------- Forwarded message ---------\nFrom: Alice Smith <alice@acme.example>\n\nHi",
    ],
    ids=lambda h: h.split("\n")[0][:40],
)
def test_quoted_history_is_cut_in_every_clients_style(history: str) -> None:
    assert strip_quoted(f"{NEW}\n\n{history}\n> Unsubscribe: https://cadence.acme.example/u/x") == NEW


def test_inline_answers_between_quoted_lines_are_kept() -> None:
    text = "> Would Thursday work?\nYes, 3pm.\n> And who else should join?\nMy VP Sales."
    assert strip_quoted(text) == "Yes, 3pm.\nMy VP Sales."


@pytest.mark.parametrize(
    "signature",
    [
        "-- \nBob Jones\nHead of Sales",
        "Sent from my iPhone",
        "Von meinem iPhone gesendet",
        "Envoyé de mon iPhone",
        "Enviado desde mi iPhone",
        "Get Outlook for iOS",
        "Best regards,\nBob Jones\nHead of Sales | Northwind\n+1 212 555 0100",
        "Mit freundlichen Grüßen\nBob Jones",
        "Cordialement,\nBob",
        "Met vriendelijke groet,\nBob",
    ],
    ids=lambda s: s.split("\n")[0],
)
def test_a_signature_is_cut(signature: str) -> None:
    assert strip_quoted(f"{NEW}\n\n{signature}") == NEW


def test_a_sign_off_that_opens_the_message_is_the_message() -> None:
    assert (
        strip_quoted("Thanks,\n\nthat sounds good. Call me Monday.") == "Thanks,\n\nthat sounds good. Call me Monday."
    )


def test_a_sign_off_followed_by_a_long_text_is_not_a_signature() -> None:
    body = "\n".join(f"Point {i}." for i in range(12))
    assert strip_quoted(f"Short intro.\nThanks\n{body}").endswith("Point 11.")


def test_a_message_that_is_only_a_quote_has_no_words_of_its_own() -> None:
    assert strip_quoted("On Fri, Nov 20, 2026 at 3:05 PM Alice <alice@acme.example> wrote:\n> Hi") == ""


def test_html_keeps_the_visible_text_one_line_per_block_and_paragraphs_apart() -> None:
    html = "<html><head><style>p {margin:0}</style><title>x</title></head><body><div>Hi&nbsp;Alice,</div>"
    html += "<p>Yes &amp; <b>yes</b>.</p><script>alert(1)</script>Line<br>break</body></html>"
    assert html_to_text(html) == "Hi Alice,\n\nYes & yes.\n\nLine\nbreak"


@pytest.mark.parametrize(
    "quoted",
    [
        '<div class="gmail_quote"><div class="gmail_attr">On Fri Alice wrote:</div><blockquote>Hi</blockquote></div>',
        '<blockquote type="cite"><div>On 20 Nov 2026 Alice wrote:</div><div>Hi Bob</div></blockquote>',
        '<div id="appendonsend"></div><hr><div id="divRplyFwdMsg"><b>From:</b> Alice</div><div>Hi Bob</div>',
        '<div class="yahoo_quoted"><div>On Friday Alice wrote:</div><div>Hi</div></div>',
        '<div class="moz-cite-prefix">On 20/11/2026 Alice wrote:<br></div><blockquote type="cite">Hi</blockquote>',
    ],
    ids=["gmail", "apple", "outlook", "yahoo", "thunderbird"],
)
def test_html_quoted_history_is_left_out(quoted: str) -> None:
    assert html_to_text(f"<div>{NEW}</div>{quoted}") == NEW


def test_broken_html_still_gives_its_text() -> None:
    assert html_to_text("<div><p>Yes <b>please</div></span><blockquote>old") == "Yes please"
