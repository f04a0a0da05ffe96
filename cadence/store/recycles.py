"""Pending recycles: a lead waiting out a cool-off before it is enrolled again (stored, so restarts keep it)."""

from __future__ import annotations

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


def due(conn: Connection, now: datetime) -> list[RecycleRow]:
    query = select(*RecycleT.c).where(R.due_at <= now).order_by(R.due_at, R.id)
    return [RecycleRow._make(row) for row in conn.execute(query)]


def take(conn: Connection, recycle_id: int) -> bool:
    """Remove a pending recycle that is being carried out; False if another worker took it first."""
    return conn.execute(delete(RecycleT).where(R.id == recycle_id)).rowcount == 1
