"""Enrolling in bulk: the one read that may refuse a chunk of leads, and the few writes that enroll the rest.

A chunk of thousands of leads costs one read and three writes whatever its size, which is
what keeps enrolling 100,000 leads a matter of seconds: the refusal check joins each lead to
its live enrollments and to an email suppression of its address in one index-driven query,
which also brings the fields its templates see (the strict render check needs nothing else);
the enrollments and their `enrolled` history rows go in through `bulk.insert_many`; the
stage move is one UPDATE. The partial unique index on live outbound enrollments backs the
refusal rule against races, and a lost race surfaces as `Conflict`, never as a driver error.
The statements are built once, with the chunk's ids as an expanding parameter.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, and_, bindparam, exists, func, select, update
from sqlalchemy.exc import IntegrityError

from cadence.names import LIVE_STATES, MOVABLE_STAGES, Channel, EnrollmentState, HistoryKind, Stage
from cadence.store.bulk import bind_shared, insert_many, raw, reader
from cadence.store.db import isolated
from cadence.store.errors import Conflict
from cadence.store.tables import EnrollmentT, HistoryT, LeadT, RecycleT, SuppressionT

E, L, S, R = EnrollmentT.c, LeadT.c, SuppressionT.c, RecycleT.c
F = EnrollmentT.alias("finished").c


class Candidate(NamedTuple):
    """A lead about to be enrolled: one row per live enrollment it has (the `live_` fields are None without one).

    It carries every field a template may read of a lead (it is a `plan.template_context.LeadFields`),
    so the strict render check needs no second read of the leads.
    """

    id: str
    email: str | None
    phone: str | None
    first_name: str | None
    last_name: str | None
    company: str | None
    title: str | None
    owner: str | None
    timezone: str | None
    country: str | None
    region: str | None
    score: float | None
    do_not_contact: bool
    stage: str
    live_sequence: str | None
    live_kind: str | None
    live_since: datetime | None
    opted_out: str | None  # why its address is on the email suppression list
    recycling: bool  # a recycle is pending (`store.recycles.pending_of` says which)
    last_finished: datetime | None  # when its latest finished enrollment finished (`finished_since` says which)
    fields: dict[str, Any]  # its custom fields


# Built once; the chunk's ids are an expanding parameter. The custom fields come as the driver
# returns them, so the "{}" of the many leads that have none is not decoded lead by lead.
# Two index lookups a lead say whether the rarer refusals (a pending recycle, the cool-off) need a
# look at all, which spares a query over the whole chunk for each.
_CANDIDATES = (
    select(
        L.id, L.email, L.phone, L.first_name, L.last_name, L.company, L.title, L.owner, L.timezone, L.country,
        L.region, L.score, L.do_not_contact, L.stage,
        E.sequence_id.label("live_sequence"), E.kind.label("live_kind"), E.enrolled_at.label("live_since"),
        S.reason.label("opted_out"),
        exists().where(R.lead_id == L.id).label("recycling"),
        select(func.max(F.finished_at)).where(F.lead_id == L.id, F.state == EnrollmentState.FINISHED)
        .scalar_subquery().label("last_finished"),
        raw(L.fields),  # last: the row is the candidate once it is decoded
    )
    .select_from(
        LeadT.outerjoin(EnrollmentT, and_(E.lead_id == L.id, E.state.in_(LIVE_STATES))).outerjoin(
            SuppressionT, and_(S.channel == Channel.EMAIL, S.address == L.email)
        )
    )
    .where(L.id.in_(bindparam("lead_ids", expanding=True)))
)  # fmt: skip
_MOVE_STAGE = (
    update(LeadT)
    .where(L.id.in_(bindparam("lead_ids", expanding=True)), L.stage.in_(MOVABLE_STAGES))
    .values(stage=bindparam("to_stage"))
)
_FINISHED_SINCE = (
    select(E.lead_id, E.sequence_id, E.finished_at, E.outcome)
    .where(
        E.lead_id.in_(bindparam("lead_ids", expanding=True)),
        E.state == EnrollmentState.FINISHED,
        E.finished_at >= bindparam("since", type_=E.finished_at.type),
    )
    .order_by(E.finished_at, E.id)
)


@dataclass(frozen=True, slots=True)
class Batch:
    """What every enrollment written by one `add` shares: the version, its first step, the moment and the cause."""

    sequence_id: str
    version_id: int
    kind: str
    first_step: str
    at: datetime
    cause: str


def candidates(conn: Connection, lead_ids: Sequence[str]) -> list[Candidate]:
    """The leads of `lead_ids` that exist, with what might refuse them and what their templates see, in one query."""
    if not lead_ids:
        return []
    rows = conn.execute(_CANDIDATES, {"lead_ids": list(lead_ids)}).all()
    decode = reader(conn, L.fields)
    return [
        Candidate._make((*row[:-1], {} if (custom := row[-1]) is None or custom == "{}" else decode(custom)))
        for row in rows
    ]


def add(
    conn: Connection, batch: Batch, due: list[tuple[str, datetime]], details: list[tuple[str, dict[str, Any]]]
) -> None:
    """One active enrollment per (lead, first due time) waiting on the first step, and each lead's `enrolled` row.

    Raises `Conflict` when a lead was enrolled elsewhere meanwhile (the partial unique
    index refused it); the caller's transaction must then be rolled back.
    """
    if not due:
        return
    constant = {
        "sequence_id": batch.sequence_id, "version_id": batch.version_id, "kind": batch.kind,
        "state": EnrollmentState.ACTIVE, "enrolled_at": batch.at, "next_index": 0, "next_step": batch.first_step,
        "dropped_channels": [],
    }  # fmt: skip
    try:
        insert_many(conn, EnrollmentT, ("lead_id", "next_due_at"), due, _plain(constant))
    except IntegrityError as exc:
        raise Conflict("a lead was enrolled elsewhere meanwhile") from exc
    history = {"at": batch.at, "kind": HistoryKind.ENROLLED, "cause": batch.cause}
    bound = bind_shared(conn, HistoryT, "detail", (detail for _, detail in details))
    rows = [(lead_id, value) for (lead_id, _), value in zip(details, bound, strict=True)]
    insert_many(conn, HistoryT, ("lead_id", "detail"), rows, _plain(history), prebound=("detail",))


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """`values` with each `StrEnum` as the plain string it stands for.

    sqlite3 binds a `str` subclass through its adapter lookup, which costs more than the
    rest of the value's trip (about 3,500 instructions a value, each row of an executemany
    paying again): a constant repeated on thousands of rows goes to the driver as a `str`.
    """
    return {k: str(v) if isinstance(v, str) and type(v) is not str else v for k, v in values.items()}


def move_stage(conn: Connection, lead_ids: Sequence[str], stage: Stage) -> int:
    """Move these leads to `stage`, each only out of a movable stage (a qualified or closed lead keeps its own).

    Returns how many moved.
    """
    if not lead_ids:
        return 0
    return int(conn.execute(_MOVE_STAGE, {"lead_ids": list(lead_ids), "to_stage": stage}).rowcount)


@contextmanager
def savepoint(conn: Connection) -> Iterator[None]:
    """Enroll inside a caller's transaction without risking it.

    A race lost in here (`Conflict`) undoes only what ran inside the savepoint, then
    reaches the caller, whose own writes (an inbound lead just saved) stand.
    """
    try:
        with isolated(conn):
            yield
    except IntegrityError as exc:
        raise Conflict("a lead was enrolled elsewhere meanwhile") from exc


class Finished(NamedTuple):
    """A lead's most recent finished enrollment: which sequence, when, and why."""

    lead_id: str
    sequence_id: str
    finished_at: datetime
    outcome: str | None


def finished_since(conn: Connection, lead_ids: Sequence[str], since: datetime) -> dict[str, Finished]:
    """Each lead's latest enrollment that finished at or after `since` (the cool-off window)."""
    if not lead_ids:
        return {}
    rows = conn.execute(_FINISHED_SINCE, {"lead_ids": list(lead_ids), "since": since}).all()
    return {row.lead_id: Finished._make(row) for row in rows}
