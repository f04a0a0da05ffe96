"""`cadence serve` under load: POST /events and POST /leads at fixed rates on loopback (issue 15).

What is measured: the real `cadence serve` (uvicorn, one process as users run it by default;
`--server-workers N` runs `cadence serve --workers N`, its CPU summed over the processes) in a
subprocess on 127.0.0.1, on a store seeded here (SQLite by default; `--store postgresql`
makes a throwaway database on 127.0.0.1:5432, user postgres, and drops it afterwards),
with `CADENCE_API_TOKEN` set as README "HTTP API" says and `CADENCE_NOW` pinned.

- the client ceiling: a closed loop of GET /healthz (which touches nothing) with every
  connection busy, for `--ceiling-seconds`, with aiohttp and with httpx.AsyncClient: the most
  each client and uvicorn answer together, and the CPU each side spends per request (the
  client shares the 2 cores with the server). The load itself is sent with aiohttp
  (`--client httpx` to compare): httpx's async pool costs several times its CPU per request;
- steps of POST /events, open loop: request i is due at start + i / rate whatever came back
  before (so a slow server cannot slow the offered load down), each step `--duration`
  seconds, one at each of `--rates`. Events are `replied`, `out_of_office` (with a return
  date) and `meeting_booked` in turn, each for a different seeded lead (by id, or by email
  for every other request), enrolled in outbound-saas: they end or pause a live enrollment,
  and replies open a task for the owner. Latency is timed from when a request was due, not
  from when the client got round to sending it, so a client or a server that falls behind
  shows in p99 (`lag` says how late the client itself sent). What is not answered within
  `--drain` seconds after the step is given up; the next step waits until the server is idle;
- a mixed step: events plus `--mixed-leads` of POST /leads (new inbound leads, rotated to
  an owner and enrolled in config.yaml's `inbound_sequence`).

Per step: offered rate, achieved rate (2xx answers per second, over the step or until its
last answer if later), p50 and p99 latency, errors by status, and the server's CPU time per
request (read from /proc). The sustained rate is the highest events step that answered at
least 95% of what was offered with 2xx and a p99 under 100 ms (issue 15's target: 300/s).

Nothing lost: every request carries a unique id (an event's `note`, an inbound lead's `id`).
After the steps the store is read: each id answered 2xx must be there exactly once (one
`event` history row; one lead with one `created` row and an enrollment), and nothing refused
may be there; the exit status is 1 if anything was. (A request the client gave up on may or
may not have been stored: it is counted, never as lost.)

Where the time goes, with `--profile` (needs `.venv/bin/pip install py-spy`): one more step at
`--profile-rate` with py-spy attached to the server, summarised by thread, by kind of work,
by package and by function; then the floor: `post_event`'s own call (`record_event_by_ref`: find
the lead, read the return date, record the event, in one transaction) in this process one after
another, without HTTP or threads, with the SQL statements per event and the time inside the
driver. `--profile-out` keeps the collapsed stacks for a flame graph.

Loopback only; every wait has a deadline and the server is stopped on the way out. Run:
`.venv/bin/python bench/serve.py [--store sqlite|postgresql] [--rates 100,200,300,400,600]
[--duration 5] [--clients N] [--connections N] [--profile] [--json]`; the defaults take two
to five minutes on 2 cores, longer the further the server is from keeping up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NamedTuple

import aiohttp
import httpx
import yaml
from sqlalchemy import create_engine, func, select, text

from cadence.app import App
from cadence.clock import FixedClock, parse_instant
from cadence.enrollment.enroll import enroll
from cadence.enrollment.lead_import import import_leads
from cadence.names import Event, HistoryKind
from cadence.store.tables import EnrollmentT, HistoryT, LeadT

ROOT = Path(__file__).resolve().parent.parent
NOW = "2026-11-23T10:00:00-05:00"  # a Monday morning in New York, inside the send window
TOKEN = "bench-api-token-not-for-production"
PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
SEQUENCE = "outbound-saas"
EVENTS = (Event.REPLIED, Event.OUT_OF_OFFICE, Event.MEETING_BOOKED)
RETURN_DATE = "2026-12-14"  # an out_of_office's `until`
TARGET_RATE, TARGET_P99_MS, ACHIEVED_SHARE = 300, 100.0, 0.95


# -- requests, samples and one client's share of a step -------------------------------------


class Req(NamedTuple):
    kind: str  # "event", "lead" or "healthz"
    uid: str  # the id the store must hold once if the answer is 2xx
    path: str
    body: dict[str, Any] | None


class Sample(NamedTuple):
    kind: str
    uid: str
    status: int | str  # the HTTP status, or the name of the client's exception
    lag_ms: float  # sent after it was due
    latency_ms: float  # answered after it was due
    service_ms: float  # answered after it was sent
    done_s: float  # answered, seconds after the step started


@dataclass(frozen=True)
class Job:
    """One client process's share of a step: every `clients`-th request, at rate / clients."""

    base: str
    requests: list[Req]
    rate: float
    start_wall: float  # time.time() when its first request is due
    give_up_s: float  # seconds after that: stop sending, stop waiting
    connections: int
    timeout_s: float
    client: str = "aiohttp"
    closed_loop_s: float = 0.0  # > 0: the ceiling run, `connections` requests in flight for this long


@dataclass
class Driven:
    samples: list[Sample] = field(default_factory=list)
    unanswered: list[tuple[str, str]] = field(default_factory=list)  # (kind, uid): cancelled at the deadline
    unsent: int = 0
    cpu_s: float = 0.0


def drive(job: Job) -> Driven:
    """Run one share (module level, so a spawned client process can run it)."""
    return asyncio.run(_closed_loop(job) if job.closed_loop_s else _open_loop(job))


class Caller:
    """One pooled HTTP client of the kind asked for: aiohttp (the default) or httpx.AsyncClient.

    httpx is what the tests use, but its async pool cost 2 to 11 ms of CPU per request on this
    machine, the more the more connections it holds (httpcore's pool walks every connection
    for every request), so one client process could not offer 300 requests a second and leave
    a core to the server. aiohttp, installed anyway for the twilio client, cost about 0.4 ms.
    The ceiling run measures both, every time.
    """

    def __init__(self, job: Job) -> None:
        self.job = job
        headers = {"Authorization": f"Bearer {TOKEN}"}
        self.http: httpx.AsyncClient | None = None
        self.aio: aiohttp.ClientSession | None = None
        if job.client == "httpx":
            limits = httpx.Limits(max_connections=job.connections, max_keepalive_connections=job.connections)
            self.http = httpx.AsyncClient(base_url=job.base, headers=headers, limits=limits, timeout=job.timeout_s)
        else:
            self.aio = aiohttp.ClientSession(
                job.base,
                headers=headers,
                connector=aiohttp.TCPConnector(limit=job.connections),
                timeout=aiohttp.ClientTimeout(total=job.timeout_s),
            )

    async def send(self, req: Req) -> int | str:
        """The answer's status, or the name of the exception that came instead."""
        try:
            if self.http is not None:
                if req.body is None:
                    return (await self.http.get(req.path)).status_code
                return (await self.http.post(req.path, json=req.body)).status_code
            assert self.aio is not None
            method = self.aio.get(req.path) if req.body is None else self.aio.post(req.path, json=req.body)
            async with method as answer:
                await answer.read()
                return answer.status
        except (httpx.HTTPError, aiohttp.ClientError, TimeoutError) as exc:
            return type(exc).__name__

    async def warm(self) -> None:
        """Open some connections before the clock starts, as a long-running caller would have."""
        health = Req("healthz", "", "/healthz", None)
        await asyncio.wait_for(asyncio.gather(*(self.send(health) for _ in range(min(self.job.connections, 16)))), 30)

    async def close(self) -> None:
        if self.http is not None:
            await self.http.aclose()
        if self.aio is not None:
            await self.aio.close()


async def _open_loop(job: Job) -> Driven:
    out = Driven()
    client = Caller(job)
    try:
        await client.warm()
        start = time.monotonic() + (job.start_wall - time.time())
        give_up = start + job.give_up_s
        cpu = time.process_time()

        async def one(req: Req, due: float) -> None:
            sent = time.monotonic()
            status = await client.send(req)
            done = time.monotonic()
            lag, latency, service = (sent - due) * 1000, (done - due) * 1000, (done - sent) * 1000
            out.samples.append(Sample(req.kind, req.uid, status, lag, latency, service, done - start))

        flying: dict[asyncio.Task[None], Req] = {}
        for i, req in enumerate(job.requests):
            due = start + i / job.rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if time.monotonic() >= give_up:
                break
            flying[asyncio.create_task(one(req, due))] = req
        out.unsent = len(job.requests) - len(flying)
        if flying:
            _, pending = await asyncio.wait(flying, timeout=max(0.0, give_up - time.monotonic()))
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            out.unanswered = [(flying[task].kind, flying[task].uid) for task in pending]
        out.cpu_s = time.process_time() - cpu
    finally:
        await client.close()
    return out


async def _closed_loop(job: Job) -> Driven:
    """`connections` callers, each sending its next request as soon as the last one is answered."""
    out = Driven()
    req = job.requests[0]
    client = Caller(job)
    try:
        await client.warm()
        start = time.monotonic()
        stop = start + job.closed_loop_s
        cpu = time.process_time()

        async def caller() -> None:
            while time.monotonic() < stop:
                sent = time.monotonic()
                status = await client.send(req)
                done = time.monotonic()
                out.samples.append(
                    Sample(req.kind, "", status, 0.0, (done - sent) * 1000, (done - sent) * 1000, done - start)
                )

        await asyncio.wait_for(asyncio.gather(*(caller() for _ in range(job.connections))), job.give_up_s)
        out.cpu_s = time.process_time() - cpu
    finally:
        await client.close()
    return out


# -- the project, the store and the server --------------------------------------------------


def prepare(folder: Path, db_url: str, count: int) -> None:
    """The starter project, `count` leads enrolled in outbound-saas (the targets of the events)."""
    shutil.copytree(ROOT / "cadence" / "starter", folder)
    config = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
    config["public_url"] = "http://127.0.0.1"
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    app = App.load(folder / "config.yaml", FixedClock(parse_instant(NOW)), database_url=db_url)
    try:
        owners = [sender.id for sender in app.settings.senders]
        rows = [
            (n + 2, {"id": lead_id(n), "email": lead_email(n), "first_name": f"Lead{n}", "last_name": "Bench",
                     "company": f"Bench {n % 97}", "title": "VP Sales", "phone": f"+1212555{n % 10_000:04d}",
                     "owner": owners[n % len(owners)], "timezone": "America/New_York", "country": "US"})
            for n in range(count)
        ]  # fmt: skip
        imported = import_leads(app.engine, rows, app.settings, app.clock.now())
        assert not imported.rejected, imported.rejected[:3]
        report = enroll(app, SEQUENCE, [lead_id(n) for n in range(count)], cause="bench")
        assert len(report.enrolled) == count, report.refused[:3]
    finally:
        app.close()


def lead_id(n: int) -> str:
    return f"B{n:06d}"


def lead_email(n: int) -> str:
    return f"b{n}@bench{n % 97}.example"


@contextmanager
def store(kind: str, folder: Path) -> Iterator[str]:
    """A SQLite file in the work folder, or a throwaway PostgreSQL database dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'cadence.db'}"
        return
    name = f"cadence_bench_serve_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """`cadence serve` in a subprocess; a context manager."""

    def __init__(self, folder: Path, db_url: str, log: Path, workers: int = 1) -> None:
        self.folder, self.log_path, self.workers = folder, log, workers
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CADENCE_")}
        self.env.update(
            CADENCE_NOW=NOW, CADENCE_API_TOKEN=TOKEN, CADENCE_SECRET="bench-secret", CADENCE_DATABASE_URL=db_url
        )
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def __enter__(self) -> Server:
        command = [sys.executable, "-m", "cadence", "--config", str(self.folder / "config.yaml"), "serve"]
        command += ["--port", str(self.port), "--workers", str(self.workers)]
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(command, cwd=self.folder, env=self.env, stdout=self._log, stderr=self._log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"cadence serve exited ({self.process.returncode}):\n{self.log_tail()}")
            with suppress(httpx.HTTPError):
                if httpx.get(self.base + "/healthz", timeout=1).status_code == 200:
                    return self
            time.sleep(0.1)
        self.__exit__()
        raise SystemExit(f"cadence serve did not answer /healthz within 60 s:\n{self.log_tail()}")

    def __exit__(self, *exc_info: object) -> None:
        if self.process is None:
            return
        stop(self.process, signal.SIGTERM)  # uvicorn shuts down gracefully on SIGTERM
        if self._log is not None:
            self._log.close()
        self.process = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def cpu_s(self) -> float | None:
        """User + system CPU time of the server, all its threads and, with `--server-workers`, its worker
        processes (Linux /proc)."""
        total, pids = 0, [self.pid]
        while pids:
            pid = pids.pop()
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                pids += Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except (OSError, IndexError):
                if pid == self.pid:
                    return None
                continue
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def settle(self, limit_s: float = 120.0) -> float:
        """Wait (at most `limit_s`) until the server is idle, so a backlog left by one step is not the next one's."""
        start = time.monotonic()
        while time.monotonic() - start < limit_s:
            before = self.cpu_s()
            time.sleep(0.5)
            after = self.cpu_s()
            if before is None or after is None or after - before < 0.05 * 0.5:
                break
        return time.monotonic() - start

    def log_tail(self, lines: int = 30) -> str:
        with suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


def stop(process: subprocess.Popen[bytes], how: signal.Signals) -> None:
    """Ask a child to end, then make it: it is gone when this returns."""
    if process.poll() is None:
        process.send_signal(how)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextmanager
def sampled(pid: int, raw: Path, log: Path) -> Iterator[None]:
    """py-spy sampling the server while the block runs, as collapsed stacks in `raw`.

    Only the thread holding the GIL is sampled (`--gil`): one Python process runs one thread
    at a time, so that is where a GIL-bound server's capacity goes. sqlite3 and psycopg release
    the GIL inside the database, so time spent there shows only as the rest waiting.
    """
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
    command = [spy, "record", "--pid", str(pid), "--format", "raw", "--full-filenames", "--threads", "--gil",
               "--nonblocking", "--rate", "250", "--output", str(raw)]  # fmt: skip
    with log.open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=out)
        try:
            time.sleep(1.0)  # attached before the load starts
            if process.poll() is not None:
                said = log.read_text(errors="replace")[-2000:]
                raise SystemExit(f"py-spy could not attach to the server ({process.returncode}):\n{said}")
            yield
        finally:
            stop(process, signal.SIGINT)  # py-spy writes its output on SIGINT


# -- the steps ------------------------------------------------------------------------------


def event_requests(tag: str, count: int, first: int, leads: int) -> list[Req]:
    """`count` events, each for the next seeded lead (wrapping round), its uid in the note."""
    out = []
    for i in range(count):
        n = (first + i) % leads
        kind = EVENTS[(first + i) % len(EVENTS)]
        uid = f"bench:{tag}:{i}"
        body: dict[str, Any] = {"lead": lead_email(n) if i % 2 else lead_id(n), "event": str(kind), "note": uid}
        if kind == Event.OUT_OF_OFFICE:
            body["until"] = RETURN_DATE
        out.append(Req("event", uid, "/events", body))
    return out


def lead_requests(tag: str, count: int) -> list[Req]:
    """`count` new inbound leads; no owner, so each takes the rotation's next turn."""
    out = []
    for i in range(count):
        uid = f"IN-{tag}-{i}"
        body = {"id": uid, "email": f"{uid.lower()}@inbound{i % 53}.example", "first_name": "Ines",
                "last_name": f"Inbound{i}", "company": f"Inbound {i % 53}", "title": "CTO",
                "timezone": "America/Chicago", "country": "US", "plan": "pro"}  # fmt: skip
        out.append(Req("lead", uid, "/leads", body))
    return out


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))]


def ok(status: int | str) -> bool:
    return isinstance(status, int) and 200 <= status < 300


def run_jobs(pool: Executor | None, jobs: list[Job], wait_s: float) -> list[Driven]:
    if pool is None:
        return [drive(job) for job in jobs]
    futures = [pool.submit(drive, job) for job in jobs]
    return [future.result(timeout=wait_s) for future in futures]


def step(
    name: str, requests: list[Req], rate: float, duration: float, args: argparse.Namespace,
    server: Server, pool: Executor | None,
) -> tuple[dict[str, Any], list[Driven]]:  # fmt: skip
    """Offer `requests` at `rate` per second, split over the client processes; the step's figures."""
    clients = args.clients
    start_wall = time.time() + 1.0 + 0.5 * clients  # time for every client to warm up its connections
    give_up = duration + args.drain
    jobs = [
        Job(server.base, requests[k::clients], rate / clients, start_wall + k / rate, give_up,
            max(1, args.connections // clients), args.timeout, args.client)
        for k in range(clients)
    ]  # fmt: skip
    cpu = server.cpu_s()
    driven = run_jobs(pool, jobs, give_up + 60)
    settled = server.settle()  # what the server still had in hand when the client gave up is its work too
    cpu_after = server.cpu_s()
    figures = summarise(name, rate, duration, driven)
    figures["settle_s"] = settled
    if cpu is not None and cpu_after is not None:
        figures["server_cpu_s"] = cpu_after - cpu
        handled = figures["answered"] + figures["errors"].get("unanswered", 0)
        figures["server_cpu_ms_per_req"] = 1000 * (cpu_after - cpu) / max(1, handled)
    return figures, driven


def summarise(name: str, rate: float, duration: float, driven: list[Driven], kind: str | None = None) -> dict[str, Any]:
    samples = [s for d in driven for s in d.samples if kind is None or s.kind == kind]
    unanswered = sum(1 for d in driven for k, _ in d.unanswered if kind is None or k == kind)
    unsent = sum(d.unsent for d in driven) if kind is None else 0  # not sent: the client fell too far behind
    offered = len(samples) + unanswered + unsent
    good = [s for s in samples if ok(s.status)]
    span = max([duration, *(s.done_s for s in samples)])
    errors: Counter[str] = Counter(str(s.status) for s in samples if not ok(s.status))
    if unanswered:
        errors["unanswered"] = unanswered
    if unsent:
        errors["unsent"] = unsent
    latency = [s.latency_ms for s in samples]
    return {
        "step": name,
        "requests": offered,
        "offered_per_s": offered / duration if kind else rate,
        "answered": len(samples),
        "achieved_per_s": len(good) / span,
        "p50_ms": percentile(latency, 0.50),
        "p99_ms": percentile(latency, 0.99),
        "max_ms": max(latency, default=float("nan")),
        "service_p99_ms": percentile([s.service_ms for s in samples], 0.99),
        "lag_p99_ms": percentile([s.lag_ms for s in samples], 0.99),
        "errors": dict(errors),
        "client_cpu_s": sum(d.cpu_s for d in driven),
    }


def sustained(figures: dict[str, Any]) -> bool:
    return bool(
        figures["achieved_per_s"] >= ACHIEVED_SHARE * figures["offered_per_s"] and figures["p99_ms"] < TARGET_P99_MS
    )


def ceiling(args: argparse.Namespace, server: Server, pool: Executor | None, client: str) -> dict[str, Any]:
    """GET /healthz in a closed loop: what the client and uvicorn answer together, and each one's CPU per request."""
    health = [Req("healthz", "", "/healthz", None)]
    seconds = args.ceiling_seconds
    connections = max(1, args.connections // args.clients)
    jobs = [
        Job(server.base, health, 0.0, 0.0, seconds + 30, connections, args.timeout, client, seconds)
        for _ in range(args.clients)
    ]
    cpu = server.cpu_s()
    driven = run_jobs(pool, jobs, seconds + 90)
    cpu_after = server.cpu_s()
    samples = [s for d in driven for s in d.samples]
    answered = max(1, len(samples))
    client_cpu = sum(d.cpu_s for d in driven)
    out = {
        "healthz_per_s": sum(ok(s.status) for s in samples) / seconds,
        "p50_ms": percentile([s.latency_ms for s in samples], 0.50),
        "client_cpu_ms_per_req": 1000 * client_cpu / answered,
        "client_alone_per_s": answered / client_cpu if client_cpu else float("nan"),
    }
    if cpu is not None and cpu_after is not None:
        out["server_cpu_ms_per_req"] = 1000 * (cpu_after - cpu) / answered
    return out


# -- nothing lost ---------------------------------------------------------------------------


def verify(db_url: str, driven: list[Driven]) -> dict[str, Any]:
    """Each uid answered 2xx is in the store exactly once; nothing refused is there at all."""
    accepted: dict[str, set[str]] = {"event": set(), "lead": set()}
    refused: dict[str, set[str]] = {"event": set(), "lead": set()}
    unanswered: dict[str, set[str]] = {"event": set(), "lead": set()}
    for d in driven:
        for s in d.samples:
            if s.kind in accepted:
                (accepted if ok(s.status) else refused)[s.kind].add(s.uid)
        for kind, uid in d.unanswered:
            unanswered[kind].add(uid)
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            notes = conn.execute(select(HistoryT.c.detail).where(HistoryT.c.kind == HistoryKind.EVENT)).scalars()
            events = Counter(str(d.get("note")) for d in notes if str(d.get("note", "")).startswith("bench:"))
            inbound = LeadT.c.id.like("IN-%")
            leads = Counter(conn.execute(select(LeadT.c.id).where(inbound)).scalars())
            created = Counter(
                conn.execute(
                    select(HistoryT.c.lead_id).where(
                        HistoryT.c.kind == HistoryKind.CREATED, HistoryT.c.lead_id.like("IN-%")
                    )
                ).scalars()
            )
            enrolled = set(
                conn.execute(select(EnrollmentT.c.lead_id).where(EnrollmentT.c.lead_id.like("IN-%"))).scalars()
            )
            actions = conn.execute(select(func.count()).where(HistoryT.c.kind == HistoryKind.ACTION)).scalar_one()
            tasks = conn.execute(select(func.count()).where(HistoryT.c.kind == HistoryKind.TASK_OPENED)).scalar_one()
    finally:
        engine.dispose()
    out: dict[str, Any] = {}
    # An inbound lead is stored once when its row is there (the primary key allows no second) with one `created` row.
    for kind, stored in (("event", events), ("lead", leads)):
        got = accepted[kind]
        counted = created if kind == "lead" else stored
        once = {uid for uid in got if stored[uid] == 1 and counted[uid] == 1}
        out[kind] = {
            "accepted": len(got),
            "stored": len(stored),
            "stored_once": len(once),
            "missing": sorted(got - set(stored))[:5],
            "duplicated": sorted(uid for uid, n in counted.items() if n > 1)[:5],
            "refused_but_stored": sorted(refused[kind] & set(stored))[:5],
            "unanswered_but_stored": len(unanswered[kind] & set(stored)),
        }
    out["lead"]["not_enrolled"] = sorted(accepted["lead"] - enrolled)[:5]
    out["history_action_rows"] = actions
    out["tasks_opened"] = tasks
    out["lost"] = any(
        out[k]["accepted"] != out[k]["stored_once"] or out[k]["duplicated"] or out[k]["refused_but_stored"]
        for k in ("event", "lead")
    )
    return out


# -- where the time goes --------------------------------------------------------------------


def floor(folder: Path, db_url: str, requests: list[Req]) -> dict[str, Any]:
    """The work behind POST /events without HTTP, threads or contention: `post_event`'s calls, one after another.

    Also counts the SQL statements and the time spent inside the driver's execute (the database
    itself, plus the driver), so the rest is Python: SQLAlchemy building statements and cadence.
    """
    from sqlalchemy import event as sa_event

    from cadence.outcomes.events import record_event_by_ref

    app = App.load(folder / "config.yaml", FixedClock(parse_instant(NOW)), database_url=db_url)
    in_driver = [0, 0.0]  # statements, seconds

    def before(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        conn.info["bench_t"] = time.perf_counter()

    def after(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        in_driver[0] += 1
        in_driver[1] += time.perf_counter() - conn.info.pop("bench_t", time.perf_counter())

    def one(req: Req) -> None:
        assert req.body is not None
        body = req.body
        record_event_by_ref(app, body["lead"], body["event"], until=body.get("until"), note=body["note"], source="api")

    try:
        warm, timed = requests[: len(requests) // 5], requests[len(requests) // 5 :]
        for req in warm:
            one(req)
        sa_event.listen(app.engine, "before_cursor_execute", before)
        sa_event.listen(app.engine, "after_cursor_execute", after)
        wall, cpu = time.perf_counter(), time.process_time()
        for req in timed:
            one(req)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        app.close()
    n = max(1, len(timed))
    return {
        "events": len(timed),
        "per_s": n / wall,
        "wall_ms_per_event": 1000 * wall / n,
        "cpu_ms_per_event": 1000 * cpu / n,
        "statements_per_event": in_driver[0] / n,
        "driver_ms_per_event": 1000 * in_driver[1] / n,
    }


def area(frame: str) -> str:
    """A py-spy frame, "function (path:line)", as the package it runs in: sqlalchemy, cadence.store, asyncio..."""
    function, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    if function.endswith(("do_execute", "do_executemany", "_do_commit", "do_commit")) and "sqlalchemy" in path:
        return "database driver"
    if "/cadence/" in path:
        parts = path.split("/cadence/", 1)[1].split("/")
        return "cadence." + (parts[0] if len(parts) > 1 else parts[0].removesuffix(".py"))
    if "sqlalchemy" in path and "-packages/" not in path:  # the code SQLAlchemy generates at import
        return "sqlalchemy"
    if "-packages/" in path:
        return path.split("-packages/", 1)[1].split("/")[0].removesuffix(".py")
    if "/lib/python" in path:  # the standard library: its top-level module or package
        return path.split("/lib/python", 1)[1].split("/")[1].removesuffix(".py")
    return path or function


BUCKETS = (  # where a sample's innermost frame runs -> what it is doing, first match wins
    (("database driver", "psycopg", "sqlite3"), "the database driver (sqlite3 / psycopg) executing"),
    (("sqlalchemy", "sqlmodel"), "SQLAlchemy: building, compiling and running statements, reading rows"),
    (
        ("threading", "queue", "concurrent", "anyio"),
        "handing work to the thread pool and back (queues, locks, wake-ups)",
    ),
    (("cadence.web", "starlette", "json"), "Starlette, cadence.web (middleware, handlers) and JSON"),
    (("uvicorn", "h11", "httptools", "logging"), "uvicorn and h11 (HTTP/1.1), the access log"),
    (("asyncio", "selectors", "socket"), "the asyncio event loop and sockets"),
)


def bucket(leaf_area: str) -> str:
    if leaf_area.startswith("cadence.") and leaf_area != "cadence.web":
        return "cadence's own code (rules, planner, store functions)"
    return next((label for areas, label in BUCKETS if leaf_area in areas), "other")


def profile_summary(raw: Path, top: int = 10) -> dict[str, Any]:
    """py-spy's collapsed stacks as shares of the samples: by thread, by kind of work, by package, by function."""
    threads: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    by_area: Counter[str] = Counter()
    by_function: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        frames = stack.split(";")
        if not count_text.isdigit() or len(frames) < 2:
            continue
        count = int(count_text)
        total += count
        thread = frames[0] if frames[0].startswith("thread (") else ""
        frames = frames[1:] if thread else frames
        main = thread.endswith("MainThread")
        threads["event loop thread (HTTP, routing, JSON)" if main else "thread pool (the store work)"] += count
        leaf = area(frames[-1])
        kinds[bucket(leaf)] += count
        by_area[leaf] += count
        by_function[f"{frames[-1].split(' (')[0]} ({leaf})"] += count
        named = {f"{f.split(' (')[0]} ({area(f)})" for f in frames if "/cadence/" in f and "/cadence/cli/" not in f}
        for name in named - {"<module> (cadence.__main__)"}:
            inclusive[name] += count

    def pct(counter: Counter[str]) -> dict[str, float]:
        return {k: round(100 * v / max(1, total), 1) for k, v in counter.most_common(top)}

    return {"samples": total, "threads_pct": pct(threads), "work_pct": pct(kinds), "self_by_package_pct": pct(by_area),
            "self_by_function_pct": pct(by_function), "cadence_inclusive_pct": pct(inclusive)}  # fmt: skip


# -- main -----------------------------------------------------------------------------------


def print_table(figures: dict[str, Any], args: argparse.Namespace) -> None:
    print(
        f"cadence serve (uvicorn, --workers {args.server_workers}) on {args.store}, loopback; {args.clients} "
        f"{args.client} client process(es), {args.connections} connections; {figures['seeded_leads']:,} enrolled leads"
    )
    for client, c in figures.get("ceiling", {}).items():
        print(
            f"client ceiling, {client}, GET /healthz closed loop: {c['healthz_per_s']:,.0f} answers/s, p50 "
            f"{c['p50_ms']:.1f} ms; client {c['client_cpu_ms_per_req']:.2f} ms CPU/request (~"
            f"{c['client_alone_per_s']:,.0f}/s on one core); server {c.get('server_cpu_ms_per_req', float('nan')):.2f}"
            " ms CPU/request"
        )
    print(f"  {'step':<22} {'offered/s':>9} {'achieved/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'lag p99':>8} "
          f"{'srv CPU ms/req':>14}  errors")  # fmt: skip
    for f in figures["steps"]:
        rows = [f, *f.get("by_kind", [])]
        for row in rows:
            label = row["step"] if row is f else f"  {row['step']}"
            cpu = f"{row['server_cpu_ms_per_req']:.2f}" if "server_cpu_ms_per_req" in row else ""
            errors = ", ".join(f"{k}: {v}" for k, v in row["errors"].items()) or "-"
            print(
                f"  {label:<22} {row['offered_per_s']:>9.0f} {row['achieved_per_s']:>10.1f} {row['p50_ms']:>8.1f} "
                f"{row['p99_ms']:>8.1f} {row['lag_p99_ms']:>8.1f} {cpu:>14}  {errors}"
            )
    best = figures["sustained_events_per_s"]
    met = "met" if best >= TARGET_RATE else "NOT met"
    print(f"sustained POST /events: {best:,.0f}/s (>= 95% answered 2xx, p99 < 100 ms); target {TARGET_RATE}/s: {met}")
    v = figures["nothing_lost"]
    for kind in ("event", "lead"):
        k = v[kind]
        print(
            f"  {kind}s: {k['accepted']:,} answered 2xx, {k['stored_once']:,} of them in the store exactly once "
            f"({k['stored']:,} stored in all); missing "
            f"{len(k['missing'])}, duplicated {len(k['duplicated'])}, refused but stored {len(k['refused_but_stored'])}"
            f", unanswered but stored {k['unanswered_but_stored']}"
        )
    print(f"  effects: {v['history_action_rows']:,} action rows, {v['tasks_opened']:,} tasks opened for owners")
    if "profile" in figures:
        p = figures["profile"]
        r = p["step"]
        print(
            f"where the time goes: py-spy on the server, events at {r['offered_per_s']:g}/s for {args.duration:g} s "
            f"(answered {r['achieved_per_s']:.0f}/s, p99 {r['p99_ms']:.0f} ms), {p['samples']:,} samples of busy "
            "threads:"
        )
        for key in ("threads_pct", "work_pct", "self_by_package_pct", "self_by_function_pct", "cadence_inclusive_pct"):
            print(f"  {key}: " + "; ".join(f"{k} {v}%" for k, v in p[key].items()))
    if "floor" in figures:
        f = figures["floor"]
        print(
            f"floor, the same calls in-process, one at a time, no HTTP: {f['per_s']:,.0f} events/s; "
            f"{f['cpu_ms_per_event']:.2f} ms CPU/event, {f['statements_per_event']:.1f} SQL statements taking "
            f"{f['driver_ms_per_event']:.2f} ms in the driver"
        )


def rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--server-workers", type=int, default=1, help="`cadence serve --workers N` (default 1)")
    parser.add_argument("--rates", default="100,200,300,400,600", help="POST /events steps, per second")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds each step offers load (default 5)")
    parser.add_argument("--drain", type=float, default=10.0, help="seconds after a step to wait for answers")
    parser.add_argument("--mixed-rate", type=float, default=300.0, help="the mixed step's rate (0 skips it)")
    parser.add_argument("--mixed-leads", type=float, default=0.2, help="share of POST /leads in the mixed step")
    parser.add_argument("--leads", type=int, default=0, help="seeded leads (default: one per event, up to 20000)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of events at 50/s before the steps")
    parser.add_argument("--client", choices=("aiohttp", "httpx"), default="aiohttp", help="the load's HTTP client")
    parser.add_argument("--clients", type=int, default=1, help="client processes generating the load")
    parser.add_argument("--connections", type=int, default=64, help="HTTP connections, over all clients")
    parser.add_argument("--timeout", type=float, default=10.0, help="per-request timeout, seconds")
    parser.add_argument("--ceiling-seconds", type=float, default=3.0, help="GET /healthz closed loop (0 skips)")
    parser.add_argument("--profile", action="store_true", help="one more step with the server under py-spy")
    parser.add_argument("--profile-rate", type=float, default=300.0, help="that step's events per second")
    parser.add_argument("--profile-out", type=Path, help="keep py-spy's collapsed stacks here (for a flame graph)")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    if args.clients < 1 or args.duration <= 0 or any(r <= 0 for r in rates):
        parser.error("--clients, --duration and every rate must be positive")
    mixed_total = round(args.mixed_rate * args.duration)
    mixed_leads = round(mixed_total * args.mixed_leads)
    warmup = round(50 * args.warmup)
    profiled = round(args.profile_rate * args.duration) if args.profile else 0
    events_total = warmup + sum(round(r * args.duration) for r in rates) + mixed_total - mixed_leads + profiled
    reserved = 500 if args.profile else 0  # leads no step touches, for the in-process floor
    seeded = (args.leads or max(100, min(20_000, events_total))) + reserved
    figures: dict[str, Any] = {"store": args.store, "duration_s": args.duration, "seeded_leads": seeded, "steps": []}
    all_driven: list[Driven] = []
    work = Path(tempfile.mkdtemp(prefix="cadence-bench-serve-"))
    pool: Executor | None = None
    try:
        with store(args.store, work) as db_url:
            folder = work / "project"
            prepare(folder, db_url, seeded)
            if args.clients > 1:
                pool = ProcessPoolExecutor(args.clients, mp_context=multiprocessing.get_context("spawn"))
            next_lead = 0
            with Server(folder, db_url, work / "serve.log", args.server_workers) as server:
                if args.ceiling_seconds > 0:
                    figures["ceiling"] = {
                        client: ceiling(args, server, pool, client) for client in ("aiohttp", "httpx")
                    }
                if warmup:  # the first requests fill caches (sequence versions, templates): not what is measured
                    warm = event_requests("warmup", warmup, next_lead, seeded - reserved)
                    next_lead += warmup
                    all_driven += step("warm-up", warm, 50, args.warmup, args, server, pool)[1]
                for rate in rates:
                    count = round(rate * args.duration)
                    requests = event_requests(f"e{rate:g}", count, next_lead, seeded - reserved)
                    next_lead += count
                    result, driven = step(f"events {rate:g}/s", requests, rate, args.duration, args, server, pool)
                    figures["steps"].append(result)
                    all_driven += driven
                if mixed_total:
                    events = event_requests("mixed", mixed_total - mixed_leads, next_lead, seeded - reserved)
                    next_lead += mixed_total - mixed_leads
                    leads = lead_requests("mixed", mixed_leads)
                    requests = [  # the leads spread evenly among the events, exactly `mixed_leads` of them
                        (
                            leads if (i + 1) * mixed_leads // mixed_total > i * mixed_leads // mixed_total else events
                        ).pop()
                        for i in range(mixed_total)
                    ]
                    name = f"mixed {args.mixed_rate:g}/s"
                    result, driven = step(name, requests, args.mixed_rate, args.duration, args, server, pool)
                    result["by_kind"] = [
                        summarise(f"{kind} {part:.0%}", args.mixed_rate, args.duration, driven, kind)
                        for kind, part in (("event", 1 - args.mixed_leads), ("lead", args.mixed_leads))
                    ]
                    figures["steps"].append(result)
                    all_driven += driven
                if args.profile:
                    count = round(args.profile_rate * args.duration)
                    requests = event_requests("profile", count, next_lead, seeded - reserved)
                    raw = work / "profile.txt"
                    with sampled(server.pid, raw, work / "py-spy.log"):
                        result, driven = step(
                            "profiled", requests, args.profile_rate, args.duration, args, server, pool
                        )
                    all_driven += driven
                    if not raw.exists():
                        raise SystemExit(
                            "py-spy wrote no profile:\n" + (work / "py-spy.log").read_text(errors="replace")
                        )
                    figures["profile"] = {"step": result, **profile_summary(raw)}
                    if args.profile_out:
                        shutil.copy(raw, args.profile_out)
            event_steps = [f for f in figures["steps"] if f["step"].startswith("events")]
            figures["sustained_events_per_s"] = max([f["offered_per_s"] for f in event_steps if sustained(f)] or [0.0])
            figures["nothing_lost"] = verify(db_url, all_driven)
            if reserved:  # after the check: these events are not requests
                figures["floor"] = floor(folder, db_url, event_requests("floor", reserved, seeded - reserved, seeded))
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(work, ignore_errors=True)
    if not args.json:
        print_table(figures, args)
    print(json.dumps(rounded(figures)))
    return 1 if figures["nothing_lost"]["lost"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
