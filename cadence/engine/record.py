"""Step 3 of a pass: record what the sends did, for the claims this worker still holds, in one transaction.

Sent, task opened, unknown (the provider may have it), retry later, or failed; then
the enrollments move on. Every write is guarded (`cadence.store.touches.settle`): a
worker whose lease ran out and whose touch was claimed again by another worker drops
its result, records nothing over the newer claim, and says so in the log.

A database error while recording is retried, bounded and with backoff, because the
messages are already out: giving up makes them `unknown`, and the touch then says
what really happened (sent, but not recorded) rather than that the worker stopped.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from cadence.channels.base import PermanentError, UncertainError
from cadence.engine.isolation import describe, set_aside
from cadence.engine.jobs import Job, PassReport
from cadence.names import TASK_CHANNELS, Channel, EnrollmentState, HistoryKind, TouchStatus
from cadence.outcomes.completion import move_on, move_on_many
from cadence.outcomes.events import on_event
from cadence.outcomes.snooze import task_deadline
from cadence.plan.planner import Planner
from cadence.store import enrollments, history, touches
from cadence.store.db import is_transient, isolated
from cadence.store.rows import EnrollmentRow
from cadence.store.touches import Result

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from cadence.app import App

log = logging.getLogger("cadence.engine")
RECORD_ATTEMPTS = 5
RECORD_BACKOFF_SECONDS = 0.25  # doubled after each failed attempt: about 4 s in all


async def record_batch(
    app: App, worker_id: str, jobs: Sequence[Job], report: PassReport, *, backoff: float = RECORD_BACKOFF_SECONDS
) -> None:
    """Record the batch, retrying a database error up to RECORD_ATTEMPTS times before giving up.

    The database work runs in a thread: the event loop keeps the next batch's conversations moving.
    """
    for attempt in range(1, RECORD_ATTEMPTS + 1):
        part = PassReport()
        try:
            try:
                await asyncio.to_thread(record, app, worker_id, jobs, app.clock.now(), part)
            except Exception as exc:
                if is_transient(exc):
                    raise
                # One job's rules (or a bug) failed the batch: record each job on its own, and set
                # aside only the one that fails again.
                log.warning("recording the batch failed (%s); recording each touch on its own", describe(exc))
                part = PassReport()
                await asyncio.to_thread(record, app, worker_id, jobs, app.clock.now(), part, isolate=True)
        except Exception as exc:
            if not is_transient(exc):
                raise
            if attempt == RECORD_ATTEMPTS:
                log.error("recording %d touches failed %d times, last: %s", len(jobs), attempt, exc)
                marked = await asyncio.to_thread(_unrecorded, app, worker_id, jobs, exc, attempt)
                for job in jobs:
                    if job.touch_id in marked:
                        report.add("unknown", job.step.channel)
                return
            log.warning("recording %d touches failed (attempt %d): %s; retrying", len(jobs), attempt, exc)
            await asyncio.sleep(backoff * 2 ** (attempt - 1))
            continue
        report.merge(part)
        return


def record(
    app: App, worker_id: str, jobs: Sequence[Job], now: datetime, report: PassReport, *, isolate: bool = False
) -> None:
    """Record in one transaction; with `isolate`, what follows each touch (history, rules, the move) runs
    in its own savepoint, and a job that fails there is set aside (`cadence.engine.isolation`)."""
    results = {job.touch_id: _result(app, job, now) for job in jobs}
    with app.engine.begin() as conn:
        won = touches.settle(conn, worker_id, now, list(results.values()))
        for job in jobs:
            if job.touch_id not in won:
                log.warning(
                    "touch %d: this worker's claim was lost (its lease ran out and the touch was claimed or settled "
                    "since); its result (%s) is dropped",
                    job.touch_id,
                    "sent" if job.error is None else job.error,
                )
                report.add("dropped", job.step.channel)
        mine = [j for j in jobs if j.touch_id in won]
        if not isolate:
            batch = _Batch(_batched_history(conn, mine, results, now))
            for job in mine:
                _follow_up(app, conn, job, results, now, report, batch)
            move_on_many(conn, app, batch.moves, now, now)
            enrollments.defer_many(conn, batch.retries)  # a finished enrollment no longer matches, as with `defer`
            return
        for job in mine:
            part = PassReport()
            try:
                with isolated(conn):
                    _follow_up(app, conn, job, results, now, part, None)
            except Exception as exc:
                if is_transient(exc):
                    raise
                set_aside(conn, job.enrollment.lead_id, job.enrollment.id, now, f"recording touch {job.touch_id}", exc)
                part = _counted(job, results)
            report.merge(part)


@dataclass
class _Batch:
    """What a batch writes together rather than touch by touch: no statement per touch on the usual path."""

    logged: set[int]  # touches whose history row `_batched_history` wrote
    moves: list[tuple[EnrollmentRow, Planner, int]] = field(default_factory=list)  # sent: moved on together
    retries: list[tuple[int, int | None, datetime]] = field(default_factory=list)  # deferred to their backoff


def _follow_up(
    app: App,
    conn: Connection,
    job: Job,
    results: dict[int, Result],
    now: datetime,
    report: PassReport,
    batch: _Batch | None,
) -> None:
    """What follows one recorded touch: its history, the rules for a permanent failure, the enrollment's move.

    With `batch`, what can be written with the rest of the batch (a history row already written,
    the move of a sent touch, a retry's deferral) is left to it; without, each is written here.
    """
    step, lead_id = job.step, job.enrollment.lead_id
    logged = batch is not None and job.touch_id in batch.logged
    detail = {"sequence": job.spec.id, "step": step.id, "channel": step.channel, "touch": job.touch_id}
    if job.error is None and step.channel not in TASK_CHANNELS:
        if batch is not None and logged:  # the lead's only touch in the batch
            batch.moves.append((job.claimed, job.planner, job.index))
        else:
            history.add(conn, lead_id, now, HistoryKind.TOUCH, {**detail, "status": TouchStatus.SENT})
            move_on(conn, app, job.claimed, job.planner, job.index, now, now)
        report.add("sent", step.channel)
        return
    if job.error is None:
        if not logged:
            history.add(conn, lead_id, now, HistoryKind.TASK_OPENED, {**detail, "owner": job.lead.owner})
        report.add("tasks_opened", step.channel)
        return  # the sequence waits for the task: logged, or expired by the sweep
    error = job.error
    result = results[job.touch_id]
    if result.status == TouchStatus.UNKNOWN:
        if not logged:
            history.add(
                conn, lead_id, now, HistoryKind.TOUCH, {**detail, "status": TouchStatus.UNKNOWN, "error": str(error)}
            )
        report.add("unknown", step.channel)
        return  # the enrollment waits, like one whose worker died mid-send
    if result.status == TouchStatus.SCHEDULED:
        assert result.retry_at is not None
        if batch is not None:
            batch.retries.append((job.enrollment.id, job.touch_id, result.retry_at))
        else:
            enrollments.defer(conn, job.enrollment.id, job.touch_id, result.retry_at)
        report.add("retrying", step.channel)
        return
    history.add(conn, lead_id, now, HistoryKind.TOUCH, {**detail, "status": TouchStatus.FAILED, "error": str(error)})
    report.add("failed", step.channel)
    event = error.event if isinstance(error, PermanentError) else None
    if event:
        on_event(
            conn, app, lead_id, event, now, cause=f"{step.channel} {step.id}: {error}", detail=detail,
            channel=step.channel,
        )  # fmt: skip
    current = enrollments.get(conn, job.enrollment.id)
    if current is not None and current.state == EnrollmentState.ACTIVE:
        move_on(conn, app, current, job.planner, job.index, now, now)


def _counted(job: Job, results: dict[int, Result]) -> PassReport:
    """How a set-aside job still counts: its touch was recorded, whatever failed after."""
    part = PassReport()
    status = results[job.touch_id].status
    outcome = {
        TouchStatus.SENT: "sent", TouchStatus.TASK_OPEN: "tasks_opened", TouchStatus.UNKNOWN: "unknown",
        TouchStatus.SCHEDULED: "retrying",
    }.get(status, "failed")  # fmt: skip
    part.add(outcome, job.step.channel)
    return part


def _result(app: App, job: Job, now: datetime) -> Result:
    """What to write on the touch: the status its send ended in, with the text that was sent."""
    step, attempts = job.step, job.attempts + 1
    if step.channel in TASK_CHANNELS and job.error is None:
        deadline = task_deadline(job.planner, now, app.settings.tasks.expire_after_days)  # the task opens now
        return Result(job.touch_id, TouchStatus.TASK_OPEN, job.attempts, job.subject, job.body, expires_at=deadline)
    if job.error is None:
        provider = job.receipt.provider_id if job.receipt and step.channel == Channel.SMS else None
        return Result(job.touch_id, TouchStatus.SENT, attempts, job.subject, job.body, provider_id=provider)
    error = job.error
    if isinstance(error, UncertainError):
        text = f"{error}; check, then `cadence retry {job.touch_id}`"
        return Result(job.touch_id, TouchStatus.UNKNOWN, attempts, job.subject, job.body, error=text)
    if not isinstance(error, PermanentError) and attempts < app.settings.engine.max_attempts:
        retry_at = _retry_at(app, job, attempts, now)
        return Result(job.touch_id, TouchStatus.SCHEDULED, attempts, job.subject, job.body, str(error), None, retry_at)
    return Result(job.touch_id, TouchStatus.FAILED, attempts, job.subject, job.body, error=str(error))


def _batched_history(conn: Connection, jobs: Sequence[Job], results: dict[int, Result], now: datetime) -> set[int]:
    """The history rows of sent, opened and unknown touches, one statement a kind, for leads with no
    other touch in the batch; returns the touches whose row is written.

    A lead with two touches in the batch has them written in turn by `_follow_up`, so that its
    history reads in the same order as if each were recorded alone. A failure is left to
    `_follow_up` too: its rules may write history of their own after it.
    """
    per_lead = Counter(j.enrollment.lead_id for j in jobs)
    rows: dict[HistoryKind, list[tuple[str, dict[str, Any], str | None]]] = defaultdict(list)
    logged: set[int] = set()
    for job in jobs:
        if per_lead[job.enrollment.lead_id] != 1:
            continue
        step = job.step
        detail: dict[str, Any] = {"sequence": job.spec.id, "step": step.id, "channel": step.channel}
        detail["touch"] = job.touch_id
        status = results[job.touch_id].status
        if status == TouchStatus.SENT:
            rows[HistoryKind.TOUCH].append((job.enrollment.lead_id, {**detail, "status": TouchStatus.SENT}, None))
        elif status == TouchStatus.TASK_OPEN:
            rows[HistoryKind.TASK_OPENED].append((job.enrollment.lead_id, {**detail, "owner": job.lead.owner}, None))
        elif status == TouchStatus.UNKNOWN:
            entry = {**detail, "status": TouchStatus.UNKNOWN, "error": str(job.error)}
            rows[HistoryKind.TOUCH].append((job.enrollment.lead_id, entry, None))
        else:
            continue
        logged.add(job.touch_id)
    for kind, batch in rows.items():
        history.add_many(conn, now, kind, batch)
    return logged


def _retry_at(app: App, job: Job, attempts: int, now: datetime) -> datetime:
    base = app.settings.engine.backoff_seconds * 2 ** (attempts - 1)
    digest = hashlib.blake2b(f"{job.touch_id}:{attempts}".encode(), digest_size=2).digest()
    jitter = 0.75 + (int.from_bytes(digest, "big") / 65535) * 0.5
    earliest = now + timedelta(seconds=base * jitter)
    cal = job.planner.calendar
    return cal.first_slot_from(
        cal.local_date(earliest), earliest=earliest, at=None, spread_key=None, window=job.planner.window_for(job.step)
    )


def _unrecorded(app: App, worker_id: str, jobs: Sequence[Job], exc: BaseException, attempts: int) -> set[int]:
    """Give up recording: what went out becomes `unknown`, saying why; returns the touches marked.

    If the database cannot take even this, the touches stay `sending` and the sweep calls
    them unknown when their lease runs out.
    """
    results = []
    for job in jobs:
        what = "sent" if job.error is None else f"attempted ({job.error})"
        error = (
            f"{what}, but recording it failed {attempts} times ({type(exc).__name__}: {exc}); "
            f"check, then `cadence retry {job.touch_id}`"
        )
        results.append(Result(job.touch_id, TouchStatus.UNKNOWN, job.attempts + 1, job.subject, job.body, error))
    try:
        with app.engine.begin() as conn:
            return set(touches.settle(conn, worker_id, app.clock.now(), results))
    except Exception as again:
        if not is_transient(again):
            raise
        log.error("could not mark %d unrecorded touches unknown either: %s", len(jobs), again)
        return set()
