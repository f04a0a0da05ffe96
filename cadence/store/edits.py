"""What `cadence plan` reads and `cadence apply` writes when a sequence's live enrollments move to a new version.

Apply computes its moves from `live_for_migration` and writes them in the same
transaction, with those rows locked (`FOR UPDATE` on PostgreSQL; SQLite's IMMEDIATE
transaction already serializes writers), so every write below is expected to match
every row it names; each still checks the state it expects and says how many rows it
changed, so a row something newer changed (in the same transaction) is left as it is.

Time columns are read raw (see `bulk.raw`): a plan over 200,000 enrollments converts
only the due times it re-computes, with `time_reader`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, bindparam, or_, select, text, update

from cadence.names import LIVE_STATES, HistoryKind, TouchStatus
from cadence.store.bulk import bind_shared, insert_many, raw, reader
from cadence.store.tables import EnrollmentT, HistoryT, LeadT, TouchT

E = EnrollmentT.c
# A removed step's touch that may still be cancelled: not sent, not worked, not being sent right now.
CANCELLABLE = (TouchStatus.SCHEDULED, TouchStatus.TASK_OPEN, TouchStatus.UNKNOWN)


class LiveEnrollment(NamedTuple):
    """A live enrollment as a migration sees it: where it stands, its lead's place, its pending touch.

    `next_due_at`, `last_touch_at`, `enrolled_at` and `lease_until` are the driver's raw
    values; convert one with `time_reader(conn)` when it is needed.
    """

    id: int
    lead_id: str
    version_id: int
    state: str
    next_index: int
    next_step: str | None
    next_due_at: Any
    pending_touch_id: int | None
    last_touch_at: Any
    enrolled_at: Any
    timezone: str | None
    country: str | None
    region: str | None
    touch_status: str | None  # the pending touch's status (None without one)
    lease_until: Any


class Placement(NamedTuple):
    """Enrollment `id`, seen at (`from_index`, `from_pending`), now waits on step `to_index` of the new version."""

    id: int
    from_index: int
    from_pending: int | None
    to_index: int
    to_step: str | None
    due: datetime | None
    pending: int | None  # the pending touch it keeps (None: it had none, or it was cancelled)


_LIVE = (
    select(
        E.id, E.lead_id, E.version_id, E.state, E.next_index, E.next_step, raw(E.next_due_at), E.pending_touch_id,
        raw(E.last_touch_at), raw(E.enrolled_at), LeadT.c.timezone, LeadT.c.country, LeadT.c.region, TouchT.c.status,
        raw(TouchT.c.lease_until),
    )
    .select_from(
        EnrollmentT.join(LeadT, LeadT.c.id == E.lead_id).outerjoin(TouchT, TouchT.c.id == E.pending_touch_id)
    )
    .where(E.sequence_id == bindparam("sequence_id"), E.state.in_(LIVE_STATES))
)  # fmt: skip

# Written as ORs, not IN: an executemany cannot take IN's expanding parameter.
_LIVE_STATE = or_(*(E.state == state for state in LIVE_STATES))
_PLACE = (
    update(EnrollmentT)
    .where(
        E.id == bindparam("eid"),
        _LIVE_STATE,
        E.next_index.is_not_distinct_from(bindparam("from_index")),
        E.pending_touch_id.is_not_distinct_from(bindparam("from_pending")),
    )
    .values(
        next_index=bindparam("ni"),
        next_step=bindparam("ns"),
        next_due_at=bindparam("nd"),
        pending_touch_id=bindparam("pt"),
    )
)

_REPOINT = (
    update(TouchT)
    .where(TouchT.c.id == bindparam("tid"), TouchT.c.enrollment_id == bindparam("owner"))
    .values(step_index=bindparam("si"))
)


def live_for_migration(conn: Connection, sequence_id: str, *, lock: bool) -> list[LiveEnrollment]:
    """Every live enrollment of a sequence, with its lead's zone and its pending touch; `lock` for apply."""
    query = _LIVE.with_for_update(of=EnrollmentT) if lock and conn.dialect.name == "postgresql" else _LIVE
    return [LiveEnrollment._make(row) for row in conn.execute(query, {"sequence_id": sequence_id})]


def time_reader(conn: Connection) -> Callable[[Any], datetime | None]:
    """Converts a raw time value of `LiveEnrollment` into the aware UTC datetime the column stands for."""
    convert: Callable[[Any], datetime | None] = reader(conn, E.next_due_at)
    return convert


def move_to_version(conn: Connection, sequence_id: str, version_id: int) -> int:
    """Every live enrollment of the sequence follows `version_id` from now on; returns how many moved."""
    query = (
        update(EnrollmentT)
        .where(E.sequence_id == sequence_id, E.state.in_(LIVE_STATES), E.version_id != version_id)
        .values(version_id=version_id)
    )
    return int(conn.execute(query).rowcount)


def place(conn: Connection, placements: Sequence[Placement]) -> int:
    """Write each enrollment's new position, in one executemany; returns how many still stood where seen."""
    if not placements:
        return 0
    params = [
        {"eid": p.id, "from_index": p.from_index, "from_pending": p.from_pending, "ni": p.to_index, "ns": p.to_step,
         "nd": p.due, "pt": p.pending}
        for p in placements
    ]  # fmt: skip
    return int(conn.execute(_PLACE, params).rowcount)


def repoint_touches(conn: Connection, touches: Sequence[tuple[int, int, int]]) -> int:
    """(touch, its enrollment, the step's new index): kept pending touches follow their step's new place."""
    if not touches:
        return 0
    params = [{"tid": touch, "owner": enrollment, "si": index} for touch, enrollment, index in touches]
    return int(conn.execute(_REPOINT, params).rowcount)


def cancel_touches(conn: Connection, touch_ids: Sequence[int], now: datetime, error: str) -> int:
    """Cancel the touches of removed steps that were not sent or worked meanwhile; returns how many."""
    if not touch_ids:
        return 0
    query = (
        update(TouchT)
        .where(TouchT.c.id.in_(list(touch_ids)), TouchT.c.status.in_(CANCELLABLE))
        .values(status=TouchStatus.CANCELLED, done_at=now, error=error)
    )
    return int(conn.execute(query).rowcount)


def record_migrations(
    conn: Connection, entries: Sequence[tuple[str, dict[str, Any]]], now: datetime, cause: str
) -> None:
    """One `migrated` history row per (lead, detail), in one executemany.

    Most migrated leads share their detail: pass the same dict object for equal details
    and it becomes the driver's JSON value once, not once per row.
    """
    if not entries:
        return
    bound = bind_shared(conn, HistoryT, "detail", (detail for _, detail in entries))
    rows = [(lead_id, value) for (lead_id, _), value in zip(entries, bound, strict=True)]
    constant = {"at": now, "kind": HistoryKind.MIGRATED, "cause": cause}
    insert_many(conn, HistoryT, ("lead_id", "detail"), rows, constant, prebound=("detail",))


def record_unchanged_migrations(
    conn: Connection,
    sequence_id: str,
    version_id: int,
    versions: tuple[int | None, int],
    up_to_id: int,
    written: Sequence[int],
    now: datetime,
    cause: str,
) -> int:
    """`migrated` rows for the live enrollments of the sequence whose next step stands, written by the database.

    Most enrollments of an edited sequence keep their next step and its time: their detail
    differs only by that step, so one INSERT ... SELECT writes their rows (the step read from the
    enrollment) instead of a row each from Python. `written` are the enrollments whose rows the
    caller wrote itself (a step or a time changed), `up_to_id` the newest enrollment the plan saw:
    one a rule creates during the apply is not the plan's. `versions` is (from, to), as numbers.
    Returns how many rows it wrote.
    """
    pg = conn.dialect.name == "postgresql"
    if pg:
        detail = (
            "json_build_object('sequence', CAST(:seq AS text), 'from_version', CAST(:from_v AS integer), "
            "'to_version', CAST(:to_v AS integer), 'next_step', json_build_array(e.next_step, e.next_step))"
        )
        not_written = "NOT (e.id = ANY(CAST(:written AS integer[])))"
        ids: Any = list(written)
    else:
        detail = (
            "json_object('sequence', :seq, 'from_version', :from_v, 'to_version', :to_v, "
            "'next_step', json_array(e.next_step, e.next_step))"
        )
        not_written = "e.id NOT IN (SELECT value FROM json_each(:written))"  # one parameter, however many
        ids = json.dumps(list(written))
    live = ", ".join(f"'{state}'" for state in LIVE_STATES)
    statement = text(
        f"INSERT INTO history (lead_id, at, kind, detail, cause) "
        f"SELECT e.lead_id, :at, :kind, {detail}, :cause FROM enrollment AS e "
        f"WHERE e.sequence_id = :seq AND e.state IN ({live}) AND e.version_id = :vid AND e.id <= :up_to "
        f"AND {not_written} ORDER BY e.id"
    ).bindparams(bindparam("at", type_=HistoryT.c.at.type))
    values = {
        "at": now, "kind": str(HistoryKind.MIGRATED), "cause": cause, "seq": sequence_id, "from_v": versions[0],
        "to_v": versions[1], "vid": version_id, "up_to": up_to_id, "written": ids,
    }  # fmt: skip
    return int(conn.execute(statement, values).rowcount)
