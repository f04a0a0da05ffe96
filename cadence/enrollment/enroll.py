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

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice
from typing import TYPE_CHECKING, Any

from cadence.enrollment.readiness import Readiness
from cadence.names import CLOSED_STAGES, HistoryKind, SequenceKind, Stage
from cadence.store import enrolling, history, listings, recycles
from cadence.store.enrolling import Batch, Candidate
from cadence.store.errors import Conflict
from cadence.store.versions import for_enrollment, publish

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
    count: int = 0  # leads enrolled, whether or not `enrolled` lists them (see `enroll(keep=...)`)

    def as_json(self) -> dict[str, Any]:
        return {"sequence": self.sequence, "version": self.version, "enrolled": self.enrolled, "refused": self.refused}


@dataclass
class Target:
    """The version enrollments follow. A never-published file (id 0) is published by the first
    enrollment that is written, so a refused enrollment publishes nothing."""

    sequence_id: str
    spec: SequenceSpec
    id: int
    version: int
    readiness: Readiness | None = None  # None: --allow-missing (send-time checks only)


def _leads_and_refusals(
    conn: Connection, chunk: Sequence[str], spec: SequenceSpec, now: datetime, cooloff: timedelta, force: bool
) -> tuple[dict[str, Candidate], dict[str, str]]:
    """(lead id -> lead, lead id -> the reason it may not enroll) for the leads of `chunk` that exist.

    A live enrollment refuses first, then an opt-out, then do-not-contact or a closed stage;
    without `force`, a pending recycle or a sequence finished within the cool-off refuses too.
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
    if not force:  # the candidates say who has a pending recycle or a finished enrollment: only those are read
        recycling = [lid for lid, lead in leads.items() if lead.recycling and lid not in reasons]
        for lid, recycle in recycles.pending_of(conn, recycling).items():
            on = recycle.due_at.date().isoformat()
            reasons[lid] = (
                f"lead {lid} has a pending recycle into {recycle.sequence_id} on {on}; "
                "use --force to enroll it now (that cancels the recycle)"
            )
        if cooloff > timedelta(0):
            since = now - cooloff
            maybe = [
                lid
                for lid, lead in leads.items()
                if lead.last_finished is not None and lead.last_finished >= since and lid not in reasons
            ]
            recent = enrolling.finished_since(conn, maybe, since)
            for lid, done in recent.items():
                reasons[lid] = (
                    f"lead {lid} finished {done.sequence_id} on {done.finished_at.date().isoformat()} "
                    f"({done.outcome}), within the {_days(cooloff)} cool-off (enroll.cooloff); use --force to enroll it"
                )
    return leads, reasons


def _days(period: timedelta) -> str:
    return f"{period.days}-day" if period.days and not period.seconds else str(period)


def enroll(
    app: App,
    sequence_id: str,
    lead_ids: Iterable[str],
    *,
    cause: str = "enrolled by hand",
    force: bool = False,
    allow_missing: bool = False,
    progress: Callable[[int], None] | None = None,
    unique: bool = False,
    keep: bool = True,
) -> EnrollReport:
    """Enroll by hand (`cadence enroll`): refused leads are listed with the reason and left unchanged.

    `force` enrolls leads a pending recycle or the cool-off would refuse, and cancels
    their pending recycles (the lead's history says so). A lead whose data a step's template
    needs but lacks is refused, naming the field and the template, unless `allow_missing`.

    `lead_ids` is read a chunk at a time, so it may stream from the store: with `unique` (the
    caller vouches that no id repeats) nothing remembers the ids already seen, and without
    `keep` the report counts the enrolled leads instead of listing them, so enrolling a
    million leads holds one chunk in memory, not a million.
    """
    now = app.clock.now()
    report = EnrollReport(sequence_id)
    wanted = _stripped(lead_ids) if unique else iter(dict.fromkeys(_stripped(lead_ids)))
    with app.engine.connect() as conn:
        current = for_enrollment(conn, app.catalog, sequence_id, now, publish_now=False)
        target = Target(sequence_id, current.spec, current.id, current.version)
        if not allow_missing:
            target.readiness = _readiness(app, conn, target)
    planners: dict[tuple[str | None, str | None, str | None], Planner] = {}  # one per (zone, country, region)
    while chunk := list(islice(wanted, CHUNK)):
        published_before = target.id
        try:
            with app.engine.begin() as conn:
                done, refused = _enroll_chunk(app, conn, target, chunk, now, cause, force, planners)
            _add(report, done, refused, keep)
        except Conflict:
            # A concurrent enrollment won a race for some lead: redo this chunk lead by lead,
            # so the others still go in and the loser is refused with its reason.
            target.id = published_before  # a version published in the rolled-back chunk is gone with it
            for lead_id in chunk:
                published_before = target.id
                try:
                    with app.engine.begin() as conn:
                        done, refused = _enroll_chunk(app, conn, target, [lead_id], now, cause, force, planners)
                    _add(report, done, refused, keep)
                except Conflict:
                    target.id = published_before
                    report.refused.append(
                        {"lead": lead_id, "reason": f"lead {lead_id} was enrolled elsewhere meanwhile"}
                    )
        if progress:
            progress(len(chunk))
    report.version = target.version
    return report


def all_new_leads(app: App, page: int = CHUNK) -> Iterator[str]:
    """Every lead in stage `new` never enrolled anywhere, read a page at a time (`enroll --all-new`).

    Paged by id, each page in its own short read: a million new leads stream through `enroll`
    a chunk at a time instead of sitting in memory, and leads enrolled meanwhile drop out.
    """
    after: str | None = None
    while True:
        with app.engine.connect() as conn:
            ids = listings.new_leads_never_enrolled_after(conn, after, page)
        yield from ids
        if len(ids) < page:
            return
        after = ids[-1]


def _stripped(lead_ids: Iterable[str]) -> Iterator[str]:
    return (stripped for lid in lead_ids if (stripped := lid.strip()))


def _add(report: EnrollReport, done: list[dict[str, Any]], refused: list[dict[str, str]], keep: bool) -> None:
    report.count += len(done)
    if keep:
        report.enrolled += done
    report.refused += refused


def enroll_in(
    conn: Connection,
    app: App,
    sequence_id: str,
    lead_ids: Sequence[str],
    now: datetime,
    cause: str,
    *,
    force: bool = True,
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Enroll inside the caller's transaction (rules, recycles, inbound leads): all or nothing with it.

    These are the system's own decisions, so they enroll past a pending recycle and the
    cool-off (and cancel the recycle) unless `force=False`. An unknown, broken or retired
    sequence refuses every lead with the reason instead of raising, so one rule pointing at
    a deleted file cannot stop the engine. A lost race raises `cadence.store.errors.Conflict`;
    the caller's transaction must roll back, unless the call ran inside `store.enrolling.savepoint`.
    """
    try:
        current = for_enrollment(conn, app.catalog, sequence_id, now, publish_now=False)
    except KeyError as exc:
        reason = str(exc.args[0]) if exc.args else f"sequence {sequence_id!r} cannot be enrolled into"
        return [], [{"lead": lead_id, "reason": reason} for lead_id in lead_ids]
    target = Target(sequence_id, current.spec, current.id, current.version)
    target.readiness = _readiness(app, conn, target)
    return _enroll_chunk(app, conn, target, lead_ids, now, cause, force)


def _readiness(app: App, conn: Connection, target: Target) -> Readiness:
    """The strict render check, with the templates the enrollments will send: the published version's."""
    renderer = app.renderer_for(conn, target.id) if target.id else app.renderer
    return Readiness(app, target.spec, renderer)


def _enroll_chunk(
    app: App,
    conn: Connection,
    target: Target,
    chunk: Sequence[str],
    now: datetime,
    cause: str,
    force: bool,
    planners: dict[tuple[str | None, str | None, str | None], Planner] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Enroll one chunk in `conn`'s transaction; returns (enrolled, refused) once written.

    `planners` caches one planner per (time zone, country, region) across the chunks of one call.
    """
    if planners is None:
        planners = {}
    spec = target.spec
    leads, refused = _leads_and_refusals(conn, chunk, spec, now, app.settings.enroll.cooloff_period, force)
    if target.readiness is not None:  # the candidates carry what the templates see: no second read
        for lead_id, candidate in leads.items():
            if lead_id in refused:
                continue
            problem = target.readiness.problem(candidate)
            if problem:
                hint = (
                    "" if problem.endswith("(fix the template)") else " (fix the lead, or enroll with --allow-missing)"
                )
                refused[lead_id] = problem + hint
    due: list[tuple[str, datetime]] = []
    due_iso: list[str] = []
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
        key = (lead.timezone, lead.country, lead.region)
        planner = planners.get(key)
        if planner is None:
            planner = planners[key] = app.planner(spec, lead.timezone, lead.country, lead.region)
        try:
            first_due = planner.first_due(now, lead_id)
        except ValueError as exc:  # e.g. an `at` time outside this lead's window: nothing can be planned
            refusals.append({"lead": lead_id, "reason": f"cannot plan {spec.id} for lead {lead_id}: {exc}"})
            continue
        iso = first_due.isoformat()
        due.append((lead_id, first_due))
        due_iso.append(iso)
        enrolled.append({"lead": lead_id, "next_step": first.id, "next_due_at": iso})
    if not due:
        return enrolled, refusals
    if target.id == 0:  # the first enrollment into a never-published file publishes it
        target.id, target.version = publish(conn, app.catalog.get(target.sequence_id), now)
    # Leads due at the same second share one detail dict, which the store turns into JSON once.
    about = {"sequence": spec.id, "version": target.version, "first_step": first.id}
    shared: dict[str, dict[str, Any]] = {}
    details: list[tuple[str, dict[str, Any]]] = []
    for (lead_id, _), iso in zip(due, due_iso, strict=True):
        detail = shared.get(iso)
        if detail is None:
            detail = shared[iso] = {**about, "due_at": iso}
        details.append((lead_id, detail))
    enrolling.add(conn, Batch(spec.id, target.id, spec.kind, first.id, now, cause), due, details)
    stage = Stage.WORKING if spec.kind == SequenceKind.OUTBOUND else Stage.NURTURE
    moving = [lead_id for lead_id, _ in due if leads[lead_id].stage != stage]  # already there: nothing to write
    enrolling.move_stage(conn, moving, stage)
    if force:
        for lead_id in recycles.pending_of(conn, [lead_id for lead_id, _ in due]):
            cancel_pending_recycles(conn, lead_id, now, f"enrolled into {spec.id} ({cause})")
    return enrolled, refusals


def cancel_pending_recycles(conn: Connection, lead_id: str, now: datetime, by: str) -> list[str]:
    """A later outcome decided this lead's future: its pending recycles are cancelled, and its history says by what."""
    done = []
    for recycle in recycles.cancel_for_lead(conn, lead_id):
        detail = {
            "action": "recycle cancelled", "sequence": recycle.sequence_id, "due_at": recycle.due_at.isoformat(),
            "cancelled_by": by,
        }  # fmt: skip
        history.add(conn, lead_id, now, HistoryKind.ACTION, detail, by)
        done.append(f"cancelled the recycle into {recycle.sequence_id} ({by})")
    return done
