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
from cadence.plan.planner import Planner
from cadence.spec.model import Sequence as SequenceSpec
from cadence.store.bulk import insert_many
from cadence.store.tables import Enrollment, History, Lead, Suppression
from cadence.store.versions import for_enrollment

LeadT: Any = Lead.__table__  # type: ignore[attr-defined]
EnrollmentT: Any = Enrollment.__table__  # type: ignore[attr-defined]
HistoryT: Any = History.__table__  # type: ignore[attr-defined]
SuppressionT: Any = Suppression.__table__  # type: ignore[attr-defined]
LIVE = ("active", "paused")
# Enrolling moves a lead to `working` (outbound) or `nurture`; a qualified or closed lead keeps its stage.
STAGES_THAT_MOVE = ("new", "working", "nurture", "recycled")
CHUNK = 2000


@dataclass
class EnrollReport:
    sequence: str
    version: int = 0
    enrolled: list[dict[str, Any]] = field(default_factory=list)
    refused: list[dict[str, str]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"sequence": self.sequence, "version": self.version, "enrolled": self.enrolled, "refused": self.refused}


def _leads_and_refusals(
    conn: Connection, chunk: Sequence[str], spec: SequenceSpec
) -> tuple[dict[str, Any], dict[str, str]]:
    """(lead id -> lead, lead id -> the reason it may not enroll) for the leads of `chunk` that exist.

    One query: each lead joined to its live enrollments and to an email suppression of its
    address, so a chunk costs one index-driven round trip whatever the refusal rules.
    """
    live = and_(EnrollmentT.c.lead_id == LeadT.c.id, EnrollmentT.c.state.in_(LIVE))
    suppressed = and_(SuppressionT.c.channel == "email", SuppressionT.c.address == LeadT.c.email)
    query = (
        select(
            LeadT.c.id, LeadT.c.email, LeadT.c.timezone, LeadT.c.country, LeadT.c.do_not_contact, LeadT.c.stage,
            EnrollmentT.c.sequence_id.label("live_sequence"), EnrollmentT.c.kind.label("live_kind"),
            EnrollmentT.c.enrolled_at.label("live_since"), SuppressionT.c.reason.label("opted_out"),
        )
        .select_from(LeadT.outerjoin(EnrollmentT, live).outerjoin(SuppressionT, suppressed))
        .where(LeadT.c.id.in_(chunk))
    )  # fmt: skip
    leads: dict[str, Any] = {}
    reasons: dict[str, str] = {}
    opted_out: dict[str, str] = {}
    for row in conn.execute(query).all():
        lid = row.id
        leads[lid] = row
        if row.live_sequence is not None and (
            row.live_sequence == spec.id or (spec.kind == "outbound" and row.live_kind == "outbound")
        ):
            when = row.live_since.date().isoformat()
            reasons[lid] = f"lead {lid} is already active in {row.live_sequence} (enrolled {when})"
        if row.opted_out is not None:
            opted_out[lid] = row.opted_out
    for lid, why in opted_out.items():
        reasons.setdefault(lid, f"lead {lid} opted out of email ({why})")
    for lid, lead in leads.items():
        if lead.do_not_contact:
            reasons.setdefault(lid, f"lead {lid} is marked do-not-contact")
        elif lead.stage in ("unsubscribed", "do_not_contact"):
            reasons.setdefault(lid, f"lead {lid} is in stage {lead.stage}")
    return leads, reasons


def enroll(
    app: App,
    sequence_id: str,
    lead_ids: Iterable[str],
    *,
    cause: str = "enrolled by hand",
    progress: Callable[[int], None] | None = None,
) -> EnrollReport:
    now = app.clock.now()
    report = EnrollReport(sequence_id)
    wanted = list(dict.fromkeys(lid.strip() for lid in lead_ids if lid.strip()))
    with app.engine.begin() as conn:
        current = for_enrollment(conn, app.catalog, sequence_id, now)
    version_id, report.version, spec = current.id, current.version, current.spec
    planners: dict[tuple[str | None, str | None], Planner] = {}  # one per (time zone, country) seen
    for start in range(0, len(wanted), CHUNK):
        chunk = wanted[start : start + CHUNK]
        try:
            with app.engine.begin() as conn:
                done, refused = _enroll_chunk(app, conn, spec, version_id, chunk, now, cause, report.version, planners)
            report.enrolled += done
            report.refused += refused
        except IntegrityError:
            # A concurrent enrollment won a race for some lead: redo this chunk lead by lead,
            # so the others still go in and the loser is refused with its reason.
            for lead_id in chunk:
                try:
                    with app.engine.begin() as conn:
                        done, refused = _enroll_chunk(
                            app, conn, spec, version_id, [lead_id], now, cause, report.version, planners
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


def enroll_in(
    conn: Connection, app: App, sequence_id: str, lead_ids: Sequence[str], now: Any, cause: str
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Enroll inside the caller's transaction (rules, recycles, inbound leads): all or nothing with it."""
    current = for_enrollment(conn, app.catalog, sequence_id, now)
    return _enroll_chunk(app, conn, current.spec, current.id, lead_ids, now, cause, current.version)


def _enroll_chunk(
    app: App,
    conn: Connection,
    spec: SequenceSpec,
    version_id: int,
    chunk: Sequence[str],
    now: Any,
    cause: str,
    version: int,
    planners: dict[tuple[str | None, str | None], Planner] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Enroll one chunk in `conn`'s transaction; returns (enrolled, refused) once written.

    `planners` caches one planner per (time zone, country) across the chunks of one call.
    """
    if planners is None:
        planners = {}
    leads, refused = _leads_and_refusals(conn, chunk, spec)
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
        key = (lead.timezone, lead.country)
        planner = planners.get(key)
        if planner is None:
            planner = planners[key] = app.planner(spec, lead.timezone, lead.country)
        try:
            due = planner.first_due(now, lead_id)
        except ValueError as exc:  # e.g. an `at` time outside this lead's window: nothing can be planned
            refusals.append({"lead": lead_id, "reason": f"cannot plan {spec.id} for lead {lead_id}: {exc}"})
            continue
        due_iso = due.isoformat()
        rows.append((lead_id, due))
        detail = {"sequence": spec.id, "version": version, "first_step": first.id, "due_at": due_iso}
        history.append((lead_id, detail))
        enrolled.append({"lead": lead_id, "next_step": first.id, "next_due_at": due_iso})
    if rows:
        constant = {
            "sequence_id": spec.id, "version_id": version_id, "kind": spec.kind, "state": "active",
            "enrolled_at": now, "next_index": 0, "next_step": first.id, "dropped_channels": [],
        }  # fmt: skip
        insert_many(conn, EnrollmentT, ("lead_id", "next_due_at"), rows, constant)
        insert_many(conn, HistoryT, ("lead_id", "detail"), history, {"at": now, "kind": "enrolled", "cause": cause})
        stage = "working" if spec.kind == "outbound" else "nurture"
        moving = [lead_id for lead_id, _ in rows if leads[lead_id].stage != stage]  # already there: nothing to write
        if moving:
            conn.execute(
                LeadT.update().where(LeadT.c.id.in_(moving), LeadT.c.stage.in_(STAGES_THAT_MOVE)).values(stage=stage)
            )
    return enrolled, refusals
