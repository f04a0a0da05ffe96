"""A lead's story: appending to it, and reading it back oldest first."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from cadence.names import HistoryKind
from cadence.store.rows import HistoryRow
from cadence.store.tables import HistoryT

_ADD = HistoryT.insert()  # built once: constructing it per call cost more than running it


def add(
    conn: Connection, lead_id: str, now: datetime, kind: HistoryKind, detail: dict[str, Any], cause: str | None = None
) -> None:
    conn.execute(_ADD, {"lead_id": lead_id, "at": now, "kind": kind, "detail": detail, "cause": cause})


def add_many(
    conn: Connection, now: datetime, kind: HistoryKind, rows: Iterable[tuple[str, dict[str, Any], str | None]]
) -> None:
    """(lead id, detail, cause) rows of one kind at one moment, in one executemany."""
    params = [
        {"lead_id": lead, "at": now, "kind": kind, "detail": detail, "cause": cause} for lead, detail, cause in rows
    ]
    if params:
        conn.execute(_ADD, params)


def of_lead(conn: Connection, lead_id: str) -> list[HistoryRow]:
    query = select(*HistoryT.c).where(HistoryT.c.lead_id == lead_id).order_by(HistoryT.c.at, HistoryT.c.id)
    return [HistoryRow._make(row) for row in conn.execute(query)]


def last_detail(conn: Connection, kind: HistoryKind) -> dict[str, Any] | None:
    """The detail of the newest row of `kind`, whoever's lead it is (the inbound rotation's last pick)."""
    query = select(HistoryT.c.detail).where(HistoryT.c.kind == kind).order_by(HistoryT.c.id.desc()).limit(1)
    detail = conn.execute(query).scalar()
    return dict(detail) if detail else None
