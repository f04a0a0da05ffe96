"""Enrollment: put leads into a sequence, or refuse them with a reason a rep understands.

A lead is in at most one live (active or paused) outbound sequence; opted-out and
do-not-contact leads are refused; nothing is changed for a refused lead. Each
accepted lead gets one enrollment row carrying its first step and its first due
time, computed by the planner in the lead's own calendar. Rows are written in
bulk, so enrolling 100,000 leads is a matter of seconds, and the partial unique
index on live outbound enrollments backs the refusal rule against races.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, and_, select
from sqlalchemy.exc import IntegrityError

from cadence.app import App
from cadence.spec.load import LoadedSequence
from cadence.store.tables import Enrollment, History, Lead, Suppression
from cadence.versions import publish

LeadT: Any = Lead.__table__  # type: ignore[attr-defined]
EnrollmentT: Any = Enrollment.__table__  # type: ignore[attr-defined]
HistoryT: Any = History.__table__  # type: ignore[attr-defined]
SuppressionT: Any = Suppression.__table__  # type: ignore[attr-defined]
LIVE = ("active", "paused")
CHUNK = 2000


@dataclass
class EnrollReport:
    sequence: str
    version: int = 0
    enrolled: list[dict[str, Any]] = field(default_factory=list)
    refused: list[dict[str, str]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"sequence": self.sequence, "version": self.version, "enrolled": self.enrolled, "refused": self.refused}


def _refusals(conn: Connection, leads: dict[str, Any], loaded: LoadedSequence) -> dict[str, str]:
    """lead id -> the reason it may not enroll."""
    reasons: dict[str, str] = {}
    ids = list(leads)
    kind = loaded.spec.kind
    live = select(
        EnrollmentT.c.lead_id, EnrollmentT.c.sequence_id, EnrollmentT.c.enrolled_at, EnrollmentT.c.kind
    ).where(EnrollmentT.c.lead_id.in_(ids), EnrollmentT.c.state.in_(LIVE))
    for row in conn.execute(live):
        if row.sequence_id == loaded.spec.id or (kind == "outbound" and row.kind == "outbound"):
            when = row.enrolled_at.date().isoformat()
            reasons[row.lead_id] = f"lead {row.lead_id} is already active in {row.sequence_id} (enrolled {when})"
    emails = {lead.email: lid for lid, lead in leads.items() if lead.email}
    if emails:
        q = select(SuppressionT.c.address, SuppressionT.c.reason).where(
            and_(SuppressionT.c.channel == "email", SuppressionT.c.address.in_(list(emails)))
        )
        for address, why in conn.execute(q):
            reasons.setdefault(emails[address], f"lead {emails[address]} opted out of email ({why})")
    for lid, lead in leads.items():
        if lead.do_not_contact:
            reasons.setdefault(lid, f"lead {lid} is marked do-not-contact")
        elif lead.stage in ("unsubscribed", "do_not_contact"):
            reasons.setdefault(lid, f"lead {lid} is in stage {lead.stage}")
    return reasons


def enroll(
    app: App,
    sequence_id: str,
    lead_ids: Iterable[str],
    *,
    cause: str = "enrolled by hand",
    progress: Callable[[int], None] | None = None,
) -> EnrollReport:
    loaded = app.catalog.get(sequence_id)
    now = app.clock.now()
    report = EnrollReport(sequence_id)
    wanted = list(dict.fromkeys(lid.strip() for lid in lead_ids if lid.strip()))
    with app.engine.begin() as conn:
        version_id, report.version = publish(conn, loaded, now)
    for start in range(0, len(wanted), CHUNK):
        chunk = wanted[start : start + CHUNK]
        try:
            with app.engine.begin() as conn:
                done, refused = _enroll_chunk(app, conn, loaded, version_id, chunk, now, cause, report.version)
            report.enrolled += done
            report.refused += refused
        except IntegrityError:
            # A concurrent enrollment won a race for some lead: redo this chunk lead by lead,
            # so the others still go in and the loser is refused with its reason.
            for lead_id in chunk:
                try:
                    with app.engine.begin() as conn:
                        done, refused = _enroll_chunk(
                            app, conn, loaded, version_id, [lead_id], now, cause, report.version
                        )
                    report.enrolled += done
                    report.refused += refused
                except IntegrityError:
                    report.refused.append(
                        {"lead": lead_id, "reason": f"lead {lead_id} was enrolled elsewhere meanwhile"}
                    )
        if progress:
            progress(len(chunk))
    return report


def _enroll_chunk(
    app: App,
    conn: Connection,
    loaded: LoadedSequence,
    version_id: int,
    chunk: Sequence[str],
    now: Any,
    cause: str,
    version: int,
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Enroll one chunk in `conn`'s transaction; returns (enrolled, refused) once written."""
    spec = loaded.spec
    cols = (LeadT.c.id, LeadT.c.email, LeadT.c.timezone, LeadT.c.country, LeadT.c.do_not_contact, LeadT.c.stage)
    leads = {row.id: row for row in conn.execute(select(*cols).where(LeadT.c.id.in_(chunk)))}
    refused = _refusals(conn, leads, loaded)
    rows, history, enrolled, refusals = [], [], [], []
    first = spec.steps[0]
    for lead_id in chunk:
        lead = leads.get(lead_id)
        if lead is None:
            refusals.append({"lead": lead_id, "reason": f"no lead with id {lead_id!r}"})
            continue
        if lead_id in refused:
            refusals.append({"lead": lead_id, "reason": refused[lead_id]})
            continue
        try:
            due = app.planner(spec, lead.timezone, lead.country).first_due(now, lead_id)
        except ValueError as exc:  # e.g. an `at` time outside this lead's window: nothing can be planned
            refusals.append({"lead": lead_id, "reason": f"cannot plan {spec.id} for lead {lead_id}: {exc}"})
            continue
        rows.append(
            {
                "lead_id": lead_id, "sequence_id": spec.id, "version_id": version_id, "kind": spec.kind,
                "state": "active", "enrolled_at": now, "next_index": 0, "next_step": first.id,
                "next_due_at": due, "dropped_channels": [],
            }
        )  # fmt: skip
        detail = {"sequence": spec.id, "version": version, "first_step": first.id, "due_at": due.isoformat()}
        history.append({"lead_id": lead_id, "at": now, "kind": "enrolled", "detail": detail, "cause": cause})
        enrolled.append({"lead": lead_id, "next_step": first.id, "next_due_at": due.isoformat()})
    if rows:
        conn.execute(EnrollmentT.insert(), rows)
        conn.execute(HistoryT.insert(), history)
    return enrolled, refusals
