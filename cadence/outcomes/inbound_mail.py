"""One inbound email, taken in: read, classified, matched to a lead and a touch, acted on, recorded once.

The IMAP poll, `cadence inbox process FILE.eml` and `POST /inbound/email` all come here, so a
message does the same thing whichever door it came through, and counts once across all three:
the first thing the transaction does is insert the message's id under a unique key.

Matching, in order of certainty: the touch the message answers (`In-Reply-To`/`References`);
for a bounce, the returned original's Message-ID, then the failed recipient's address; the
`From` address of a lead; and, for a reply with `inbox.same_company`, the leads in a live
sequence at the sender's company domain (never a free-mail domain). What each kind does is
the existing event and rule machinery (`replied`, `bounced`, `out_of_office`, `unsubscribed`),
so the rules in config.yaml decide here exactly as they do for a typed `cadence event`.

Processing is isolated: whatever goes wrong acting on one message rolls back its actions,
records it as `unmatched` with the reason, and the caller goes on with the next.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cadence.names import Channel, EnrollmentState, Event, HistoryKind, InboundKind
from cadence.outcomes.actions import notify_owner
from cadence.outcomes.events import on_event
from cadence.outcomes.inbox import Inbound, Verdict, classify, read_message
from cadence.outcomes.inbox.freemail import is_free_mail
from cadence.outcomes.return_dates import midnight
from cadence.store import enrollments, history, inbound, leads, mailboxes
from cadence.store.db import isolated
from cadence.store.rows import LeadRow, TouchRow

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from cadence.app import App

K = InboundKind


@dataclass(frozen=True)
class Processed:
    """What one message came to; `as_json` is the public `--json` shape."""

    file: str | None
    message_id: str
    kind: str
    lead: str | None
    touch: int | None
    action: str | None
    until: datetime | None
    reason: str
    classified_as: str = ""
    also: tuple[str, ...] = field(default=())  # colleagues whose sequences a same-company reply ended

    def as_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "message_id": self.message_id,
            "kind": self.kind,
            "lead": self.lead,
            "touch": self.touch,
            "action": self.action,
            "until": self.until.isoformat() if self.until else None,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Source:
    """Where a message came from: `imap` (with its mailbox, folder and UID), `file` or `http`."""

    kind: str
    label: str | None = None  # the file name `--json` prints
    mailbox: str | None = None
    folder: str | None = None
    uid: int | None = None
    uidvalidity: int | None = None  # with `uid`: the mailbox cursor moves past it in the same transaction


@dataclass(frozen=True)
class _Match:
    lead: LeadRow
    touch: TouchRow | None
    by: str
    colleagues: tuple[LeadRow, ...] = ()


def _stored_id(message: Inbound) -> str:
    if len(message.message_id) <= inbound.MAX_ID:
        return message.message_id
    return "sha256:" + hashlib.sha256(message.message_id.encode("utf-8", "replace")).hexdigest()


def take_in(app: App, raw: bytes, source: Source) -> Processed:
    """Act on one raw message, in one transaction; never raises for what the message is or says."""
    now = app.clock.now()
    # Every door reads the same first bytes (IMAP fetches no more), so a message without a
    # Message-ID hashes alike from a file, over HTTP and from the mailbox.
    raw = bytes(raw[: app.settings.inbox.max_message_kib * 1024])
    message = read_message(raw, now)
    verdict = classify(message)
    message_id = _stored_id(message)
    with app.engine.begin() as conn:
        row_id = inbound.first_reading(conn, _row(message, message_id, verdict, source, now))
        if source.mailbox and source.folder and source.uid is not None and source.uidvalidity is not None:
            mailboxes.advance(conn, source.mailbox, source.folder, source.uidvalidity, source.uid, now)
        if row_id is None:
            seen = inbound.by_message_id(conn, message_id)
            when = f" on {seen.read_at.isoformat()} as {seen.kind}" if seen else ""
            return Processed(source.label, message_id, K.DUPLICATE, None, None, None, None, f"read before{when}")
        try:
            with isolated(conn):
                processed = _act(conn, app, message, verdict, source, message_id, now)
        except Exception as exc:  # one message never stops a poll: it waits in the unmatched list, with why
            why = f"could not be acted on ({type(exc).__name__}: {exc}); {verdict.reason}"
            processed = Processed(source.label, message_id, K.UNMATCHED, None, None, None, None, why, verdict.kind)
        inbound.complete(
            conn,
            row_id,
            {
                "kind": str(processed.kind),
                "reason": processed.reason[:4000],
                "lead_id": processed.lead,
                "touch_id": processed.touch,
                "action": processed.action,
                "until": processed.until,
            },
        )
    return processed


def _row(message: Inbound, message_id: str, verdict: Verdict, source: Source, now: datetime) -> dict[str, Any]:
    bounce = message.bounce
    failed = next((r.address for r in bounce.recipients if r.address), None) if bounce else None
    return {
        "message_id": message_id,
        "read_at": now,
        "source": source.kind,
        "mailbox": source.mailbox,
        "folder": source.folder,
        "uid": source.uid,
        "sender": message.sender[:320] or None,
        "subject": message.subject or None,
        "kind": verdict.kind,
        "classified_as": verdict.kind,
        "reason": verdict.reason[:4000],
        "bounce_reason": verdict.bounce_reason,
        "retrying": verdict.retrying,
        "address": (failed or message.sender)[:320] or None,  # whom it is about: the failed recipient, else the sender
        "text": message.text or None,
    }


def _match(conn: Connection, app: App, message: Inbound, verdict: Verdict) -> _Match | str:
    """The lead (and touch) a message is about, or why none could be found."""
    touch = inbound.touch_answered(conn, message.thread_ids)
    if touch is not None:
        lead = leads.get(conn, touch.lead_id)
        if lead is not None:
            return _Match(lead, touch, "thread")
    if message.bounce is not None:
        original = message.bounce.original_message_id
        touch = inbound.touch_answered(conn, [original]) if original else None
        if touch is not None and (lead := leads.get(conn, touch.lead_id)) is not None:
            return _Match(lead, touch, "bounced message")
        for recipient in message.bounce.recipients:
            lead = inbound.lead_by_address(conn, recipient.address) if recipient.address else None
            if lead is not None:
                return _Match(lead, inbound.last_email_to(conn, lead.id), "failed recipient")
        named = ", ".join(r.address for r in message.bounce.recipients if r.address) or "no address"
        return f"a delivery report about no known touch or lead ({named})"
    if message.sender and (lead := inbound.lead_by_address(conn, message.sender)) is not None:
        return _Match(lead, inbound.last_email_to(conn, lead.id), "sender")
    domain = message.sender_domain
    if verdict.kind is K.REPLY and app.settings.inbox.same_company and domain and not is_free_mail(domain):
        at_company = inbound.live_leads_at(conn, domain)
        if at_company:
            first = at_company[0]
            return _Match(first, inbound.last_email_to(conn, first.id), "same company", tuple(at_company[1:]))
    who = message.sender or "no sender"
    return f"no lead or touch matches this message (from {who})"


def _act(
    conn: Connection, app: App, message: Inbound, verdict: Verdict, source: Source, message_id: str, now: datetime
) -> Processed:
    found = _match(conn, app, message, verdict)
    if isinstance(found, str):
        return Processed(source.label, message_id, K.UNMATCHED, None, None, None, None, f"{found}; {verdict.reason}",
                         verdict.kind)  # fmt: skip
    lead, touch = found.lead, found.touch
    detail: dict[str, Any] = {
        "source": "inbox",
        "message_id": message_id,
        "from": message.sender,
        "subject": message.subject,
        "matched_by": found.by,
    }
    cause = f"{verdict.kind.replace('_', ' ')} read from the inbox"
    until: datetime | None = None
    done: list[str] = []
    touch_id = touch.id if touch is not None else None
    if verdict.kind is K.BOUNCE:
        if touch is not None:
            inbound.mark_touch(conn, touch.id, "bounced", verdict.reason[:2000])
        detail |= {"reason": verdict.reason, "bounce_reason": verdict.bounce_reason}
        done = on_event(conn, app, lead.id, Event.BOUNCED, now, cause=cause, detail=detail, channel=Channel.EMAIL)
    elif verdict.kind is K.SOFT_BOUNCE:
        done = _soft_bounce(conn, app, lead, touch, message, verdict, detail, now)
    elif verdict.kind is K.OUT_OF_OFFICE:
        zone = lead.timezone or app.settings.timezone
        until = midnight(verdict.until, zone) if verdict.until else None
        detail |= {"text": message.text, "reason": verdict.reason}
        done = on_event(
            conn, app, lead.id, Event.OUT_OF_OFFICE, now, cause=cause, detail=detail, until=until,
            channel=Channel.EMAIL,
        )  # fmt: skip
        if until is None:
            until = _paused_until(conn, lead.id)
    elif verdict.kind is K.UNSUBSCRIBE_REQUEST:
        detail |= {"text": message.text}
        done = on_event(conn, app, lead.id, Event.UNSUBSCRIBED, now, cause=cause, detail=detail, channel=Channel.EMAIL)
    elif verdict.kind is K.AUTO_REPLY:
        history.add(conn, lead.id, now, HistoryKind.INBOUND_MAIL, {**detail, "kind": verdict.kind,
                    "reason": verdict.reason, "text": message.text}, cause)  # fmt: skip
        done = ["recorded; the sequence goes on"]
    else:
        done = _reply(conn, app, found, message, detail, now)
    return Processed(
        source.label, message_id, verdict.kind, lead.id, touch_id, "; ".join(done) or "recorded", until,
        verdict.reason if found.by != "same company" else f"{verdict.reason} (from {message.sender}, a colleague)",
        verdict.kind, tuple(c.id for c in found.colleagues),
    )  # fmt: skip


def _first_line(text: str) -> str:
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return line if len(line) <= 100 else line[:99] + "…"


def _reply(
    conn: Connection, app: App, found: _Match, message: Inbound, detail: dict[str, Any], now: datetime
) -> list[str]:
    done: list[str] = []
    for lead in (found.lead, *found.colleagues):
        company = f" ({lead.company})" if lead.company else ""
        said = _first_line(message.text) or message.subject or "(no text)"
        if found.by == "same company":
            who = message.sender_name or message.sender
            task = f"Reply from {who} at {lead.company or message.sender_domain} about {lead.name}: {said}"
            cause = f"reply from {message.sender}, a colleague at {message.sender_domain}"
        else:
            task = f"Reply from {lead.name}{company}: {said}"
            cause = "reply read from the inbox"
        info = {**detail, "text": message.text, "replied_by": message.sender}
        acted = on_event(
            conn, app, lead.id, Event.REPLIED, now, cause=cause, detail=info, channel=Channel.EMAIL, task=task
        )
        if not any(a.startswith("task opened") for a in acted):
            # The rules decide the sequence; a person always hears of a reply.
            target = enrollments.latest_of_lead(conn, lead.id)
            if target is not None:
                notify_owner(conn, lead, target.id, task, cause, now)
                acted.append(f"task opened for {lead.owner}")
        done += [f"{lead.id}: {a}" for a in acted] if found.colleagues else acted
    return done


def _soft_bounce(
    conn: Connection,
    app: App,
    lead: LeadRow,
    touch: TouchRow | None,
    message: Inbound,
    verdict: Verdict,
    detail: dict[str, Any],
    now: datetime,
) -> list[str]:
    reason = verdict.bounce_reason or "undetermined"
    if touch is not None:
        inbound.mark_touch(conn, touch.id, "soft_bounce", f"{reason}: {verdict.reason}"[:2000])
    history.add(conn, lead.id, now, HistoryKind.INBOUND_MAIL, {**detail, "kind": verdict.kind,
                "bounce_reason": reason, "reason": verdict.reason}, "soft bounce read from the inbox")  # fmt: skip
    done = [f"soft bounce recorded ({reason}); the address stays valid"]
    if verdict.retrying or not lead.email:
        return done
    streak = _streak(inbound.recent_kinds(conn, lead.email))
    limit = app.settings.inbox.soft_bounce_limit
    if streak >= limit:
        cause = f"{streak} soft bounces of {lead.email} in a row (inbox.soft_bounce_limit is {limit})"
        info = {**detail, "reason": verdict.reason, "soft_bounces": streak}
        done += on_event(conn, app, lead.id, Event.BOUNCED, now, cause=cause, detail=info, channel=Channel.EMAIL)
    else:
        done[0] += f", {streak} of {limit} in a row"
    return done


def _streak(kinds: list[tuple[str, bool]]) -> int:
    """Soft bounces in a row, newest first; delay warnings neither count nor break the run."""
    streak = 0
    for kind, retrying in kinds:
        if kind == K.SOFT_BOUNCE:
            if not retrying:
                streak += 1
        elif kind in (K.REPLY, K.OUT_OF_OFFICE, K.AUTO_REPLY, K.UNSUBSCRIBE_REQUEST):
            break  # mail got through to them since
    return streak


def _paused_until(conn: Connection, lead_id: str) -> datetime | None:
    paused = [e for e in enrollments.live_of_lead(conn, lead_id) if e.state == EnrollmentState.PAUSED]
    return max((e.paused_until for e in paused if e.paused_until), default=None)
