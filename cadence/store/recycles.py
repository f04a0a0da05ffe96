"""Pending recycles: a lead waiting out a cool-off before it is enrolled again (stored, so restarts keep it)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import Connection, delete, select

from cadence.store.rows import RecycleRow
from cadence.store.tables import RecycleT

R = RecycleT.c
_ADD = RecycleT.insert()


def add(
    conn: Connection,
    lead_id: str,
    sequence_id: str,
    due: datetime,
    cause: str | None,
    from_enrollment_id: int | None,
    now: datetime,
) -> None:
    conn.execute(
        _ADD,
        {
            "lead_id": lead_id, "sequence_id": sequence_id, "due_at": due, "cause": cause,
            "from_enrollment_id": from_enrollment_id, "created_at": now,
        },
    )  # fmt: skip


def add_many(
    conn: Connection, rows: Sequence[tuple[str, str, datetime, str | None, int | None]], now: datetime
) -> None:
    """`add` for many leads in one executemany: (lead, sequence, due, cause, from enrollment)."""
    params = [
        {"lead_id": lead, "sequence_id": seq, "due_at": due, "cause": cause, "from_enrollment_id": src}
        for lead, seq, due, cause, src in rows
    ]
    if params:
        conn.execute(_ADD.values(created_at=now), params)


def due(conn: Connection, now: datetime) -> list[RecycleRow]:
    query = select(*RecycleT.c).where(R.due_at <= now).order_by(R.due_at, R.id)
    return [RecycleRow._make(row) for row in conn.execute(query)]


def take(conn: Connection, recycle_id: int) -> bool:
    """Remove a pending recycle that is being carried out; False if another worker took it first."""
    return conn.execute(delete(RecycleT).where(R.id == recycle_id)).rowcount == 1


def pending_of(conn: Connection, lead_ids: Iterable[str]) -> dict[str, RecycleRow]:
    """Each lead's soonest pending recycle (leads without one are left out)."""
    ids = list(set(lead_ids))
    if not ids:
        return {}
    out: dict[str, RecycleRow] = {}
    for row in conn.execute(select(*RecycleT.c).where(R.lead_id.in_(ids)).order_by(R.due_at.desc(), R.id.desc())):
        out[row.lead_id] = RecycleRow._make(row)
    return out


def cancel_for_lead(conn: Connection, lead_id: str) -> list[RecycleRow]:
    """Remove every pending recycle of a lead (a later outcome decided its future); returns what was removed."""
    rows = [RecycleRow._make(row) for row in conn.execute(select(*RecycleT.c).where(R.lead_id == lead_id))]
    if rows:
        conn.execute(delete(RecycleT).where(R.id.in_([r.id for r in rows])))
    return rows
