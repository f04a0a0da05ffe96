"""One pass of the engine: claim due work, compose it, hand it to its channel, record what happened.

The order is what makes "never twice" hold:
1. claim (`cadence.engine.claim`, one transaction): lock due enrollments, settle what
   needs no network, and persist a `sending` touch with this worker's id and a lease;
2. compose and send (`cadence.engine.compose`), outside any transaction, a slice at a
   time, concurrently;
3. record (`cadence.engine.record`, one transaction): sent, retry later, failed, or task
   opened, for the claims this worker still holds; plan the next step.
A worker that dies between 1 and 3 leaves `sending` touches whose lease expires;
the sweep turns them into `unknown`, and only `cadence retry` sends them again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from asyncio import FIRST_COMPLETED
from collections import deque
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cadence.channels.base import EmailTransport, OutgoingEmail, OutgoingSms, SmsTransport, UncertainError
from cadence.engine.claim import claim_batch
from cadence.engine.compose import compose_or_fail, threads
from cadence.engine.isolation import describe
from cadence.engine.jobs import Job, PassReport
from cadence.engine.record import record_batch
from cadence.engine.sent_copies import save_sent
from cadence.store.db import is_transient

if TYPE_CHECKING:
    from cadence.app import App
    from cadence.engine.metrics import Metrics

__all__ = ["Dispatcher", "Job", "PassReport"]

RENDER_SLICE = 32  # touches rendered while the slices before them are sent (see Dispatcher.render_and_send)
SLICES_IN_FLIGHT = 2  # slices handed to the transports at once
log = logging.getLogger("cadence.engine")


class Dispatcher:
    def __init__(
        self, app: App, email: EmailTransport, sms: SmsTransport, worker_id: str, metrics: Metrics | None = None
    ):
        self.app = app
        self.email = email
        self.sms = sms
        self.worker_id = worker_id
        self.metrics = metrics
        self.passes = 0  # numbers this worker's passes in its logs

    async def drain(self, *, max_batches: int = 10_000, stop: asyncio.Event | None = None) -> PassReport:
        """Claim, send and record batches until nothing is due now (or `stop` is set), as one pipeline.

        No connection waits at a batch boundary: the next batch is claimed (in a thread, so the
        conversations on the wire go on) once half the current one is handed to the transports,
        and its first slice is handed out as soon as a slice in flight finishes, while the batch
        before it is still being sent and then recorded. Records run one at a time, in claim
        order, each once its own batch is wholly sent. One batch ahead at most, and at most one
        unrecorded batch besides the one in hand. After `stop`, no new claim starts, but what
        was claimed is sent and recorded.
        """
        report = PassReport()
        self.passes += 1
        started = time.perf_counter()
        on_the_wire: deque[asyncio.Future[None]] = deque()  # slices in flight, across batches
        records: list[asyncio.Future[None]] = []
        in_record: deque[asyncio.Future[None]] = deque()  # records not known to be done; they end in order
        sending: deque[list[asyncio.Future[None]]] = deque()  # each batch's slices, until they are sent
        claiming: asyncio.Future[tuple[list[Job], PassReport]] | None = asyncio.ensure_future(self._claim())
        claims, unrecorded = 1, False  # unrecorded: batches were still being recorded when the claim began

        def recording() -> int:
            """Batches still being recorded (a record waits for the one before it, so they are the newest)."""
            while in_record and in_record[0].done():
                in_record.popleft()
            return len(in_record)

        def stopped() -> bool:
            return stop is not None and stop.is_set()

        def claim_next(*, batch_in_hand: bool = False) -> None:
            nonlocal claiming, claims, unrecorded
            unrecorded = batch_in_hand or recording() > 0
            claiming, claims = asyncio.ensure_future(self._claim()), claims + 1

        try:
            while claiming is not None:
                jobs, part = await claiming
                claiming = None
                more = claims < max_batches and not stopped()
                if not jobs:
                    report.merge(part)
                    if more and unrecorded:
                        # A record may make a lead's next step due now (a call the same day as its email):
                        # once every batch is recorded, look again before the pass ends.
                        await asyncio.wait(records)
                        claim_next()
                    elif more and (part.skipped or part.deferred):  # settled without a send: more may be due
                        claim_next()
                    continue
                sending_started = time.perf_counter()
                halfway = asyncio.Event()
                handing = asyncio.ensure_future(self._hand_out(jobs, on_the_wire, halfway))
                waiting = asyncio.ensure_future(halfway.wait())
                await asyncio.wait([handing, waiting], return_when=FIRST_COMPLETED)
                waiting.cancel()
                # Half this batch is handed out: claim the next while the rest goes, so no connection waits for
                # it. One batch ahead at most: the batches before this one are sent, and at most one unrecorded.
                while sending:
                    await asyncio.wait(sending.popleft())
                while recording() > 1:
                    await asyncio.wait([in_record[0]])
                failed = handing.done() and (handing.cancelled() or handing.exception() is not None)
                if more and not failed and not stopped():
                    claim_next(batch_in_hand=True)
                slices = await handing
                sending.append(slices)
                before = records[-1] if records else None
                records.append(
                    asyncio.ensure_future(self._record_when_sent(jobs, part, slices, before, sending_started, report))
                )
                in_record.append(records[-1])
        finally:  # whatever raised: let what is on the wire finish, and record it, before leaving
            if claiming is not None:
                await asyncio.wait([claiming])
            if on_the_wire:
                await asyncio.wait(on_the_wire)
            if records:
                await asyncio.wait(records)
        for recorded in records:
            recorded.result()  # a record that raised raises here
        if report.claimed or report.skipped or report.deferred:
            log.info(
                "pass %d: claimed %d in %d batches", self.passes, report.claimed, report.batches,
                extra={"pass_id": self.passes, "seconds": round(time.perf_counter() - started, 4), **_counts(report)},
            )  # fmt: skip
        return report

    async def _claim(self) -> tuple[list[Job], PassReport]:
        """Claim a batch in a thread (the database is synchronous), timing it for the metrics."""
        part = PassReport(batches=1)
        started = time.perf_counter()
        try:
            jobs = await asyncio.to_thread(self.claim, self.app.clock.now(), part)
        except Exception as exc:
            if not is_transient(exc):
                raise
            # The claim's transaction rolled back: nothing was claimed. The pass ends here and the next
            # one claims again; one line says why (never the statement's parameters: lead ids, addresses).
            log.warning("claiming a batch failed (%s); the next pass tries again", describe(exc))
            return [], PassReport(batches=1)
        if self.metrics is not None:
            self.metrics.claim_seconds.labels(self.worker_id).observe(time.perf_counter() - started)
            if not jobs:
                self.metrics.count_batch(part)
        return jobs, part

    async def _hand_out(
        self, jobs: Sequence[Job], on_the_wire: deque[asyncio.Future[None]], halfway: asyncio.Event | None = None
    ) -> list[asyncio.Future[None]]:
        """Render the batch a slice at a time and hand each slice to the transports once a place is free.

        Returns the batch's slices; `on_the_wire` (shared by the batches of a pass) holds at most
        SLICES_IN_FLIGHT slices, so a batch's first slice goes out while the one before it drains.
        `halfway` is set once half the batch's slices (rounded up) are handed out.
        """
        sent = threads(self.app, jobs)
        mine: list[asyncio.Future[None]] = []
        half = ((len(jobs) + RENDER_SLICE - 1) // RENDER_SLICE + 1) // 2
        for start in range(0, len(jobs), RENDER_SLICE):
            part = jobs[start : start + RENDER_SLICE]
            for job in part:
                compose_or_fail(self.app, job, sent.get(job.enrollment.id, []))
                await asyncio.sleep(0)
            while len(on_the_wire) >= SLICES_IN_FLIGHT:
                await asyncio.wait([on_the_wire.popleft()])  # a slice that raised is seen by its batch's record
            slice_sent = asyncio.ensure_future(self.send(part))
            on_the_wire.append(slice_sent)
            mine.append(slice_sent)
            if halfway is not None and len(mine) >= half:
                halfway.set()
        return mine

    async def _record_when_sent(
        self,
        jobs: Sequence[Job],
        part: PassReport,
        slices: list[asyncio.Future[None]],
        before: asyncio.Future[None] | None,
        sending_started: float,
        report: PassReport,
    ) -> None:
        """Record a batch once all its slices are sent and the batch claimed before it is recorded."""
        await asyncio.wait(slices)
        sent = time.perf_counter()
        if before is not None:
            await asyncio.wait([before])
        _fail_unsent(jobs, slices)
        recording = time.perf_counter()
        await record_batch(self.app, self.worker_id, jobs, part)
        recorded = time.perf_counter()
        await save_sent(self.app, jobs)  # after the record: a copy never holds up or undoes a send
        report.merge(part)
        self._observe(jobs, part, sent - sending_started, recorded - recording)

    def _observe(self, jobs: Sequence[Job], part: PassReport, send_seconds: float, record_seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.count_batch(part)
            self.metrics.send_seconds.labels(self.worker_id).observe(send_seconds)
            self.metrics.record_seconds.labels(self.worker_id).observe(record_seconds)
        for job in jobs:
            if job.error is not None:
                log.warning(
                    "touch %d (%s %s/%s): %s", job.touch_id, job.step.channel, job.spec.id, job.step.id, job.error,
                    extra={"pass_id": self.passes, "touch": job.touch_id, "channel": job.step.channel,
                           "reason": str(job.error)},
                )  # fmt: skip
        log.info(
            "batch of %d: send %.3f s, record %.3f s", len(jobs), send_seconds, record_seconds,
            extra={"pass_id": self.passes, "send_seconds": round(send_seconds, 4),
                   "record_seconds": round(record_seconds, 4), **_counts(part)},
        )  # fmt: skip

    async def run_batch(self) -> PassReport:
        """One batch on its own, each step waiting for the one before: claim, send, record."""
        jobs, part = await self._claim()
        if jobs:
            started = time.perf_counter()
            await self.render_and_send(jobs)
            sent = time.perf_counter()
            await record_batch(self.app, self.worker_id, jobs, part)
            recorded = time.perf_counter()
            await save_sent(self.app, jobs)  # after the record: a copy never holds up or undoes a send
            self._observe(jobs, part, sent - started, recorded - sent)
        return part

    def claim(self, now: datetime, report: PassReport) -> list[Job]:
        return claim_batch(self.app, self.worker_id, now, report)

    def prepare(self, jobs: Sequence[Job], now: datetime) -> None:
        """Render every claimed touch without sending (benchmarks look at the bytes)."""
        sent = threads(self.app, jobs)
        for job in jobs:
            compose_or_fail(self.app, job, sent.get(job.enrollment.id, []))

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
        on_the_wire: deque[asyncio.Future[None]] = deque()
        try:
            slices = await self._hand_out(jobs, on_the_wire)
        finally:  # a render or a send that raised: let the slices in flight finish their conversations first
            if on_the_wire:
                await asyncio.wait(on_the_wire)
        _fail_unsent(jobs, slices)

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


def _fail_unsent(jobs: Sequence[Job], slices: Sequence[asyncio.Future[None]]) -> None:
    """A slice whose send raised: its messages without a receipt may or may not have gone out."""
    for slice_sent in slices:
        raised = None if slice_sent.cancelled() else slice_sent.exception()
        if raised is None:
            continue
        for job in jobs:
            if job.outgoing is not None and job.receipt is None and job.error is None:
                job.error = UncertainError(f"the send raised {type(raised).__name__}: {raised}")


def _counts(report: PassReport) -> dict[str, Any]:
    """A report's counts as log fields (`--log-json` prints them as they are)."""
    counts = report.as_json()
    counts.pop("by_channel")
    return counts
