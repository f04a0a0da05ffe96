"""Read-only lists people look at: `cadence touches`, the leads `--all-new` enrolls, and what `make demo` watches.

Nothing here changes a row; each function is one query the CLI (or the demo, which
drives the CLI through a simulated ten weeks) would otherwise have had to write.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, func, select

from cadence.names import EnrollmentState, Stage, TouchStatus
from cadence.store.rows import HistoryRow, TouchRow
from cadence.store.tables import EnrollmentT, HistoryT, LeadT, RecycleT, TouchT

T = TouchT.c
E = EnrollmentT.c


def touches(conn: Connection, *, status: str | None = None, lead_id: str | None = None, limit: int) -> list[TouchRow]:
    """Touches by due time (then id), optionally of one status and one lead, at most `limit`."""
    query = select(*TouchT.c).order_by(T.due_at, T.id).limit(limit)
    if status:
        query = query.where(T.status == status)
    if lead_id:
        query = query.where(T.lead_id == lead_id)
    return [TouchRow._make(row) for row in conn.execute(query)]


def count_touches(conn: Connection, *, status: str | None = None, lead_id: str | None = None) -> int:
    """How many touches `touches` would list without a limit (so a cut list can say so)."""
    query = select(func.count()).select_from(TouchT)
    if status:
        query = query.where(T.status == status)
    if lead_id:
        query = query.where(T.lead_id == lead_id)
    return int(conn.execute(query).scalar_one())


def new_leads_never_enrolled_after(conn: Connection, after: str | None, limit: int) -> list[str]:
    """The next `limit` leads in stage `new` never enrolled into anything, with an id after `after`, in id order:
    `enroll --all-new` reads a page at a time, so a million new leads never sit in memory at once (keyset paging)."""
    never = select(E.lead_id)
    query = select(LeadT.c.id).where(LeadT.c.stage == Stage.NEW, LeadT.c.id.not_in(never))
    if after is not None:
        query = query.where(LeadT.c.id > after)
    return list(conn.execute(query.order_by(LeadT.c.id).limit(limit)).scalars())


def enrolled_lead_ids(conn: Connection) -> list[str]:
    """Every lead that was ever enrolled, in id order."""
    return list(conn.execute(select(E.lead_id).distinct().order_by(E.lead_id)).scalars())


def latest_touch(conn: Connection, lead_id: str, sequence_id: str, step_id: str, status: str) -> TouchRow | None:
    """The newest touch of a lead's step that is in `status` now, if any."""
    query = (
        select(*TouchT.c)
        .where(T.lead_id == lead_id, T.sequence_id == sequence_id, T.step_id == step_id, T.status == status)
        .order_by(T.id.desc())
        .limit(1)
    )
    row = conn.execute(query).first()
    return TouchRow._make(row) if row is not None else None


@dataclass(frozen=True, slots=True)
class Upcoming:
    """The next moments anything is due in the store (None: nothing of that kind waits)."""

    next_due: datetime | None  # the earliest due active enrollment
    next_recycle: datetime | None  # the earliest cool-off ending
    next_resume: datetime | None  # the earliest pause ending
    open_tasks: int  # call and manual tasks waiting for a rep (they expire as time goes by)


def upcoming(conn: Connection) -> Upcoming:
    due = conn.execute(select(func.min(E.next_due_at)).where(E.state == EnrollmentState.ACTIVE)).scalar()
    recycle = conn.execute(select(func.min(RecycleT.c.due_at))).scalar()
    resume = conn.execute(select(func.min(E.paused_until)).where(E.state == EnrollmentState.PAUSED)).scalar()
    tasks = conn.execute(select(func.count()).select_from(TouchT).where(T.status == TouchStatus.TASK_OPEN)).scalar()
    return Upcoming(due, recycle, resume, int(tasks or 0))


def history_between(conn: Connection, since: datetime, until: datetime) -> list[HistoryRow]:
    """Every lead's history rows with `since <= at < until`, oldest first."""
    H = HistoryT.c
    query = select(*HistoryT.c).where(H.at >= since, H.at < until).order_by(H.at, H.id)
    return [HistoryRow._make(row) for row in conn.execute(query)]


def sent_by_channel(conn: Connection) -> dict[str, int]:
    """How many touches were recorded as sent, per channel."""
    query = select(T.channel, func.count()).where(T.status == TouchStatus.SENT).group_by(T.channel)
    return {channel: int(n) for channel, n in conn.execute(query)}
