"""Which kind wins when a message could be several: software's marks first, then a person's request, then a reply."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from cadence.outcomes.inbox import InboundKind, classify, read_message
from cadence.outcomes.inbox.phrases import unsubscribe

AT = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
K = InboundKind


def _kind(headers: str, body: str) -> tuple[InboundKind, str, date | None]:
    raw = f"From: Ann Lee <ann@northwind.example>\nTo: alice@acme.example\n{headers}\n\n{body}".encode()
    verdict = classify(read_message(raw, AT))
    return verdict.kind, verdict.reason, verdict.until


@pytest.mark.parametrize(
    "marks",
    [
        "Auto-Submitted: auto-replied",
        "Auto-Submitted: auto-generated",
        "X-Autoreply: yes",
        "X-Autorespond: vacation",
        "Precedence: auto_reply",
        "X-MS-Exchange-Inbox-Rules-Loop: ann@northwind.example",
        "X-Auto-Response-Suppress: All",
        "Subject: Automatic reply: Acme",
        "Subject: Abwesenheitsnotiz: Acme",
        "Subject: Réponse automatique : Acme",
    ],
)
def test_software_marks_and_an_absence_make_an_out_of_office_reply_with_its_date(marks: str) -> None:
    kind, reason, until = _kind(marks, "I am out of the office until December 7, 2026.")
    assert (kind, until) == (K.OUT_OF_OFFICE, date(2026, 12, 7))
    assert "back 2026-12-07" in reason


def test_software_marks_without_an_absence_make_an_auto_reply() -> None:
    kind, reason, _ = _kind("Auto-Submitted: auto-replied", "We received your message and will answer shortly.")
    assert kind is K.AUTO_REPLY and "Auto-Submitted" in reason


def test_absence_words_from_a_person_with_no_marks_are_a_reply() -> None:
    kind, _, until = _kind("Subject: Re: Acme", "I'm on vacation until Monday but yes, let's talk Tuesday.")
    assert (kind, until) == (K.REPLY, None)


def test_a_mark_that_only_suppresses_receipts_does_not_make_a_person_a_machine() -> None:
    kind, _, _ = _kind("X-Auto-Response-Suppress: RN, NRN\nSubject: RE: Acme", "Sounds good, call me.")
    assert kind is K.REPLY


def test_a_newsletters_unsubscribe_link_is_not_a_request_to_be_removed() -> None:
    kind, _, _ = _kind("List-Unsubscribe: <https://n.example/u>", "News! To unsubscribe, click here.")
    assert kind is K.AUTO_REPLY


def test_an_unsubscribe_subject_alone_is_a_request() -> None:
    kind, _, _ = _kind("Subject: Unsubscribe", "")
    assert kind is K.UNSUBSCRIBE_REQUEST


@pytest.mark.parametrize(
    "words",
    [
        "Please unsubscribe me.",
        "Remove me from your list.",
        "Take me off your mailing list.",
        "Stop emailing me.",
        "Don't contact me again.",
        "Bitte entfernen Sie mich aus Ihrem Verteiler.",
        "Bitte keine weiteren E-Mails.",
        "Merci de ne plus me contacter.",
        "Retirez-moi de votre liste.",
        "Por favor, denme de baja.",
        "No me envíen más correos.",
        "Parem de me enviar e-mails.",
        "Verwijder mij uit uw bestand.",
        "Haal me van de lijst.",
        "Cancellatemi dalla lista.",
        "Non voglio più ricevere email.",
    ],
)
def test_a_request_to_be_removed_is_heard_in_each_language(words: str) -> None:
    assert unsubscribe(words) is not None


@pytest.mark.parametrize(
    "words",
    [
        "We unsubscribed from our old vendor last year.",
        "Can you remove the watermark from the deck?",
        "Take me off the hook for Tuesday, I'll call Wednesday.",
        "Can we opt out of the annual plan?",
        "Stop by our booth at SaaStr!",
        "I removed the blocker, let's go.",
        "Ich muss den Termin absagen, können wir verschieben?",
    ],
)
def test_everyday_words_that_look_like_a_request_are_not_one(words: str) -> None:
    assert unsubscribe(words) is None
