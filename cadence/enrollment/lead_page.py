"""One lead as a rep works it: its details, what the planner has next, and its whole story with the words sent
and received (the workspace's lead page).

The story is the lead's history, newest first, each row told in a line a rep reads ("Email intro:
sent") with its remaining detail as facts. A row that names a touch carries that touch's subject
and body, and a row that names an inbound message carries the mail as read (sender, subject,
text), each once, on the first row that names it, so the page shows what was actually sent and
what the prospect actually wrote. Inbound mail or sent touches that no history row names (none
should exist, but a page that hid them would lie) are added as rows of their own.

What comes next is the planner's: each live enrollment's remaining steps, planned as the engine
would if every step happens when due (`Planner.due_after`), starting from the enrollment's
`next_due_at`, from now for a step in progress, or from the end of a pause as the sweep would
resume it. Everything is read in five statements (`cadence.store.lead_pages.story`), so a lead
with hundreds of history rows opens as fast as a new one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from string import Formatter
from typing import TYPE_CHECKING, Any

from cadence.clock import parse_instant
from cadence.enrollment.status import UnknownLead
from cadence.names import EnrollmentState, HistoryKind, TouchStatus
from cadence.plan.timing import parse_time_of_day
from cadence.store import lead_pages
from cadence.store.rows import EnrollmentRow, HistoryRow, InboundRow, LeadRow, TouchRow

if TYPE_CHECKING:
    from cadence.app import App
    from cadence.plan.planner import Planner

__all__ = ["EnrollmentLine", "Fact", "LeadPage", "Moment", "Planned", "UnknownLead", "lead_page", "owner_of"]

K = HistoryKind
TITLES: dict[str, str] = {
    K.CREATED: "Lead created",
    K.OWNER_ASSIGNED: "Owner assigned: {owner}",
    K.ENROLLED: "Enrolled in {sequence}",
    K.TOUCH: "{channel} {step}: {status}",
    K.TASK_OPENED: "{channel} task {step} opened for {owner}",
    K.DISPOSITION: "Logged {label} on {step}",
    K.EVENT: "Event: {event}",
    K.FINISHED: "Sequence finished: {outcome}",
    K.MIGRATED: "Moved to a new version of {sequence}",
    K.DELIVERY: "{step}: carrier says {delivery}",
    K.SMS_HELP: "SMS help request: {keyword}",
    K.SENDER_FILTERED: "Carrier filtered {sender}",
    K.INBOUND_MAIL: "Mail read from the inbox: {kind}",
}
# Shown as the moment's sender, subject and text, or as the touch or mail they name: never as facts.
WORDS = ("text", "subject", "from", "replied_by", "note", "touch", "task", "message_id")
WAITING = {
    TouchStatus.TASK_OPEN: "task open",
    TouchStatus.SENDING: "being sent",
    TouchStatus.SCHEDULED: "retrying",
    TouchStatus.UNKNOWN: "unknown: check it",
}


@dataclass(frozen=True, slots=True)
class Fact:
    """One detail of a moment; `at` is set when the value is a time (shown in the lead's zone)."""

    label: str
    text: str
    at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Moment:
    """One row of the story: what happened, why, and the words sent or received."""

    at: datetime
    kind: str
    title: str
    cause: str | None = None
    facts: tuple[Fact, ...] = ()
    sender: str | None = None
    subject: str | None = None
    text: str | None = None


@dataclass(frozen=True, slots=True)
class Planned:
    """A step still to come. `due` is None while its enrollment is paused with no end, or the step is in progress."""

    sequence: str
    step: str
    channel: str
    title: str | None
    due: datetime | None
    state: str  # planned, paused, or what the step in progress is waiting on (task open, retrying, ...)


@dataclass(frozen=True, slots=True)
class EnrollmentLine:
    sequence: str
    kind: str
    state: str
    version: int
    enrolled_at: datetime
    paused_until: datetime | None
    finished_at: datetime | None
    outcome: str | None


@dataclass(frozen=True, slots=True)
class LeadPage:
    lead: LeadRow
    zone: str  # the lead's IANA zone (config.yaml's default when it has none): every time is shown in it
    enrollments: list[EnrollmentLine]  # oldest first
    upcoming: list[Planned]  # each live enrollment's remaining steps in order, the oldest enrollment first
    timeline: list[Moment]  # newest first
    sequences: list[str]  # the catalog, for "enroll into"
    owners: list[str]  # the senders, for "reassign to"
    earlier: int = 0  # moments older than the timeline shows (the page was asked for the newest only)

    @property
    def live(self) -> bool:
        return any(e.state != EnrollmentState.FINISHED for e in self.enrollments)

    @property
    def paused(self) -> bool:
        return any(e.state == EnrollmentState.PAUSED for e in self.enrollments)


class _Blank(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return ""


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in Formatter().parse(template) if name}


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return "; ".join(str(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items() if v is not None)
    return str(value)


def _fact(label: str, value: Any) -> Fact:
    if isinstance(value, datetime):
        return Fact(label.replace("_", " "), value.isoformat(), value)
    if isinstance(value, str) and len(value) >= 20 and value[4:5] == "-" and "T" in value:
        try:
            return Fact(label.replace("_", " "), value, parse_instant(value))
        except ValueError:
            pass
    return Fact(label.replace("_", " "), _shown(value))


def _title(kind: str, detail: Mapping[str, Any]) -> tuple[str, set[str]]:
    """The line a rep reads for a history row, and the detail keys it already says."""
    if kind == K.UPDATED and isinstance(detail.get("owner"), list) and len(detail["owner"]) == 2:
        old, new = detail["owner"]
        return f"Owner changed from {old or 'nobody'} to {new}", {"owner"}
    if kind == K.ACTION:
        if "actions" in detail:
            return f"What was done about {str(detail.get('event', 'it')).replace('_', ' ')}", {"event"}
        what = str(detail.get("action", "action")).capitalize()
        named = detail.get("sequence") or detail.get("sequences")
        return (f"{what} {_shown(named)}" if named else what), {"action", "sequence", "sequences"}
    if kind == K.TASK_OPENED:
        owner = detail.get("owner") or "nobody"
        if detail.get("title"):
            return f"Task for {owner}: {detail['title']}", {"title", "owner", "channel"}
        if detail.get("channel") == "task":  # not "Task task li-1 opened"
            return f"Task {detail.get('step', '')} opened for {owner}", {"step", "owner", "channel"}
    template = TITLES.get(kind, kind.replace("_", " ").capitalize())
    values = _Blank({k: str(v).replace("_", " ") for k, v in detail.items() if v is not None})
    line = " ".join(template.format_map(values).split()).strip(" :")
    return line[:1].upper() + line[1:], _fields(template)


def _moment(row: HistoryRow, touch: TouchRow | None, mail: InboundRow | None) -> Moment:
    detail = row.detail or {}
    if touch is not None and "channel" not in detail:
        detail = {**detail, "channel": touch.channel}
    title, said = _title(row.kind, detail)
    shown = {k: v for k, v in detail.items() if v not in (None, "", [], {}) and k not in said and k not in WORDS}
    facts = tuple(_fact(k, v) for k, v in shown.items())  # a `continue` rule's empty action list says nothing
    sender = (mail.sender if mail else None) or detail.get("from") or detail.get("replied_by")
    subject = (mail.subject if mail else None) or detail.get("subject")
    text = (mail.text if mail else None) or detail.get("text") or detail.get("note")
    if touch is not None:
        subject, text = touch.subject or subject, touch.body or text
    return Moment(row.at, row.kind, title, row.cause, facts, sender, subject, text)


def _story(
    history: list[HistoryRow], touches: list[TouchRow], mail: list[InboundRow], limit: int | None = None
) -> tuple[list[Moment], int]:
    """Every history row, newest first, with each touch's and each message's words on the first row naming it;
    with `limit`, only the newest `limit` moments are built, and the count of older ones comes back too.

    Which row carries a touch's words is decided oldest first over the whole story, so it is the same
    whether the page shows 100 moments or all of them; only building the older ones is skipped.
    """
    by_touch = {t.id: t for t in touches}
    by_message = {m.message_id: m for m in mail}
    told_touches: set[int] = set()
    told_mail: set[str] = set()
    entries: list[tuple[datetime, int, Callable[[], Moment]]] = []
    for order, row in enumerate(history):
        detail = row.detail or {}
        touch_id = detail.get("touch")
        touch = by_touch.get(touch_id) if isinstance(touch_id, int) and touch_id not in told_touches else None
        if touch is not None:
            told_touches.add(touch.id)
        message_id = detail.get("message_id")
        message = None
        if isinstance(message_id, str):
            if message_id in told_mail:  # its words are on an earlier row already
                row = row._replace(detail={k: v for k, v in detail.items() if k != "text"})
            else:
                message = by_message.get(message_id)
                told_mail.add(message_id)
        entries.append((row.at, order, partial(_moment, row, touch, message)))
    extra = len(history)
    for m in mail:
        if m.message_id not in told_mail:
            entries.append((m.read_at, extra, partial(_mail_moment, m)))
            extra += 1
    for t in touches:
        if t.id not in told_touches and t.status in (TouchStatus.SENT, TouchStatus.DONE, TouchStatus.FAILED):
            entries.append((t.sent_at or t.done_at or t.due_at, extra, partial(_touch_moment, t)))
            extra += 1
    entries.sort(key=lambda item: (item[0], item[1]), reverse=True)
    kept = entries if limit is None else entries[:limit]
    return [build() for _, _, build in kept], len(entries) - len(kept)


def _mail_moment(m: InboundRow) -> Moment:
    title = f"Mail read from the inbox: {m.kind.replace('_', ' ')}"
    facts = tuple(_fact(k, v) for k, v in (("action", m.action), ("until", m.until)) if v is not None)
    return Moment(m.read_at, "inbound_mail", title, m.reason, facts, m.sender, m.subject, m.text)


def _touch_moment(t: TouchRow) -> Moment:
    at = t.sent_at or t.done_at or t.due_at
    title = f"{t.channel.capitalize()} {t.step_id}: {t.status}"
    facts = tuple(_fact(k, v) for k, v in (("sequence", t.sequence_id), ("error", t.error)) if v)
    return Moment(at, HistoryKind.TOUCH, title, None, facts, None, t.subject, t.body)


def _resumed_at(planner: Planner, index: int, at: datetime, lead_id: str) -> datetime:
    """When step `index` is due if its enrollment is resumed at `at` (what the sweep does at a pause's end)."""
    step = planner.sequence.steps[index]
    cal = planner.calendar
    return cal.first_slot_from(
        cal.local_date(at),
        earliest=at,
        at=parse_time_of_day(step.at) if step.at else None,
        spread_key=None if step.immediate else lead_id,
        window=planner.window_for(step),
    )


def _upcoming(planner: Planner, e: EnrollmentRow, pending: TouchRow | None, now: datetime) -> list[Planned]:
    """The enrollment's remaining steps, the first with its state, each later one planned after the one before."""
    steps = planner.sequence.steps
    index = e.next_index
    if index is None or index >= len(steps):
        return []
    paused = e.state == EnrollmentState.PAUSED
    due: datetime | None
    if pending is not None and pending.status in WAITING:
        state = WAITING[TouchStatus(pending.status)]
        due = e.next_due_at if pending.status == TouchStatus.SCHEDULED and not paused else None
        anchor: datetime | None = max(now, due or now, e.paused_until or now)
    elif paused:
        state = "paused"
        due = _resumed_at(planner, index, max(e.paused_until, now), e.lead_id) if e.paused_until else None
        anchor = due
    else:
        state, due = "planned", e.next_due_at
        anchor = due or now
    out = [Planned(e.sequence_id, steps[index].id, steps[index].channel, steps[index].title, due, state)]
    for later in range(index + 1, len(steps)):
        after = planner.due_after(later - 1, anchor, e.lead_id) if anchor is not None else None
        step = steps[later]
        out.append(Planned(e.sequence_id, step.id, step.channel, step.title, after, "paused" if paused else "planned"))
        anchor = after
    return out


def lead_page(app: App, lead_id: str, *, newest: int | None = None) -> LeadPage:
    """Everything the lead page shows; raises UnknownLead. With `newest`, the timeline holds only the newest
    moments (a lead of many months opens fast; the page links to the whole story)."""
    now = app.clock.now()
    with app.engine.connect() as conn:
        found = lead_pages.story(conn, lead_id)
        if found is None:
            raise UnknownLead(lead_id)
        lead = found.lead
        by_touch = {t.id: t for t in found.touches}
        lines: list[EnrollmentLine] = []
        upcoming: list[Planned] = []
        for e, version in found.enrollments:
            lines.append(
                EnrollmentLine(
                    e.sequence_id, e.kind, e.state, version, e.enrolled_at, e.paused_until, e.finished_at, e.outcome
                )
            )
            if e.state == EnrollmentState.FINISHED:
                continue
            spec, _ = app.specs.get(conn, e.version_id)
            planner = app.planner(spec, lead.timezone, lead.country, lead.region)
            pending = by_touch.get(e.pending_touch_id) if e.pending_touch_id is not None else None
            upcoming += _upcoming(planner, e, pending, now)
    timeline, earlier = _story(found.history, found.touches, found.mail, newest)
    return LeadPage(
        lead,
        lead.timezone or app.settings.timezone,
        lines,
        upcoming,
        timeline,
        sorted(app.catalog.sequences),
        [s.id for s in app.settings.senders],
        earlier,
    )


def owner_of(app: App, lead_id: str) -> str | None:
    """Whose lead this is (who may act on it besides a manager); raises UnknownLead."""
    with app.engine.connect() as conn:
        exists, owner = lead_pages.owner_of(conn, lead_id)
    if not exists:
        raise UnknownLead(lead_id)
    return owner
