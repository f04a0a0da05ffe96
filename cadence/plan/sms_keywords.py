"""Twilio's opt-out, opt-in and help keywords: what a whole one-word SMS from a lead means."""

from __future__ import annotations

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
