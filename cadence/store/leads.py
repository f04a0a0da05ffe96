"""Leads: reading them as typed rows, the few flags the engine and the rules set, what import and inbound write,
and handing a lead (with its open tasks) to another owner."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, or_, select, text, update

from cadence.names import Channel, TouchStatus
from cadence.store.bulk import insert_many
from cadence.store.rows import LeadRow
from cadence.store.tables import LeadT, TouchT

_GET = select(*LeadT.c).where(LeadT.c.id == bindparam("lead_id"))
# Built once: POST /events runs these for every request, and building one cost more than running it.
_EXISTS = select(LeadT.c.id).where(LeadT.c.id == bindparam("lead_id"))
_TIMEZONE = select(LeadT.c.timezone).where(LeadT.c.id == bindparam("lead_id"))
_BY_EMAIL = select(LeadT.c.id).where(LeadT.c.email == bindparam("email"))
_BY_IDS = select(*LeadT.c).where(LeadT.c.id.in_(bindparam("lead_ids", expanding=True)))
_SET_STAGE = (
    update(LeadT)
    .where(LeadT.c.id == bindparam("staged_lead"))
    .values(stage=bindparam("staged_stage"), updated_at=bindparam("staged_at"))
)


def get(conn: Connection, lead_id: str) -> LeadRow | None:
    row = conn.execute(_GET, {"lead_id": lead_id}).first()
    return LeadRow._make(row) if row is not None else None


def exists(conn: Connection, lead_id: str) -> bool:
    return conn.execute(_EXISTS, {"lead_id": lead_id}).first() is not None


def by_ids(conn: Connection, lead_ids: Iterable[str]) -> dict[str, LeadRow]:
    ids = list(set(lead_ids))
    if not ids:
        return {}
    return {row.id: LeadRow._make(row) for row in conn.execute(_BY_IDS, {"lead_ids": ids}).all()}


def timezone_of(conn: Connection, lead_id: str) -> str | None:
    return conn.execute(_TIMEZONE, {"lead_id": lead_id}).scalar()


_SET_STAGE_FROM: dict[tuple[str, ...], Any] = {}  # `set_stage(only_from=...)`, one statement per set of stages


def set_stage(
    conn: Connection, lead_id: str, stage: str, now: datetime, *, only_from: Iterable[str] | None = None
) -> bool:
    """Move the lead to `stage`; with `only_from`, only out of one of those stages. True if it moved."""
    if only_from is None:
        return bool(
            conn.execute(_SET_STAGE, {"staged_lead": lead_id, "staged_stage": stage, "staged_at": now}).rowcount
        )
    stages = tuple(sorted(set(only_from)))
    if stages not in _SET_STAGE_FROM:
        _SET_STAGE_FROM[stages] = _SET_STAGE.where(or_(*(LeadT.c.stage == s for s in stages)))
    params = {"staged_lead": lead_id, "staged_stage": stage, "staged_at": now}
    return bool(conn.execute(_SET_STAGE_FROM[stages], params).rowcount)


def set_stages(conn: Connection, stages: Sequence[tuple[str, str]], now: datetime) -> None:
    """`set_stage` (unconditional) for many leads in one executemany: (lead, stage)."""
    if stages:
        params = [{"staged_lead": lead, "staged_stage": stage, "staged_at": now} for lead, stage in stages]
        conn.execute(_SET_STAGE, params)


def mark_email_invalid(conn: Connection, lead_id: str, now: datetime) -> None:
    conn.execute(update(LeadT).where(LeadT.c.id == lead_id).values(email_invalid=True, updated_at=now))


def mark_phone_invalid(conn: Connection, lead_id: str, now: datetime) -> None:
    conn.execute(update(LeadT).where(LeadT.c.id == lead_id).values(phone_invalid=True, updated_at=now))


def record_sms_consent(conn: Connection, lead_id: str, now: datetime) -> bool:
    """Consent given (an SMS START); False if it was already recorded."""
    query = (
        update(LeadT)
        .where(LeadT.c.id == lead_id, LeadT.c.sms_consent.is_(False))
        .values(sms_consent=True, updated_at=now)
    )
    return bool(conn.execute(query).rowcount)


def on_phone(conn: Connection, phone: str) -> list[LeadRow]:
    """Leads with this number, the one we texted most recently first (then by id)."""
    last_sms = (
        select(TouchT.c.sent_at)
        .where(TouchT.c.lead_id == LeadT.c.id, TouchT.c.channel == Channel.SMS, TouchT.c.sent_at.is_not(None))
        .order_by(TouchT.c.sent_at.desc())
        .limit(1)
        .scalar_subquery()
    )
    rows = conn.execute(select(*LeadT.c, last_sms.label("last_sms")).where(LeadT.c.phone == phone)).all()
    ordered = sorted(rows, key=lambda r: (r.last_sms is None, -(r.last_sms.timestamp() if r.last_sms else 0), r.id))
    return [LeadRow._make(tuple(r)[:-1]) for r in ordered]


# -- lead import and inbound leads ------------------------------------------------------------

_ROTATION_TURN = 0x0CADE1ED  # the advisory lock inbound owner assignments take turns on (store/db.py uses others)


def id_by_email(conn: Connection, email: str) -> str | None:
    """The lead holding this (normalized) address, if any: an address belongs to one lead."""
    return conn.execute(_BY_EMAIL, {"email": email}).scalar()


def matching(conn: Connection, lead_ids: Iterable[str], emails: Iterable[str]) -> list[LeadRow]:
    """The leads an import or an inbound request may update: those with one of these ids or addresses."""
    query = select(*LeadT.c).where(LeadT.c.id.in_(list(lead_ids)) | LeadT.c.email.in_(list(emails)))
    return [LeadRow._make(row) for row in conn.execute(query)]


def add_many(conn: Connection, leads: Sequence[LeadRow]) -> None:
    """Insert new leads, in one executemany at the driver's speed (`bulk.insert_many`): a column every
    lead of the batch shares (the stage, the flags, the import's time, often empty custom fields) is
    converted for the driver once, not once per lead."""
    if not leads:
        return
    first = leads[0]
    shared = [i > 0 and all(lead[i] == value for lead in leads) for i, value in enumerate(first)]  # ids differ
    constant = {name: first[i] for i, name in enumerate(LeadRow._fields) if shared[i]}
    varying = tuple(name for i, name in enumerate(LeadRow._fields) if not shared[i])
    picks = [i for i in range(len(LeadRow._fields)) if not shared[i]]
    insert_many(conn, LeadT, varying, [tuple(lead[i] for i in picks) for lead in leads], constant)


def change(conn: Connection, lead_id: str, values: Mapping[str, Any]) -> bool:
    """Set these columns of one lead (the others keep what is stored); False if there is no such lead."""
    return bool(conn.execute(update(LeadT).where(LeadT.c.id == lead_id).values(**values)).rowcount)


def take_rotation_turn(conn: Connection) -> None:
    """Wait for any other inbound request's owner assignment to commit.

    On PostgreSQL a transaction advisory lock; SQLite's IMMEDIATE transaction already serializes writers.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _ROTATION_TURN})


def move_open_tasks(conn: Connection, lead_id: str, owner: str) -> int:
    """Hand the lead's open tasks (calls, manual steps, notes to the owner) to `owner`; how many moved."""
    query = (
        update(TouchT)
        .where(
            TouchT.c.lead_id == lead_id,
            TouchT.c.status == TouchStatus.TASK_OPEN,
            TouchT.c.owner.is_distinct_from(owner),
        )
        .values(owner=owner)
    )
    return int(conn.execute(query).rowcount or 0)


def reassign(conn: Connection, lead_id: str, old: str | None, new: str, now: datetime) -> bool:
    """Give the lead to `new` if it still belongs to `old`; False if someone else changed its owner first."""
    query = (
        update(LeadT)
        .where(LeadT.c.id == lead_id, LeadT.c.owner.is_not_distinct_from(old))
        .values(owner=new, updated_at=now)
    )
    return bool(conn.execute(query).rowcount)
