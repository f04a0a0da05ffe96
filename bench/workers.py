"""Workers that scale (issue 15): W `cadence run` processes share one store and a relay that takes 50 ms a message.

What is timed, each round on a fresh copy of one seeded store:

- W real worker processes (`python -m cadence --config ... run --json`, CADENCE_NOW fixed inside
  the send window, `engine.interval_seconds` small), each with `email.smtp.connections` SMTP
  connections, drain N due emails (a one-step sequence, as `bench/dispatch.py --last-step`
  seeds it) into the aiosmtpd sink of the tests, run in a child process (`bench/servers.py`)
  that holds each 250 reply `--latency` seconds (`SmtpSink.slow_down`): a relay that takes
  50 ms a message, so one worker can send at most connections / latency emails a second
  (8 / 0.05 s = 160/s by default).
- The rate is measured at the sink: N / (the last 250 sent back - the first message arrived),
  so process start-up is not counted. The wall time, from spawning the workers to the last
  250, is reported beside it.
- Start-up is kept out of the scaling figures: the seeded store's due enrollments are held
  (their `next_due_at` moved far ahead) until every worker has drained once (its
  `--metrics-port` counts a claim), then armed again (due at CADENCE_NOW) in one UPDATE, so
  each worker starts on its next drain, at most `--interval` seconds later. With `--cold`
  they are due from the start, and the slower workers' start-up counts against the rate.
- The control, at each latency above 0 and in each round: aiosmtplib alone, messages built
  beforehand (`dispatch.raw_email_pass`), over the same number of connections from this
  process. It says what the machine allows at that moment; "1 worker / raw" is the engine's
  share of it, less noisy on a shared machine than the share of the ceiling.
- Where the connections' time went, from the sink's timestamps: busy (a message in, its 250
  not yet sent), gaps (250 to the next message on that connection, up to 20 ms: the MAIL,
  RCPT and DATA round trips), stalls (longer gaps: the connection waited for work) and edges
  (before a connection's first message and after its last); beside them, each worker's mean
  claim, send and record time per batch, from its `--metrics-port`.
- Each round is checked: the sink received exactly N messages with N distinct Message-IDs,
  the store holds N sent touches whose Message-IDs are exactly those, and every worker left
  with exit status 0 after SIGTERM.
- CPU, over the same window: the workers' and the sink's (from /proc/<pid>/stat), the
  PostgreSQL backends serving the round's database, and the whole machine's busy time
  (/proc/stat), in cores. With `--latency 0` nothing waits, and these say where the
  machine's limit is.

SQLite serves one worker (one writer at a time); PostgreSQL is a throwaway database on
127.0.0.1:5432 (user postgres, trust), seeded once and copied per round (CREATE DATABASE
... TEMPLATE), every copy dropped afterwards. Rounds run W = 1, 2, 4 in turn, so the ratios
compare the same moment of a shared machine; `--repeat` rounds, medians reported.

Loopback only, every wait bounded, children killed on the way out. Run:
`.venv/bin/python bench/workers.py [--store postgresql|sqlite] [--workers 1,2,4] [--emails N]
[--latency 0.05,0] [--connections 8] [--batch-size 200] [--interval 0.5] [--repeat 3] [--cold]
[--no-raw] [--json]`; the defaults take 10 to 15 minutes on 2 quiet cores. Engine against raw
client without latency (email and SMS) is bench/dispatch.py's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import IO, Any
from urllib.request import urlopen

import yaml
from dispatch import (  # bench/ is on sys.path when this file runs
    NOW,
    SECRET,
    _rounded,
    make_project,
    raw_email_pass,
    sample_email,
    seed,
    write_leads_csv,
)
from servers import ServerProcess
from sqlalchemy import Engine, create_engine, func, select, text, update

from cadence.app import App
from cadence.clock import FixedClock, parse_instant
from cadence.enrollment.enroll import enroll
from cadence.enrollment.lead_import import import_leads, read_rows
from cadence.names import EnrollmentState, TouchStatus
from cadence.store.tables import EnrollmentT, TouchT

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
SEQUENCE = "bench-email"  # dispatch.py's one-step email sequence (with last_step=True)
HELD_UNTIL = parse_instant("2099-01-05T12:00:00-05:00")  # far beyond CADENCE_NOW: nothing is due
GAP_STALL = 0.02  # a connection idle longer than this between two messages was waiting for work
POLL_SECONDS = 0.02  # how often the sink is asked how many it has
CLAIMS = "cadence_claim_seconds_count"  # a worker's /metrics: claims made (an idle drain makes one)
SENT = "cadence_touches_total"  # and touches recorded as sent
TICK = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1


# -- the store: seeded once, a fresh copy each round ----------------------------------------


def hold(url: str, until: datetime) -> None:
    """Make every active enrollment due at `until` (far ahead: held; CADENCE_NOW: armed)."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                update(EnrollmentT).where(EnrollmentT.c.state == EnrollmentState.ACTIVE).values(next_due_at=until)
            )
    finally:
        engine.dispose()


def seed_postgresql(project: Path, workdir: Path, url: str, count: int) -> None:
    """dispatch.seed's import and enrollment, into a PostgreSQL database (migrated to head first)."""
    csv_path = workdir / f"{SEQUENCE}.csv"
    write_leads_csv(csv_path, count, "E")
    app = App.load(project / "config.yaml", FixedClock(parse_instant(NOW)), url, {"CADENCE_SECRET": SECRET})
    try:
        imported = import_leads(app.engine, read_rows(csv_path), app.settings, app.clock.now())
        if imported.rejected or imported.imported != count:
            raise SystemExit(f"import went wrong: {imported.imported} imported, first rejects {imported.rejected[:3]}")
        report = enroll(app, SEQUENCE, [f"E{i:06d}" for i in range(count)], cause="bench")
        if report.refused or len(report.enrolled) != count:
            raise SystemExit(f"enroll went wrong: {len(report.enrolled)} enrolled, first refusals {report.refused[:3]}")
    finally:
        app.close()  # a template database must have no sessions when it is copied


class Store:
    """The seeded store (held unless `cold`), and a fresh copy of it for each round.

    `sample` is one message's bytes as the engine builds it, for the raw client (dispatch.py's).
    """

    def __init__(self, kind: str, project: Path, workdir: Path, count: int, cold: bool):
        self.kind, self.workdir = kind, workdir
        self.admin: Engine | None = None
        self.seed_name: str | None = None
        self.rounds = 0
        if kind == "sqlite":
            self.seeded = seed(project, workdir, SEQUENCE, count, "E")
            self.sample = sample_email(project, self.seeded, workdir)  # before the hold: it claims one touch
            if not cold:
                hold(f"sqlite:///{self.seeded}", HELD_UNTIL)
            return
        self.sample = sample_email(project, seed(project, workdir, SEQUENCE, 8, "S"), workdir)
        self.admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        self.prefix = f"cadence_bench_workers_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.seed_name = f"{self.prefix}_seed"
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.seed_name}"'))
        seed_postgresql(project, workdir, self.url(self.seed_name), count)
        if not cold:
            hold(self.url(self.seed_name), HELD_UNTIL)

    @staticmethod
    def url(name: str) -> str:
        return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"

    @contextmanager
    def fresh(self) -> Iterator[tuple[str, str]]:
        """(url, database name or file) of a copy of the seeded store, removed afterwards."""
        self.rounds += 1
        if self.admin is None:
            db = self.workdir / f"round-{self.rounds}.db"
            shutil.copy(self.seeded, db)
            try:
                yield f"sqlite:///{db}", str(db)
            finally:
                for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
                    path.unlink(missing_ok=True)
            return
        name = f"{self.prefix}_r{self.rounds}"
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{self.seed_name}"'))
        try:
            yield self.url(name), name
        finally:
            with self.admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def backends(self, name: str) -> list[int]:
        """The PostgreSQL server processes serving database `name` (none for SQLite)."""
        if self.admin is None:
            return []
        with self.admin.connect() as conn:
            return list(
                conn.execute(text("SELECT pid FROM pg_stat_activity WHERE datname = :n"), {"n": name}).scalars()
            )

    def close(self) -> None:
        if self.admin is None:
            return
        if self.seed_name is not None:
            with self.admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{self.seed_name}" WITH (FORCE)'))
        self.admin.dispose()


# -- CPU time, from /proc -------------------------------------------------------------------


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU of a running process (all its threads); 0 once it is gone."""
    if pid is None:
        return 0.0
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / TICK


def machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of every core since boot, from /proc/stat's first line."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, _steal = values  # waiting and stolen time is not busy
    return user + nice + system + irq + softirq, sum(values)


@dataclass
class CpuSample:
    at: float  # time.monotonic()
    workers: dict[int, float]
    sink: float
    postgres: dict[int, float]
    machine: tuple[int, int]

    @classmethod
    def take(cls, workers: list[int], sink: int | None, backends: list[int]) -> CpuSample:
        return cls(
            time.monotonic(),
            {pid: cpu_seconds(pid) for pid in workers},
            cpu_seconds(sink),
            {pid: cpu_seconds(pid) for pid in backends},
            machine_ticks(),
        )

    def worker_seconds_since(self, start: CpuSample) -> float:
        return sum(v - start.workers.get(pid, 0.0) for pid, v in self.workers.items())

    def cores_since(self, start: CpuSample) -> dict[str, float]:
        """Cores each party kept busy between `start` and this sample (1.0 = one core all the time)."""
        span = max(self.at - start.at, 1e-9)

        def grew(after: dict[int, float], before: dict[int, float]) -> float:
            return sum(v - before.get(pid, 0.0) for pid, v in after.items())

        busy, total = (a - b for a, b in zip(self.machine, start.machine, strict=True))
        return {
            "workers": grew(self.workers, start.workers) / span,
            "sink": (self.sink - start.sink) / span,
            "postgres": grew(self.postgres, start.postgres) / span,
            "machine": CORES * busy / max(total, 1),
        }


# -- one round: W workers drain the store ---------------------------------------------------


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    out: Path
    err: Path
    metrics_port: int
    files: list[IO[bytes]] = field(default_factory=list)

    def text(self, which: str) -> str:
        return (self.out if which == "out" else self.err).read_text(errors="replace")

    def metrics(self) -> dict[str, float]:
        """The worker's /metrics, each series summed over its labels ({} while it is not listening);
        touches counts only those sent."""
        try:
            with urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2) as response:
                body = response.read().decode()
        except OSError:
            return {}
        values: dict[str, float] = {}
        for line in body.splitlines():
            if line.startswith("cadence_") and (not line.startswith("cadence_touches") or 'outcome="sent"' in line):
                name = line.split("{", 1)[0].split(" ", 1)[0]
                values[name] = values.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
        return values

    def ready(self) -> bool:
        """Has the worker drained once (finding nothing, as the store is held)? Its /metrics count the claim.

        Not its "running" line: under a CADENCE_NOW days in the past, APScheduler first walks
        every interval between that time and the real one (seconds of CPU at a 0.5 s interval)
        before the first drain starts.
        """
        return self.metrics().get(CLAIMS, 0.0) >= 1

    def report(self) -> dict[str, Any]:
        """The JSON `cadence run --json` prints as it exits (after its "running" line)."""
        out = self.text("out")
        start = re.search(r"^\{", out, re.MULTILINE)
        if start is None:
            raise SystemExit(f"a worker printed no report:\n{tail(out)}\n{tail(self.text('err'))}")
        return dict(json.loads(out[start.start() :]))


def spawn(project: Path, url: str, count: int, logs: Path) -> list[Worker]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADENCE_")}
    env.update(CADENCE_NOW=NOW, CADENCE_DATABASE_URL=url, CADENCE_SECRET=SECRET, PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "cadence", "--config", str(project / "config.yaml"), "run", "--json"]
    workers: list[Worker] = []
    for i in range(count):
        out, err, port = logs / f"worker-{i}.out", logs / f"worker-{i}.err", free_port()
        files = [out.open("wb"), err.open("wb")]
        process = subprocess.Popen(
            [*command, "--metrics-port", str(port)], cwd=project, env=env, stdout=files[0], stderr=files[1]
        )
        workers.append(Worker(process, out, err, port, files))
    return workers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop(workers: list[Worker], grace: float = 60.0) -> list[int | None]:
    """SIGTERM each worker, wait (bounded) for it to finish its batch and exit; kill what is left."""
    for w in workers:
        if w.process.poll() is None:
            w.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    codes: list[int | None] = []
    for w in workers:
        try:
            codes.append(w.process.wait(timeout=max(0.1, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            w.process.kill()
            w.process.wait(timeout=10)
            codes.append(None)
        for f in w.files:
            f.close()
    return codes


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


@dataclass
class Round:
    workers: int
    per_s: float  # N / (last 250 - first arrival), at the sink
    window_s: float
    wall_s: float  # spawn -> last 250
    startup_s: float  # spawn -> every worker running (held) or spawn -> first arrival (cold)
    pickup_s: float  # armed -> first arrival (held; 0 when cold)
    cores: dict[str, float]  # over the sending window
    connections: dict[str, float]  # how the SMTP connections spent the window (see connection_use)
    batches: dict[str, float]  # the workers' own timings of a batch (see batch_times)
    worker_cpu_s: float  # every worker's whole life, start-up and shut-down included (getrusage)
    window_cpu_s: float  # the workers' CPU while they sent (/proc)
    shares: list[int]
    checked: str


def run_round(
    args: argparse.Namespace, project: Path, store: Store, sink: ServerProcess, count: int, logs: Path
) -> Round:
    """`count` workers drain a fresh copy of the store; timed at the sink, then checked."""
    n = args.emails
    with store.fresh() as (url, name):
        before = sink.count
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        spawned = time.time()
        deadline = time.monotonic() + args.timeout
        workers = spawn(project, url, count, logs)
        try:
            startup, armed = 0.0, spawned
            if not args.cold:
                while not all(w.ready() for w in workers):
                    _check_alive(workers, deadline, "to start")
                    time.sleep(POLL_SECONDS)
                armed = time.time()
                startup = armed - spawned
                hold(url, parse_instant(NOW))  # armed: due now, each worker starts on its next drain
            at_arm = [w.metrics() for w in workers]
            pids = [w.process.pid for w in workers]
            first: CpuSample | None = None
            while True:
                received = sink.count - before
                if received and first is None:
                    first = CpuSample.take(pids, sink.pid, store.backends(name))
                if received >= n:
                    last = CpuSample.take(pids, sink.pid, store.backends(name))
                    break
                _check_alive(workers, deadline, f"to send {n:,} ({received:,} received)")
                time.sleep(POLL_SECONDS)
            while True:  # the last batches are recorded after their 250s: then read the metrics
                at_end = [w.metrics() for w in workers]
                if sum(m.get(SENT, 0.0) for m in at_end) >= n:
                    recorded = time.time()
                    break
                _check_alive(workers, deadline, "to record every send")
                time.sleep(POLL_SECONDS)
        finally:
            codes = stop(workers)
        assert first is not None
        errors = {i: code for i, code in enumerate(codes) if code != 0}
        if errors:
            details = "\n".join(f"worker {i} (exit {c}):\n{tail(workers[i].text('err'))}" for i, c in errors.items())
            raise SystemExit(f"workers did not exit cleanly after SIGTERM:\n{details}")
        worker_cpu = _cpu_of(resource.getrusage(resource.RUSAGE_CHILDREN)) - _cpu_of(children)
        shares = [int(w.report()["dispatch"]["sent"].get("email", 0)) for w in workers]
        times = sink.times(before)
        checked = verify(url, sink, before, n, shares, len(times))
    arrived, replied = min(t[0] for t in times), max(t[1] for t in times)
    window = replied - arrived
    return Round(
        workers=len(workers),
        per_s=n / window,
        window_s=window,
        wall_s=replied - spawned,
        startup_s=startup if not args.cold else arrived - spawned,
        pickup_s=0.0 if args.cold else arrived - armed,
        cores=last.cores_since(first),
        connections=connection_use(times, arrived, replied),
        batches=batch_times(at_arm, at_end) | {"record_lag_s": max(0.0, recorded - replied)},
        worker_cpu_s=worker_cpu,
        window_cpu_s=last.worker_seconds_since(first),
        shares=shares,
        checked=checked,
    )


@dataclass
class Raw:
    per_s: float
    connections: dict[str, float]


def raw_round(sample: bytes, n: int, connections: int, sink: ServerProcess, round_no: int) -> Raw:
    """The control: aiosmtplib alone (dispatch.py's raw pass, messages built beforehand), one process, the
    same number of messages and connections, into the same slow sink: what this machine allows right now."""
    before = sink.count
    raw_email_pass(sample, n, connections, sink, round_no)
    times = sink.times(before)
    if len(times) != n:
        raise SystemExit(f"raw email: {len(times)} timed replies, not {n}")
    arrived, replied = min(t[0] for t in times), max(t[1] for t in times)
    return Raw(n / (replied - arrived), connection_use(times, arrived, replied))


def batch_times(before: list[dict[str, float]], after: list[dict[str, float]]) -> dict[str, float]:
    """Mean seconds a batch took to claim, to render and send, and to record, over every worker, from their
    /metrics between the arm and the end (a claim that found nothing, at the end, counts in the claims)."""

    def grew(name: str) -> float:
        return sum(a.get(name, 0.0) - b.get(name, 0.0) for a, b in zip(after, before, strict=True))

    batches = max(grew("cadence_record_seconds_count"), 1.0)
    return {
        "batches": batches,
        "claims": grew("cadence_claim_seconds_count"),
        "claim_s": grew("cadence_claim_seconds_sum") / max(grew("cadence_claim_seconds_count"), 1.0),
        "send_s": grew("cadence_send_seconds_sum") / batches,
        "record_s": grew("cadence_record_seconds_sum") / batches,
    }


def connection_use(times: list[tuple[float, float, str]], start: float, end: float) -> dict[str, float]:
    """How the SMTP connections spent the window, from the sink's side; the four shares add up to 1.

    - busy: a message's text is in and its 250 not yet sent (the relay's latency, and the sink's work);
    - gaps: from a 250 to the connection's next message in, up to GAP_STALL seconds: the client
      reading the reply, then MAIL FROM, RCPT TO and DATA, each a round trip;
    - stalls: such gaps longer than GAP_STALL: the connection waited for work (a batch to be
      claimed or rendered, the event loop held by CPU work);
    - edges: before a connection's first message and after its last (start-up skew, the tail).
    """
    by_client: dict[str, list[tuple[float, float]]] = {}
    for arrived, replied, client in times:
        by_client.setdefault(client, []).append((arrived, replied))
    total = max(len(by_client) * (end - start), 1e-9)
    busy = gaps = stalls = edges = 0.0
    short: list[float] = []
    for spans in by_client.values():
        spans.sort()
        busy += sum(r - a for a, r in spans)
        edges += (spans[0][0] - start) + (end - max(r for _, r in spans))
        for (_, replied), (arrived, _) in pairwise(spans):
            gap = max(0.0, arrived - replied)
            if gap > GAP_STALL:
                stalls += gap
            else:
                gaps += gap
                short.append(gap)
    return {
        "clients": float(len(by_client)),
        "busy": busy / total,
        "gaps": gaps / total,
        "stalls": stalls / total,
        "edges": edges / total,
        "gap_ms": 1000 * statistics.median(short) if short else 0.0,
    }


def _cpu_of(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def _check_alive(workers: list[Worker], deadline: float, what: str) -> None:
    for i, w in enumerate(workers):
        if w.process.poll() is not None:
            raise SystemExit(f"worker {i} exited ({w.process.returncode}) early:\n{tail(w.text('err'))}")
    if time.monotonic() > deadline:
        raise SystemExit(f"timed out waiting for the workers {what}")


def verify(url: str, sink: ServerProcess, before: int, n: int, shares: list[int], timed: int) -> str:
    """Exactly once: N received, N distinct Message-IDs, N sent touches carrying exactly those IDs."""
    received = sink.ids(before)
    unique = set(received)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            sent = conn.execute(
                select(func.count()).where(TouchT.c.channel == "email", TouchT.c.status == TouchStatus.SENT)
            ).scalar_one()
            recorded = set(conn.execute(select(TouchT.c.message_id).where(TouchT.c.channel == "email")).scalars())
    finally:
        engine.dispose()
    checks = {
        "received": len(received) == n,
        "unique ids": len(unique) == n and None not in unique,
        "sent touches": sent == n,
        "ids match the store": recorded == unique,
        "workers' reports add up": sum(shares) == n,
        "every 250 timed": timed == n,
    }
    if not all(checks.values()):
        raise SystemExit(
            f"verification failed: {checks}; received {len(received)}, unique {len(unique)}, sent touches {sent},"
            f" workers' shares {shares}"
        )
    return (
        f"the sink received {len(received):,} messages with {len(unique):,} distinct Message-IDs; the store has"
        f" {sent:,} sent touches with exactly those; shares {shares}; every worker exited 0 after SIGTERM"
    )


# -- the run --------------------------------------------------------------------------------


def point_at(project: Path, sink: ServerProcess, interval: float) -> None:
    """The bench config (dispatch.make_project's) aimed at this sink; SMS stays in the outbox, unused."""
    path = project / "config.yaml"
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    config["email"]["smtp"].update(host=sink.info["host"], port=sink.info["port"])
    config["sms"] = {k: v for k, v in config["sms"].items() if k != "twilio"} | {"transport": "outbox"}
    config["engine"]["interval_seconds"] = interval
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")


def numbers(text: str, kind: type) -> list[Any]:
    return [kind(v) for v in text.split(",") if v.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--workers", help="worker counts, in turn (default 1,2,4; SQLite 1)")
    parser.add_argument("--emails", type=int, default=4000, help="due emails each round (default 4000)")
    parser.add_argument("--latency", default="0.05,0", help="seconds the sink holds each 250, one table each")
    parser.add_argument("--connections", type=int, default=8, help="email.smtp.connections of each worker (8)")
    parser.add_argument("--batch-size", type=int, default=200, help="engine.batch_size (default 200)")
    parser.add_argument("--interval", type=float, default=0.5, help="engine.interval_seconds (default 0.5)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of every worker count (medians reported)")
    parser.add_argument("--no-raw", action="store_true", help="skip the raw aiosmtplib control at each latency above 0")
    parser.add_argument("--cold", action="store_true", help="due from the start: start-up skew counts")
    parser.add_argument("--timeout", type=float, help="seconds a round may take (default 60 + emails / 20)")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args(argv)
    workers = numbers(args.workers or ("1" if args.store == "sqlite" else "1,2,4"), int)
    latencies = numbers(args.latency, float)
    if args.store == "sqlite" and workers != [1]:
        parser.error("SQLite takes one writer at a time: --workers 1 (use --store postgresql to scale)")
    if 1 not in workers or min(workers) < 1 or args.emails < 1 or any(x < 0 for x in latencies):
        parser.error("--workers must include 1 (the ratios' base), and counts, emails and latencies be positive")
    args.timeout = args.timeout or 60 + args.emails / 20
    repeat = max(1, args.repeat)
    figures: dict[str, Any] = {
        "store": args.store, "emails": args.emails, "connections": args.connections, "batch_size": args.batch_size,
        "interval_s": args.interval, "repeat": repeat, "cold": args.cold, "cores": CORES, "latencies": [],
    }  # fmt: skip
    signal.signal(signal.SIGTERM, _stop_on_sigterm)  # `timeout` or `kill`: still stop the workers, drop the databases
    work = Path(tempfile.mkdtemp(prefix="cadence-bench-workers-"))
    store: Store | None = None
    try:
        for latency in latencies:
            with ServerProcess("smtp", latency=latency, timestamps=True) as sink:
                if store is None:  # the project is made once; each sink gets its own port
                    unused = {"base_url": "http://127.0.0.1:9"}
                    project = make_project(work, sink.info, unused, args.batch_size, args.connections, True)
                    point_at(project, sink, args.interval)
                    started = time.perf_counter()
                    store = Store(args.store, project, work, args.emails, args.cold)
                    figures["seed_s"] = time.perf_counter() - started
                point_at(project, sink, args.interval)
                rounds: dict[int, list[Round]] = {w: [] for w in workers}
                raws: list[Raw] = []
                for r in range(repeat):
                    if latency > 0 and not args.no_raw:
                        raws.append(raw_round(store.sample, args.emails, args.connections, sink, r))
                        print(f"latency {latency * 1000:g} ms, round {r + 1}, raw: {raws[-1].per_s:,.0f} emails/s",
                              file=sys.stderr)  # fmt: skip
                    for w in workers:
                        done = run_round(args, project, store, sink, w, work)
                        rounds[w].append(done)
                        print(
                            f"latency {latency * 1000:g} ms, round {r + 1}, {w} worker(s): {done.per_s:,.0f} emails/s",
                            file=sys.stderr,
                        )
                figures["latencies"].append(summarise(latency, rounds, raws, args.connections))
    finally:
        if store is not None:
            store.close()
        shutil.rmtree(work, ignore_errors=True)
    if not args.json:
        print_table(figures)
    print(json.dumps(_rounded(figures)))
    return 0


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def summarise(latency: float, rounds: dict[int, list[Round]], raws: list[Raw], connections: int) -> dict[str, Any]:
    base = rounds[1]
    summary: dict[str, Any] = {"latency_s": latency}
    if raws:
        per_s = statistics.median(r.per_s for r in raws)
        of_raw = [b.per_s / r.per_s for b, r in zip(base, raws, strict=True)]  # same round, same moment
        summary["raw"] = {
            "per_s": per_s,
            "runs_per_s": [r.per_s for r in raws],
            "of_ceiling": per_s * latency / connections,
            "one_worker_of_raw": statistics.median(of_raw),
            "one_worker_of_raw_runs": of_raw,
            "connections": {k: statistics.median(r.connections[k] for r in raws) for k in raws[0].connections},
        }
    rows = []
    for w, done in rounds.items():
        ratios = [d.per_s / b.per_s for d, b in zip(done, base, strict=True)]  # same round, same moment
        row: dict[str, Any] = {
            "workers": w,
            "per_s": statistics.median(d.per_s for d in done),
            "runs_per_s": [d.per_s for d in done],
            "ratio": statistics.median(ratios),
            "ratio_runs": ratios,
            "window_s": statistics.median(d.window_s for d in done),
            "wall_s": statistics.median(d.wall_s for d in done),
            "startup_s": statistics.median(d.startup_s for d in done),
            "pickup_s": statistics.median(d.pickup_s for d in done),
            "cores": {k: statistics.median(d.cores[k] for d in done) for k in done[0].cores},
            "connections": {k: statistics.median(d.connections[k] for d in done) for k in done[0].connections},
            "batches": {k: statistics.median(d.batches[k] for d in done) for k in done[0].batches},
            "worker_cpu_ms": 1000 * statistics.median(d.worker_cpu_s for d in done) / sum(done[0].shares),
            "window_cpu_ms": 1000 * statistics.median(d.window_cpu_s for d in done) / sum(done[0].shares),
            "shares": [d.shares for d in done],
            "verified": [d.checked for d in done],
        }
        if latency > 0 and w == 1:
            row["ceiling_per_s"] = connections / latency
            row["of_ceiling"] = row["per_s"] / row["ceiling_per_s"]
        rows.append(row)
    return summary | {"rows": rows}


def print_table(figures: dict[str, Any]) -> None:
    f = figures
    start = "cold start (due from the spawn)" if f["cold"] else "held until every worker has drained once, then armed"
    print(
        f"`cadence run` workers on {f['store']}: {f['emails']:,} due emails a round, {f['connections']} SMTP"
        f" connections a worker, batch_size {f['batch_size']}, interval {f['interval_s']:g} s, {start};"
        f" medians of {f['repeat']} rounds on {f['cores']} cores"
    )
    for part in f["latencies"]:
        latency = part["latency_s"]
        print(f"\nsink latency {latency * 1000:g} ms a message")
        print(
            f"  {'workers':>7} {'emails/s':>9} {'x 1':>6} {'of ceiling':>15} {'window s':>9} {'wall s':>7}"
            f" {'start s':>7} {'pick-up s':>9}   runs"
        )
        if "raw" in part:
            raw = part["raw"]
            runs = " / ".join(
                f"{v:,.0f} (1 worker {r:.0%} of it)"
                for v, r in zip(raw["runs_per_s"], raw["one_worker_of_raw_runs"], strict=True)
            )
            ceiling = f"{raw['of_ceiling']:.0%} of {f['connections'] / latency:,.0f}"
            print(f"  {'raw':>7} {raw['per_s']:>9,.0f} {'':>6} {ceiling:>15} {'':>35}   {runs}")
        for row in part["rows"]:
            ceiling = f"{row['of_ceiling']:.0%} of {row['ceiling_per_s']:,.0f}" if "of_ceiling" in row else ""
            runs = " / ".join(f"{v:,.0f} ({r:.2f}x)" for v, r in zip(row["runs_per_s"], row["ratio_runs"], strict=True))
            print(
                f"  {row['workers']:>7} {row['per_s']:>9,.0f} {row['ratio']:>5.2f}x {ceiling:>15}"
                f" {row['window_s']:>9.2f} {row['wall_s']:>7.2f} {row['startup_s']:>7.2f} {row['pickup_s']:>9.2f}"
                f"   {runs}"
            )
        print(
            f"  {'':>7} cores busy in the window: {'workers':>7} {'sink':>5} {'postgres':>8} {'machine':>7}"
            f" {'ms/email':>8} {'life':>5} | SMTP connections: {'n':>3} {'busy':>5} {'gaps':>5} {'stalls':>6}"
            f" {'edges':>5} {'gap ms':>6}"
        )
        if "raw" in part:
            k = part["raw"]["connections"]
            print(
                f"  {'raw':>7} {'':>71} | {'':>17} {k['clients']:>3.0f} {k['busy']:>5.0%}"
                f" {k['gaps']:>5.0%} {k['stalls']:>6.0%} {k['edges']:>5.0%} {k['gap_ms']:>6.1f}"
            )
        for row in part["rows"]:
            c, k = row["cores"], row["connections"]
            print(
                f"  {row['workers']:>7} {'':>25} {c['workers']:>7.2f} {c['sink']:>5.2f} {c['postgres']:>8.2f}"
                f" {c['machine']:>7.2f} {row['window_cpu_ms']:>8.2f} {row['worker_cpu_ms']:>5.1f} | {'':>17}"
                f" {k['clients']:>3.0f} {k['busy']:>5.0%}"
                f" {k['gaps']:>5.0%} {k['stalls']:>6.0%} {k['edges']:>5.0%} {k['gap_ms']:>6.1f}"
            )
        print(
            f"  {'':>7} a batch, mean of the workers':  {'claim s':>7} {'send s':>7} {'record s':>8}   batches"
            "   recorded after the last 250, s"
        )
        for row in part["rows"]:
            b = row["batches"]
            print(
                f"  {row['workers']:>7} {'':>31} {b['claim_s']:>7.3f} {b['send_s']:>7.3f} {b['record_s']:>8.3f}"
                f"   {b['batches']:>7.0f}   {b['record_lag_s']:>6.2f}"
            )
        rows = {row["workers"]: row for row in part["rows"]}
        if latency > 0:
            goals = [f"1 worker {rows[1]['of_ceiling']:.0%} of the ceiling (>= 85%)"]
            if "raw" in part:
                goals[0] += f", {part['raw']['one_worker_of_raw']:.0%} of the raw client's rate"
            goals += [f"{w} workers {rows[w]['ratio']:.2f}x (>= {g}x)" for w, g in ((2, 1.8), (4, 3.2)) if w in rows]
            print("  targets: " + "; ".join(goals))
        else:
            busiest = max(part["rows"], key=lambda row: row["cores"]["machine"])
            c = busiest["cores"]
            print(
                f"  the machine: {c['machine']:.2f} of {figures['cores']} cores busy while {busiest['workers']}"
                f" worker(s) sent (workers {c['workers']:.2f}, sink {c['sink']:.2f}, PostgreSQL {c['postgres']:.2f};"
                f" the other {max(0.0, c['machine'] - c['workers'] - c['sink'] - c['postgres']):.2f} is the rest"
                " of the machine)"
            )
    print(
        "\n(ms/email: the workers' CPU while they sent; life: the same over their whole lives, start-up and"
        " shut-down included. Connections, from the sink:"
        f" busy = a message in and its 250 not yet sent; gaps = 250 to the next message, <= {GAP_STALL * 1000:g} ms"
        " (MAIL, RCPT, DATA round trips); stalls = longer waits for work; edges = before a connection's first"
        " message and after its last.)"
    )
    print("verified after each round:")
    for part in f["latencies"]:
        for row in part["rows"]:
            for i, line in enumerate(row["verified"]):
                print(f"  {part['latency_s'] * 1000:g} ms, {row['workers']} worker(s), round {i + 1}: {line}")


if __name__ == "__main__":
    raise SystemExit(main())
