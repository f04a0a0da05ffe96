"""Enrollment: put leads into a sequence, or refuse them with a reason a rep understands.

A lead is in at most one live (active or paused) outbound sequence; opted-out and
do-not-contact leads are refused; nothing is changed for a refused lead. Each
accepted lead gets one enrollment row carrying its first step and its first due
time, computed by the planner in the lead's own calendar. Rows are written in
bulk (`store.enrolling`), so enrolling 100,000 leads is a matter of seconds, and
the partial unique index on live outbound enrollments backs the refusal rule
against races: a chunk that loses one is redone lead by lead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cadence.names import CLOSED_STAGES, SequenceKind, Stage
from cadence.store import enrolling
from cadence.store.enrolling import Batch, Candidate
from cadence.store.errors import Conflict
from cadence.store.versions import for_enrollment

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from cadence.app import App
    from cadence.plan.planner import Planner
    from cadence.spec.model import Sequence as SequenceSpec

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
) -> tuple[dict[str, Candidate], dict[str, str]]:
    """(lead id -> lead, lead id -> the reason it may not enroll) for the leads of `chunk` that exist.

    A live enrollment refuses first, then an opt-out, then do-not-contact or a closed stage.
    """
    leads: dict[str, Candidate] = {}
    reasons: dict[str, str] = {}
    opted_out: dict[str, str] = {}
    for row in enrolling.candidates(conn, chunk):
        lid = row.id
        leads[lid] = row
        if row.live_sequence is not None and (
            row.live_sequence == spec.id
            or (spec.kind == SequenceKind.OUTBOUND and row.live_kind == SequenceKind.OUTBOUND)
        ):
            when = row.live_since.date().isoformat() if row.live_since else "?"
            reasons[lid] = f"lead {lid} is already active in {row.live_sequence} (enrolled {when})"
        if row.opted_out is not None:
            opted_out[lid] = row.opted_out
    for lid, why in opted_out.items():
        reasons.setdefault(lid, f"lead {lid} opted out of email ({why})")
    for lid, lead in leads.items():
        if lead.do_not_contact:
            reasons.setdefault(lid, f"lead {lid} is marked do-not-contact")
        elif lead.stage in CLOSED_STAGES:
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
        except Conflict:
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
                except Conflict:
                    report.refused.append(
                        {"lead": lead_id, "reason": f"lead {lead_id} was enrolled elsewhere meanwhile"}
                    )
        if progress:
            progress(len(chunk))
    return report


def enroll_in(
    conn: Connection, app: App, sequence_id: str, lead_ids: Sequence[str], now: datetime, cause: str
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Enroll inside the caller's transaction (rules, recycles, inbound leads): all or nothing with it.

    A lost race raises `cadence.store.errors.Conflict`; the caller's transaction must roll
    back, unless the call ran inside `store.enrolling.savepoint`.
    """
    current = for_enrollment(conn, app.catalog, sequence_id, now)
    return _enroll_chunk(app, conn, current.spec, current.id, lead_ids, now, cause, current.version)


def _enroll_chunk(
    app: App,
    conn: Connection,
    spec: SequenceSpec,
    version_id: int,
    chunk: Sequence[str],
    now: datetime,
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
    due: list[tuple[str, datetime]] = []
    history: list[tuple[str, dict[str, Any]]] = []
    enrolled: list[dict[str, Any]] = []
    refusals: list[dict[str, str]] = []
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
            first_due = planner.first_due(now, lead_id)
        except ValueError as exc:  # e.g. an `at` time outside this lead's window: nothing can be planned
            refusals.append({"lead": lead_id, "reason": f"cannot plan {spec.id} for lead {lead_id}: {exc}"})
            continue
        due_iso = first_due.isoformat()
        due.append((lead_id, first_due))
        history.append((lead_id, {"sequence": spec.id, "version": version, "first_step": first.id, "due_at": due_iso}))
        enrolled.append({"lead": lead_id, "next_step": first.id, "next_due_at": due_iso})
    if due:
        enrolling.add(conn, Batch(spec.id, version_id, spec.kind, first.id, now, cause), due, history)
        stage = Stage.WORKING if spec.kind == SequenceKind.OUTBOUND else Stage.NURTURE
        moving = [lead_id for lead_id, _ in due if leads[lead_id].stage != stage]  # already there: nothing to write
        enrolling.move_stage(conn, moving, stage)
    return enrolled, refusals
