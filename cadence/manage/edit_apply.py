"""`cadence apply`: publish the edited files and migrate their live enrollments, all or nothing.

Apply computes the plan (`edit_plan.compute_plan`) inside its own transaction and writes
exactly those moves, so what `cadence plan` showed is what apply does (for the same
store and clock). Any failure leaves the published versions and every enrollment as
they were.

Concurrency: apply locks the live enrollments it migrates (`FOR UPDATE` on
PostgreSQL; SQLite transactions here are IMMEDIATE), so no engine claims one while
it moves. A touch being sent at that moment (a live `sending` lease) makes apply
refuse rather than guess: run it again a moment later.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from cadence.manage.edit_plan import Plan, SequencePlan, compute_plan
from cadence.outcomes.completion import complete
from cadence.store import edits, enrollments
from cadence.store.edits import Placement
from cadence.store.versions import publish, retire

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from cadence.app import App


class ApplyError(RuntimeError):
    """Apply cannot go ahead; nothing was changed."""


def apply(app: App, sequence_ids: list[str] | None = None) -> Plan:
    """Publish the files' versions and migrate their live enrollments, all in one transaction."""
    now = app.clock.now()
    with app.engine.begin() as conn:
        plan = compute_plan(app, conn, sequence_ids, now, with_moves=True, lock=True)
        broken = [s for s in plan.sequences if s.status == "broken"]
        if broken:
            raise ApplyError(
                "; ".join(f"{s.path or s.sequence}: {s.message}" for s in broken) + " (nothing was applied)"
            )
        for seq in plan.sequences:
            _apply_one(app, conn, seq, now)
        plan.applied = True
    return plan


def _apply_one(app: App, conn: Connection, sp: SequencePlan, now: datetime) -> None:
    if sp.status == "deleted":
        assert sp.row is not None
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
    """Write the plan's moves: exactly the rows they were computed from (same transaction, locked)."""
    when = edits.time_reader(conn)  # due times that stand are still as stored
    edits.move_to_version(conn, sp.sequence, version_id)
    placements = [
        Placement(
            m.id, m.next_index, m.pending_touch_id, m.at.new_index, m.new_step,
            m.new_due if m.at.retime else when(m.new_due), None if m.at.cancel_pending else m.pending_touch_id,
        )
        for m in sp.moves
        if m.moved and m.at.new_index is not None
    ]  # fmt: skip
    # The rows are locked, so only this apply can have changed one since the plan read it (rules run by
    # an earlier sequence's completions); a guarded placement then changes nothing and the newer state stands.
    edits.place(conn, placements)
    edits.repoint_touches(
        conn,
        [
            (m.pending_touch_id, m.id, m.at.new_index)
            for m in sp.moves
            if m.at.keep_pending and m.at.new_index != m.next_index
            and m.pending_touch_id is not None and m.at.new_index is not None
        ],
    )  # fmt: skip
    cancelled = [m.pending_touch_id for m in sp.moves if m.at.cancel_pending and m.pending_touch_id is not None]
    edits.cancel_touches(conn, cancelled, now, f"step removed from {sp.sequence} in v{number}")
    # One history row per migrated enrollment; the due times are in it when they changed. Those whose
    # next step and time stand (most of them) are written by the database, their step read from the row;
    # the others here, where each distinct detail is one dict, turned into JSON once.
    details: dict[tuple[Any, ...], dict[str, Any]] = {}
    history = []
    changed = []
    for m in sp.moves:
        retimed = m.at.retime and m.old_due != m.new_due
        if not retimed and m.old_step == m.new_step:
            continue
        changed.append(m.id)
        key = (m.old_step, m.new_step, m.old_due, m.new_due) if retimed else (m.old_step, m.new_step)
        detail = details.get(key)
        if detail is None:
            detail = {
                "sequence": sp.sequence, "from_version": sp.from_version, "to_version": number,
                "next_step": [m.old_step, m.new_step],
            }  # fmt: skip
            if retimed:
                detail["next_due_at"] = [_iso(m.old_due), _iso(m.new_due)]
            details[key] = detail
        history.append((m.lead_id, detail))
    edits.record_migrations(conn, history, now, "cadence apply")
    standing = edits.record_unchanged_migrations(
        conn,
        sp.sequence,
        version_id,
        (sp.from_version, number),
        max(m.id for m in sp.moves),
        changed,
        now,
        "cadence apply",
    )
    if standing + len(changed) != len(sp.moves):
        raise ApplyError(
            f"{sp.sequence}: wrote {standing + len(changed):,} migration rows for {len(sp.moves):,} enrollments "
            "(nothing was applied)"
        )
    for m in sp.moves:
        if m.at.new_index is None:  # nothing left for it in the new version: it completes (and the rules run)
            row = enrollments.get(conn, m.id)
            if row is not None:
                complete(conn, app, row, now, "sequence ran out of steps")


@lru_cache(maxsize=65536)
def _iso(value: datetime | None) -> str | None:
    """Due times repeat a lot across leads (same zone, same day, same slot): format each once."""
    return value.isoformat() if value else None


def applied_lines(plan: Plan) -> list[str]:
    """What an applied plan did, one line per sequence, as `cadence apply` prints it."""
    if plan.empty:
        return ["No changes to apply."]
    out = []
    for s in plan.sequences:
        if s.status == "deleted":
            out.append(f"retired {s.sequence} (v{s.from_version} stays for its {s.live:,} live enrollments)")
        elif s.pinned:
            out.append(f"published {s.sequence} v{s.to_version}; {s.live:,} enrollments stay pinned")
        else:
            migrated = s.counts.get("migrated", 0)
            out.append(f"published {s.sequence} v{s.to_version}; migrated {migrated:,} live enrollments")
    return out
