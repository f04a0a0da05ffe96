"""Hard only when the address itself cannot receive: the status code, the SMTP reply and the words read together."""

from __future__ import annotations

import pytest

from cadence.outcomes.inbox import BounceReason
from cadence.outcomes.inbox.bounce_reasons import judge, status_code

R = BounceReason

HARD = [
    ("5.1.1", "550 5.1.1 <x@y>: Recipient address rejected: User unknown in virtual mailbox table", R.USER_UNKNOWN),
    ("5.0.0", "550 Unknown user x@y", R.USER_UNKNOWN),  # a generic status, the reason in words
    ("5.5.0", "550 5.5.0 <x@y>: No such user here", R.USER_UNKNOWN),
    ("", "Sorry, no mailbox here by that name. (#5.1.1)", R.USER_UNKNOWN),
    ("5.0.0", "554 delivery error: dd This user doesn't have a yahoo.com account", R.USER_UNKNOWN),
    ("5.4.1", "550 5.4.1 Recipient address rejected: Access denied. AS(201806281)", R.USER_UNKNOWN),
    ("5.1.1", "550 5.1.1 RESOLVER.ADR.RecipNotFound; not found", R.USER_UNKNOWN),
    ("5.1.1", "", R.USER_UNKNOWN),  # no words at all: the code decides
    ("5.4.4", "Host or domain name not found. Name service error for name=x.example type=A", R.HOST_UNKNOWN),
    ("5.1.2", "550 Host unknown", R.HOST_UNKNOWN),
    ("", "Unrouteable address", R.HOST_UNKNOWN),
    ("5.0.0", "DNS Error: DNS type 'mx' lookup of x.example responded with code NXDOMAIN", R.HOST_UNKNOWN),
    ("5.1.6", "551 5.1.6 Recipient has moved", R.HAS_MOVED),
    ("5.1.10", "556 5.1.10 Recipient address has null MX", R.NOT_ACCEPTING),
    ("5.0.0", "Empfänger unbekannt", R.USER_UNKNOWN),
]

SOFT = [
    ("5.7.1", "554 5.7.1 Service unavailable; Client host [203.0.113.5] blocked using zen.spamhaus.org", R.BLOCKED),
    ("5.0.0", "553 5.7.1 [BL21] Connections will not be accepted from 203.0.113.5", R.POLICY),
    ("5.1.1", "550 5.1.1 Message rejected: blocked by reputation filter", R.BLOCKED),  # 5.1.1 about a block
    ("5.7.1", "550 5.7.1 <x@y>: Recipient address rejected: user unknown", R.POLICY),  # 5.7.x vetoes hard words
    ("5.7.26", "550-5.7.26 Unauthenticated email from acme.example is not accepted due to DMARC policy", R.AUTH),
    ("5.7.23", "550 5.7.23 SPF fail - not authorized", R.AUTH),
    ("5.7.1", "550 5.7.1 Unable to relay", R.RELAY),
    ("5.7.1", "554 5.7.1 Message rejected as spam by Content Filtering", R.SPAM),
    ("5.6.0", "554 5.6.0 virus found in attachment", R.CONTENT),
    ("5.2.2", "552 5.2.2 Mailbox full", R.MAILBOX_FULL),
    ("5.0.0", "552 Requested mail action aborted: exceeded storage allocation / over quota", R.MAILBOX_FULL),
    ("5.3.4", "552 5.3.4 Message size exceeds fixed maximum message size", R.TOO_BIG),
    ("5.2.1", "550 5.2.1 The email account that you tried to reach is disabled", R.SUSPENDED),
    ("5.1.8", "553 5.1.8 <alice@acme.example>: Sender address rejected: Domain not found", R.POLICY),
    ("5.0.0", "550 Administrative prohibition - envelope blocked", R.BLOCKED),
    ("5.5.0", "550 5.5.0 Requested action not taken: mailbox unavailable", R.UNDETERMINED),  # could be either
    ("5.0.0", "", R.UNDETERMINED),
    ("", "retry timeout exceeded", R.EXPIRED),
    ("5.4.7", "", R.EXPIRED),
    ("5.0.0", "Amazon SES did not send the message because it is on the suppression list", R.POLICY),
]


@pytest.mark.parametrize(("status", "said", "reason"), HARD, ids=[f"{s or '-'} {w[:40]}" for s, w, _ in HARD])
def test_a_bounce_is_hard_when_the_address_cannot_receive(status: str, said: str, reason: BounceReason) -> None:
    judgement = judge(status, "failed", said)
    assert judgement.hard and judgement.reason is reason


@pytest.mark.parametrize(("status", "said", "reason"), SOFT, ids=[f"{s or '-'} {w[:40]}" for s, w, _ in SOFT])
def test_policy_blocks_and_other_failures_stay_soft_even_with_a_5xx(
    status: str, said: str, reason: BounceReason
) -> None:
    judgement = judge(status, "failed", said)
    assert not judgement.hard and judgement.reason is reason


@pytest.mark.parametrize(
    ("status", "action", "said"),
    [
        ("4.1.1", "failed", "450 4.1.1 <x@y>: Recipient address rejected: User unknown (try later)"),
        ("5.1.1", "delayed", "User unknown"),
        ("", "failed", "451 Temporary local problem: user unknown, try again later"),
    ],
    ids=["4xx status", "action delayed", "4xx reply"],
)
def test_a_temporary_failure_is_never_hard_whatever_it_says(status: str, action: str, said: str) -> None:
    judgement = judge(status, action, said)
    assert judgement.temporary and not judgement.hard


def test_a_delay_with_nothing_said_is_a_delay() -> None:
    judgement = judge("4.0.0", "delayed", "")
    assert (judgement.hard, judgement.reason) == (False, R.DELAYED)


@pytest.mark.parametrize(
    ("status", "said", "code"),
    [
        ("5.0.0", "smtp; 550 5.1.1 user unknown", "5.1.1"),  # generic status: the words say more
        ("5.1.1", "550 5.7.1 blocked", "5.1.1"),  # a specific status is kept
        ("", "Remote host said: 550 5.2.2 full (#5.2.2)", "5.2.2"),
        ("", "host 192.0.2.153 said: 550 rejected", ""),  # an IP address is not a status code
        ("4.0.0", "550 5.1.1 gone", "4.0.0"),  # never trade a temporary class for a permanent one
    ],
)
def test_the_most_telling_status_code_is_used(status: str, said: str, code: str) -> None:
    assert status_code(status, said) == code
