"""The values the inbox classifier hands on: what a raw message said (`Inbound`) and what it is (`Verdict`).

They are plain frozen dataclasses so the IMAP poller, `cadence inbox process` and the HTTP
route can all store, print and compare them without knowing how a message was read. Every
address is lower-cased, every Message-ID keeps its angle brackets (the form a touch stores).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from cadence.names import InboundKind


class BounceReason(StrEnum):
    """Why delivery failed, in Sisimai's spirit: only the first four mean the address cannot receive."""

    USER_UNKNOWN = "user_unknown"
    HOST_UNKNOWN = "host_unknown"
    HAS_MOVED = "has_moved"
    NOT_ACCEPTING = "not_accepting"  # the domain accepts no mail at all (null MX, RFC 7505)
    BLOCKED = "blocked"  # the sending IP or domain is listed or has a poor reputation
    POLICY = "policy"
    SPAM = "spam"
    AUTH = "auth"  # SPF, DKIM or DMARC
    RELAY = "relay"
    CONTENT = "content"
    RATE_LIMITED = "rate_limited"
    MAILBOX_FULL = "mailbox_full"
    TOO_BIG = "too_big"
    SUSPENDED = "suspended"  # the mailbox exists but is disabled for now
    NETWORK = "network"
    EXPIRED = "expired"  # the sending server gave up retrying
    DELAYED = "delayed"  # still retrying: a warning, not yet a failure
    SYSTEM = "system"
    UNDETERMINED = "undetermined"


HARD_REASONS: frozenset[BounceReason] = frozenset(
    {BounceReason.USER_UNKNOWN, BounceReason.HOST_UNKNOWN, BounceReason.HAS_MOVED, BounceReason.NOT_ACCEPTING}
)


@dataclass(frozen=True)
class FailedRecipient:
    """One recipient a delivery report speaks of, with the fields RFC 3464 gives (empty when absent)."""

    address: str
    action: str = ""  # failed, delayed, delivered, relayed, expanded
    status: str = ""  # the enhanced status code, "5.1.1"
    diagnostic: str = ""  # the remote server's words, or the notice's words about this address
    remote_mta: str = ""


@dataclass(frozen=True)
class BounceReport:
    """What a delivery report (a standard DSN or a non-standard notice) says about the message it returns."""

    recipients: tuple[FailedRecipient, ...]
    original_message_id: str | None  # of the message that bounced, from its returned headers
    standard: bool  # multipart/report; report-type=delivery-status (RFC 3464)
    notice: str  # the human-readable words of the report, without the returned message


@dataclass(frozen=True)
class Inbound:
    """One raw message, read: what matching it to a lead and a touch and classifying it need.

    `problem` is set when something could not be read (broken MIME, an unknown charset, a
    message cut at the size cap); whatever was readable is still here.
    """

    message_id: str  # "<...>", or "sha256:<hex of the raw bytes>" when the message has none
    id_is_hash: bool
    received_at: datetime
    sender: str  # the From address, lower-cased; "" when there is none
    sender_domain: str
    sender_name: str
    subject: str
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    text: str  # the sender's new words (no quoted history or signature), or a report's own words; <= 2,000 chars
    automatic: tuple[str, ...]  # header evidence that software sent it ("Auto-Submitted: auto-replied")
    report_type: str  # multipart/report's report-type ("delivery-status", "disposition-notification") or ""
    bounce: BounceReport | None
    size: int
    problem: str | None = None

    @property
    def thread_ids(self) -> tuple[str, ...]:
        """The Message-IDs this message answers, the direct parent first, each once."""
        seen: dict[str, None] = dict.fromkeys(self.in_reply_to)
        seen.update(dict.fromkeys(reversed(self.references)))
        return tuple(seen)


@dataclass(frozen=True)
class Verdict:
    """What a message is and why, in words a rep understands.

    `until` is the return date an out-of-office reply names (a date: the caller makes it
    midnight in the lead's zone and applies its default when it is None); `bounce_reason`
    is set for bounces of both kinds; `retrying` marks a soft bounce that is only a delay
    warning (the sending server is still trying, so the message may yet arrive), which a
    caller counting soft bounces towards a limit may want to leave out.
    """

    kind: InboundKind
    reason: str
    bounce_reason: BounceReason | None = None
    until: date | None = None
    retrying: bool = False
