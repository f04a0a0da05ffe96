"""Step 1 of a pass: claim due touches in one transaction, before any network I/O.

The claim locks due enrollments, settles what needs no network (a touch that cannot
reach the lead is skipped, one outside its window or over a cap is deferred), and
persists a `sending` touch with this worker's id and a lease for everything else.
A worker that dies after this leaves `sending` touches whose lease runs out; the
sweep calls them `unknown`, and nothing resends them blindly.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from cadence.engine.isolation import describe, set_aside
from cadence.engine.jobs import Job, PassReport
from cadence.names import MESSAGE_CHANNELS, Channel, HistoryKind, TouchStatus
from cadence.outcomes.completion import move_on
from cadence.plan.gate import hold_until, suppression_keys, why_unusable
from cadence.plan.planner import Planner
from cadence.plan.timing import zone
from cadence.plan.variants import assign
from cadence.spec.model import Sequence
from cadence.store import claims, enrollments, history, leads, suppressions
from cadence.store.db import is_transient, isolated
from cadence.store.rows import EnrollmentRow, LeadRow

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from cadence.app import App


log = logging.getLogger("cadence.engine")


class ClaimLost(RuntimeError):
    """The claim's own writes did not all match: it is rolled back, and nothing was sent."""


def claim_batch(app: App, worker_id: str, now: datetime, report: PassReport) -> list[Job]:
    """Claim a batch; if one due enrollment breaks the claim, claim again with that one set aside."""
    part = PassReport()
    try:
        jobs = _claim(app, worker_id, now, part, isolate=False)
    except ClaimLost:
        raise
    except Exception as exc:
        if is_transient(exc):
            raise
        log.warning("claiming a batch failed (%s); claiming each due touch on its own", describe(exc))
        part = PassReport()
        jobs = _claim(app, worker_id, now, part, isolate=True)
    report.merge(part)
    return jobs


def _claim(app: App, worker_id: str, now: datetime, report: PassReport, *, isolate: bool) -> list[Job]:
    settings = app.settings
    lease_until = now + timedelta(seconds=settings.engine.lease_seconds)
    jobs: list[Job] = []
    with app.engine.begin() as conn:
        claims.take_claim_turn(conn)  # so the caps below count every claim made before this one
        rows = claims.lock_due(conn, now, settings.engine.batch_size)
        if not rows:
            return []
        by_id = leads.by_ids(conn, (r.lead_id for r in rows))
        blocked = suppressions.suppressed(conn, (key for lead in by_id.values() for key in suppression_keys(lead)))
        lead_times: dict[str, list[datetime | None]] = {}
        for lead_id, at in claims.recent_touches(conn, by_id, now - timedelta(days=2)):
            lead_times.setdefault(lead_id, []).append(at)
        owners = {lead.owner for lead in by_id.values() if lead.owner}
        sender_counts = _sender_counts(app, conn, owners, now)
        retries = claims.touch_attempts(conn, [r.pending_touch_id for r in rows if r.pending_touch_id])
        inserts: list[dict[str, Any]] = []
        deferrals: list[tuple[int, int | None, datetime]] = []  # written together, after the batch is decided
        reclaims: list[tuple[int, dict[str, Any]]] = []  # retries: their touch claimed again

        def consider(row: EnrollmentRow) -> None:
            """Skip, defer or claim one due enrollment; the batch's lists change only once nothing can fail."""
            lead = by_id[row.lead_id]
            spec, _ = app.specs.get(conn, row.version_id)
            index = row.next_index
            assert index is not None, "a due enrollment always has a next step"
            step = spec.steps[index]
            planner = app.planner(spec, lead.timezone, lead.country, lead.region)
            reason = why_unusable(step, lead, row.dropped_channels or [], blocked, settings)
            if reason:
                _skip(app, conn, row, lead, spec, planner, index, reason, now)
                report.add("skipped", step.channel)
                return
            later = hold_until(step, lead, planner, now, lead_times.get(lead.id, []), sender_counts, settings)
            if later is not None:
                deferrals.append((row.id, row.pending_touch_id, later))
                report.add("deferred", step.channel)
                return
            message_id = None
            if step.channel == Channel.EMAIL:
                # A resend keeps the Message-ID of the attempt that may have arrived, so the
                # receiving side can drop the duplicate if it did.
                earlier = retries.get(row.pending_touch_id, (0, None))[1] if row.pending_touch_id else None
                message_id = earlier or _message_id(app, lead)
            variant = assign(spec.id, step, lead.id)
            touch = {
                "claimed_by": worker_id, "lease_until": lease_until, "message_id": message_id, "owner": lead.owner,
                "variant": variant, "sender": lead.owner if step.channel in MESSAGE_CHANNELS else None,
            }  # fmt: skip
            job = Job(0, row, lead, spec, index, planner, app.renderer_for(conn, row.version_id), variant, message_id)
            if row.pending_touch_id is not None:  # a retry: its touch is claimed again, with the batch's
                reclaims.append((row.pending_touch_id, touch))
                job.touch_id = row.pending_touch_id
                job.attempts = retries.get(job.touch_id, (0, None))[0]
            else:
                inserts.append(
                    {
                        **touch, "status": TouchStatus.SENDING, "enrollment_id": row.id, "lead_id": lead.id,
                        "sequence_id": spec.id, "step_id": step.id, "step_index": index, "channel": step.channel,
                        "due_at": row.next_due_at, "attempts": 0,
                    }
                )  # fmt: skip
            jobs.append(job)
            lead_times.setdefault(lead.id, []).append(now)
            if step.channel == Channel.EMAIL:
                counts = sender_counts.setdefault(lead.owner or "", [0, 0])  # in flight: today and this minute
                counts[0] += 1
                counts[1] += 1

        for row in rows:
            if not isolate:
                consider(row)
                continue
            try:
                with isolated(conn):
                    consider(row)
            except Exception as exc:
                if is_transient(exc) or isinstance(exc, ClaimLost):
                    raise
                set_aside(conn, row.lead_id, row.id, now, f"claiming {row.sequence_id}/{row.next_step}", exc)
        if enrollments.defer_many(conn, deferrals) != len(deferrals):
            raise ClaimLost(f"deferred fewer than the {len(deferrals)} locked enrollments held back")
        if claims.reclaim_many(conn, reclaims) != len(reclaims):
            raise ClaimLost(f"of {len(reclaims)} touches due for their retry, some were no longer waiting")
        fresh = iter(claims.claim_new(conn, inserts))
        for job in jobs:
            if job.touch_id == 0:
                job.touch_id = next(fresh)
        # One statement for the batch (executemany), not one per touch.
        claimed = enrollments.claim_many(
            conn, [(j.enrollment.id, j.enrollment.pending_touch_id, j.touch_id) for j in jobs]
        )
        if claimed != len(jobs):
            raise ClaimLost(f"claimed {claimed} of {len(jobs)} locked enrollments")
    report.claimed = len(jobs)
    return jobs


def _sender_counts(app: App, conn: Connection, senders: set[str], now: datetime) -> dict[str, list[int]]:
    """Per sender, [emails on the mailbox's day, emails in the last minute], in flight counted in both.

    Counted once per claim, then kept up to date as the claim adds touches, so a batch
    costs one query over the senders' recent sends rather than one per touch. A mailbox's
    day runs on config.yaml's time zone.
    """
    home = zone(app.settings.timezone)
    today = now.astimezone(home).date()
    day_start = datetime.combine(today, time(0), tzinfo=home)
    day_end = datetime.combine(today + timedelta(days=1), time(0), tzinfo=home)
    return claims.sender_counts(conn, senders, day_start, day_end, now - timedelta(minutes=1))


def _skip(
    app: App,
    conn: Connection,
    row: EnrollmentRow,
    lead: LeadRow,
    spec: Sequence,
    planner: Planner,
    index: int,
    reason: str,
    now: datetime,
) -> None:
    step = spec.steps[index]
    values = {
        "enrollment_id": row.id, "lead_id": lead.id, "sequence_id": spec.id, "step_id": step.id, "step_index": index,
        "channel": step.channel, "due_at": row.next_due_at, "attempts": 0, "owner": lead.owner,
    }  # fmt: skip
    claims.skip(conn, row.pending_touch_id, values, reason, now)
    detail = {"sequence": spec.id, "step": step.id, "status": TouchStatus.SKIPPED, "reason": reason}
    history.add(conn, lead.id, now, HistoryKind.TOUCH, detail)
    move_on(conn, app, row, planner, index, now, now)


def _message_id(app: App, lead: LeadRow) -> str:
    domain = app.settings.email.domain
    if not domain:
        domain = app.settings.sender(lead.owner or "").email.rpartition("@")[2]
    return f"<{secrets.token_hex(12)}@{domain}>"
