"""`cadence plan` and `cadence apply`: the exact effect of an edit on every enrolled lead, then the edit.

Both run the same computation (`_plan`): every live enrollment of a changed
sequence is placed in the new version by `cadence.migration.position`, and its next
due time is recomputed by the planner where that position's timing changed. The plan
counts those moves; apply writes them, in the same transaction that computed them,
so the numbers the plan showed are the numbers apply did (for the same store and
clock). Apply is one transaction: any failure leaves the published versions and
every enrollment as they were.

Concurrency: apply locks the live enrollments it migrates (`FOR UPDATE` on
PostgreSQL; SQLite transactions here are IMMEDIATE), so no engine claims one while
it moves. A touch being sent at that moment (a live `sending` lease) makes apply
refuse rather than guess: run it again a moment later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, bindparam, func, select, type_coerce, update
from sqlalchemy.types import NullType

from cadence.app import App
from cadence.enrollment.progression import advance
from cadence.outcomes.events import LIVE
from cadence.plan.planner import Planner
from cadence.plan.positions import Position, position, sequence_changes, step_changes
from cadence.spec.load import LoadedSequence
from cadence.spec.model import Sequence
from cadence.store.queries import EnrollmentT, LeadT, TouchT
from cadence.store.versions import publish, published, retire

IN_FLIGHT = ("task_open", "unknown", "sending")


class ApplyError(RuntimeError):
    """Apply cannot go ahead; nothing was changed."""


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
    row: Any = field(default=None, repr=False)

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
    """Published sequences whose file differs (edited, broken or deleted): what `cadence run` refuses over."""
    plan = _plan(app, conn, None, app.clock.now(), with_moves=False)
    return [s.sequence for s in plan.sequences if s.status != "new"]


def make_plan(app: App, sequence_ids: list[str] | None = None) -> Plan:
    with app.engine.connect() as conn:
        return _plan(app, conn, sequence_ids, app.clock.now(), with_moves=True)


def apply(app: App, sequence_ids: list[str] | None = None) -> Plan:
    """Publish the files' versions and migrate their live enrollments, all in one transaction."""
    now = app.clock.now()
    with app.engine.begin() as conn:
        plan = _plan(app, conn, sequence_ids, now, with_moves=True, lock=True)
        broken = [s for s in plan.sequences if s.status == "broken"]
        if broken:
            raise ApplyError(
                "; ".join(f"{s.path or s.sequence}: {s.message}" for s in broken) + " (nothing was applied)"
            )
        for seq in plan.sequences:
            _apply_one(app, conn, seq, now)
        plan.applied = True
    return plan


def _plan(
    app: App, conn: Connection, ids: list[str] | None, now: datetime, *, with_moves: bool, lock: bool = False
) -> Plan:
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
            sp.live = _live_count(conn, seq_id)
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


def _live_count(conn: Connection, seq_id: str) -> int:
    query = select(func.count()).where(EnrollmentT.c.sequence_id == seq_id, EnrollmentT.c.state.in_(LIVE))
    return int(conn.execute(query).scalar_one())


def _fill(
    app: App, conn: Connection, sp: SequencePlan, old: Sequence, old_hashes: dict[str, str], now: datetime, lock: bool
) -> None:
    """Work out every live enrollment's move and count them per change."""
    assert sp.loaded is not None
    new = sp.loaded.spec
    sp.sequence_fields = sequence_changes(old, new)
    query = (
        select(
            EnrollmentT.c.id, EnrollmentT.c.lead_id, EnrollmentT.c.version_id, EnrollmentT.c.state,
            EnrollmentT.c.next_index, EnrollmentT.c.next_step, _raw(EnrollmentT.c.next_due_at),
            EnrollmentT.c.pending_touch_id, _raw(EnrollmentT.c.last_touch_at), _raw(EnrollmentT.c.enrolled_at),
            LeadT.c.timezone, LeadT.c.country, TouchT.c.status, _raw(TouchT.c.lease_until),
        )
        .select_from(
            EnrollmentT.join(LeadT, LeadT.c.id == EnrollmentT.c.lead_id).outerjoin(
                TouchT, TouchT.c.id == EnrollmentT.c.pending_touch_id
            )
        )
        .where(EnrollmentT.c.sequence_id == sp.sequence, EnrollmentT.c.state.in_(LIVE))
    )  # fmt: skip
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update(of=EnrollmentT)
    rows = conn.execute(query).all()
    sp.live = len(rows)
    if sp.pinned:
        sp.counts = {"migrated": 0, "stay_on_old_version": sp.live}
        sp.message = f"migrate: pin: {sp.live:,} live enrollments stay on their version; new ones get v{sp.to_version}"
        _count_changes(sp, old, new, old_hashes, [])
        return
    specs: dict[int, Sequence] = {}
    positions: dict[tuple[int, int, str | None], Position] = {}
    planners: dict[tuple[str | None, str | None], Planner] = {}
    new_ids = [s.id for s in new.steps]
    when = _reader(conn, EnrollmentT.c.enrolled_at)  # the raw columns are read only where needed
    sending = 0
    moves: list[Move] = []
    for eid, lead_id, vid, st, index, step, due, pending_id, last, enrolled, tz, country, status, lease in rows:
        pending = None
        if pending_id is not None:
            if status == "sending" and lease is not None and when(lease) >= now:
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
            if at.new_index is not None and st == "active":
                planner = planners.get((tz, country))
                if planner is None:
                    planner = planners[(tz, country)] = app.planner(new, tz, country)
                if at.new_index == 0:
                    new_due = planner.first_due(when(enrolled), lead_id)
                else:
                    anchor = now if at.cancel_pending else when(last if last is not None else enrolled)
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


def _raw(column: Any) -> Any:
    """A column as the driver returns it: time columns most rows never need are not converted."""
    return type_coerce(column, NullType()).label(column.name)


def _reader(conn: Connection, column: Any) -> Any:
    """Converts one raw value of a time column the way the column's type would have."""
    dialect = conn.dialect
    process = column.type.dialect_impl(dialect).result_processor(dialect, None)
    return process or (lambda value: value)


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


def _apply_one(app: App, conn: Connection, sp: SequencePlan, now: datetime) -> None:
    if sp.status == "deleted":
        retire(conn, sp.row, now)
        return
    assert sp.loaded is not None
    if sp.counts.get("sending_now"):
        raise ApplyError(f"{sp.message} (nothing was applied)")
    version_id, number = publish(conn, sp.loaded, now)
    sp.to_version = number
    if sp.pinned or not sp.moves:
        return
    _write_moves(app, conn, sp, version_id, number, now)


def _write_moves(app: App, conn: Connection, sp: SequencePlan, version_id: int, number: int, now: datetime) -> None:
    from cadence.outcomes.events import HistoryT
    from cadence.store.bulk import bind_value
    from cadence.store.bulk import insert_many as _insert_many

    assert sp.loaded is not None
    new = sp.loaded.spec
    when = _reader(conn, EnrollmentT.c.next_due_at)  # due times that stand are still as stored
    # Exactly the rows the moves were computed from: the same transaction, and locked (see module docstring).
    conn.execute(
        update(EnrollmentT)
        .where(
            EnrollmentT.c.sequence_id == sp.sequence,
            EnrollmentT.c.state.in_(LIVE),
            EnrollmentT.c.version_id != version_id,
        )
        .values(version_id=version_id)
    )
    moved = [m for m in sp.moves if m.moved and m.at.new_index is not None]
    if moved:
        conn.execute(
            update(EnrollmentT)
            .where(EnrollmentT.c.id == bindparam("eid"))
            .values(
                next_index=bindparam("ni"),
                next_step=bindparam("ns"),
                next_due_at=bindparam("nd"),
                pending_touch_id=bindparam("pt"),
            ),
            [
                {
                    "eid": m.id,
                    "ni": m.at.new_index,
                    "ns": m.new_step,
                    "nd": m.new_due if m.at.retime else when(m.new_due),
                    "pt": None if m.at.cancel_pending else m.pending_touch_id,
                }
                for m in moved
            ],
        )
    kept = [m for m in sp.moves if m.at.keep_pending and m.at.new_index != m.next_index]
    if kept:
        conn.execute(
            update(TouchT).where(TouchT.c.id == bindparam("tid")).values(step_index=bindparam("si")),
            [{"tid": m.pending_touch_id, "si": m.at.new_index} for m in kept],
        )
    cancelled = [m.pending_touch_id for m in sp.moves if m.at.cancel_pending]
    if cancelled:
        conn.execute(
            update(TouchT)
            .where(TouchT.c.id.in_(cancelled), TouchT.c.status.in_(("scheduled", "task_open", "unknown")))
            .values(status="cancelled", done_at=now, error=f"step removed from {sp.sequence} in v{number}")
        )
    # One history row per migrated enrollment; the due times are in it when they changed. Most
    # rows share their detail, so each distinct detail becomes the driver's JSON value once.
    to_json = bind_value(conn, HistoryT, "detail")
    details: dict[tuple[Any, ...], Any] = {}
    history = []
    for m in sp.moves:
        retimed = m.at.retime and m.old_due != m.new_due
        key = (m.old_step, m.new_step, m.old_due, m.new_due) if retimed else (m.old_step, m.new_step)
        value = details.get(key)
        if value is None:
            detail: dict[str, Any] = {
                "sequence": sp.sequence, "from_version": sp.from_version, "to_version": number,
                "next_step": [m.old_step, m.new_step],
            }  # fmt: skip
            if retimed:
                detail["next_due_at"] = [_iso(m.old_due), _iso(m.new_due)]
            value = details[key] = to_json(detail)
        history.append((m.lead_id, value))
    constant = {"at": now, "kind": "migrated", "cause": "cadence apply"}
    _insert_many(conn, HistoryT, ("lead_id", "detail"), history, constant, prebound=("detail",))
    for m in sp.moves:
        if m.at.new_index is None:  # nothing left for it in the new version: it completes (and the rules run)
            planner = app.planner(new, m.timezone, m.country)
            enrollment = {"id": m.id, "lead_id": m.lead_id, "sequence_id": sp.sequence, "version_id": version_id}
            advance(conn, app, enrollment, planner, len(new.steps) - 1, now, now)


@lru_cache(maxsize=65536)
def _iso(value: datetime | None) -> str | None:
    """Due times repeat a lot across leads (same zone, same day, same slot): format each once."""
    return value.isoformat() if value else None
