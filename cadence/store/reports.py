"""The grouped counts `cadence report` is built from, each counted by the database in one query.

What counts as reaching a lead, and which touch an event is credited to, is decided
here in SQL (so a store of a million touches is counted, not read); the rules are
written out in `cadence.manage.report`'s docstring, which turns these rows into the
report. With `since`, each query keeps only what happened at or after it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Connection, FromClause, and_, case, func, or_, select, type_coerce

from cadence.names import MESSAGE_CHANNELS, TASK_CHANNELS, EnrollmentState, Event, HistoryKind, TouchStatus
from cadence.store.tables import EnrollmentT, HistoryT, TouchT
from cadence.store.types import UTCDateTime

T = TouchT.c
E = EnrollmentT.c


class StepCount(NamedTuple):
    """How many touches of one step (and variant) ended in `status`, with `disposition` when logged."""

    sequence_id: str
    step_id: str
    channel: str
    variant: str | None
    status: str
    disposition: str | None
    n: int


class OpenedCount(NamedTuple):
    """How many calls and tasks of one step (and variant) were put in a rep's queue."""

    sequence_id: str
    step_id: str
    channel: str
    variant: str | None
    n: int


class Credit(NamedTuple):
    """An event and the touch it is credited to (None: no touch reached the lead before it)."""

    lead_id: str
    event: str
    touch_id: int | None
    sequence_id: str | None
    step_id: str | None
    channel: str | None
    variant: str | None
    step_index: int | None
    touched_at: datetime | None


class MeetingTask(NamedTuple):
    """A call or task logged `meeting_booked`: the meeting is credited to that task."""

    lead_id: str
    touch_id: int
    sequence_id: str
    step_id: str
    channel: str
    variant: str | None


def _touch_time(t: FromClause) -> Any:
    """When a touch happened: sent messages at `sent_at`, tasks when done, anything else when settled."""
    return type_coerce(
        case(
            (t.c.channel.in_(MESSAGE_CHANNELS), func.coalesce(t.c.sent_at, t.c.done_at)),
            else_=func.coalesce(t.c.done_at, t.c.sent_at),
        ),
        UTCDateTime(),
    )


def _reached(t: FromClause) -> ColumnElement[bool]:
    """A step's email or SMS that was sent, or its call or task that was done."""
    return and_(
        t.c.step_index >= 0,
        or_(
            and_(t.c.channel.in_(MESSAGE_CHANNELS), t.c.status == TouchStatus.SENT),
            and_(t.c.channel.in_(TASK_CHANNELS), t.c.status == TouchStatus.DONE),
        ),
    )


def enrolled_sequences(conn: Connection) -> list[str]:
    """Every sequence anyone was ever enrolled into."""
    return list(conn.execute(select(E.sequence_id).distinct()).scalars())


def step_counts(conn: Connection, statuses: Iterable[str], since: datetime | None) -> list[StepCount]:
    """Touches of the steps in `statuses`, grouped by step, variant, status and disposition."""
    happened = type_coerce(case((T.status == TouchStatus.SENT, T.sent_at), else_=T.done_at), UTCDateTime())
    query = (
        select(T.sequence_id, T.step_id, T.channel, T.variant, T.status, T.disposition, func.count().label("n"))
        .where(T.step_index >= 0, T.status.in_(list(statuses)))
        .group_by(T.sequence_id, T.step_id, T.channel, T.variant, T.status, T.disposition)
    )
    if since is not None:
        query = query.where(happened >= since)
    return [StepCount._make(row) for row in conn.execute(query)]


def tasks_opened(conn: Connection, since: datetime | None) -> list[OpenedCount]:
    """Calls and tasks put in a rep's queue (a task's `sent_at` is when it opened)."""
    query = (
        select(T.sequence_id, T.step_id, T.channel, T.variant, func.count().label("n"))
        .where(T.step_index >= 0, T.channel.in_(TASK_CHANNELS), T.sent_at.is_not(None))
        .group_by(T.sequence_id, T.step_id, T.channel, T.variant)
    )
    if since is not None:
        query = query.where(T.sent_at >= since)
    return [OpenedCount._make(row) for row in conn.execute(query)]


def contacted(conn: Connection, since: datetime | None) -> list[tuple[str, int]]:
    """(sequence, how many distinct leads its touches reached)."""
    query = select(T.sequence_id, func.count(func.distinct(T.lead_id))).where(_reached(TouchT)).group_by(T.sequence_id)
    if since is not None:
        query = query.where(_touch_time(TouchT) >= since)
    return [(sid, int(n)) for sid, n in conn.execute(query)]


def enrolled_counts(conn: Connection, since: datetime | None) -> list[tuple[str, int]]:
    """(sequence, enrollments into it), by `enrolled_at`."""
    query = select(E.sequence_id, func.count()).group_by(E.sequence_id)
    if since is not None:
        query = query.where(E.enrolled_at >= since)
    return [(sid, int(n)) for sid, n in conn.execute(query)]


def state_counts(conn: Connection) -> list[tuple[str, str, int]]:
    """(sequence, state, enrollments in that state now)."""
    query = select(E.sequence_id, E.state, func.count()).group_by(E.sequence_id, E.state)
    return [(sid, state, int(n)) for sid, state, n in conn.execute(query)]


def finished_counts(conn: Connection, since: datetime | None) -> list[tuple[str, str | None, int]]:
    """(sequence, outcome, finished enrollments), by `finished_at`."""
    query = (
        select(E.sequence_id, E.outcome, func.count())
        .where(E.state == EnrollmentState.FINISHED)
        .group_by(E.sequence_id, E.outcome)
    )
    if since is not None:
        query = query.where(E.finished_at >= since)
    return [(sid, outcome, int(n)) for sid, outcome, n in conn.execute(query)]


def credits(conn: Connection, events: Iterable[str], since: datetime | None) -> list[Credit]:
    """Every `events` event (at or after `since`) with the touch it is credited to.

    The lead's last touch that reached it at or before the event (ties: the later touch id);
    a `bounced` event that names its own touch is credited to that touch.
    """
    H = HistoryT.c
    event = H.detail["event"].as_string()
    last = TouchT.alias("last_touch")
    last_touch = (
        select(last.c.id)
        .where(last.c.lead_id == H.lead_id, _reached(last), _touch_time(last) <= H.at)
        .order_by(_touch_time(last).desc(), last.c.id.desc())
        .limit(1)
        .correlate(HistoryT)
        .scalar_subquery()
    )
    named = H.detail["touch"].as_integer()
    credited = case((event == Event.BOUNCED, func.coalesce(named, last_touch)), else_=last_touch)
    wanted = select(H.lead_id, event.label("event"), credited.label("touch_id")).where(
        H.kind == HistoryKind.EVENT, event.in_(list(events))
    )
    if since is not None:
        wanted = wanted.where(H.at >= since)
    ev = wanted.subquery()
    query = select(
        ev.c.lead_id, ev.c.event, ev.c.touch_id, T.sequence_id, T.step_id, T.channel, T.variant, T.step_index,
        _touch_time(TouchT).label("touched_at"),
    ).select_from(ev.outerjoin(TouchT, T.id == ev.c.touch_id))  # fmt: skip
    return [Credit._make(row) for row in conn.execute(query)]


def meeting_tasks(conn: Connection, disposition: str, since: datetime | None) -> list[MeetingTask]:
    """The steps' calls and tasks done with `disposition` (done at or after `since`)."""
    query = select(T.lead_id, T.id, T.sequence_id, T.step_id, T.channel, T.variant).where(
        T.step_index >= 0, T.status == TouchStatus.DONE, T.disposition == disposition
    )
    if since is not None:
        query = query.where(T.done_at >= since)
    return [MeetingTask._make(row) for row in conn.execute(query)]
