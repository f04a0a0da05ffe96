"""One pass of the engine: claim due work, render it, hand it to its channel, record.

The order is what makes "never twice" hold:
1. claim (one transaction): lock due enrollments, settle what needs no network
   (skips, deferrals out of window or over a cap), and persist a `sending` touch
   with this worker's id and a lease for everything else;
2. render and send, outside any transaction, a batch at a time, concurrently;
3. record (one transaction): sent, retry later, failed, or task opened; plan the next step.
A worker that dies between 1 and 3 leaves `sending` touches whose lease expires;
the sweep turns them into `unknown`, and only `cadence retry` sends them again.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update

from cadence.app import App
from cadence.channels.base import (
    EmailTransport,
    OutgoingEmail,
    OutgoingSms,
    PermanentError,
    Receipt,
    SendError,
    SmsTransport,
    UncertainError,
)
from cadence.config import Sender
from cadence.enrollment.progression import advance, advance_many, defer
from cadence.outcomes.events import HistoryT, add_history, on_event
from cadence.plan.planner import Planner
from cadence.plan.render import Renderer, RenderError
from cadence.plan.template_context import template_context
from cadence.plan.timing import parse_time_of_day, zone
from cadence.plan.tokens import sign
from cadence.plan.variants import assign
from cadence.spec.model import Sequence as SequenceSpec
from cadence.spec.model import Step
from cadence.store import queries
from cadence.store.queries import EnrollmentT, TouchT

TASK_CHANNELS = ("call", "task")
RENDER_SLICE = 32  # touches rendered while the slices before them are sent (see Dispatcher.render_and_send)
SLICES_IN_FLIGHT = 2  # slices handed to the transports at once


@dataclass
class Job:
    """One claimed touch on its way through render -> send -> record."""

    touch_id: int
    enrollment: Any
    lead: Any
    spec: SequenceSpec
    index: int
    planner: Planner
    renderer: Renderer
    variant: str | None = None
    message_id: str | None = None
    attempts: int = 0
    sender: Sender | None = None
    outgoing: OutgoingEmail | OutgoingSms | None = None
    subject: str | None = None
    body: str | None = None
    receipt: Receipt | None = None
    error: SendError | None = None

    @property
    def step(self) -> Step:
        return self.spec.steps[self.index]


@dataclass
class PassReport:
    claimed: int = 0
    sent: Counter[str] = field(default_factory=Counter)
    tasks_opened: int = 0
    skipped: int = 0
    deferred: int = 0
    failed: int = 0
    retrying: int = 0
    unknown: int = 0
    batches: int = 0

    def merge(self, other: PassReport) -> None:
        self.claimed += other.claimed
        self.sent.update(other.sent)
        self.tasks_opened += other.tasks_opened
        self.skipped += other.skipped
        self.deferred += other.deferred
        self.failed += other.failed
        self.retrying += other.retrying
        self.unknown += other.unknown
        self.batches += other.batches

    def as_json(self) -> dict[str, Any]:
        return {
            "claimed": self.claimed,
            "sent": dict(self.sent),
            "tasks_opened": self.tasks_opened,
            "skipped": self.skipped,
            "deferred": self.deferred,
            "failed": self.failed,
            "retrying": self.retrying,
            "unknown": self.unknown,
            "batches": self.batches,
        }


class Dispatcher:
    def __init__(self, app: App, email: EmailTransport, sms: SmsTransport, worker_id: str):
        self.app = app
        self.email = email
        self.sms = sms
        self.worker_id = worker_id
        self.settings = app.settings

    # -- the pass -------------------------------------------------------------------------

    async def drain(self, *, max_batches: int = 10_000, stop: asyncio.Event | None = None) -> PassReport:
        """Claim and send batches until nothing is due now (or `stop` is set between batches)."""
        report = PassReport()
        for _ in range(max_batches):
            if stop is not None and stop.is_set():
                break
            batch = await self.run_batch()
            report.merge(batch)
            if batch.claimed == 0 and batch.skipped == 0 and batch.deferred == 0:
                break
        return report

    async def run_batch(self) -> PassReport:
        now = self.app.clock.now()
        report = PassReport(batches=1)
        jobs = self.claim(now, report)
        if jobs:
            await self.render_and_send(jobs)
            self.record(jobs, self.app.clock.now(), report)
        return report

    # -- 1. claim -------------------------------------------------------------------------

    def claim(self, now: datetime, report: PassReport) -> list[Job]:
        settings = self.settings
        lease_until = now + timedelta(seconds=settings.engine.lease_seconds)
        jobs: list[Job] = []
        with self.app.engine.begin() as conn:
            queries.take_claim_turn(conn)  # so the caps below count every claim made before this one
            rows = queries.lock_due(conn, now, settings.engine.batch_size)
            if not rows:
                return []
            leads = queries.leads_by_id(conn, (r["lead_id"] for r in rows))
            pairs = set()
            for lead in leads.values():
                if lead["email"]:
                    pairs.add(("email", lead["email"]))
                if lead["phone"]:
                    pairs.add(("sms", lead["phone"]))
                    pairs.add(("call", lead["phone"]))  # do_not_call suppresses calls to the number
            blocked = queries.suppressed(conn, pairs)
            lead_times = _by_key(queries.recent_touches(conn, leads, now - timedelta(days=2)))
            sender_counts = self._sender_counts(conn, {lead["owner"] for lead in leads.values() if lead["owner"]}, now)
            retries = queries.touch_attempts(conn, [r["pending_touch_id"] for r in rows if r["pending_touch_id"]])
            inserts: list[dict[str, Any]] = []
            for row in rows:
                lead = leads[row["lead_id"]]
                spec, _ = self.app.specs.get(conn, row["version_id"])
                index = row["next_index"]
                step = spec.steps[index]
                planner = self.app.planner(spec, lead["timezone"], lead["country"])
                reason = self.unusable(step, lead, row, blocked)
                if reason:
                    self._skip(conn, row, lead, spec, planner, index, reason, now)
                    report.skipped += 1
                    continue
                later = self._hold(step, lead, planner, now, lead_times, sender_counts)
                if later is not None:
                    defer(conn, row["id"], later)
                    report.deferred += 1
                    continue
                lead_times.setdefault(lead["id"], []).append(now)
                message_id = None
                if step.channel == "email":
                    counts = sender_counts.setdefault(lead["owner"], [0, 0])  # in flight: counts today and this minute
                    counts[0] += 1
                    counts[1] += 1
                    # A resend keeps the Message-ID of the attempt that may have arrived, so the
                    # receiving side can drop the duplicate if it did.
                    earlier = retries.get(row["pending_touch_id"], (0, None))[1] if row["pending_touch_id"] else None
                    message_id = earlier or self._message_id(lead)
                variant = assign(spec.id, step, lead["id"])
                touch = {
                    "status": "sending", "claimed_by": self.worker_id, "lease_until": lease_until,
                    "message_id": message_id, "owner": lead["owner"], "variant": variant,
                    "sender": lead["owner"] if step.channel in ("email", "sms") else None,
                }  # fmt: skip
                renderer = self.app.renderer_for(conn, row["version_id"])
                job = Job(0, row, lead, spec, index, planner, renderer, variant, message_id=message_id)
                if row["pending_touch_id"] is not None:  # a retry: reuse its touch
                    conn.execute(update(TouchT).where(TouchT.c.id == row["pending_touch_id"]).values(**touch))
                    job.touch_id = row["pending_touch_id"]
                    job.attempts = retries.get(job.touch_id, (0, None))[0]
                else:
                    inserts.append(
                        {
                            **touch, "enrollment_id": row["id"], "lead_id": lead["id"], "sequence_id": spec.id,
                            "step_id": step.id, "step_index": index, "channel": step.channel,
                            "due_at": row["next_due_at"], "attempts": 0,
                        }
                    )  # fmt: skip
                jobs.append(job)
            if inserts:
                ids = conn.execute(
                    insert(TouchT).returning(TouchT.c.id, sort_by_parameter_order=True), inserts
                ).scalars()
                fresh = iter(ids)
                for job in jobs:
                    if job.touch_id == 0:
                        job.touch_id = next(fresh)
            if jobs:  # one statement for the batch (executemany), not one per touch
                conn.execute(
                    update(EnrollmentT)
                    .where(EnrollmentT.c.id == bindparam("claimed_enrollment"))
                    .values(next_due_at=None, pending_touch_id=bindparam("claimed_touch")),
                    [{"claimed_enrollment": j.enrollment["id"], "claimed_touch": j.touch_id} for j in jobs],
                )
        report.claimed = len(jobs)
        return jobs

    def unusable(self, step: Step, lead: Any, enrollment: Any, blocked: set[tuple[str, str]]) -> str | None:
        """Why this step cannot reach this lead at all (it is skipped), or None."""
        channel = step.channel
        if lead["do_not_contact"]:
            return "lead is marked do-not-contact"
        if channel in (enrollment["dropped_channels"] or []):
            return f"{channel} dropped for this lead"
        if channel == "email":
            if not lead["email"]:
                return "lead has no email"
            if ("email", lead["email"]) in blocked:
                return "email address is suppressed (unsubscribed)"
            if lead["email_invalid"]:
                return "email address bounced"
        if channel == "sms":
            if not lead["phone"]:
                return "lead has no phone"
            if ("sms", lead["phone"]) in blocked:
                return "phone opted out of SMS (STOP)"
            if lead["phone_invalid"]:
                return "phone cannot take SMS"
            if self.settings.sms.require_consent and not lead["sms_consent"]:
                return "no SMS consent"
        if channel == "call" and ("call", lead["phone"] or "") in blocked:
            return "lead asked not to be called"
        if channel in ("email", "sms"):
            try:
                self.settings.sender(lead["owner"] or "")
            except KeyError:
                return f"owner {lead['owner']!r} is not a sender in config.yaml"
        return None

    def _hold(
        self,
        step: Step,
        lead: Any,
        planner: Planner,
        now: datetime,
        lead_times: dict[str, list[datetime | None]],
        sender_counts: dict[str, list[int]],
    ) -> datetime | None:
        """When this touch must wait until instead of going now (window, caps), or None."""
        cal = planner.calendar
        window = planner.window_for(step)
        key = None if step.immediate else lead["id"]
        at = parse_time_of_day(step.at) if step.at else None
        today = cal.local_date(now)

        def next_slot(day: Any, earliest: datetime) -> datetime:
            return cal.first_slot_from(day, earliest=earliest, at=at, spread_key=key, window=window)

        if not cal.is_open(now, window):
            return next_slot(today, now)
        cap = self.settings.limits.per_lead_daily
        if sum(1 for t in lead_times.get(lead["id"], []) if t is None or cal.local_date(t) == today) >= cap:
            return next_slot(cal.next_allowed(today), now)
        if step.channel == "email":
            sender = self.settings.sender(lead["owner"])
            sent_today, sent_this_minute = sender_counts.get(sender.id, (0, 0))
            if sent_today >= sender.daily_cap:
                return next_slot(cal.next_allowed(today), now)
            if sent_this_minute >= sender.per_minute:
                return next_slot(today, now + timedelta(seconds=60))
        return None

    def _sender_counts(self, conn: Connection, senders: set[str], now: datetime) -> dict[str, list[int]]:
        """Per sender, [emails on the mailbox's day, emails in the last minute], in flight counted in both.

        Counted once per claim, then kept up to date as the claim adds touches, so a batch
        costs one query over the senders' recent sends rather than one per touch. A mailbox's
        day runs on config.yaml's time zone.
        """
        home = zone(self.settings.timezone)
        today = now.astimezone(home).date()
        day_start = datetime.combine(today, time(0), tzinfo=home)
        day_end = datetime.combine(today + timedelta(days=1), time(0), tzinfo=home)
        return queries.sender_counts(conn, senders, day_start, day_end, now - timedelta(minutes=1))

    def _skip(
        self,
        conn: Connection,
        row: Any,
        lead: Any,
        spec: SequenceSpec,
        planner: Planner,
        index: int,
        reason: str,
        now: datetime,
    ) -> None:
        step = spec.steps[index]
        values = {
            "enrollment_id": row["id"], "lead_id": lead["id"], "sequence_id": spec.id, "step_id": step.id,
            "step_index": index, "channel": step.channel, "status": "skipped", "due_at": row["next_due_at"],
            "attempts": 0, "error": reason, "owner": lead["owner"], "done_at": now,
        }  # fmt: skip
        if row["pending_touch_id"] is not None:
            conn.execute(
                update(TouchT)
                .where(TouchT.c.id == row["pending_touch_id"])
                .values(status="skipped", error=reason, done_at=now)
            )
        else:
            conn.execute(insert(TouchT).values(**values))
        add_history(
            conn,
            lead["id"],
            now,
            "touch",
            {"sequence": spec.id, "step": step.id, "status": "skipped", "reason": reason},
        )
        advance(conn, self.app, row, planner, index, now, now)

    def _message_id(self, lead: Any) -> str:
        domain = self.settings.email.domain
        if not domain:
            sender = self.settings.sender(lead["owner"])
            domain = sender.email.rpartition("@")[2]
        return f"<{secrets.token_hex(12)}@{domain}>"

    # -- 2. render and send ----------------------------------------------------------------

    def prepare(self, jobs: Sequence[Job], now: datetime) -> None:
        """Render every claimed touch; a job that cannot be rendered gets an error and is not sent."""
        threads = self._threads(jobs)
        for job in jobs:
            self._render_or_fail(job, threads)

    async def render_and_send(self, jobs: Sequence[Job]) -> None:
        """Render and send the batch a slice at a time, rendering each slice while those before it go out.

        Rendering is CPU work; sending is mostly waiting for the server. Done one after the
        other they cost render + send; overlapped, about the larger of the two. Each render
        yields to the event loop, so the transports keep their conversations moving. Up to
        SLICES_IN_FLIGHT slices are handed to the transports at once, so a connection that
        finishes its part of one slice starts on the next instead of waiting for the
        slowest conversation (transports take concurrent batches). As before, nothing is
        recorded until the whole batch is sent.
        """
        threads = self._threads(jobs)
        on_the_wire: deque[asyncio.Future[None]] = deque()
        try:
            for start in range(0, len(jobs), RENDER_SLICE):
                part = jobs[start : start + RENDER_SLICE]
                for job in part:
                    self._render_or_fail(job, threads)
                    await asyncio.sleep(0)
                while len(on_the_wire) >= SLICES_IN_FLIGHT:
                    await on_the_wire.popleft()
                on_the_wire.append(asyncio.ensure_future(self.send(part)))
            while on_the_wire:
                await on_the_wire.popleft()
        finally:  # a render or a send that raised: let the slices in flight finish their conversations first
            if on_the_wire:
                await asyncio.wait(on_the_wire)

    def _threads(self, jobs: Sequence[Job]) -> dict[int, list[Any]]:
        """Sent emails of the enrollments whose step replies in a thread, oldest first."""
        threads: dict[int, list[Any]] = {}
        needs_thread = [j.enrollment["id"] for j in jobs if j.step.channel == "email" and j.step.reply_to]
        if needs_thread:
            with self.app.engine.connect() as conn:
                for m in queries.thread_messages(conn, needs_thread):
                    threads.setdefault(m["enrollment_id"], []).append(m)
        return threads

    def _render_or_fail(self, job: Job, threads: dict[int, list[Any]]) -> None:
        try:
            self._render(job, threads.get(job.enrollment["id"], []))
        except RenderError as exc:
            job.error = PermanentError(f"not sent: {exc}")

    def _render(self, job: Job, sent_emails: list[Any]) -> None:
        step, lead, settings = job.step.variant(job.variant), job.lead, self.settings
        renderer = job.renderer
        job.sender = settings.sender(lead["owner"]) if lead["owner"] else None
        extras: dict[str, Any] = {}
        unsubscribe_url = self._unsubscribe_url(lead["id"])
        if unsubscribe_url:
            extras["unsubscribe_url"] = unsubscribe_url
        ctx = template_context(lead, job.sender, job.spec, step, extras)
        if step.channel in TASK_CHANNELS:
            who = " ".join(filter(None, [lead["first_name"], lead["last_name"]])) or lead["id"]
            default = f"Call {who}" + (f" ({lead['company']})" if lead["company"] else "")
            job.subject = renderer.subject(step.title, ctx) if step.title else default
            job.body = renderer.text(step.template, ctx) if step.template else None
            return
        assert step.template is not None and job.sender is not None
        if step.channel == "sms":
            job.body = renderer.text(step.template, ctx)
            callback = f"{settings.public_url.rstrip('/')}/twilio/status" if settings.public_url else None
            job.outgoing = OutgoingSms(job.touch_id, lead["phone"], job.sender.phone or "", job.body, callback)
            return
        in_reply_to, subject_source = None, step.subject
        references: tuple[str, ...] = ()
        if step.reply_to:
            root = job.spec.thread_root(step.reply_to)
            thread_ids = {s.id for s in job.spec.steps if s.channel == "email" and job.spec.thread_root(s.id) == root}
            chain = [m for m in sent_emails if m["step_id"] in thread_ids and m["message_id"]]
            if chain:  # Gmail threads only when both the headers and the subject match
                references = tuple(m["message_id"] for m in chain)
                in_reply_to = references[-1]
                original = next((m["subject"] for m in chain if m["step_id"] == root.id), chain[0]["subject"]) or ""
                job.subject = original if original.lower().startswith("re:") else f"Re: {original}"
            elif subject_source is None:  # the thread never started: this email starts one
                subject_source = root.variant(assign(job.spec.id, root, lead["id"])).subject
        if job.subject is None:
            job.subject = renderer.subject(subject_source or "", ctx)
        text, html = renderer.text(step.template, ctx), renderer.html(step.template, ctx)
        job.body = text
        assert job.message_id is not None
        job.outgoing = OutgoingEmail(
            touch_id=job.touch_id,
            to=lead["email"],
            to_name=" ".join(filter(None, [lead["first_name"], lead["last_name"]])) or None,
            from_addr=job.sender.email,
            from_name=job.sender.name,
            subject=job.subject,
            text=text,
            html=html,
            message_id=job.message_id,
            in_reply_to=in_reply_to,
            references=references,
            unsubscribe_url=unsubscribe_url,
            unsubscribe_mailto=settings.email.unsubscribe_mailto,
            headers={"X-Cadence-Touch": str(job.touch_id)},
        )

    def _unsubscribe_url(self, lead_id: str) -> str | None:
        public = self.settings.public_url
        secret = self.app.secret
        if not public or not secret:
            return None
        return f"{public.rstrip('/')}/u/{sign(lead_id, secret)}"

    async def send(self, jobs: Sequence[Job]) -> None:
        emails = [j for j in jobs if j.error is None and isinstance(j.outgoing, OutgoingEmail)]
        texts = [j for j in jobs if j.error is None and isinstance(j.outgoing, OutgoingSms)]

        async def run(transport: Any, group: list[Job]) -> None:
            if not group:
                return
            receipts = await transport.send_batch([j.outgoing for j in group])
            for job, receipt in zip(group, receipts, strict=True):
                job.receipt = receipt
                job.error = receipt.error

        await asyncio.gather(run(self.email, emails), run(self.sms, texts))

    # -- 3. record ------------------------------------------------------------------------

    def record(self, jobs: Sequence[Job], now: datetime, report: PassReport) -> None:
        engine_cfg = self.settings.engine
        with self.app.engine.begin() as conn:
            logged = self._mark_sent(jobs, conn, now)
            moves: list[tuple[Any, Planner, int]] = []  # sent, and alone in the batch: advanced together
            for job in jobs:
                step, row = job.step, job.enrollment
                lead_id = row["lead_id"]
                base = {"claimed_by": None, "lease_until": None, "subject": job.subject, "body": job.body}
                detail = {"sequence": job.spec.id, "step": step.id, "channel": step.channel, "touch": job.touch_id}
                if step.channel in TASK_CHANNELS and job.error is None:
                    conn.execute(
                        update(TouchT)
                        .where(TouchT.c.id == job.touch_id)
                        .values(**base, status="task_open", sent_at=now, due_at=now)
                    )
                    add_history(conn, lead_id, now, "task_opened", {**detail, "owner": job.lead["owner"]})
                    report.tasks_opened += 1
                    continue  # the sequence waits for the task: logged, or expired by the sweep
                if job.error is None:  # the touch itself is marked sent by _mark_sent, above
                    if job.touch_id in logged:  # the lead's only touch in the batch
                        moves.append((row, job.planner, job.index))
                    else:
                        add_history(conn, lead_id, now, "touch", {**detail, "status": "sent"})
                        advance(conn, self.app, row, job.planner, job.index, now, now)
                    report.sent[step.channel] += 1
                    continue
                where = update(TouchT).where(TouchT.c.id == job.touch_id)
                error = job.error
                attempts = job.attempts + 1
                if isinstance(error, UncertainError):
                    values = {
                        **base,
                        "status": "unknown",
                        "attempts": attempts,
                        "error": f"{error}; check, then `cadence retry {job.touch_id}`",
                    }
                    conn.execute(where.values(**values))
                    add_history(conn, lead_id, now, "touch", {**detail, "status": "unknown", "error": str(error)})
                    report.unknown += 1
                    continue  # the enrollment waits, like one whose worker died mid-send
                if not isinstance(error, PermanentError) and attempts < engine_cfg.max_attempts:
                    retry_at = self._retry_at(job, attempts, now)
                    conn.execute(
                        where.values(**base, status="scheduled", attempts=attempts, error=str(error), due_at=retry_at)
                    )
                    conn.execute(update(EnrollmentT).where(EnrollmentT.c.id == row["id"]).values(next_due_at=retry_at))
                    report.retrying += 1
                    continue
                conn.execute(where.values(**base, status="failed", attempts=attempts, error=str(error), done_at=now))
                add_history(conn, lead_id, now, "touch", {**detail, "status": "failed", "error": str(error)})
                report.failed += 1
                event = error.event if isinstance(error, PermanentError) else None
                if event:
                    on_event(
                        conn, self.app, lead_id, event, now, cause=f"{step.channel} {step.id}: {error}",
                        detail=detail, channel=step.channel,
                    )  # fmt: skip
                state = conn.execute(select(EnrollmentT.c.state).where(EnrollmentT.c.id == row["id"])).scalar()
                if state == "active":
                    advance(conn, self.app, row, job.planner, job.index, now, now)
            advance_many(conn, self.app, moves, now, now)

    def _mark_sent(self, batch: Sequence[Job], conn: Connection, now: datetime) -> set[int]:
        """Mark the batch's sent touches sent, in one statement per channel (executemany), not one per touch.

        Their "sent" history rows go in one statement too, for every lead with no other touch
        in the batch: a lead's history then reads in the same order as if each touch were
        recorded in turn. Returns the touches whose history row is written.
        """
        jobs = [j for j in batch if j.error is None and j.step.channel not in TASK_CHANNELS]
        per_lead = Counter(j.enrollment["lead_id"] for j in batch)
        alone = [j for j in jobs if per_lead[j.enrollment["lead_id"]] == 1]
        if alone:
            conn.execute(
                insert(HistoryT),
                [
                    {
                        "lead_id": j.enrollment["lead_id"], "at": now, "kind": "touch", "cause": None,
                        "detail": {
                            "sequence": j.spec.id, "step": j.step.id, "channel": j.step.channel,
                            "touch": j.touch_id, "status": "sent",
                        },
                    }
                    for j in alone
                ],
            )  # fmt: skip
        for channel in sorted({j.step.channel for j in jobs}):
            values: dict[str, Any] = {
                "claimed_by": None, "lease_until": None, "subject": bindparam("sent_subject"),
                "body": bindparam("sent_body"), "status": "sent", "sent_at": now, "error": None,
                "attempts": bindparam("sent_attempts"),
            }  # fmt: skip
            if channel == "sms":
                values["provider_id"] = bindparam("sent_provider")
            rows = []
            for j in jobs:
                if j.step.channel == channel:
                    row = {"sent_touch": j.touch_id, "sent_subject": j.subject, "sent_body": j.body}
                    row["sent_attempts"] = j.attempts + 1
                    if channel == "sms":
                        row["sent_provider"] = j.receipt.provider_id if j.receipt else None
                    rows.append(row)
            conn.execute(update(TouchT).where(TouchT.c.id == bindparam("sent_touch")).values(**values), rows)
        return {j.touch_id for j in alone}

    def _retry_at(self, job: Job, attempts: int, now: datetime) -> datetime:
        base = self.settings.engine.backoff_seconds * 2 ** (attempts - 1)
        digest = hashlib.blake2b(f"{job.touch_id}:{attempts}".encode(), digest_size=2).digest()
        jitter = 0.75 + (int.from_bytes(digest, "big") / 65535) * 0.5
        earliest = now + timedelta(seconds=base * jitter)
        cal = job.planner.calendar
        return cal.first_slot_from(
            cal.local_date(earliest),
            earliest=earliest,
            at=None,
            spread_key=None,
            window=job.planner.window_for(job.step),
        )


def _by_key(pairs: list[tuple[str, Any]]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for key, value in pairs:
        out.setdefault(key, []).append(value)
    return out
