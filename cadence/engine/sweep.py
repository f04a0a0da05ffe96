"""Housekeeping that keeps every lead moving: lost claims, expired tasks, pauses that end, recycles due.

- A `sending` touch whose lease ran out belonged to a worker that died mid-send, or
  is too slow to trust. We cannot know whether the prospect got it, so it becomes
  `unknown` and waits for a person (`cadence retry`), unless `engine.resend_unknown`
  says to resend. The worker, if it was only slow, may still settle it with what
  really happened, as long as nobody claimed the touch again.
- An open task nobody worked for `tasks.expire_after_days` allowed days expires,
  so no lead stalls for ever; the sequence moves on. Its deadline is stored when it
  opens, so expiring is one UPDATE on an index of open tasks by deadline.
- A paused enrollment whose pause is over resumes; a lead whose cool-off is over is
  enrolled into its recycle sequence.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from cadence.engine.isolation import describe, set_aside
from cadence.enrollment.enroll import enroll_in
from cadence.names import LIVE_STATES, Channel, Event, HistoryKind, TouchStatus
from cadence.outcomes.completion import move_on
from cadence.outcomes.events import on_event
from cadence.outcomes.pauses import resume_enrollment
from cadence.outcomes.snooze import task_deadline
from cadence.store import enrollments, history, leads, recycles, tasks, touches
from cadence.store.db import is_transient, isolated
from cadence.store.rows import EnrollmentRow, TouchRow

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from cadence.app import App
    from cadence.plan.planner import Planner

log = logging.getLogger("cadence.engine")
UNDATED_BATCH = 500  # open tasks without a deadline dated a sweep (a minute): a backlog clears in a few


@dataclass
class SweepReport:
    unknown: int = 0
    resent: int = 0
    expired: int = 0
    resumed: int = 0
    recycled: int = 0
    unknown_by_channel: Counter[str] = field(default_factory=Counter)  # the lost claims, by channel: for metrics

    def absorb(self, other: SweepReport) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_json(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "unknown_by_channel"}


def sweep(app: App, now: datetime) -> SweepReport:
    """Each duty in its own transaction, each item in its own savepoint: one broken item never
    blocks the others, and an item that cannot be carried out is recorded and set aside so it
    does not come back every minute."""
    report = SweepReport()
    for duty in (_expire_leases, _expire_tasks, _end_pauses, _recycles_due):
        try:
            with app.engine.begin() as conn:
                duty(app, conn, now, report)
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("housekeeping: %s failed (%s); it runs again next time", duty.__name__, describe(exc))
    return report


def _end_pauses(app: App, conn: Connection, now: datetime, report: SweepReport) -> None:
    for enrollment in enrollments.paused_until_before(conn, now):
        try:
            with isolated(conn):
                resume_enrollment(conn, app, enrollment, now, "pause ended")
        except Exception as exc:
            if is_transient(exc):
                raise
            set_aside(conn, enrollment.lead_id, enrollment.id, now, "resuming after the pause", exc)
            continue
        report.resumed += 1


def _recycles_due(app: App, conn: Connection, now: datetime, report: SweepReport) -> None:
    """Leads whose cool-off is over are enrolled into their recycle sequence (stored, so restarts keep them)."""
    for recycle in recycles.due(conn, now):
        try:
            with isolated(conn):
                if not recycles.take(conn, recycle.id):
                    continue  # another worker carried it out
                cause = f"recycle: {recycle.cause}"
                enrolled, refused = enroll_in(conn, app, recycle.sequence_id, [recycle.lead_id], now, cause)
        except Exception as exc:
            if is_transient(exc):
                raise
            enrolled, refused = [], [{"reason": describe(exc)}]
            recycles.take(conn, recycle.id)  # carried out as far as it can be: it does not come back
        if enrolled:
            report.recycled += 1
        else:
            detail = {"action": "recycle refused", "sequence": recycle.sequence_id, "reason": refused[0]["reason"]}
            history.add(conn, recycle.lead_id, now, HistoryKind.ACTION, detail, "recycle")


def _expire_leases(app: App, conn: Connection, now: datetime, report: SweepReport) -> None:
    resend = app.settings.engine.resend_unknown
    for touch in touches.lost_claims(conn, now):
        if resend:
            error = f"worker {touch.claimed_by} lost its claim; resending"
        else:
            error = (
                f"the lease of worker {touch.claimed_by} ran out before it recorded the result (it stopped, or "
                f"could not reach the database); check, then `cadence retry {touch.id}`"
            )
        if not touches.release_lost(conn, touch, now, resend=resend, error=error):
            continue  # its worker recorded it meanwhile
        if resend:
            enrollments.defer(conn, touch.enrollment_id, touch.id, now)
            report.resent += 1
        else:
            report.unknown += 1
            report.unknown_by_channel[touch.channel] += 1
        detail = {"touch": touch.id, "step": touch.step_id, "status": TouchStatus.UNKNOWN}
        history.add(conn, touch.lead_id, now, HistoryKind.TOUCH, detail)


def _expire_tasks(app: App, conn: Connection, now: datetime, report: SweepReport) -> None:
    """Date the open tasks still without a deadline, expire every task past its deadline in one
    UPDATE, then tell the rules and move each sequence on, each task in its own savepoint."""
    days = app.settings.tasks.expire_after_days
    _date_tasks(app, conn, days)
    reason = f"not worked within {days} allowed days"
    for task in tasks.expire_due(conn, now, reason):
        try:
            with isolated(conn):
                _after_expiry(app, conn, task, now)
        except Exception as exc:
            if is_transient(exc):
                raise
            why = set_aside(conn, task.lead_id, task.enrollment_id, now, f"expiring task {task.id}", exc)
            tasks.explain_expiry(conn, task.id, f"{reason}; {why}")
        report.expired += 1


def _date_tasks(app: App, conn: Connection, days: int) -> None:
    """Give open tasks without a deadline theirs, UNDATED_BATCH a sweep, oldest first.

    A task is dated when it opens or is snoozed; these are the ones opened before deadlines
    were stored (migration 0007) and a rule's note to the owner (`store.tasks.open_for_owner`).
    A task whose lead's calendar cannot be worked out gets its allowed days as plain days, so
    it still expires; what follows its expiry then fails again, and sets it aside with why.
    """
    dated: list[tuple[int, datetime]] = []
    for task in tasks.undated(conn, UNDATED_BATCH):
        try:
            with isolated(conn):
                _, planner = _plan_of(app, conn, task)
                dated.append((task.id, task_deadline(planner, task.due_at, days)))
        except Exception as exc:
            if is_transient(exc):
                raise
            log.warning("task %d: no deadline in the lead's calendar (%s); %d days it is", task.id, describe(exc), days)
            dated.append((task.id, task.due_at + timedelta(days=days)))
    tasks.date_many(conn, dated)


def _plan_of(app: App, conn: Connection, task: TouchRow) -> tuple[EnrollmentRow, Planner]:
    """A task's enrollment, and the planner of its lead in that enrollment's sequence version."""
    enrollment = enrollments.get(conn, task.enrollment_id)
    lead = leads.get(conn, task.lead_id)
    assert enrollment is not None and lead is not None
    spec, _ = app.specs.get(conn, enrollment.version_id)
    return enrollment, app.planner(spec, lead.timezone, lead.country, lead.region)


def _after_expiry(app: App, conn: Connection, task: TouchRow, now: datetime) -> None:
    """What follows a task's expiry: the rules hear of it, and its sequence moves on."""
    enrollment, planner = _plan_of(app, conn, task)
    on_event(
        conn, app, task.lead_id, Event.EXPIRED, now, cause="task expired", detail={"touch": task.id},
        channel=Channel.TASK, enrollments=[enrollment] if enrollment.state in LIVE_STATES else [],
    )  # fmt: skip
    current = enrollments.get(conn, enrollment.id)
    if current is not None and current.state in LIVE_STATES and current.pending_touch_id == task.id:
        assert current.next_index is not None
        move_on(conn, app, current, planner, current.next_index, now, now)  # paused: nothing due until resumed
