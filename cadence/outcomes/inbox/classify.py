"""What an inbound message is, and why: bounce, soft bounce, out of office, auto-reply, unsubscribe, reply.

The order is the order of confidence. A delivery report is judged first (its words and codes
decide hard or soft, see `bounce_reasons`). Then software's own marks: a message carrying
RFC 3834's `Auto-Submitted`, Microsoft's or a list's headers, or an autoresponder's subject
("Automatic reply:", "Abwesenheitsnotiz") is an out-of-office reply when it reads as an
absence, and otherwise an auto-reply. Words alone make an absence only in the subject: a
person who writes "I'm out until Monday, but yes, let's talk" has replied. A person asking to
be removed is an unsubscribe request; the check reads only their own words (quoted history is
stripped), so our footer quoted back under a reply never counts. Everything else is a reply.
"""

from __future__ import annotations

import re

from cadence.outcomes.inbox.bounce_reasons import Judgement, judge, reason_in_words
from cadence.outcomes.inbox.dates import read_return_date
from cadence.outcomes.inbox.model import BounceReason, BounceReport, FailedRecipient, Inbound, InboundKind, Verdict
from cadence.outcomes.inbox.phrases import ABSENCE_SUBJECT, AUTO_BODY, AUTO_SUBJECT, absence, unsubscribe

K = InboundKind
_FAILING = frozenset({"failed", "delayed"})
_OPT_OUT_WORDS = frozenset(
    {
        "stop",
        "remove",
        "unsubscribe",
        "remove me",
        "opt out",
        "abmelden",
        "austragen",
        "désabonner",
        "désinscrire",
        "baja",
        "descadastrar",
        "afmelden",
        "uitschrijven",
        "cancellami",
        "rimuovimi",
    }
)
_GREETING = re.compile(
    r"^\s*(?:hi|hello|hey|dear|good (?:morning|afternoon)|hallo|guten (?:morgen|tag)|liebe|lieber|sehr geehrte\w*"
    r"|bonjour|salut|hola|buenos días|estimad[oa]|olá|oi|prezad[oa]|hoi|beste|ciao|buongiorno|gentile)\b"
    r"[^.!?]{0,40}[,!:]?\s*$",
    re.IGNORECASE,
)  # "Hi Alice," says nothing the owner's task should show
_REPLY_PREFIX = re.compile(r"^\s*(?:(?:re|aw|sv|vs|antw|r|rif|res|ynt|odp|fw|fwd|wg|tr)\s*(?:\[\d+\])?\s*:\s*)+", re.I)


def _quote(text: str, limit: int = 160) -> str:
    flat = re.sub(r"\s+", " ", text).strip()
    return f'"{flat[: limit - 1]}…"' if len(flat) > limit else f'"{flat}"'


def _judged(report: BounceReport) -> list[tuple[FailedRecipient | None, Judgement]]:
    """Each failing recipient's judgement; the notice's own words stand in when a recipient's say nothing."""
    failing = [r for r in report.recipients if r.action in _FAILING or (not r.action and not r.status.startswith("2"))]
    out: list[tuple[FailedRecipient | None, Judgement]] = []
    for r in failing:
        verdict = judge(r.status, r.action, r.diagnostic)
        if not verdict.from_words and reason_in_words(report.notice):
            verdict = judge(r.status, r.action, f"{r.diagnostic} {report.notice}")
        out.append((r, verdict))
    if not out and (not report.recipients or not report.standard):
        out.append((None, judge("", "", report.notice)))  # a notice naming no address: its words decide
    return out


def _bounce(report: BounceReport) -> Verdict:
    judged = _judged(report)
    if not judged:
        actions = ", ".join(sorted({r.action or "no action" for r in report.recipients}))
        return Verdict(K.AUTO_REPLY, f"a delivery report that reports no failure ({actions})")
    recipient, j = next(((r, j) for r, j in judged if j.hard), judged[0])
    who = recipient.address if recipient else "the recipient (the notice names no address)"
    said = (recipient.diagnostic if recipient and recipient.diagnostic else report.notice) or "no diagnostic"
    code = f" {j.status}" if j.status else ""
    kind_of = "standard delivery report" if report.standard else "non-standard bounce notice"
    if j.hard:
        why = f"hard bounce of {who}: {j.reason.replace('_', ' ')}{code} ({kind_of}: {_quote(said)})"
        return Verdict(K.BOUNCE, why, j.reason)
    retrying = j.reason is BounceReason.DELAYED or bool(recipient and recipient.action == "delayed")
    if retrying:
        lead_in = f"delivery to {who} delayed, still being retried"
    elif j.temporary:
        lead_in = f"temporary failure for {who}"
    else:
        lead_in = f"soft bounce of {who}"
    why = f"{lead_in}: {j.reason.replace('_', ' ')}{code} ({kind_of}: {_quote(said)})"
    return Verdict(K.SOFT_BOUNCE, why, j.reason, retrying=retrying)


def classify(message: Inbound) -> Verdict:
    """The kind of message this is, with the reason in words a rep understands."""
    if message.bounce is not None:
        return _bounce(message.bounce)
    if message.report_type == "disposition-notification":
        return Verdict(K.AUTO_REPLY, "a read receipt (disposition notification)")
    if message.report_type == "feedback-report":
        return Verdict(K.AUTO_REPLY, "a complaint report from a mailbox provider (feedback-report)")
    subject = _REPLY_PREFIX.sub("", message.subject)
    marks = list(message.automatic)
    if AUTO_SUBJECT.match(subject) or AUTO_SUBJECT.match(message.subject):
        marks.append(f"subject {_quote(message.subject, 60)}")
    words = f"{message.subject}\n{message.text}"
    phrases = absence(words)
    if marks and (phrases or ABSENCE_SUBJECT.search(subject)):
        until = read_return_date(message.text, message.received_at, message.subject)
        said = _quote(phrases[0][1][0], 40) if phrases else _quote(message.subject, 40)
        back = f"back {until.isoformat()}" if until else "no return date found"
        return Verdict(
            K.OUT_OF_OFFICE, f"out-of-office reply ({marks[0]}; reads as an absence: {said}); {back}", until=until
        )
    if marks:
        return Verdict(K.AUTO_REPLY, f"automatic reply ({marks[0]}), not an absence")
    automated = AUTO_BODY.search(message.text)
    if automated:
        return Verdict(K.AUTO_REPLY, f"automatic reply: its text says {_quote(automated[0], 80)}")
    own_words = re.sub(r"https?://\S+", " ", message.text)
    whole = re.sub(r"[\s.!]+", " ", own_words).strip().lower()
    asked = unsubscribe(own_words) or unsubscribe(subject)
    if asked or whole in _OPT_OUT_WORDS:
        said = asked[0] if asked else whole
        return Verdict(K.UNSUBSCRIBE_REQUEST, f"asks to be removed: {_quote(said, 80)}")
    if not message.sender and not message.text:
        return Verdict(K.REPLY, f"nothing to read: {message.problem or 'no sender and no text'}")
    lines = [line for line in message.text.splitlines() if line.strip()]
    first = next((line for line in lines if not _GREETING.match(line)), lines[0] if lines else "")
    reason = f"a reply: {_quote(first, 100)}" if first else "a reply with no text of its own"
    if message.problem:
        reason += f" (read with problems: {message.problem})"
    return Verdict(K.REPLY, reason)
