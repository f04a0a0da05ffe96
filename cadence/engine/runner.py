"""`cadence run`: the engine's metronome.

APScheduler 3 (AsyncIOScheduler, UTC) only keeps time: the database is the source
of truth, so any number of `cadence run` processes can share it. The drain job has
no misfire grace limit (a late drain still runs), coalesces, and never overlaps
itself. On SIGTERM/SIGINT the batches in hand are finished and recorded, then the
process exits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import socket
from collections import Counter
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC
from typing import TYPE_CHECKING, Any

from cadence.app import App
from cadence.engine.dispatcher import Dispatcher, PassReport
from cadence.engine.inbox_poll import PollReport, poll
from cadence.engine.sweep import SweepReport, sweep

if TYPE_CHECKING:
    from cadence.engine.metrics import Metrics

SWEEP_SECONDS = 60
GRACE_SECONDS = 30.0  # how long SIGTERM waits for the batch in hand to be sent and recorded
log = logging.getLogger("cadence.engine")


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass
class RunReport:
    dispatch: PassReport = field(default_factory=PassReport)
    sweep: SweepReport = field(default_factory=SweepReport)
    inbox: Counter[str] = field(default_factory=Counter)  # messages read, by kind
    inbox_errors: list[str] = field(default_factory=list)

    def absorb_poll(self, poll: PollReport) -> None:
        for mailbox in poll.mailboxes:
            self.inbox.update(p.kind for p in mailbox.messages)
            if mailbox.error:
                self.inbox_errors.append(mailbox.error)

    def as_json(self) -> dict[str, Any]:
        return {
            "dispatch": self.dispatch.as_json(),
            "sweep": self.sweep.as_json(),
            "inbox": {"read": dict(self.inbox), "errors": self.inbox_errors},
        }


async def _read_inbox(app: App, worker: str) -> PollReport:
    """Read the mailboxes in a thread: IMAP is blocking, and dispatch goes on meanwhile."""
    if not app.settings.inbox.mailboxes:
        return PollReport()
    return await asyncio.to_thread(poll, app, worker)


def _sweep(app: App, metrics: Metrics | None) -> SweepReport:
    done = sweep(app, app.clock.now())
    if metrics is not None:
        metrics.count_sweep(done)
    return done


async def _with_transports(
    app: App, worker: str | None = None, metrics: Metrics | None = None
) -> tuple[Dispatcher, AsyncExitStack]:
    from cadence.channels.email import make_email_transport
    from cadence.channels.sms import make_sms_transport

    stack = AsyncExitStack()
    email = make_email_transport(app.settings, app.clock)
    stack.push_async_callback(email.aclose)
    sms = make_sms_transport(app.settings, app.clock)
    stack.push_async_callback(sms.aclose)
    return Dispatcher(app, email, sms, worker or worker_id(), metrics), stack


async def run_once(app: App, *, worker: str | None = None, metrics: Metrics | None = None) -> RunReport:
    """One full pass at the clock's now: read the inbox (a reply stops what is due), sweep, then drain."""
    report = RunReport()
    dispatcher, stack = await _with_transports(app, worker, metrics)
    async with stack:
        report.absorb_poll(await _read_inbox(app, dispatcher.worker_id))
        report.sweep.absorb(_sweep(app, metrics))
        report.dispatch = await dispatcher.drain()
    return report


async def run_forever(
    app: App,
    *,
    on_pass: Any = None,
    grace_seconds: float = GRACE_SECONDS,
    worker: str | None = None,
    metrics: Metrics | None = None,
) -> RunReport:
    """Drain due work every `engine.interval_seconds` and sweep every minute, until SIGTERM or SIGINT.

    On a signal no new batch is claimed; the batches in hand finish sending and are recorded
    (for up to `grace_seconds`), then the process exits. APScheduler's own shutdown would
    cancel the running drain mid-batch, leaving its touches `sending` until their lease ran
    out, so the scheduler is paused first and shut down only once the batch is recorded.
    On start, lost claims are released (the sweep) before the first drain claims anything.
    """
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    report = RunReport()
    stop = asyncio.Event()
    busy = asyncio.Lock()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    dispatcher, stack = await _with_transports(app, worker, metrics)

    async def drain() -> None:
        if stop.is_set():
            return
        async with busy:
            part = await dispatcher.drain(stop=stop)
            report.dispatch.merge(part)
            if on_pass:
                on_pass(part)

    async def housekeeping() -> None:
        if stop.is_set():
            return
        async with busy:
            report.sweep.absorb(_sweep(app, metrics))

    async def read_inbox() -> None:
        if not stop.is_set():  # beside dispatch, not under its lock: a slow mailbox never holds up sending
            report.absorb_poll(await _read_inbox(app, dispatcher.worker_id))

    scheduler = AsyncIOScheduler(timezone=UTC)
    common: dict[str, Any] = {"misfire_grace_time": None, "coalesce": True, "max_instances": 1}
    async with stack:
        report.sweep.absorb(_sweep(app, metrics))  # expired leases first, before any claim
        # APScheduler keeps real time (it is a timer, not the business clock): its jobs start from its
        # own now, so a pinned CADENCE_NOW never makes it replay the intervals between then and now.
        # The first drain and the first inbox read run at once, then every interval.
        every_drain = app.settings.engine.interval_seconds
        scheduler.add_job(housekeeping, "interval", seconds=SWEEP_SECONDS, id="sweep", **common)
        scheduler.add_job(drain, "interval", seconds=every_drain, id="drain", **common)
        scheduler.add_job(drain, id="first drain", **common)
        if app.settings.inbox.mailboxes:
            every = app.settings.inbox.poll_interval.total_seconds()
            scheduler.add_job(read_inbox, "interval", seconds=every, id="inbox", **common)
            scheduler.add_job(read_inbox, id="first inbox read", **common)
        scheduler.start()
        try:
            await stop.wait()
        finally:
            scheduler.pause()  # nothing new starts; the drain in hand goes on
            try:
                await asyncio.wait_for(busy.acquire(), timeout=grace_seconds)
                busy.release()
            except TimeoutError:
                log.warning("the batch in hand was not recorded within %s s; its touches become unknown", grace_seconds)
            scheduler.shutdown(wait=False)
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
    return report
