"""`cadence plan`: the exact effect of an edit on every enrolled lead, computed before anything changes.

Every live enrollment of a changed sequence is placed in the new version by
`cadence.plan.positions.position`, and its next due time is recomputed by the planner
where that position's timing changed. The plan counts those moves; `edit_apply` runs
the same computation inside its own transaction and writes them, so the numbers the
plan showed are the numbers apply did (for the same store and clock).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cadence.names import EnrollmentState, TouchStatus
from cadence.plan.planner import Planner
from cadence.plan.positions import Position, position, sequence_changes, step_changes
from cadence.spec.load import LoadedSequence
from cadence.spec.model import Sequence
from cadence.store import edits, enrollments
from cadence.store.rows import VersionRow
from cadence.store.versions import published

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from cadence.app import App

# A pending touch in one of these went out, or may have: the lead is past its step.
IN_FLIGHT = (TouchStatus.TASK_OPEN, TouchStatus.UNKNOWN, TouchStatus.SENDING)


@dataclass(slots=True)
class Move:
    """One live enrollment, where it is and where the new version puts it."""

    id: int
    lead_id: str
    state: str
    next_index: int
    pending_touch_id: int | None
    timezone: str | None
    country: str | None
    at: Position
    old_step: str | None
    new_step: str | None
    old_due: Any  # datetime once re-timed; until then the stored value as the driver gave it
    new_due: Any

    @property
    def moved(self) -> bool:
        return (
            self.at.new_index != self.next_index or self.new_step != self.old_step or self.new_due != self.old_due
        ) or self.at.cancel_pending


@dataclass
class StepChange:
    step: str
    change: str  # added | removed | changed | moved | template
    fields: dict[str, list[object]] = field(default_factory=dict)
    enrollments: int = 0  # live enrollments the change reaches (the step is still ahead of them)
    later: int = 0  # ... whose next touch moves later
    earlier: int = 0  # ... whose next touch moves earlier
    past: int = 0  # live enrollments already past the step (added steps: they will not get it)
    cancelled: int = 0  # removed steps: touches of it in flight (open tasks, unknown sends) cancelled
    template: str | None = None

    def summary(self) -> str:
        n = f"{self.enrollments:,}"
        if self.change == "added":
            return f"{self.step} added: {n} enrollments will get it, {self.past:,} are already past it"
        if self.change == "removed":
            text = f"{self.step} removed: {n} enrollments will skip it"
            return text + (f"; {self.cancelled:,} of its touches in flight are cancelled" if self.cancelled else "")
        if self.change == "template":
            return f"{self.step}: template {self.template} changed, {n} enrollments will get the new text"
        what = "; ".join(
            "position" if k == "position" else f"{k}: {_short(a)} -> {_short(b)}" for k, (a, b) in self.fields.items()
        )
        text = f"{self.step}: {what}, {n} active enrollments"
        moves = [f"later for {self.later:,}"] * bool(self.later) + [f"earlier for {self.earlier:,}"] * bool(
            self.earlier
        )
        if moves:
            text += f", next touch moves {' and '.join(moves)} of them"
        return text

    def as_json(self) -> dict[str, Any]:
        out = {
            "step": self.step, "change": self.change, "fields": self.fields, "enrollments": self.enrollments,
            "later": self.later, "earlier": self.earlier, "past": self.past, "cancelled": self.cancelled,
            "summary": self.summary(),
        }  # fmt: skip
        if self.template:
            out["template"] = self.template
        return out


def _short(value: object) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass
class SequencePlan:
    sequence: str
    status: str  # new | changed | deleted | broken
    path: str | None = None
    from_version: int | None = None
    to_version: int | None = None
    pinned: bool = False
    sequence_fields: dict[str, list[object]] = field(default_factory=dict)
    changes: list[StepChange] = field(default_factory=list)
    live: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    message: str | None = None
    moves: list[Move] = field(default_factory=list, repr=False)
    loaded: LoadedSequence | None = field(default=None, repr=False)
    row: VersionRow | None = field(default=None, repr=False)

    def as_json(self) -> dict[str, Any]:
        return {
            "sequence": self.sequence, "status": self.status, "path": self.path,
            "from_version": self.from_version, "to_version": self.to_version, "pinned": self.pinned,
            "sequence_fields": self.sequence_fields, "changes": [c.as_json() for c in self.changes],
            "live_enrollments": self.live, "enrollments": self.counts, "message": self.message,
        }  # fmt: skip


@dataclass
class Plan:
    sequences: list[SequencePlan]
    at: datetime
    applied: bool = False

    def as_json(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "applied": self.applied, "sequences": [s.as_json() for s in self.sequences]}

    @property
    def empty(self) -> bool:
        return not self.sequences


def pending_changes(app: App, conn: Connection) -> list[str]:
    """Published sequences whose file differs (edited, broken or deleted): what `cadence run` refuses over.

    A broken file that no lead follows (never published, or no live enrollment on it) is not
    one: `cadence validate` reports it, and the engine runs the other sequences meanwhile.
    """
    plan = compute_plan(app, conn, None, app.clock.now(), with_moves=False)
    return [
        s.sequence
        for s in plan.sequences
        if s.status != "new"
        and not (s.status == "broken" and (s.row is None or not enrollments.live_count(conn, s.sequence)))
    ]


def make_plan(app: App, sequence_ids: list[str] | None = None) -> Plan:
    """What applying the files would do now (reads only)."""
    with app.engine.connect() as conn:
        return compute_plan(app, conn, sequence_ids, app.clock.now(), with_moves=True)


def compute_plan(
    app: App, conn: Connection, ids: list[str] | None, now: datetime, *, with_moves: bool, lock: bool = False
) -> Plan:
    """The plan for `ids` (default: every sequence) on `conn`; `lock` holds the rows it reads until commit (apply)."""
    catalog = app.catalog
    current = published(conn)
    broken_stems = {_stem(d.path) for d in catalog.errors}
    names = set(catalog.sequences) | {k for k, r in current.items() if not r.retired}
    if ids:
        unknown = [i for i in ids if i not in names and i not in broken_stems]
        if unknown:
            raise KeyError(f"unknown sequence {', '.join(map(repr, unknown))}; known: {', '.join(sorted(names))}")
        names = set(ids)
    out: list[SequencePlan] = []
    for seq_id in sorted(names):
        row = current.get(seq_id)
        loaded = catalog.sequences.get(seq_id)
        if loaded is None and seq_id in broken_stems:
            path = next(d.path for d in catalog.errors if _stem(d.path) == seq_id)
            out.append(
                SequencePlan(seq_id, "broken", path=path, from_version=row.version if row else None,
                             message="the file has errors; fix them first (`cadence validate`)", row=row)
            )  # fmt: skip
            continue
        if loaded is None:
            if row is None or row.retired:
                continue
            sp = SequencePlan(seq_id, "deleted", path=row.path, from_version=row.version, row=row)
            sp.live = enrollments.live_count(conn, seq_id)
            sp.message = f"file deleted: {sp.live:,} live enrollments finish on v{row.version}; nobody new enrolls"
            out.append(sp)
            continue
        if row is None:
            out.append(
                SequencePlan(seq_id, "new", path=loaded.path, to_version=1, loaded=loaded,
                             message=f"new sequence ({len(loaded.spec.steps)} steps)")
            )  # fmt: skip
            continue
        if not row.retired and row.content_hash == loaded.content_hash:
            continue
        sp = SequencePlan(
            seq_id, "changed", path=loaded.path, from_version=row.version, to_version=row.version + 1,
            pinned=loaded.spec.migrate == "pin", loaded=loaded, row=row,
        )  # fmt: skip
        if row.retired:
            sp.status, sp.message = "new", "file restored after deletion"
        if with_moves:
            _fill(app, conn, sp, Sequence.model_validate(row.spec), dict(row.template_hashes or {}), now, lock)
        out.append(sp)
    return Plan(out, now)


def _stem(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0]


def _fill(
    app: App, conn: Connection, sp: SequencePlan, old: Sequence, old_hashes: dict[str, str], now: datetime, lock: bool
) -> None:
    """Work out every live enrollment's move and count them per change."""
    assert sp.loaded is not None
    new = sp.loaded.spec
    sp.sequence_fields = sequence_changes(old, new)
    rows = edits.live_for_migration(conn, sp.sequence, lock=lock)
    sp.live = len(rows)
    if sp.pinned:
        sp.counts = {"migrated": 0, "stay_on_old_version": sp.live}
        sp.message = f"migrate: pin: {sp.live:,} live enrollments stay on their version; new ones get v{sp.to_version}"
        _count_changes(sp, old, new, old_hashes, [])
        return
    specs: dict[int, Sequence] = {}
    positions: dict[tuple[int, int, str | None], Position] = {}
    planners: dict[tuple[str | None, str | None, str | None], Planner] = {}
    new_ids = [s.id for s in new.steps]
    when = edits.time_reader(conn)  # the raw time columns are converted only where needed

    def at_time(value: Any) -> datetime:
        """A raw time of a column that holds one here (enrolled_at, a sending touch's lease)."""
        moment = when(value)
        assert moment is not None
        return moment

    sending = 0
    moves: list[Move] = []
    for eid, lead_id, vid, st, index, step, due, pending_id, last, enrolled, tz, country, region, status, lease in rows:
        pending = None
        if pending_id is not None:
            if status == TouchStatus.SENDING and lease is not None and at_time(lease) >= now:
                sending += 1
            pending = "in_flight" if status in IN_FLIGHT else "retry"
        key = (vid, index, pending)
        at = positions.get(key)
        if at is None:
            if vid not in specs:
                specs[vid] = app.specs.get(conn, vid)[0]
            at = positions[key] = position(specs[vid], new, index, pending)
        new_due = due  # raw as stored: it stands unless the move re-times it
        if at.retime:
            due, new_due = when(due), None
            if at.new_index is not None and st == EnrollmentState.ACTIVE:
                planner = planners.get((tz, country, region))
                if planner is None:
                    planner = planners[(tz, country, region)] = app.planner(new, tz, country, region)
                if at.new_index == 0:
                    new_due = planner.first_due(at_time(enrolled), lead_id)
                else:
                    anchor = now if at.cancel_pending else at_time(last if last is not None else enrolled)
                    new_due = planner.due_after(at.new_index - 1, anchor, lead_id)
        new_step = new_ids[at.new_index] if at.new_index is not None else None
        moves.append(Move(eid, lead_id, st, index, pending_id, tz, country, at, step, new_step, due, new_due))
    if sending:
        sp.message = f"{sending} touches of {sp.sequence} are being sent right now; apply again in a moment"
    sp.moves = moves
    sp.counts = {
        "migrated": len(moves),
        "next_step_changes": sum(1 for m in moves if m.new_step != m.old_step and m.new_step is not None),
        "next_touch_later": sum(1 for m in moves if _later(m)),
        "next_touch_earlier": sum(1 for m in moves if _earlier(m)),
        "complete": sum(1 for m in moves if m.at.new_index is None),
        "pending_cancelled": sum(1 for m in moves if m.at.cancel_pending),
        "sending_now": sending,
    }
    _count_changes(sp, old, new, old_hashes, moves)


def _later(m: Move) -> bool:
    return m.at.retime and m.old_due is not None and m.new_due is not None and m.new_due > m.old_due


def _earlier(m: Move) -> bool:
    return m.at.retime and m.old_due is not None and m.new_due is not None and m.new_due < m.old_due


def _ahead(m: Move, index: int) -> bool:
    """Is step `index` of the new version still ahead of this enrollment after the move?"""
    ni = m.at.new_index
    return ni is not None and (ni < index or (ni == index and not m.at.keep_pending))


def _count_changes(
    sp: SequencePlan, old: Sequence, new: Sequence, old_hashes: dict[str, str], moves: list[Move]
) -> None:
    old_at = {s.id: i for i, s in enumerate(old.steps)}
    new_at = {s.id: i for i, s in enumerate(new.steps)}
    kept_order = [s for s in new_at if s in old_at]
    old_order = [s for s in old_at if s in new_at]
    new_hashes = sp.loaded.template_hashes if sp.loaded else {}
    changed_templates = {t for t, h in new_hashes.items() if t in old_hashes and old_hashes[t] != h}
    for step in new.steps:
        idx = new_at[step.id]
        if step.id not in old_at:
            c = StepChange(step.id, "added", {"day": [None, step.day], "channel": [None, step.channel]})
            c.enrollments = sum(1 for m in moves if _ahead(m, idx))
            c.past = len(moves) - c.enrollments
            sp.changes.append(c)
            continue
        fields = step_changes(old.steps[old_at[step.id]], step)
        if kept_order.index(step.id) != old_order.index(step.id):
            fields["position"] = [old_at[step.id] + 1, idx + 1]
        if fields:
            c = StepChange(step.id, "moved" if list(fields) == ["position"] else "changed", fields)
            c.enrollments = sum(1 for m in moves if _ahead(m, idx))
            # Of the enrollments it reaches, those whose next touch is this step and moves.
            c.later = sum(1 for m in moves if m.new_step == step.id and _ahead(m, idx) and _later(m))
            c.earlier = sum(1 for m in moves if m.new_step == step.id and _ahead(m, idx) and _earlier(m))
            sp.changes.append(c)
        for name in sorted(set(step.templates) & changed_templates):
            c = StepChange(step.id, "template", template=name)
            c.enrollments = sum(1 for m in moves if _ahead(m, idx))
            sp.changes.append(c)
    for step in old.steps:
        if step.id not in new_at:
            oi = old_at[step.id]
            c = StepChange(step.id, "removed", {"day": [step.day, None], "channel": [step.channel, None]})
            c.enrollments = sum(
                1 for m in moves if m.next_index < oi or (m.next_index == oi and m.pending_touch_id is None)
            )
            c.cancelled = sum(1 for m in moves if m.next_index == oi and m.at.cancel_pending)
            sp.changes.append(c)
