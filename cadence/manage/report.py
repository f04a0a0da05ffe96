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

from cadence.clock import parse_instant
from cadence.manage.inbox_report import inbox_counts
from cadence.names import MESSAGE_CHANNELS, TASK_CHANNELS, EnrollmentState, Event, Outcome, Stage, TouchStatus
from cadence.plan.timing import local_to_utc, zone
from cadence.spec.model import Sequence
from cadence.store import reports
from cadence.store.versions import published

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from cadence.app import App

# History event name -> the report's count it feeds.
EVENT_COUNTS: dict[str, str] = {
    Event.REPLIED: "replied",
    Event.SMS_REPLY: "replied",
    Event.BOUNCED: "bounced",
    Event.UNSUBSCRIBED: "unsubscribed",
    Event.SMS_STOP: "sms_stops",
    Event.MEETING_BOOKED: "meetings",
}
EVENT_KEYS = ("replied", "bounced", "unsubscribed", "sms_stops", "meetings")
MEETING_DISPOSITION = "meeting_booked"  # the disposition code that books a meeting (config.yaml's word)
# Touch status -> the report's count it feeds.
STATUS_COUNTS: dict[str, str] = {
    TouchStatus.SENT: "sent",
    TouchStatus.FAILED: "failed",
    TouchStatus.SKIPPED: "skipped",
    TouchStatus.DONE: "tasks_done",
    TouchStatus.EXPIRED: "tasks_expired",
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
        if self.channel in MESSAGE_CHANNELS:
            return self.touches["sent"]
        if self.channel in TASK_CHANNELS:
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
            "active": self.states[EnrollmentState.ACTIVE],
            "paused": self.states[EnrollmentState.PAUSED],
            "finished": dict(sorted(self.finished.items())),
            "qualified": self.finished[Stage.QUALIFIED],
            "disqualified": self.finished[Stage.DISQUALIFIED],
            "recycled": self.finished[Outcome.RECYCLED],
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
    inbox: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat() if self.since else None,
            "sequences": [s.as_json(self.codes) for s in self.sequences],
            "unattributed": {key: len(self.unattributed[key]) for key in EVENT_KEYS},
            "inbox": self.inbox,
        }


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


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
        report = Report(since, codes, [], inbox=inbox_counts(conn, since))
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

        for row in reports.step_counts(conn, list(STATUS_COUNTS), since):
            add(row.sequence_id, row.step_id, row.channel, row.variant, STATUS_COUNTS[row.status], row.n)
            if row.disposition is not None and row.status == TouchStatus.DONE:
                if row.disposition not in codes:
                    codes.append(row.disposition)  # a code since removed from config.yaml still shows
                add(row.sequence_id, row.step_id, row.channel, row.variant, "", row.n, code=row.disposition)
        for opened in reports.tasks_opened(conn, since):
            add(opened.sequence_id, opened.step_id, opened.channel, opened.variant, "tasks_opened", opened.n)
        for sid, n in reports.contacted(conn, since):
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
    for sid, row in published(conn).items():
        out[sid] = Sequence.model_validate(row.spec)
    for sid, loaded in app.catalog.sequences.items():
        out.setdefault(sid, loaded.spec)
    for sid in reports.enrolled_sequences(conn):
        out.setdefault(sid, None)
    return out


def _enrollment_counts(conn: Connection, since: datetime | None, by_id: dict[str, SequenceReport]) -> None:
    for sid, n in reports.enrolled_counts(conn, since):
        if sid in by_id:
            by_id[sid].enrolled = n
    for sid, state, n in reports.state_counts(conn):
        if sid in by_id:
            by_id[sid].states[state] = n
    for sid, outcome, n in reports.finished_counts(conn, since):
        if sid in by_id:
            by_id[sid].finished[outcome or "unknown"] = n


def _credits(conn: Connection, since: datetime | None) -> list[dict[str, Any]]:
    """Every counted event with the touch it is credited to (None when no touch came before it)."""
    out: list[dict[str, Any]] = []
    for row in reports.credits(conn, list(EVENT_COUNTS), since):
        credit = {**row._asdict(), "key": EVENT_COUNTS[row.event]}
        if row.touch_id is not None and (row.step_index is None or row.step_index < 0):
            credit["touch_id"] = None  # a named touch outside the steps credits no step
        if since is not None and credit["touch_id"] is not None and (row.touched_at is None or row.touched_at < since):
            continue  # earned by a touch before the period (or one that never happened)
        out.append(credit)
    for lead, touch, sid, step, channel, variant in reports.meeting_tasks(conn, MEETING_DISPOSITION, since):
        out.append(
            {"key": "meetings", "lead_id": lead, "touch_id": touch, "sequence_id": sid, "step_id": step,
             "channel": channel, "variant": variant}
        )  # fmt: skip
    return out
