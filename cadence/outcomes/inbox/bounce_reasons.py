"""Hard or soft: why a delivery failed, decided the way Sisimai decides it.

A bounce is hard only when the address itself cannot receive mail: the user or the domain
does not exist, the mailbox has moved, the domain accepts no mail. Everything else (a full
mailbox, a server that gave up retrying, a rate limit, and above all a block for policy,
spam, reputation, SPF/DKIM/DMARC, relaying or content, even with a 5.x.x status) is soft,
because marking a good address invalid over one blocked message loses a prospect for ever.

The enhanced status code (RFC 3463) alone is not enough: many servers answer a generic
5.0.0 or 5.5.0 and say the real reason in words ("user unknown", "mailbox full", "blocked
using Spamhaus"), and some say 5.1.1 about a block. So the words are read first, through an
ordered table of patterns (policy words come before address words, so "5.1.1 ... blocked"
stays soft); the status code decides only when the words say nothing; and a temporary
failure (4.x.x, or `Action: delayed`) is never hard whatever it says. A 5.7.x status vetoes
a hard reading of its words: policy codes speak of the message or the sender, not the address.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cadence.outcomes.inbox.model import HARD_REASONS, BounceReason

R = BounceReason

# Ordered: the first pattern that matches the diagnostic text names the reason.
_TEXT: tuple[tuple[BounceReason, str], ...] = (
    # Microsoft 365's directory-based edge blocking: "Access denied. AS(201806281)" means no such user.
    (R.USER_UNKNOWN, r"as\(201806281\)|resolver\.adr\.recip(?:ient)?notfound|recipnotfound"),
    # The sender's side: its own domain or address was refused (not the recipient's).
    (
        R.POLICY,
        r"sender address rejected|suppression list|"
        r"sender (?:domain|address) (?:is )?(?:unknown|not found|does not exist|"
        r"invalid)|domain of sender address|unverified sender|sender verify failed|mail from .{0,60}rejected",
    ),
    (
        R.AUTH,
        r"\bspf\b|\bdkim\b|\bdmarc\b|unauthenticated|authentication (?:is )?(?:required|failed|failure)|"
        r"not authenticated|resolver\.rst\.authrequired|\b5\.7\.(?:2[0-7])\b",
    ),
    (
        R.BLOCKED,
        r"spamhaus|spamcop|barracuda|sorbs|\brbl\b|dnsbl|black[- ]?list|block[- ]?list|blocked|"
        r"(?:poor|bad|low) (?:ip |sender |domain )?reputation|listed (?:at|on|in|by)|"
        r"client host .{0,60}(?:rejected|refused)|ip .{0,40}(?:not allowed|refused|rejected)|"
        r"banned|denylist|deny list",
    ),
    (R.SPAM, r"\bspam\b|junk mail|bulk mail|unsolicited|suspicious|phish"),
    (
        R.CONTENT,
        r"virus|malware|message content|content (?:rejected|filter|policy)|attachment (?:type )?(?:not |is )"
        r"?(?:allowed|rejected|blocked)|prohibited attachment|illegal attachment",
    ),
    (
        R.RELAY,
        r"relay(?:ing)? (?:access )?(?:denied|not (?:permitted|allowed))|unable to relay|we do not relay|"
        r"not permitted to relay|no relaying|relay not permitted",
    ),
    (
        R.RATE_LIMITED,
        r"rate limit|rate that prevents|too many (?:messages|connections|recipients|e-?mails|"
        r"concurrent)|throttl|sending (?:quota|limit)|exceeded .{0,30}(?:rate|sending)|"
        r"(?:temporarily )?deferred due to|try (?:again )?later.{0,40}(?:volume|rate)|sent too many",
    ),
    (
        R.TOO_BIG,
        r"message (?:is )?too (?:big|large)|message size (?:exceeds|limit)|exceeds (?:the )?(?:maximum )?"
        r"(?:allowed )?(?:message )?size|size exceeds|message length exceeds",
    ),
    (
        R.MAILBOX_FULL,
        r"mailbox (?:is )?full|over ?quota|quota (?:exceeded|full)|exceeded (?:storage|(?:the |its )?"
        r"quota)|inbox is full|mailbox size limit|storage (?:limit|quota|space)|out of storage|"
        r"insufficient (?:disk )?space|mail ?box has exceeded|postfach (?:ist )?voll|boîte pleine|"
        r"boîte aux lettres (?:est )?pleine|buzón lleno",
    ),
    (
        R.SUSPENDED,
        r"(?:mailbox|account|user|address) (?:has been |is |was )?(?:temporarily )?(?:disabled|suspended|"
        r"inactive|deactivated|not active|locked|blocked for inactivity)|"
        r"(?:is|has been) (?:temporarily )?(?:disabled|suspended|deactivated)|mailbox (?:is )?disabled|"
        r"this (?:mailbox|account) is disabled|account (?:is )?(?:on hold|frozen)|account has expired",
    ),
    (
        R.NOT_ACCEPTING,
        r"(?:does not|doesn't|do not) accept (?:any )?(?:e-?)?mail|not accepting (?:any )?mail|"
        r"null mx|accepts no mail|no mail service",
    ),
    (
        R.HAS_MOVED,
        r"has moved|address (?:has )?changed|no longer (?:with|at) |is no longer (?:employed|working)|"
        r"left the (?:company|organi[sz]ation)",
    ),
    (
        R.HOST_UNKNOWN,
        r"host (?:or domain name )?not found|domain (?:name )?not found|unrout(?:e)?able (?:mail )?"
        r"domain|no such (?:domain|host)|domain (?:does not|doesn't) exist|name service error|nxdomain|"
        r"unknown (?:host|domain)|host unknown|domain unknown|no mx (?:record|host)|"
        r"dns (?:error|lookup failed).{0,80}(?:not found|nxdomain|no such)|"
        r"unrouteable address|domain (?:is )?(?:invalid|not valid)|no valid (?:mx|host)",
    ),
    (
        R.USER_UNKNOWN,
        r"user (?:is )?unknown|unknown (?:user|recipient|mailbox|local[- ]?part|address)|no such (?:user|"
        r"mailbox|recipient|address|account|person)|(?:user|recipient|mailbox|address|account|addressee) "
        r"(?:does not|doesn't|did not) exist|does not exist|mailbox not found|user not found|"
        r"recipient not found|recipient (?:address )?unknown|invalid (?:recipient|mailbox|address|user)|"
        r"not a valid (?:mailbox|recipient|user|address)|addressee unknown|no mailbox here|"
        r"no account by that name|address (?:you entered )?(?:could not|couldn't|cannot) be found|"
        r"bad destination mailbox|(?:doesn't|does not) have an? [\w.-]+ account|"
        r"recipient (?:is )?not (?:recognized|recognised|listed)|name is not recognized|"
        r"address (?:is )?no longer (?:valid|available|active|in use)|account (?:has been )?(?:closed|"
        r"deleted|terminated|removed)|unbekannt|existiert nicht|n'existe pas|inexistente|no existe|"
        r"bestaat niet|sconosciuto|inesistente|no such local user|mailbox unavailable.{0,40}(?:invalid|unknown)",
    ),
    (
        R.EXPIRED,
        r"retry time(?:out)? (?:not reached|exceeded)|delivery time expired|message expired|expired|"
        r"could not be delivered within|have been unable to deliver|has not (?:yet )?been delivered|"
        r"gave up (?:after|on delivery)|too old|queue time",
    ),
    (
        R.NETWORK,
        r"connection (?:timed out|refused|reset|closed|dropped)|timed? ?out|network (?:is )?unreachable|"
        r"no route to host|lost connection|(?:could|can)not connect|unable to connect|tls (?:handshake )?"
        r"(?:failed|error|negotiation)|temporary (?:dns|lookup|name) (?:failure|error)|host (?:is )?unreachable",
    ),
    (
        R.SYSTEM,
        r"system error|internal (?:server )?error|mail loop|loop detected|too many hops|hop count exceeded|"
        r"local configuration error|configuration error|mailer error|insufficient system storage|"
        r"system (?:is )?(?:busy|full|not available)|service (?:is )?(?:temporarily )?unavailable",
    ),
    (
        R.POLICY,
        r"policy|not (?:authori[sz]ed|permitted|allowed)|unauthori[sz]ed|prohibited|access denied|"
        r"administrative(?:ly)? prohibit|restricted|refused|rejected for policy",
    ),
)
_PATTERNS = tuple((reason, re.compile(pattern, re.IGNORECASE)) for reason, pattern in _TEXT)

# RFC 3463 (and RFC 7505, RFC 7372): the exact code first, then its subject ("5.7").
_STATUS: dict[str, BounceReason] = {
    "1.1": R.USER_UNKNOWN,
    "1.2": R.HOST_UNKNOWN,
    "1.3": R.USER_UNKNOWN,
    "1.6": R.HAS_MOVED,
    "1.10": R.NOT_ACCEPTING,
    "1.7": R.POLICY,
    "1.8": R.POLICY,
    "2.1": R.SUSPENDED,
    "2.2": R.MAILBOX_FULL,
    "2.3": R.TOO_BIG,
    "3.4": R.TOO_BIG,
    "4.4": R.HOST_UNKNOWN,
    "4.6": R.SYSTEM,
    "4.7": R.EXPIRED,
    "5.3": R.RATE_LIMITED,
    "7.1": R.POLICY,
    "7.7": R.CONTENT,
    "7.28": R.RATE_LIMITED,
    **{f"7.{n}": R.AUTH for n in range(20, 28)},
}
_STATUS_SUBJECT: dict[str, BounceReason] = {
    "2": R.SYSTEM,
    "3": R.SYSTEM,
    "4": R.NETWORK,
    "5": R.SYSTEM,
    "6": R.CONTENT,
    "7": R.POLICY,
}

_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.]|\.\d)")
_REPLY = re.compile(r"(?<![\d.])([245])\d\d(?=[\s-])")


@dataclass(frozen=True)
class Judgement:
    """One failed recipient's verdict: hard or soft, the reason, and the code it was read from."""

    hard: bool
    reason: BounceReason
    status: str  # the most specific enhanced status code found, or ""
    temporary: bool
    from_words: bool  # the reason was read from the text (else from the status code, or nothing)


def status_code(status: str, text: str) -> str:
    """The most telling enhanced status code: the report's own unless it is generic (x.0.0) and the words say more."""
    own = _ENHANCED.search(status or "")
    said = [m[0] for m in _ENHANCED.finditer(text or "")]
    code = own[0] if own else (said[0] if said else "")
    if not code or code.endswith(".0.0"):
        specific = next((c for c in said if not c.endswith(".0.0")), "")
        if specific and (not code or specific[0] == code[0]):
            return specific
    return code


def _reason_of_status(code: str) -> BounceReason | None:
    if not code:
        return None
    _, subject, detail = code.split(".")
    return _STATUS.get(f"{subject}.{detail}") or (None if detail == "0" else _STATUS_SUBJECT.get(subject))


def reason_in_words(text: str) -> BounceReason | None:
    """The first reason the table finds in a server's or a notice's words."""
    return next((reason for reason, pattern in _PATTERNS if pattern.search(text or "")), None)


def judge(status: str, action: str, diagnostic: str) -> Judgement:
    """Hard or soft for one recipient, from its status code, its DSN action and the server's words."""
    text = re.sub(r"\s+", " ", diagnostic or "")
    code = status_code(status, text)
    delayed = (action or "").lower() == "delayed"
    reply = _REPLY.search(text)
    reply_class = reply[1] if reply else ""
    temporary = delayed or code.startswith("4") or (not code and reply_class == "4")
    words = reason_in_words(text)
    by_code = _reason_of_status(code)
    reason = words or by_code or (R.DELAYED if delayed else R.UNDETERMINED)
    if reason in HARD_REASONS and code[2:4] == "7.":
        reason = by_code or R.POLICY  # a 5.7.x code speaks of policy, not of the address, whatever the words add
    if delayed and not words and reason in (R.UNDETERMINED, R.NETWORK, R.SYSTEM):
        reason = R.DELAYED
    hard = reason in HARD_REASONS and not temporary
    return Judgement(hard, reason, code, temporary, words is not None and reason is words)
