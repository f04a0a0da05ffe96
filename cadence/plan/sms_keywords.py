"""Twilio's opt-out, opt-in and help keywords: what a whole one-word SMS from a lead means."""

from __future__ import annotations

from enum import StrEnum

OPT_OUT_KEYWORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
OPT_IN_KEYWORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_KEYWORDS = frozenset({"HELP", "INFO"})


def _keyword(body: str | None) -> str:
    """Twilio matches only a whole, one-word message: "stop" counts, "please stop" does not."""
    return (body or "").strip().upper()


def is_opt_out(body: str | None) -> bool:
    return _keyword(body) in OPT_OUT_KEYWORDS


def is_opt_in(body: str | None) -> bool:
    return _keyword(body) in OPT_IN_KEYWORDS


def is_help(body: str | None) -> bool:
    return _keyword(body) in HELP_KEYWORDS


class SmsKind(StrEnum):
    """What an inbound SMS is: from a number we do not know, a keyword, or a lead's reply."""

    UNKNOWN = "unknown"
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    HELP = "help"
    REPLY = "reply"


def classify(body: str | None) -> SmsKind:
    """The keyword a whole one-word message is, or a reply."""
    if is_opt_out(body):
        return SmsKind.OPT_OUT
    if is_opt_in(body):
        return SmsKind.OPT_IN
    if is_help(body):
        return SmsKind.HELP
    return SmsKind.REPLY
