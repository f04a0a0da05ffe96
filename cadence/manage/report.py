"""What the sequences did: counts per sequence, per step and per A/B variant (read-only).

Everything is counted from the store with a handful of grouped queries; nothing
is printed here (`cadence.cli.analytics` prints, `cadence.manage.chart` draws).

**Attribution.** An event is credited to one touch, so that a step's replies sit
beside the touches that earned them:

- a touch *reached* the lead when it is an email or SMS with status `sent`
  (at its `sent_at`), or a call or task with status `done` (at its `done_at`);
- a reply (event `replied` or `sms_reply`) is credited to the lead's last touch
  that reached it at or before the reply, in any sequence (ties: the later touch
  id); the same rule credits `unsubscribed`, `sms_stop` and `meeting_booked`, and
  `bounced` unless the event names its own touch (the engine's bounces and
  delivery reports do: the email that bounced);
- a meeting is a `meeting_booked` event, or a call or task logged with the
  disposition code `meeting_booked`, credited to that task;
- each touch counts at most once per kind of event; an event with no touch
  before it is counted under `unattributed`. Owner notifications (tasks outside
  the steps) are never credited.

A step row counts touches: `replied` is the number of the step's touches credited
with a reply, and `reply_rate` = replied / touches that reached the lead (sent for
email and SMS, done for calls and tasks). A sequence row counts leads for events:
`replied` is the number of leads with a reply credited to one of its touches, and
`reply_rate` = replied / `contacted` (leads reached at least once).

**--since.** With `since`, every count keeps only what happened at or after it:
enrollments by `enrolled_at`, finishes by `finished_at`, touches by when they
happened (`sent_at` for sent messages and opened tasks, `done_at` otherwise), and
events that are themselves on or after `since` *and* credited to a touch on or
after it (so a rate never divides replies by touches from another period).
`active` and `paused` are the state now, whatever `since` says.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, and_, case, func, or_, select, type_coerce

from cadence.clock import parse_instant
from cadence.plan.timing import local_to_utc, zone
from cadence.spec.model import Sequence
from cadence.store.queries import EnrollmentT, TouchT
from cadence.store.tables import History, SequenceVersion
from cadence.store.types import UTCDateTime

if TYPE_CHECKING:
    from cadence.app import App

HistoryT: Any = History.__table__  # type: ignore[attr-defined]
VersionT: Any = SequenceVersion.__table__  # type: ignore[attr-defined]
MESSAGES = ("email", "sms")
TASKS = ("call", "task")
# History event name -> the report's count it feeds.
EVENT_COUNTS = {
    "replied": "replied",
    "sms_reply": "replied",
    "bounced": "bounced",
    "unsubscribed": "unsubscribed",
    "sms_stop": "sms_stops",
    "meeting_booked": "meetings",
}
EVENT_KEYS = ("replied", "bounced", "unsubscribed", "sms_stops", "meetings")
MEETING_DISPOSITION = "meeting_booked"
STATUS_COUNTS = {
    "sent": "sent",
    "failed": "failed",
    "skipped": "skipped",
    "done": "tasks_done",
    "expired": "tasks_expired",
}
TOUCH_KEYS = ("sent", "failed", "skipped", "tasks_opened", "tasks_done", "tasks_expired")


def since_instant(text: str, timezone: str) -> datetime:
    """`--since`: a date means its midnight in config.yaml's time zone; a full ISO time is taken as is."""
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        return parse_instant(text)
    return local_to_utc(day, 0, zone(timezone))


@dataclass
class Counts:
    """The touch and event counts of one step, one variant of it, or (summed) one sequence."""

    channel: str | None = None
    touches: Counter[str] = field(default_factory=Counter)
    dispositions: Counter[str] = field(default_factory=Counter)
    events: dict[str, set[Any]] = field(default_factory=lambda: defaultdict(set))

    @property
    def reached(self) -> int:
        if self.channel in MESSAGES:
            return self.touches["sent"]
        if self.channel in TASKS:
            return self.touches["tasks_done"]
        return self.touches["sent"] + self.touches["tasks_done"]

    def as_json(self, codes: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {key: self.touches[key] for key in TOUCH_KEYS}
        out["dispositions"] = {code: self.dispositions[code] for code in codes}
        out.update({key: len(self.events[key]) for key in EVENT_KEYS})
        out["reply_rate"] = _rate(out["replied"], self.reached)
        return out


@dataclass
class StepReport:
    step: str
    counts: Counts
    variants: dict[str, Counts] = field(default_factory=dict)

    def as_json(self, codes: list[str]) -> dict[str, Any]:
        return {
            "step": self.step,
            "channel": self.counts.channel,
            **self.counts.as_json(codes),
            "variants": [{"variant": v, **c.as_json(codes)} for v, c in sorted(self.variants.items())],
        }


@dataclass
class SequenceReport:
    sequence: str
    name: str | None
    kind: str | None
    steps: list[StepReport]
    enrolled: int = 0
    states: Counter[str] = field(default_factory=Counter)
    finished: Counter[str] = field(default_factory=Counter)
    contacted: int = 0
    leads: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))

    def as_json(self, codes: list[str]) -> dict[str, Any]:
        touches: Counter[str] = Counter()
        dispositions: Counter[str] = Counter()
        for step in self.steps:
            touches.update(step.counts.touches)
            dispositions.update(step.counts.dispositions)
        replied = len(self.leads["replied"])
        return {
            "sequence": self.sequence,
            "name": self.name,
            "kind": self.kind,
            "enrolled": self.enrolled,
            "active": self.states["active"],
            "paused": self.states["paused"],
            "finished": dict(sorted(self.finished.items())),
            "qualified": self.finished["qualified"],
            "disqualified": self.finished["disqualified"],
            "recycled": self.finished["recycled"],
            "contacted": self.contacted,
            **{key: touches[key] for key in TOUCH_KEYS},
            "dispositions": {code: dispositions[code] for code in codes},
            **{key: len(self.leads[key]) for key in EVENT_KEYS},
            "reply_rate": _rate(replied, self.contacted),
            "steps": [s.as_json(codes) for s in self.steps],
        }


@dataclass
class Report:
    since: datetime | None
    codes: list[str]
    sequences: list[SequenceReport]
    unattributed: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))

    def as_json(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat() if self.since else None,
            "sequences": [s.as_json(self.codes) for s in self.sequences],
            "unattributed": {key: len(self.unattributed[key]) for key in EVENT_KEYS},
        }


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _touch_time(t: Any) -> Any:
    """When a touch happened: sent messages at `sent_at`, tasks when done, anything else when settled."""
    return type_coerce(
        case(
            (t.c.channel.in_(MESSAGES), func.coalesce(t.c.sent_at, t.c.done_at)),
            else_=func.coalesce(t.c.done_at, t.c.sent_at),
        ),
        UTCDateTime(),
    )


def _reached(t: Any) -> Any:
    return and_(
        t.c.step_index >= 0,
        or_(
            and_(t.c.channel.in_(MESSAGES), t.c.status == "sent"),
            and_(t.c.channel.in_(TASKS), t.c.status == "done"),
        ),
    )


def build_report(app: App, *, sequence_id: str | None = None, since: datetime | None = None) -> Report:
    """Count everything the engine recorded, per sequence, step and variant (see the module doc)."""
    codes = list(app.settings.dispositions)
    with app.engine.connect() as conn:
        specs = _specs(conn, app)
        if sequence_id is not None:
            if sequence_id not in specs:
                known = ", ".join(sorted(specs)) or "none"
                raise KeyError(f"no sequence {sequence_id!r} in the store or in sequences/ (known: {known})")
            specs = {sequence_id: specs[sequence_id]}
        report = Report(since, codes, [])
        by_id = {
            sid: SequenceReport(sid, spec.name if spec else None, spec.kind if spec else None, [])
            for sid, spec in specs.items()
        }
        steps: dict[tuple[str, str], StepReport] = {}
        for sid, spec in specs.items():
            for step in spec.steps if spec else ():
                steps[(sid, step.id)] = StepReport(step.id, Counts(step.channel))

        def step_of(sid: str, step_id: str, channel: str | None) -> StepReport | None:
            if sid not in by_id:
                return None
            if (sid, step_id) not in steps:  # a step since removed from the file: still reported, last
                steps[(sid, step_id)] = StepReport(step_id, Counts(channel))
            return steps[(sid, step_id)]

        def add(
            sid: str, step_id: str, channel: str, variant: str | None, key: str, n: int, code: str | None = None
        ) -> None:
            target = step_of(sid, step_id, channel)
            if target is None:
                return
            for counts in [target.counts, *([target.variants.setdefault(variant, Counts(channel))] if variant else [])]:
                if code is None:
                    counts.touches[key] += n
                else:
                    counts.dispositions[code] += n

        for row in _touch_counts(conn, since):
            add(row.sequence_id, row.step_id, row.channel, row.variant, STATUS_COUNTS[row.status], row.n)
            if row.disposition is not None and row.status == "done":
                if row.disposition not in codes:
                    codes.append(row.disposition)  # a code since removed from config.yaml still shows
                add(row.sequence_id, row.step_id, row.channel, row.variant, "", row.n, code=row.disposition)
        for row in _tasks_opened(conn, since):
            add(row.sequence_id, row.step_id, row.channel, row.variant, "tasks_opened", row.n)
        for sid, n in _contacted(conn, since):
            if sid in by_id:
                by_id[sid].contacted = n
        _enrollment_counts(conn, since, by_id)
        for credit in _credits(conn, since):
            key, lead, touch = credit["key"], credit["lead_id"], credit["touch_id"]
            if touch is None:
                report.unattributed[key].add(lead)
                continue
            sid = credit["sequence_id"]
            target = step_of(sid, credit["step_id"], credit["channel"])
            if target is None:
                continue
            target.counts.events[key].add(touch)
            if credit["variant"]:
                target.variants.setdefault(credit["variant"], Counts(credit["channel"])).events[key].add(touch)
            by_id[sid].leads[key].add(lead)
    order = {sid: [s.id for s in spec.steps] if spec else [] for sid, spec in specs.items()}
    for sid, seq in by_id.items():
        mine = [s for (owner, _), s in steps.items() if owner == sid]
        ids = order[sid]
        seq.steps = sorted(mine, key=lambda s: (ids.index(s.step) if s.step in ids else len(ids), s.step))
    report.sequences = [by_id[sid] for sid in sorted(by_id)]
    return report


def _specs(conn: Connection, app: App) -> dict[str, Sequence | None]:
    """Every sequence the store knows (its latest published version) or sequences/ holds (the file)."""
    out: dict[str, Sequence | None] = {}
    latest = (
        select(VersionT.c.sequence_id, func.max(VersionT.c.version).label("version"))
        .group_by(VersionT.c.sequence_id)
        .subquery()
    )
    rows = conn.execute(
        select(VersionT.c.sequence_id, VersionT.c.spec).join(
            latest, and_(latest.c.sequence_id == VersionT.c.sequence_id, latest.c.version == VersionT.c.version)
        )
    )
    for sid, spec in rows:
        out[sid] = Sequence.model_validate(spec)
    for sid, loaded in app.catalog.sequences.items():
        out.setdefault(sid, loaded.spec)
    for (sid,) in conn.execute(select(EnrollmentT.c.sequence_id).distinct()):
        out.setdefault(sid, None)
    return out


def _touch_counts(conn: Connection, since: datetime | None) -> list[Any]:
    happened = type_coerce(case((TouchT.c.status == "sent", TouchT.c.sent_at), else_=TouchT.c.done_at), UTCDateTime())
    query = (
        select(
            TouchT.c.sequence_id, TouchT.c.step_id, TouchT.c.channel, TouchT.c.variant, TouchT.c.status,
            TouchT.c.disposition, func.count().label("n"),
        )
        .where(TouchT.c.step_index >= 0, TouchT.c.status.in_(list(STATUS_COUNTS)))
        .group_by(
            TouchT.c.sequence_id, TouchT.c.step_id, TouchT.c.channel, TouchT.c.variant, TouchT.c.status,
            TouchT.c.disposition,
        )
    )  # fmt: skip
    if since is not None:
        query = query.where(happened >= since)
    return list(conn.execute(query))


def _tasks_opened(conn: Connection, since: datetime | None) -> list[Any]:
    """Calls and tasks put in a rep's queue (a task's `sent_at` is when it opened)."""
    query = (
        select(TouchT.c.sequence_id, TouchT.c.step_id, TouchT.c.channel, TouchT.c.variant, func.count().label("n"))
        .where(TouchT.c.step_index >= 0, TouchT.c.channel.in_(TASKS), TouchT.c.sent_at.is_not(None))
        .group_by(TouchT.c.sequence_id, TouchT.c.step_id, TouchT.c.channel, TouchT.c.variant)
    )
    if since is not None:
        query = query.where(TouchT.c.sent_at >= since)
    return list(conn.execute(query))


def _contacted(conn: Connection, since: datetime | None) -> list[Any]:
    query = (
        select(TouchT.c.sequence_id, func.count(func.distinct(TouchT.c.lead_id)))
        .where(_reached(TouchT))
        .group_by(TouchT.c.sequence_id)
    )
    if since is not None:
        query = query.where(_touch_time(TouchT) >= since)
    return list(conn.execute(query))


def _enrollment_counts(conn: Connection, since: datetime | None, by_id: dict[str, SequenceReport]) -> None:
    e = EnrollmentT.c
    enrolled = select(e.sequence_id, func.count()).group_by(e.sequence_id)
    finished = (
        select(e.sequence_id, e.outcome, func.count()).where(e.state == "finished").group_by(e.sequence_id, e.outcome)
    )
    if since is not None:
        enrolled = enrolled.where(e.enrolled_at >= since)
        finished = finished.where(e.finished_at >= since)
    for sid, n in conn.execute(enrolled):
        if sid in by_id:
            by_id[sid].enrolled = n
    for sid, state, n in conn.execute(select(e.sequence_id, e.state, func.count()).group_by(e.sequence_id, e.state)):
        if sid in by_id:
            by_id[sid].states[state] = n
    for sid, outcome, n in conn.execute(finished):
        if sid in by_id:
            by_id[sid].finished[outcome or "unknown"] = n


def _credits(conn: Connection, since: datetime | None) -> list[dict[str, Any]]:
    """Every counted event with the touch it is credited to (None when no touch came before it)."""
    event = HistoryT.c.detail["event"].as_string()
    last = TouchT.alias("last_touch")
    last_touch = (
        select(last.c.id)
        .where(last.c.lead_id == HistoryT.c.lead_id, _reached(last), _touch_time(last) <= HistoryT.c.at)
        .order_by(_touch_time(last).desc(), last.c.id.desc())
        .limit(1)
        .correlate(HistoryT)
        .scalar_subquery()
    )
    named = HistoryT.c.detail["touch"].as_integer()
    credited = case((event == "bounced", func.coalesce(named, last_touch)), else_=last_touch)
    events = select(HistoryT.c.lead_id, event.label("event"), credited.label("touch_id")).where(
        HistoryT.c.kind == "event", event.in_(list(EVENT_COUNTS))
    )
    if since is not None:
        events = events.where(HistoryT.c.at >= since)
    ev = events.subquery()
    rows = conn.execute(
        select(
            ev.c.lead_id, ev.c.event, ev.c.touch_id, TouchT.c.sequence_id, TouchT.c.step_id, TouchT.c.channel,
            TouchT.c.variant, TouchT.c.step_index, _touch_time(TouchT).label("touched_at"),
        ).select_from(ev.outerjoin(TouchT, TouchT.c.id == ev.c.touch_id))
    ).mappings()  # fmt: skip
    out: list[dict[str, Any]] = []
    for row in rows:
        credit = {**row, "key": EVENT_COUNTS[row["event"]]}
        if row["touch_id"] is not None and (row["step_index"] is None or row["step_index"] < 0):
            credit["touch_id"] = None  # a named touch outside the steps credits no step
        if since is not None and credit["touch_id"] is not None and row["touched_at"] < since:
            continue  # earned by a touch before the period
        out.append(credit)
    meetings = select(
        TouchT.c.lead_id, TouchT.c.id, TouchT.c.sequence_id, TouchT.c.step_id, TouchT.c.channel, TouchT.c.variant
    ).where(TouchT.c.step_index >= 0, TouchT.c.status == "done", TouchT.c.disposition == MEETING_DISPOSITION)
    if since is not None:
        meetings = meetings.where(TouchT.c.done_at >= since)
    for lead, touch, sid, step, channel, variant in conn.execute(meetings):
        out.append(
            {"key": "meetings", "lead_id": lead, "touch_id": touch, "sequence_id": sid, "step_id": step,
             "channel": channel, "variant": variant}
        )  # fmt: skip
    return out
