"""Twilio's Advanced Opt-Out keywords, and how Twilio's error codes map onto our error classes."""

from __future__ import annotations

import pytest

from cadence.channels.base import PermanentError, TransientError
from cadence.channels.sms import error_for
from cadence.plan.sms_keywords import is_help, is_opt_in, is_opt_out

OPT_OUT = ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"]
OPT_IN = ["START", "YES", "UNSTOP"]
HELP = ["HELP", "INFO"]


@pytest.mark.parametrize("word", OPT_OUT)
def test_every_opt_out_keyword_opts_out(word: str) -> None:
    assert is_opt_out(word) and not is_opt_in(word) and not is_help(word)


@pytest.mark.parametrize("word", OPT_IN)
def test_every_opt_in_keyword_opts_in(word: str) -> None:
    assert is_opt_in(word) and not is_opt_out(word) and not is_help(word)


@pytest.mark.parametrize("word", HELP)
def test_every_help_keyword_asks_for_help(word: str) -> None:
    assert is_help(word) and not is_opt_out(word) and not is_opt_in(word)


@pytest.mark.parametrize("body", ["stop", "Stop", "  STOP  ", "\tstop\n", "unsubscribe", "OptOut"])
def test_keywords_ignore_case_and_surrounding_space(body: str) -> None:
    assert is_opt_out(body)


@pytest.mark.parametrize(
    "body",
    ["please stop", "STOP.", "STOP!", "stop it", "don't stop", "STOP ALL", "OPT OUT", "opt-out", "", "   ", None],
)
def test_only_a_whole_one_word_message_is_a_keyword(body: str | None) -> None:
    assert not is_opt_out(body)


@pytest.mark.parametrize("body", ["yes please", "Yes, call me", "help me", "more info"])
def test_sentences_containing_keywords_are_not_keywords(body: str) -> None:
    assert not is_opt_in(body) and not is_help(body)


@pytest.mark.parametrize(
    ("status", "code", "kind", "event"),
    [
        (400, 21610, PermanentError, "sms_stop"),
        (400, 21211, PermanentError, "phone_invalid"),
        (400, 21614, PermanentError, "not_mobile"),
        (400, 30003, TransientError, None),
        (400, 30008, TransientError, None),
        (429, 20429, TransientError, None),
        (500, 20500, TransientError, None),
        (503, None, TransientError, None),
        (401, 20003, PermanentError, None),
        (400, 21408, PermanentError, None),
        (404, 20404, PermanentError, None),
        (400, "21610", PermanentError, "sms_stop"),
    ],
)
def test_twilio_answers_map_to_error_classes(
    status: int, code: int | str | None, kind: type, event: str | None
) -> None:
    error = error_for(status, code, "Twilio said no")
    assert type(error) is kind
    assert getattr(error, "event", None) == event
    assert str(error).startswith("Twilio said no")
