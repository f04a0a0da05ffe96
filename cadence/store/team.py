"""What the team page reads beyond the task queue: tasks done per rep, and where every active lead stands.

Each function is one grouped or joined query over the whole team, never one per lead or
per rep, so the manager's page costs the same two statements with 3 reps or 300.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import Connection, func, select

from cadence.names import TASK_CHANNELS, EnrollmentState, TouchStatus
from cadence.store.tables import EnrollmentT, LeadT, TouchT

T, E, L = TouchT.c, EnrollmentT.c, LeadT.c


class ActiveLead(NamedTuple):
    """One active enrollment where it stands now, with what its lead's calendar needs (zone, holidays)."""

    lead_id: str
    owner: str | None
    timezone: str | None
    country: str | None
    region: str | None
    version_id: int
    next_index: int | None
    next_due_at: datetime | None
    pending_touch_id: int | None
    dropped_channels: list[str]  # channels a rule dropped for this enrollment: their steps are skipped


def tasks_done(conn: Connection, owners: Iterable[str], start: datetime, end: datetime) -> dict[str, int]:
    """owner -> calls and tasks logged done with `start <= done_at < end` (owners without any are left out)."""
    ids = list(set(owners))
    if not ids:
        return {}
    query = (
        select(T.owner, func.count())
        .where(
            T.owner.in_(ids),
            T.channel.in_(TASK_CHANNELS),
            T.status == TouchStatus.DONE,
            T.done_at >= start,
            T.done_at < end,
        )
        .group_by(T.owner)
    )
    return {owner: int(n) for owner, n in conn.execute(query)}


def active_leads(conn: Connection) -> list[ActiveLead]:
    """Every active enrollment (paused ones wait for their pause to end) with its lead's owner and calendar."""
    query = (
        select(
            E.lead_id, L.owner, L.timezone, L.country, L.region, E.version_id, E.next_index, E.next_due_at,
            E.pending_touch_id, E.dropped_channels,
        )
        .join(LeadT, L.id == E.lead_id)
        .where(E.state == EnrollmentState.ACTIVE)
        .order_by(E.id)
    )  # fmt: skip
    return [ActiveLead._make(row) for row in conn.execute(query)]
