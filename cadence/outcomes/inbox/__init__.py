"""Hearing the prospect: what one raw inbound email is, and why (issue 13).

Pure code, no database, no network, no clock: `read_message(raw, received_at)` turns the
bytes into an `Inbound` (never raising: a malformed message says why in `problem`), and
`classify(inbound)` gives a `Verdict`: bounce, soft_bounce, out_of_office (with the return
date it names), auto_reply, unsubscribe_request or reply, each with its reason. Matching a
message to a lead and a touch, the IMAP poller and the store live above this package.
"""

from cadence.outcomes.inbox.classify import classify
from cadence.outcomes.inbox.dates import read_return_date
from cadence.outcomes.inbox.model import (
    HARD_REASONS,
    BounceReason,
    BounceReport,
    FailedRecipient,
    Inbound,
    InboundKind,
    Verdict,
)
from cadence.outcomes.inbox.read import read_message
from cadence.outcomes.inbox.text import html_to_text, strip_quoted

__all__ = [
    "HARD_REASONS",
    "BounceReason",
    "BounceReport",
    "FailedRecipient",
    "Inbound",
    "InboundKind",
    "Verdict",
    "classify",
    "html_to_text",
    "read_message",
    "read_return_date",
    "strip_quoted",
]
