"""Every message of the tests/inbox/ corpus gets the verdict its manifest names, and the bounce corpus
reports its agreement as two figures (issue 13: at least 90% of hard bounces recognised, at least
90% of policy and other soft failures left soft).

The corpus is real-shaped mail from Gmail, Outlook, Apple Mail, Exchange and Office 365, Postfix,
Exim, sendmail, qmail, OpenSMTPD, Amazon SES, Yahoo and Mimecast, in seven languages, plus malformed
input; tests/inbox/manifest.yaml says what each file shows and what it must be read as.
"""

from __future__ import annotations

import functools
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from cadence.outcomes.inbox import InboundKind, Verdict, classify, read_message
from cadence.outcomes.inbox.model import Inbound

CORPUS = Path(__file__).resolve().parents[1] / "inbox"
MANIFEST: dict[str, Any] = yaml.safe_load((CORPUS / "manifest.yaml").read_text(encoding="utf-8"))
ENTRIES: list[dict[str, Any]] = MANIFEST["messages"]
BOUNCES = (InboundKind.BOUNCE, InboundKind.SOFT_BOUNCE)
TARGET = 0.90


@functools.cache
def _read(name: str) -> tuple[Inbound, Verdict]:
    entry = next(e for e in ENTRIES if e["file"] == name)
    received_at = datetime.fromisoformat(entry.get("received_at", MANIFEST["received_at"]))
    message = read_message((CORPUS / name).read_bytes(), received_at)
    return message, classify(message)


def test_the_manifest_names_every_corpus_file_once() -> None:
    named = [e["file"] for e in ENTRIES]
    assert len(named) == len(set(named))
    assert sorted(named) == sorted(p.name for p in CORPUS.glob("*.eml"))


def test_the_corpus_holds_sixty_messages_of_which_thirty_are_bounces_of_both_kinds() -> None:
    kinds = [e["kind"] for e in ENTRIES]
    assert len(kinds) >= 60
    assert kinds.count("bounce") + kinds.count("soft_bounce") >= 30
    assert kinds.count("bounce") >= 12 and kinds.count("soft_bounce") >= 12
    outcomes = {InboundKind.UNMATCHED, InboundKind.DUPLICATE}  # what processing comes to, never a verdict
    assert {k.value for k in InboundKind if k not in outcomes} <= set(kinds)


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e["file"])
def test_every_corpus_message_gets_the_verdict_its_manifest_names(entry: dict[str, Any]) -> None:
    message, verdict = _read(entry["file"])
    assert verdict.kind == entry["kind"], verdict.reason
    assert verdict.reason.strip()
    assert (message.problem is not None) == entry.get("problem", False), message.problem
    if verdict.kind in BOUNCES:
        assert message.bounce is not None
        failed = [r.address for r in message.bounce.recipients]
        assert failed == ([entry["recipient"]] if entry["recipient"] else [])
        assert message.bounce.original_message_id == entry["original"]
        assert verdict.bounce_reason == entry["reason"], verdict.reason
    else:
        assert verdict.bounce_reason is None
    if verdict.kind is InboundKind.OUT_OF_OFFICE:
        assert verdict.until == entry["until"], verdict.reason
    else:
        assert verdict.until is None


@pytest.mark.parametrize(
    "entry",
    [e for e in ENTRIES if e["kind"] in ("reply", "unsubscribe_request") and "problem" not in e],
    ids=lambda e: e["file"],
)
def test_a_reply_keeps_only_the_senders_own_words(entry: dict[str, Any]) -> None:
    message, _ = _read(entry["file"])
    assert "acme.example" not in message.text  # our quoted message and its headers are history
    assert not any(line.lstrip().startswith(">") for line in message.text.splitlines())
    assert len(message.text) <= 2000


def test_the_bounce_corpus_reports_its_agreement_and_meets_ninety_percent_each_way() -> None:
    hard = [e["file"] for e in ENTRIES if e["kind"] == "bounce"]
    soft = [e["file"] for e in ENTRIES if e["kind"] == "soft_bounce"]
    hard_ok = [f for f in hard if _read(f)[1].kind is InboundKind.BOUNCE]
    soft_ok = [f for f in soft if _read(f)[1].kind is InboundKind.SOFT_BOUNCE]
    hard_rate, soft_rate = len(hard_ok) / len(hard), len(soft_ok) / len(soft)
    figure = (
        f"bounce corpus agreement: hard bounces recognised {len(hard_ok)}/{len(hard)} ({hard_rate:.0%}); "
        f"policy and other soft failures left soft {len(soft_ok)}/{len(soft)} ({soft_rate:.0%}); "
        f"missed: {sorted(set(hard) - set(hard_ok)) + sorted(set(soft) - set(soft_ok))}"
    )
    print(figure)
    assert hard_rate >= TARGET and soft_rate >= TARGET, figure


def test_a_thread_reply_names_the_touch_it_answers() -> None:
    message, _ = _read("reply-gmail-wrapped-attribution.eml")
    assert message.thread_ids == (
        "<20261120140502.4821.1002@acme.example>",
        "<20261118101500.1200.2002@acme.example>",
    )
    assert (message.sender, message.sender_domain) == ("dana@globex.example", "globex.example")


def test_a_message_without_message_id_is_known_by_the_hash_of_its_bytes() -> None:
    message, _ = _read("malformed-no-message-id.eml")
    again = read_message((CORPUS / "malformed-no-message-id.eml").read_bytes(), datetime(2027, 1, 1))
    assert message.id_is_hash and message.message_id.startswith("sha256:")
    assert again.message_id == message.message_id


def test_the_reason_of_a_reply_shows_its_first_words_not_its_greeting() -> None:
    _, verdict = _read("reply-gmail-quoted.eml")
    assert "Yes, this is timely" in verdict.reason
    assert "Hi Alice" not in verdict.reason


def test_a_soft_bounce_reason_names_the_block_and_the_address() -> None:
    _, verdict = _read("bounce-office365-spamhaus-block.eml")
    assert "nora@fabrikam.example" in verdict.reason and "blocked" in verdict.reason and "5.7.1" in verdict.reason


def test_only_a_delay_warning_is_marked_as_still_being_retried() -> None:
    retrying = {e["file"] for e in ENTRIES if _read(e["file"])[1].retrying}
    assert retrying == {
        "bounce-postfix-delayed.eml",
        "bounce-postfix-greylisted.eml",
        "bounce-gmail-rate-limited.eml",
        "bounce-exchange-legacy-delayed.eml",
    }
