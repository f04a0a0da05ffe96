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
from collections import deque
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cadence.channels.base import EmailTransport, OutgoingEmail, OutgoingSms, SmsTransport
from cadence.engine.claim import claim_batch
from cadence.engine.compose import compose_or_fail, threads
from cadence.engine.jobs import Job, PassReport
from cadence.engine.record import record_batch
from cadence.engine.sent_copies import save_sent

if TYPE_CHECKING:
    from cadence.app import App

__all__ = ["Dispatcher", "Job", "PassReport"]

RENDER_SLICE = 32  # touches rendered while the slices before them are sent (see Dispatcher.render_and_send)
SLICES_IN_FLIGHT = 2  # slices handed to the transports at once


class Dispatcher:
    def __init__(self, app: App, email: EmailTransport, sms: SmsTransport, worker_id: str):
        self.app = app
        self.email = email
        self.sms = sms
        self.worker_id = worker_id

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
        report = PassReport(batches=1)
        jobs = self.claim(self.app.clock.now(), report)
        if jobs:
            await self.render_and_send(jobs)
            await record_batch(self.app, self.worker_id, jobs, report)
            await save_sent(self.app, jobs)  # after the record: a copy never holds up or undoes a send
        return report

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
        sent = threads(self.app, jobs)
        on_the_wire: deque[asyncio.Future[None]] = deque()
        try:
            for start in range(0, len(jobs), RENDER_SLICE):
                part = jobs[start : start + RENDER_SLICE]
                for job in part:
                    compose_or_fail(self.app, job, sent.get(job.enrollment.id, []))
                    await asyncio.sleep(0)
                while len(on_the_wire) >= SLICES_IN_FLIGHT:
                    await on_the_wire.popleft()
                on_the_wire.append(asyncio.ensure_future(self.send(part)))
            while on_the_wire:
                await on_the_wire.popleft()
        finally:  # a render or a send that raised: let the slices in flight finish their conversations first
            if on_the_wire:
                await asyncio.wait(on_the_wire)

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
