"""The channel protocol: what the dispatcher hands a transport, and what it gets back.

A transport receives a whole batch, so it can reuse connections and send a few
messages in parallel, and returns one `Receipt` per message, in order. It never
raises for a single message's failure; the receipt carries the error instead.

Errors, by what the dispatcher does about them:

    SendError                 base class; `code` is the provider's (SMTP reply or Twilio error code)
    ├── TransientError        retried with exponential backoff and jitter, up to engine.max_attempts
    │                         (SMTP 4xx, connection refused or dropped before the message was handed
    │                          over, Twilio 429 and 5xx, Twilio 30003 unreachable and 30008 unknown)
    ├── UncertainError        the message may or may not have gone out (a timeout or a dropped
    │                         connection after the request was written): the touch becomes `unknown`
    │                         and is resent only by `cadence retry`, like a claim whose worker died
    └── PermanentError        never retried; `event` says what it means for the lead:
                              "bounced"        SMTP 5xx recipient rejection
                              "sms_stop"       Twilio 21610: the recipient opted out
                              "phone_invalid"  Twilio 21211: not a valid To number
                              "not_mobile"     Twilio 21614: the number cannot take SMS
                              None             any other permanent failure (touch failed, reason kept)

A transport must treat a message as unsent whenever it raises a TransientError:
that is what makes a retry safe.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


class SendError(Exception):
    def __init__(self, message: str, code: str | int | None = None):
        super().__init__(message)
        self.code = code

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base} (code {self.code})" if self.code is not None else base


class TransientError(SendError):
    """Worth trying again later."""


class UncertainError(SendError):
    """The provider may have accepted the message: resending blindly could contact a prospect twice."""


class PermanentError(SendError):
    """Trying again cannot help; `event` tells the rules what happened."""

    def __init__(self, message: str, code: str | int | None = None, event: str | None = None):
        super().__init__(message, code)
        self.event = event


@dataclass(frozen=True)
class OutgoingEmail:
    touch_id: int
    to: str
    to_name: str | None
    from_addr: str
    from_name: str
    subject: str
    text: str
    html: str
    message_id: str  # "<...@domain>", generated and recorded before sending
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()  # oldest first
    unsubscribe_url: str | None = None
    unsubscribe_mailto: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OutgoingSms:
    touch_id: int
    to: str  # E.164
    from_: str  # E.164 of the sender (the lead's owner)
    body: str
    status_callback: str | None = None


@dataclass(frozen=True)
class Receipt:
    touch_id: int
    provider_id: str | None = None  # Message-ID for email, Twilio SID for SMS
    error: SendError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class EmailTransport(Protocol):
    """Sends emails. The dispatcher may have several `send_batch` calls running at once
    (one slice of a batch goes out while the next is rendered), so a transport shares its
    connections between them and never mixes up their receipts."""

    async def send_batch(self, messages: Sequence[OutgoingEmail]) -> list[Receipt]: ...

    async def aclose(self) -> None: ...


class SmsTransport(Protocol):
    """Sends SMS; like EmailTransport, it takes concurrent `send_batch` calls."""

    async def send_batch(self, messages: Sequence[OutgoingSms]) -> list[Receipt]: ...

    async def aclose(self) -> None: ...


def missing_secrets(channel: str, missing: Sequence[str], keys: str) -> str:
    """The message for credentials a transport needs and the environment lacks (both transports say it alike)."""
    verb = "is" if len(missing) == 1 else "are"
    return (
        f"{channel}, but {' and '.join(missing)} {verb} not set in the environment; "
        f"set them, or name other variables in {keys}"
    )
