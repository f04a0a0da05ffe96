"""Enrolling in bulk: the one read that may refuse a chunk of leads, and the few writes that enroll the rest.

A chunk of thousands of leads costs one read and three writes whatever its size, which is
what keeps enrolling 100,000 leads a matter of seconds: the refusal check joins each lead to
its live enrollments and to an email suppression of its address in one index-driven query;
the enrollments and their `enrolled` history rows go in through `bulk.insert_many`; the
stage move is one UPDATE. The partial unique index on live outbound enrollments backs the
refusal rule against races, and a lost race surfaces as `Conflict`, never as a driver error.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, and_, bindparam, select, update
from sqlalchemy.exc import IntegrityError

from cadence.names import LIVE_STATES, MOVABLE_STAGES, Channel, EnrollmentState, HistoryKind, Stage
from cadence.store.bulk import insert_many
from cadence.store.db import isolated
from cadence.store.errors import Conflict
from cadence.store.tables import EnrollmentT, HistoryT, LeadT, SuppressionT

E, L, S = EnrollmentT.c, LeadT.c, SuppressionT.c


class Candidate(NamedTuple):
    """A lead about to be enrolled: one row per live enrollment it has (the `live_` fields are None without one)."""

    id: str
    email: str | None
    timezone: str | None
    country: str | None
    region: str | None
    do_not_contact: bool
    stage: str
    live_sequence: str | None
    live_kind: str | None
    live_since: datetime | None
    opted_out: str | None  # why its address is on the email suppression list


# Built once; the chunk's ids are an expanding parameter.
_CANDIDATES = (
    select(
        L.id, L.email, L.timezone, L.country, L.region, L.do_not_contact, L.stage,
        E.sequence_id.label("live_sequence"), E.kind.label("live_kind"), E.enrolled_at.label("live_since"),
        S.reason.label("opted_out"),
    )
    .select_from(
        LeadT.outerjoin(EnrollmentT, and_(E.lead_id == L.id, E.state.in_(LIVE_STATES))).outerjoin(
            SuppressionT, and_(S.channel == Channel.EMAIL, S.address == L.email)
        )
    )
    .where(L.id.in_(bindparam("lead_ids", expanding=True)))
)  # fmt: skip


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
    """The leads of `lead_ids` that exist, with what might refuse them, in one query."""
    if not lead_ids:
        return []
    return [Candidate._make(row) for row in conn.execute(_CANDIDATES, {"lead_ids": list(lead_ids)})]


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
        insert_many(conn, EnrollmentT, ("lead_id", "next_due_at"), due, constant)
    except IntegrityError as exc:
        raise Conflict("a lead was enrolled elsewhere meanwhile") from exc
    history = {"at": batch.at, "kind": HistoryKind.ENROLLED, "cause": batch.cause}
    insert_many(conn, HistoryT, ("lead_id", "detail"), list(details), history)


def move_stage(conn: Connection, lead_ids: Sequence[str], stage: Stage) -> int:
    """Move these leads to `stage`, each only out of a movable stage (a qualified or closed lead keeps its own).

    Returns how many moved.
    """
    if not lead_ids:
        return 0
    query = update(LeadT).where(L.id.in_(list(lead_ids)), L.stage.in_(MOVABLE_STAGES)).values(stage=stage)
    return int(conn.execute(query).rowcount)


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
    query = (
        select(E.lead_id, E.sequence_id, E.finished_at, E.outcome)
        .where(E.lead_id.in_(list(lead_ids)), E.state == EnrollmentState.FINISHED, E.finished_at >= since)
        .order_by(E.finished_at, E.id)
    )
    return {row.lead_id: Finished._make(row) for row in conn.execute(query)}
