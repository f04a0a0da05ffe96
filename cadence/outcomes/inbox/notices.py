"""Delivery reports: who failed, with what status and words, and which of our messages came back.

Standard reports (RFC 3464: `multipart/report; report-type=delivery-status`) are read with
the standard library: the `message/delivery-status` part's per-recipient fields
(Final-Recipient, Action, Status, Diagnostic-Code, Remote-MTA) and the returned message's
Message-ID from its `message/rfc822` or `text/rfc822-headers` part. Older MTAs (qmail, Exim
without DSNs, legacy Exchange, hand-written gateways) send plain-text notices instead: there
`flufl.bounce` finds the failed addresses, `X-Failed-Recipients` names them where Exim and
Gmail set it, and when both miss (a hand-written Exchange-style notice, say) the addresses
the notice names after "the following recipients" are taken. The words near each address
become its diagnostic, so the hard/soft decision reads the same kind of text either way.
"""

from __future__ import annotations

import re
from email.message import Message
from email.parser import HeaderParser
from email.utils import getaddresses

from flufl.bounce import all_failures

from cadence.outcomes.inbox.mime import Notes, content_type, header, message_ids, part_text
from cadence.outcomes.inbox.model import BounceReport, FailedRecipient
from cadence.outcomes.inbox.phrases import BOUNCE_SUBJECT, MAILER_LOCAL_PARTS, MAILER_NAMES

NOTICE_LIMIT = 4000  # characters of a notice's words kept for the decision and the record
MAX_RECIPIENTS = 20
_DIAGNOSTIC_SPAN = 600  # characters after an address that a plain notice spends on it

_STATUS_TYPES = frozenset({"message/delivery-status", "message/global-delivery-status"})
_HEADER_TYPES = frozenset({"text/rfc822-headers", "text/global-headers"})
_RETURNED_TYPES = frozenset({"message/rfc822", "message/global"})
_COPY_MARKER = re.compile(
    r"^[ \t]*[-=_*]*[ \t]*(?:below this line is a copy of the message|this is a copy of the message"
    r"|original message(?: follows)?\s*-*\s*$|the original message(?: headers?)? (?:follows|is attached|below)"
    r"|the header of the original message|returned (?:mail|message)(?: follows)?|original message headers:?"
    r"|unsent message below|message header follows|copy of the original message"
    r"|(?:die )?kopfzeilen der ursprünglichen nachricht|ursprüngliche nachricht|en-têtes du message d'origine"
    r"|message d'origine|mensaje original|mensagem original|oorspronkelijk bericht|messaggio originale)",
    re.IGNORECASE | re.MULTILINE,
)
_ADDRESS = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+", re.UNICODE)
_FOLLOWING = re.compile(
    r"following (?:recipients?|address(?:es)?|destination|e-?mail address)|did not reach|could not be delivered to"
    r"|delivery to the following|delivery has failed to these recipients|unable to deliver (?:your message )?to"
    r"|failed to deliver to|couldn't be delivered to|wasn't delivered to|konnte nicht zugestellt werden",
    re.IGNORECASE,
)
_STILL_TRYING = re.compile(
    r"will (?:continue|keep) (?:to )?(?:try|retry|attempt)|still (?:trying|being retried)|has not yet been delivered"
    r"|delivery (?:has been |is )?delayed|(?:has been|was|is being) delayed|warning: could not send"
    r"|warning (?:message )?only|no action is required on your part",
    re.IGNORECASE,
)
_GAVE_UP = re.compile(r"permanent(?:ly)?|given up|gave up|fatal error|failed permanently", re.IGNORECASE)


def is_notice(msg: Message, sender: str, sender_name: str, subject: str) -> bool:
    """A plain-text delivery failure notice: written by a mailer daemon, or titled as one."""
    local = sender.partition("@")[0]
    return (
        local in MAILER_LOCAL_PARTS
        or bool(MAILER_NAMES.search(sender_name))
        or bool(BOUNCE_SUBJECT.search(subject))
        or bool(header(msg, "X-Failed-Recipients"))
    )


def notice_words(body: str) -> str:
    """The notice's own words: everything before the copy of the returned message, capped."""
    marker = _COPY_MARKER.search(body)
    return (body[: marker.start()] if marker else body)[:NOTICE_LIMIT].strip()


def _field(block: Message, name: str) -> str:
    value = header(block, name)
    kind, sep, rest = value.partition(";")  # "rfc822; ann@x", "smtp; 550 ...", "dns; mx.example"
    return rest.strip() if sep and re.fullmatch(r"[\w.-]+", kind.strip()) else value


def _address(value: str) -> str:
    found = _ADDRESS.search(value)
    return found[0].lower().strip(".") if found else ""


def _status_blocks(part: Message, notes: Notes) -> list[Message]:
    """The delivery-status part's field blocks, parsed by the library or (when encoded) by hand."""
    payload = part.get_payload()
    blocks = [b for b in payload if isinstance(b, Message)] if isinstance(payload, list) else []
    if any(b.get("Final-Recipient") or b.get("Original-Recipient") or b.get("Action") for b in blocks):
        return blocks
    text = part_text(part, notes) if not isinstance(payload, list) else ""
    return [HeaderParser().parsestr(chunk) for chunk in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n")) if chunk]


def _dsn_recipients(parts: list[Message], notes: Notes) -> list[FailedRecipient]:
    found: list[FailedRecipient] = []
    for part in parts:
        if content_type(part) not in _STATUS_TYPES:
            continue
        for block in _status_blocks(part, notes):
            address = _address(_field(block, "Final-Recipient") or _field(block, "Original-Recipient"))
            if not address:
                continue
            status = re.search(r"\d\.\d{1,3}\.\d{1,3}", header(block, "Status"))
            found.append(
                FailedRecipient(
                    address=address,
                    action=header(block, "Action").lower().split(" ")[0],
                    status=status[0] if status else "",
                    diagnostic=_field(block, "Diagnostic-Code"),
                    remote_mta=_field(block, "Remote-MTA"),
                )
            )
    return found


def _flufl_addresses(msg: Message, notes: Notes) -> tuple[list[str], set[str]]:
    """flufl.bounce's failed addresses, permanent first, and the ones it called temporary."""
    try:
        temporary, permanent = all_failures(msg)
    except Exception as exc:  # its heuristics walk every part and can trip on hostile ones
        notes.add(f"flufl.bounce could not scan the notice ({type(exc).__name__})")
        return [], set()

    def text(items: frozenset[bytes]) -> list[str]:
        return sorted(a for raw in items if (a := _address(raw.decode("utf-8", "replace"))))

    return [*text(permanent), *text(temporary)], set(text(temporary))


def _named_addresses(words: str, ours: set[str]) -> list[str]:
    """Addresses a notice names after "the following recipients" (or anywhere, when it has no such phrase)."""
    lead_in = _FOLLOWING.search(words)
    scope = words[lead_in.end() :] if lead_in else words
    scope = re.sub(r"(?im)^[ \t]*(?:message-id|references|in-reply-to):.*$", " ", scope)  # ids look like addresses
    found = [a.lower().strip(".") for a in _ADDRESS.findall(scope)]
    return [a for a in dict.fromkeys(found) if a not in ours and a.partition("@")[0] not in MAILER_LOCAL_PARTS]


def _diagnostic_near(words: str, address: str, others: list[str]) -> str:
    """The notice's words about one address, from where it is named to where the next one is.

    The naming after "the following recipients" counts, when the notice has one: the address
    may appear before it too, in a "To:" line that says nothing about why delivery failed.
    """
    lead_in = _FOLLOWING.search(words)
    at = words.lower().find(address, lead_in.end() if lead_in else 0)
    at = words.lower().find(address) if at < 0 else at
    if at < 0:
        return ""
    span = words[at : at + _DIAGNOSTIC_SPAN]
    cut = min((i for other in others if other != address and (i := span.lower().find(other, 1)) > 0), default=None)
    return re.sub(r"\s+", " ", span[:cut]).strip()


def _notice_recipients(msg: Message, words: str, ours: set[str], notes: Notes) -> list[FailedRecipient]:
    flufl, temporary = _flufl_addresses(msg, notes)
    failed_header = [a for _, a in getaddresses([header(msg, "X-Failed-Recipients")]) if "@" in a]
    addresses = list(dict.fromkeys(a.lower() for a in [*flufl, *failed_header]))
    if not addresses:
        addresses = _named_addresses(words, ours)
    addresses = addresses[:MAX_RECIPIENTS]
    still_trying = bool(_STILL_TRYING.search(words)) and not _GAVE_UP.search(words)
    found = []
    for address in addresses:
        diagnostic = _diagnostic_near(words, address, addresses)
        status = re.search(r"(?<![\d.])[245]\.\d{1,3}\.\d{1,3}(?![\d.])", diagnostic)
        delayed = address in temporary or still_trying
        action = "delayed" if delayed else "failed"
        found.append(FailedRecipient(address, action, status[0] if status else "", diagnostic))
    return found


def _original_id(parts: list[Message], body: str, notes: Notes) -> str | None:
    """The Message-ID of the message that came back, from its returned headers."""
    for part in parts:
        kind = content_type(part)
        if kind in _RETURNED_TYPES:
            inner = part.get_payload()
            returned = inner[0] if isinstance(inner, list) and inner else None
            if isinstance(returned, Message) and (ids := message_ids(header(returned, "Message-ID"))):
                return ids[0]
        elif kind in _HEADER_TYPES:
            returned = HeaderParser().parsestr(part_text(part, notes))
            if ids := message_ids(header(returned, "Message-ID")):
                return ids[0]
    marker = _COPY_MARKER.search(body)
    copy = body[marker.start() :] if marker else body
    found = re.search(r"^[ \t]*message-id:\s*(<[^<>\s]+>)", copy, re.IGNORECASE | re.MULTILINE)
    return found[1] if found else None


def read_report(
    msg: Message, parts: list[Message], sender: str, sender_name: str, subject: str, body: str, notes: Notes
) -> BounceReport | None:
    """The delivery report this message is, or None when it is not one."""
    report_type = (msg.get_param("report-type", header="content-type") or "") if msg.is_multipart() else ""
    report_type = str(report_type).lower()
    standard = report_type == "delivery-status" or any(content_type(p) in _STATUS_TYPES for p in parts)
    if report_type and not standard:
        return None  # a read receipt (disposition-notification) or a complaint (feedback-report)
    if not standard and not is_notice(msg, sender, sender_name, subject):
        return None
    words = notice_words(body)
    if standard:
        recipients = _dsn_recipients(parts, notes)
    else:
        ours = {a.lower() for _, a in getaddresses([header(msg, "To"), header(msg, "Cc")]) if a} | {sender}
        recipients = _notice_recipients(msg, words, ours, notes)
    return BounceReport(tuple(recipients[:MAX_RECIPIENTS]), _original_id(parts, body, notes), standard, words)
