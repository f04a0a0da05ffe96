"""Prometheus metrics: what an operator graphs and alerts on, for a worker or the HTTP service.

Two kinds live here:
- counters and histograms this process adds to as it works (touches by outcome and channel,
  claim/send/record latency per batch, leases expired, webhook requests), so each worker
  exports its own, labelled with its worker id; a restart starts them at zero, as Prometheus'
  `rate()` and `increase()` expect;
- gauges read from the store at each scrape (the due backlog and its oldest touch's age, open
  tasks per owner), the same whoever is asked: graph them with `max()` across workers.

Latencies are measured with a monotonic timer: they are durations, not moments, so the
injected business clock (`CADENCE_NOW`) has no say in them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cadence.store import backlog

if TYPE_CHECKING:
    from cadence.app import App
    from cadence.engine.jobs import PassReport
    from cadence.engine.sweep import SweepReport

log = logging.getLogger("cadence.metrics")

# A batch's claim or record takes milliseconds to seconds; its send, up to a lease.
BATCH_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """One process's metrics, in a registry of its own (so tests and several Apps never share counters)."""

    def __init__(self, worker: str, app: App | None = None, shared_dir: str | None = None) -> None:
        """With `shared_dir` (`cadence serve --workers N`), several processes answer one port: each
        writes its counters there (prometheus-client's multiprocess mode, which the environment's
        PROMETHEUS_MULTIPROC_DIR turned on before it was imported), and a scrape, whichever process
        it reaches, reads them all, each series under its own process's worker label."""
        self.worker = worker
        self.registry = CollectorRegistry()
        r = self.registry
        self.touches = Counter(
            "cadence_touches", "Touches this process settled, by channel and outcome "
            "(sent, failed, skipped, unknown, retrying, deferred, tasks_opened, dropped)",
            ["worker", "channel", "outcome"], registry=r,
        )  # fmt: skip
        self.passes = Counter("cadence_batches", "Batches this process claimed and recorded", ["worker"], registry=r)
        self.claim_seconds = Histogram(
            "cadence_claim_seconds", "Time to claim one batch (one transaction)", ["worker"],
            buckets=BATCH_SECONDS, registry=r,
        )  # fmt: skip
        self.send_seconds = Histogram(
            "cadence_send_seconds", "Time to render and send one claimed batch", ["worker"],
            buckets=BATCH_SECONDS, registry=r,
        )  # fmt: skip
        self.record_seconds = Histogram(
            "cadence_record_seconds", "Time to record one sent batch (one transaction)", ["worker"],
            buckets=BATCH_SECONDS, registry=r,
        )  # fmt: skip
        self.leases_expired = Counter(
            "cadence_leases_expired", "Claims whose lease ran out before their worker recorded them (the sweep's)",
            ["worker"], registry=r,
        )  # fmt: skip
        self.webhook_requests = Counter(
            "cadence_webhook_requests", "Requests to the webhook and API routes, by route and status",
            ["worker", "route", "status"], registry=r,
        )  # fmt: skip
        self.scrape = r  # what GET /metrics reads
        if shared_dir is not None:
            from prometheus_client import multiprocess

            self.scrape = CollectorRegistry()
            multiprocess.MultiProcessCollector(self.scrape, path=shared_dir)
        if app is not None:
            self.scrape.register(StoreGauges(app, worker))

    def count_batch(self, report: PassReport) -> None:
        for (outcome, channel), n in report.by_channel.items():
            self.touches.labels(self.worker, channel, outcome).inc(n)
        self.passes.labels(self.worker).inc(report.batches)

    def count_sweep(self, report: SweepReport) -> None:
        expired = report.unknown + report.resent
        if expired:
            self.leases_expired.labels(self.worker).inc(expired)
        for channel, n in report.unknown_by_channel.items():
            self.touches.labels(self.worker, channel, "unknown").inc(n)

    def count_request(self, route: str, status: int) -> None:
        self.webhook_requests.labels(self.worker, route, str(status)).inc()


class StoreGauges(Collector):
    """The gauges read from the store at scrape time; a store that cannot answer reports `cadence_store_up 0`."""

    def __init__(self, app: App, worker: str) -> None:
        self.app = app
        self.worker = worker

    def describe(self) -> list[Metric]:
        return []  # read at collect time only: describing would query the store at registration

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("cadence_store_up", "1 if the store answered this scrape", labels=["worker"])
        now = self.app.clock.now()
        try:
            with self.app.engine.connect() as conn:
                due, oldest = backlog.due(conn, now)
                tasks = backlog.open_tasks_by_owner(conn)
        except Exception as exc:  # a scrape reports the store's trouble; it never raises it
            log.warning("metrics: the store did not answer (%s: %s)", type(exc).__name__, exc)
            up.add_metric([self.worker], 0)
            yield up
            return
        up.add_metric([self.worker], 1)
        yield up
        backlog_gauge = GaugeMetricFamily(
            "cadence_due_backlog", "Enrollments due now and not yet claimed", labels=["worker"]
        )
        backlog_gauge.add_metric([self.worker], due)
        yield backlog_gauge
        age = GaugeMetricFamily(
            "cadence_oldest_due_age_seconds", "How long the oldest unclaimed due touch has waited (0 if none)",
            labels=["worker"],
        )  # fmt: skip
        age.add_metric([self.worker], max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0)
        yield age
        open_tasks = GaugeMetricFamily(
            "cadence_open_tasks", "Open call and manual tasks per owner", labels=["worker", "owner"]
        )
        for owner, n in sorted(tasks.items()):
            open_tasks.add_metric([self.worker, owner], n)
        yield open_tasks
