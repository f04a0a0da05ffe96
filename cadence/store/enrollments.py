"""Enrollments: one lead in one sequence. Every move is a compare-and-set that says whether it won.

An enrollment moves past a step only while it still waits where its mover saw it:
the same `next_index` and the same `pending_touch_id`. A worker whose claim was lost,
a task logged twice, a sweep racing a rep: the stale writer's move matches no row,
changes nothing, and learns so from the return value. Finishing, pausing and
resuming likewise check the state they expect.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, bindparam, case, func, null, or_, select, update

from cadence.names import LIVE_STATES, EnrollmentState, HistoryKind, TouchStatus
from cadence.store import history
from cadence.store.rows import EnrollmentRow
from cadence.store.tables import EnrollmentT, TouchT

E = EnrollmentT.c
_GET = select(*EnrollmentT.c).where(E.id == bindparam("enrollment_id"))


@dataclass(frozen=True, slots=True)
class Move:
    """Move enrollment `id` from (`from_index`, `from_pending`) to its step `to_index`, due at `due`."""

    id: int
    from_index: int | None
    from_pending: int | None
    to_index: int
    to_step: str
    due: datetime | None
    at: datetime  # when the step it moves past happened: the enrollment's last touch


# The move itself, built once; its WHERE is the compare half of compare-and-set.
_MOVE = (
    update(EnrollmentT)
    .where(
        E.id == bindparam("m_id"),
        or_(E.state == EnrollmentState.ACTIVE, E.state == EnrollmentState.PAUSED),  # live; no IN: executemany
        E.next_index.is_not_distinct_from(bindparam("m_from_index")),
        E.pending_touch_id.is_not_distinct_from(bindparam("m_from_pending")),
    )
    .values(
        next_index=bindparam("m_to_index"),
        next_step=bindparam("m_to_step"),
        # A paused enrollment moves past its step but has nothing due: resuming plans its next touch.
        next_due_at=case(
            (E.state == EnrollmentState.PAUSED, null()), else_=bindparam("m_due", type_=E.next_due_at.type)
        ),
        pending_touch_id=None,
        last_touch_at=bindparam("m_at"),
    )
)


def _params(m: Move) -> dict[str, object]:
    return {
        "m_id": m.id, "m_from_index": m.from_index, "m_from_pending": m.from_pending, "m_to_index": m.to_index,
        "m_to_step": m.to_step, "m_due": m.due, "m_at": m.at,
    }  # fmt: skip


def get(conn: Connection, enrollment_id: int) -> EnrollmentRow | None:
    row = conn.execute(_GET, {"enrollment_id": enrollment_id}).first()
    return EnrollmentRow._make(row) if row is not None else None


_LIVE_OF_LEAD = (
    select(*EnrollmentT.c).where(E.lead_id == bindparam("lead_id"), E.state.in_(list(LIVE_STATES))).order_by(E.id)
)
_LATEST_OF_LEAD = (
    select(*EnrollmentT.c).where(E.lead_id == bindparam("lead_id")).order_by(E.enrolled_at.desc(), E.id.desc()).limit(1)
)  # both run for every event and every inbound message: built once


def live_of_lead(conn: Connection, lead_id: str) -> list[EnrollmentRow]:
    return [EnrollmentRow._make(row) for row in conn.execute(_LIVE_OF_LEAD, {"lead_id": lead_id})]


def latest_of_lead(conn: Connection, lead_id: str) -> EnrollmentRow | None:
    """The lead's most recent enrollment, live or finished."""
    row = conn.execute(_LATEST_OF_LEAD, {"lead_id": lead_id}).first()
    return EnrollmentRow._make(row) if row is not None else None


def move(conn: Connection, m: Move) -> bool:
    """One enrollment to its next step; False (and nothing changed) if it no longer waits where `m` says."""
    return conn.execute(_MOVE, _params(m)).rowcount == 1


def move_many(conn: Connection, moves: Sequence[Move]) -> set[int]:
    """Many moves in one executemany; returns the ids that moved.

    Each row's UPDATE carries its own compare (the same WHERE as `move`), so the common case,
    where every move still matches, costs one statement. Only when fewer rows changed than
    were asked does it read back which ones now stand where their move put them.
    """
    if not moves:
        return set()
    if len(moves) == 1:
        return {moves[0].id} if move(conn, moves[0]) else set()
    changed = conn.execute(_MOVE, [_params(m) for m in moves]).rowcount
    if changed == len(moves):
        return {m.id for m in moves}
    query = select(E.id, E.next_index, E.next_step, E.pending_touch_id, E.last_touch_at).where(
        E.id.in_([m.id for m in moves])
    )
    now = {row.id: row for row in conn.execute(query)}
    return {
        m.id
        for m in moves
        if (row := now.get(m.id)) is not None
        and (row.next_index, row.next_step, row.pending_touch_id, row.last_touch_at)
        == (m.to_index, m.to_step, None, m.at)
    }


def defer(conn: Connection, enrollment_id: int, pending: int | None, due: datetime) -> bool:
    """Push an active enrollment's next touch to `due` (outside its window, over a cap, a retry's backoff)."""
    query = (
        update(EnrollmentT)
        .where(
            E.id == enrollment_id, E.state == EnrollmentState.ACTIVE, E.pending_touch_id.is_not_distinct_from(pending)
        )
        .values(next_due_at=due)
    )
    return conn.execute(query).rowcount == 1


# An active enrollment still waiting on the touch it was read with: the guard of the batched writes below,
# each an executemany over rows `lock_due` locked in the same transaction.
_AS_READ = (
    E.id == bindparam("e_id"),
    E.state == EnrollmentState.ACTIVE,
    E.pending_touch_id.is_not_distinct_from(bindparam("e_from")),
)
_DEFER_MANY = update(EnrollmentT).where(*_AS_READ).values(next_due_at=bindparam("due", type_=E.next_due_at.type))
_CLAIM_MANY = update(EnrollmentT).where(*_AS_READ).values(next_due_at=None, pending_touch_id=bindparam("touch"))


def defer_many(conn: Connection, deferrals: Sequence[tuple[int, int | None, datetime]]) -> int:
    """`defer` for a batch in one statement (executemany): (enrollment, its pending touch as read, new due time).

    A claim defers what is outside its window or over a cap; with one mailbox at its daily cap,
    that is every email of the batch, so one UPDATE a claim rather than one an enrollment. The
    rows are those `lock_due` locked, so every one matches; the count says so.
    """
    if not deferrals:
        return 0
    result = conn.execute(_DEFER_MANY, [{"e_id": e, "e_from": p, "due": due} for e, p, due in deferrals])
    return int(result.rowcount)


def claim_many(conn: Connection, claims: Sequence[tuple[int, int | None, int]]) -> int:
    """(enrollment, its pending touch as read, the touch now claimed): nothing more is due until recorded.

    Called on rows `lock_due` locked in the same transaction, so every claim matches;
    the count says so, and a caller that gets fewer rolls the claim back.
    """
    if not claims:
        return 0
    result = conn.execute(_CLAIM_MANY, [{"e_id": e, "e_from": p, "touch": t} for e, p, t in claims])
    return int(result.rowcount)


def set_pending(conn: Connection, enrollment_id: int, pending: int | None, touch_id: int, due: datetime) -> bool:
    """An active enrollment waits on `touch_id` again, due at `due` (`cadence retry` of an unknown touch)."""
    query = (
        update(EnrollmentT)
        .where(
            E.id == enrollment_id, E.state == EnrollmentState.ACTIVE, E.pending_touch_id.is_not_distinct_from(pending)
        )
        .values(next_due_at=due, pending_touch_id=touch_id)
    )
    return conn.execute(query).rowcount == 1


# `finish` and `pause`, built once (an event's rules run them for every event); the live states are
# spelled out as plain comparisons, which need no expanding of an IN list at each execution.
_IS_LIVE = or_(*(E.state == s for s in LIVE_STATES))
_FINISH = (
    update(EnrollmentT)
    .where(E.id == bindparam("f_id"), _IS_LIVE)
    .values(
        state=EnrollmentState.FINISHED, outcome=bindparam("f_outcome"),
        finished_at=bindparam("f_at", type_=E.finished_at.type), next_due_at=None, pending_touch_id=None,
    )
)  # fmt: skip
_CANCEL_WAITING = (
    update(TouchT)
    .where(
        TouchT.c.enrollment_id == bindparam("f_id"),
        or_(TouchT.c.status == TouchStatus.SCHEDULED, TouchT.c.status == TouchStatus.TASK_OPEN),
    )
    .values(status=TouchStatus.CANCELLED, error=bindparam("f_error"))
)
_PAUSE = (
    update(EnrollmentT)
    .where(E.id == bindparam("p_id"), _IS_LIVE)
    .values(
        state=EnrollmentState.PAUSED, paused_until=bindparam("p_until", type_=E.paused_until.type), next_due_at=None
    )
)


def finish(conn: Connection, enrollment: EnrollmentRow, outcome: str, now: datetime, cause: str | None) -> bool:
    """End a live enrollment and say so in the lead's history: nothing more is due, its open tasks
    and pending retries are cancelled. False, and nothing changed, when it had already finished.
    """
    ended = conn.execute(_FINISH, {"f_id": enrollment.id, "f_outcome": outcome, "f_at": now}).rowcount
    if not ended:
        return False
    conn.execute(_CANCEL_WAITING, {"f_id": enrollment.id, "f_error": f"enrollment finished: {outcome}"})
    detail = {"enrollment": enrollment.id, "outcome": outcome}
    history.add(conn, enrollment.lead_id, now, HistoryKind.FINISHED, detail, cause)
    return True


def finish_many(
    conn: Connection, ending: Sequence[EnrollmentRow], outcome: str, now: datetime, cause: str | None
) -> set[int]:
    """`finish` for many enrollments in three statements, not three an enrollment; returns those it ended
    (one already finished is left as it is, as `finish` leaves it)."""
    if not ending:
        return set()
    ids = [e.id for e in ending]
    ended = set(
        conn.execute(
            update(EnrollmentT)
            .where(E.id.in_(ids), E.state.in_(LIVE_STATES))
            .values(
                state=EnrollmentState.FINISHED, outcome=outcome, finished_at=now, next_due_at=None,
                pending_touch_id=None,
            )
            .returning(E.id)
        ).scalars()
    )  # fmt: skip
    if not ended:
        return ended
    conn.execute(
        update(TouchT)
        .where(
            TouchT.c.enrollment_id.in_(sorted(ended)),
            TouchT.c.status.in_((TouchStatus.SCHEDULED, TouchStatus.TASK_OPEN)),
        )
        .values(status=TouchStatus.CANCELLED, error=f"enrollment finished: {outcome}")
    )
    rows = [(e.lead_id, {"enrollment": e.id, "outcome": outcome}, cause) for e in ending if e.id in ended]
    history.add_many(conn, now, HistoryKind.FINISHED, rows)
    return ended


def pause(conn: Connection, enrollment_id: int, until: datetime | None) -> bool:
    return conn.execute(_PAUSE, {"p_id": enrollment_id, "p_until": until}).rowcount == 1


def resume(conn: Connection, enrollment_id: int, due: datetime | None) -> bool:
    query = (
        update(EnrollmentT)
        .where(E.id == enrollment_id, E.state == EnrollmentState.PAUSED)
        .values(state=EnrollmentState.ACTIVE, paused_until=None, next_due_at=due)
    )
    return conn.execute(query).rowcount == 1


def drop_channels(conn: Connection, enrollment_id: int, channels: Iterable[str]) -> list[str]:
    """This enrollment skips its steps on `channels` from now on; returns the full dropped list."""
    current = conn.execute(select(E.dropped_channels).where(E.id == enrollment_id)).scalar()
    dropped = sorted(set(current or []) | set(channels))
    conn.execute(update(EnrollmentT).where(E.id == enrollment_id).values(dropped_channels=dropped))
    return dropped


def paused_until_before(conn: Connection, now: datetime) -> list[EnrollmentRow]:
    """Paused enrollments whose pause is over, the longest over first (a range of `ix_enrollment_paused_until`)."""
    query = (
        select(*EnrollmentT.c)
        .where(E.state == EnrollmentState.PAUSED, E.paused_until <= now)
        .order_by(E.paused_until, E.id)
    )
    return [EnrollmentRow._make(row) for row in conn.execute(query)]


def count_into(conn: Connection, lead_id: str, sequence_id: str) -> int:
    """How many times this lead was ever enrolled into this sequence (`max_recycles`)."""
    query = select(func.count()).select_from(EnrollmentT).where(E.lead_id == lead_id, E.sequence_id == sequence_id)
    return int(conn.execute(query).scalar_one())


def newest_into(conn: Connection, lead_id: str, sequence_id: str) -> int | None:
    query = select(func.max(E.id)).where(E.lead_id == lead_id, E.sequence_id == sequence_id)
    value = conn.execute(query).scalar()
    return int(value) if value is not None else None


def live_count(conn: Connection, sequence_id: str) -> int:
    query = select(func.count()).where(E.sequence_id == sequence_id, E.state.in_(LIVE_STATES))
    return int(conn.execute(query).scalar_one())
