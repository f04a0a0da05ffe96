"""The leads a person asks for: `cadence leads list` and `cadence leads export`, by owner, stage, live
sequence or a search, in id order.

Read-only. A list shows a page and says how many there are in all; an export walks
every match a page at a time (keyset on the id), so 100,000 leads never sit in memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Select, func, or_, select

from cadence.names import LIVE_STATES
from cadence.store.rows import LeadRow
from cadence.store.tables import EnrollmentT, LeadT

L, E = LeadT.c, EnrollmentT.c
PAGE = 5000


@dataclass(frozen=True, slots=True)
class LeadFilter:
    """Which leads: every given filter must hold (None: any)."""

    owner: str | None = None
    stage: str | None = None
    sequence: str | None = None  # leads with a live (active or paused) enrollment in it
    search: str | None = None  # a piece of the id, name, email or company, in any case


def _where(query: Select[Any], f: LeadFilter) -> Select[Any]:
    if f.owner is not None:
        query = query.where(L.owner == f.owner)
    if f.stage is not None:
        query = query.where(L.stage == f.stage)
    if f.sequence is not None:
        live = select(E.lead_id).where(E.sequence_id == f.sequence, E.state.in_(LIVE_STATES))
        query = query.where(L.id.in_(live))
    if f.search:
        term = f.search.strip()
        name = func.coalesce(L.first_name, "") + " " + func.coalesce(L.last_name, "")
        query = query.where(
            or_(*(column.icontains(term, autoescape=True) for column in (L.id, L.email, L.company, name)))
        )
    return query


def count(conn: Connection, f: LeadFilter) -> int:
    return int(conn.execute(_where(select(func.count()).select_from(LeadT), f)).scalar_one())


def page(conn: Connection, f: LeadFilter, limit: int, after: str | None = None) -> list[LeadRow]:
    """At most `limit` matching leads in id order, those after the id `after` when given."""
    query = _where(select(*LeadT.c), f).order_by(L.id).limit(limit)
    if after is not None:
        query = query.where(L.id > after)
    return [LeadRow._make(row) for row in conn.execute(query)]


def every(conn: Connection, f: LeadFilter) -> Iterator[LeadRow]:
    """Every matching lead in id order, read a page at a time."""
    after: str | None = None
    while True:
        rows = page(conn, f, PAGE, after)
        yield from rows
        if len(rows) < PAGE:
            return
        after = rows[-1].id


def live_sequences(conn: Connection, lead_ids: Iterable[str]) -> dict[str, list[str]]:
    """Each lead's sequences with a live (active or paused) enrollment, in enrollment order."""
    ids = list(lead_ids)
    out: dict[str, list[str]] = {}
    for start in range(0, len(ids), PAGE):
        query = (
            select(E.lead_id, E.sequence_id)
            .where(E.lead_id.in_(ids[start : start + PAGE]), E.state.in_(LIVE_STATES))
            .order_by(E.id)
        )
        for lead_id, sequence_id in conn.execute(query):
            out.setdefault(lead_id, []).append(sequence_id)
    return out


def custom_field_names(conn: Connection, f: LeadFilter) -> list[str]:
    """The custom field names the matching leads have, in order of first appearance (by lead id)."""
    names: dict[str, None] = {}
    after: str | None = None
    while True:
        query = _where(select(L.id, L.fields), f).order_by(L.id).limit(PAGE)
        if after is not None:
            query = query.where(L.id > after)
        rows = conn.execute(query).all()
        for _, fields in rows:
            names.update(dict.fromkeys(fields or {}))
        if len(rows) < PAGE:
            return list(names)
        after = rows[-1][0]
