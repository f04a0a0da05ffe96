"""Dispatch 20,000 due emails and 20,000 due SMS through the engine on SQLite, beside the raw limits (issue 3).

What is timed, each time on a fresh copy of a seeded SQLite store (WAL, as `cadence` runs it):

- engine, email (a headline): `cadence.service.run_once` with `email.transport: smtp`, the
  path `cadence run --once` takes: sweep, then the Dispatcher's batches of claim (lock due
  enrollments, re-check suppression, window and caps, persist `sending` touches) -> render
  (Jinja2 sandbox, Markdown to HTML) -> send (RFC 5322 message, aiosmtplib over
  `email.smtp.connections` reused connections) -> record (sent, history, complete the
  enrollment, plan what the rules say). Into the aiosmtpd sink of the tests
  (`tests/smtp_sink.py`), run in another process so it does not share the engine's GIL;
- raw, email: aiosmtplib alone into the same sink, the same number of messages of the same
  size over the same number of reused connections, each saying MAIL FROM / RCPT TO / DATA
  as the engine does. Messages are built before the clock starts: this is the ceiling the
  engine's transport could reach on this machine, in the same run;
- engine, SMS (the other headline): the same pass with `sms.transport: twilio`, through the
  official twilio client (`messages.create_async`, `sms.twilio.concurrency` requests at
  once) into the Twilio-shaped server of the tests (`tests/twilio_fake.py`), in another process;
- raw, SMS: the official twilio client alone (an `AsyncTwilioHttpClient` subclass pointed at
  the same server, as `cadence.channels.sms` does), the same number of messages and the same
  concurrency.

Each round runs raw then engine for email, then for SMS, so both sides of a ratio see the
same moment of a shared machine; `--repeat` rounds, medians reported. Every engine pass is
checked: the server received exactly N messages, each with a unique Message-ID (SID), the
store holds N sent touches, and their Message-IDs (SIDs) are exactly the ones received.

Seeding (not timed): `cadence.leads.import_leads` and `cadence.enroll.enroll` of N leads into a
one-step sequence, enrolled inside the send window so every touch is due at once; the bench
config raises the senders' caps and the per-lead limit so nothing defers.

Loopback only. Run: `.venv/bin/python bench/dispatch.py [--emails N] [--sms N] [--repeat N]
[--batch-size N] [--connections N] [--json]`; the defaults take about five minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import csv
import json
import os
import shutil
import statistics
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from servers import ServerProcess  # bench/servers.py; bench/ is on sys.path when this file runs
from sqlalchemy import func, select

from cadence.app import App
from cadence.clock import FixedClock, parse_instant
from cadence.engine.runner import run_once
from cadence.enrollment.enroll import enroll
from cadence.enrollment.lead_import import import_leads, read_rows
from cadence.store.tables import TouchT

ROOT = Path(__file__).resolve().parent.parent

NOW = "2026-11-23T12:00:00-05:00"  # a Monday noon in New York: inside the send window, outside SMS quiet hours
SECRET = "bench-secret-not-for-production"  # signs the unsubscribe links, as CADENCE_SECRET would
AREA_CODES = ("212", "646", "718", "917", "347", "929")  # 10,000 valid numbers each
COMPANIES = ("Northwind", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark", "Wayne")
# The timed touch is step 1, due now. Step 2 (day 3) makes recording it what it is for 13 of the
# 14 touches of outbound-saas: plan the next step. With --last-step there is no step 2, so each
# touch completes its enrollment and fires the completion rules of config.yaml (a recycle).
SEQUENCES = {
    "bench-email": (
        "id: bench-email\nname: Bench - email\nkind: outbound\nsteps:\n"
        "  - {id: intro, day: 1, channel: email, subject: '{{ lead.company }} + Acme',"
        " template: outbound-saas/intro.md.j2}\n"
    ),
    "bench-sms": (
        "id: bench-sms\nname: Bench - SMS\nkind: outbound\nsteps:\n"
        "  - {id: sms-1, day: 1, channel: sms, template: outbound-saas/sms-1.txt.j2}\n"
    ),
}
NEXT_STEP = {
    "bench-email": "  - {id: bump, day: 3, channel: email, reply_to: intro, template: outbound-saas/bump.md.j2}\n",
    "bench-sms": "  - {id: sms-2, day: 3, channel: sms, template: outbound-saas/sms-2.txt.j2}\n",
}


# -- the project, the config and the seeded stores ---------------------------------------


def make_project(
    workdir: Path, smtp: dict[str, Any], twilio: dict[str, Any], batch_size: int, connections: int, last_step: bool
) -> Path:
    """The starter project with the two bench sequences and a config that sends to the local servers."""
    project = workdir / "project"
    project.mkdir()
    shutil.copytree(ROOT / "sequences", project / "sequences")
    shutil.copytree(ROOT / "templates", project / "templates")
    for name, text in SEQUENCES.items():
        text += "" if last_step else NEXT_STEP[name]
        (project / "sequences" / f"{name}.yaml").write_text(text, encoding="utf-8")
    config = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    for sender in config["senders"]:
        sender.update(daily_cap=10_000_000, per_minute=10_000_000)  # nothing may defer in a throughput bench
    config["email"] = {
        **config["email"],
        "transport": "smtp",
        "smtp": {
            "host": smtp["host"], "port": smtp["port"], "security": "none",
            "connections": connections, "timeout_seconds": 30,
        },
    }  # fmt: skip
    config["sms"] = {
        **config["sms"],
        "transport": "twilio",
        "twilio": {"api_base": twilio["base_url"], "concurrency": connections},
    }
    config["limits"] = {"per_lead_daily": 100}
    config["engine"] = {**config["engine"], "batch_size": batch_size}
    (project / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return project


def write_leads_csv(path: Path, count: int, prefix: str) -> None:
    header = ["id", "email", "phone", "first_name", "last_name", "company", "title", "timezone", "country"]
    header.append("sms_consent")
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for i in range(count):
            company = COMPANIES[i % len(COMPANIES)]
            area = AREA_CODES[(i // 10_000) % len(AREA_CODES)]
            writer.writerow(
                [
                    f"{prefix}{i:06d}", f"{prefix.lower()}{i}@{company.lower()}{i % 97}.example",
                    f"+1{area}555{i % 10_000:04d}", f"First{i}", f"Last{i}", f"{company} {i % 97}",
                    "Head of Sales", "America/New_York", "US", "yes",
                ]
            )  # fmt: skip


def load_app(project: Path, db: Path) -> App:
    app = App.load(
        project / "config.yaml", FixedClock(parse_instant(NOW)), f"sqlite:///{db}", {"CADENCE_SECRET": SECRET}
    )
    _ = app.engine, app.catalog  # migrations and loading the sequence files are start-up, not per-touch work
    return app


def seed(project: Path, workdir: Path, sequence: str, count: int, prefix: str) -> Path:
    """A store holding `count` leads enrolled in `sequence`, every touch due now; returns the file."""
    if count > 10_000 * len(AREA_CODES):
        raise SystemExit(f"at most {10_000 * len(AREA_CODES):,} touches per channel (distinct phone numbers)")
    csv_path = workdir / f"{sequence}.csv"
    write_leads_csv(csv_path, count, prefix)
    db = workdir / f"{sequence}-seeded.db"
    app = load_app(project, db)
    imported = import_leads(app.engine, read_rows(csv_path), app.settings, app.clock.now())
    if imported.rejected or imported.imported != count:
        raise SystemExit(f"import went wrong: {imported.imported} imported, first rejects {imported.rejected[:3]}")
    report = enroll(app, sequence, [f"{prefix}{i:06d}" for i in range(count)], cause="bench")
    if report.refused or len(report.enrolled) != count:
        raise SystemExit(f"enroll went wrong: {len(report.enrolled)} enrolled, first refusals {report.refused[:3]}")
    app.close()  # the last connection checkpoints the WAL into the file, so the file alone is the store
    return db


# -- the engine ---------------------------------------------------------------------------


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


@dataclass
class Pass:
    """One timed pass: wall seconds, this process's CPU seconds, and what was checked afterwards."""

    seconds: float
    cpu_seconds: float
    checked: str = ""


def timed_pass(fn: Callable[[], Any]) -> tuple[Any, Pass]:
    start, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, Pass(time.perf_counter() - start, time.process_time() - cpu)


def engine_pass(project: Path, seeded: Path, workdir: Path, channel: str, count: int, server: ServerProcess) -> Pass:
    """One `run_once` over a fresh copy of the seeded store, then every check; returns its timing."""
    db = workdir / f"run-{channel}.db"
    shutil.copy(seeded, db)
    app = load_app(project, db)
    before = server.count
    try:
        report, timing = timed_pass(lambda: asyncio.run(run_once(app)))
        d = report.dispatch
        if d.sent[channel] != count or d.claimed != count or d.failed or d.retrying or d.unknown or d.deferred:
            raise SystemExit(f"engine pass went wrong ({channel}): {d.as_json()}")
        received = server.ids(before)
        column = TouchT.c.message_id if channel == "email" else TouchT.c.provider_id
        with app.engine.connect() as conn:
            sent = conn.execute(
                select(func.count()).where(TouchT.c.channel == channel, TouchT.c.status == "sent")
            ).scalar_one()
            recorded = set(conn.execute(select(column).where(TouchT.c.channel == channel)).scalars())
        unique = set(received)
        checks = {
            "received": len(received) == count,
            "unique ids": len(unique) == count and None not in unique,
            "sent touches": sent == count,
            "ids match the store": recorded == unique,
        }
        if not all(checks.values()):
            raise SystemExit(
                f"verification failed ({channel}): {checks}; received {len(received)}, unique {len(unique)},"
                f" sent touches {sent}"
            )
        kind = "Message-IDs" if channel == "email" else "SIDs"
        timing.checked = (
            f"{channel}: the server received {len(received):,} messages with {len(unique):,} unique {kind};"
            f" the store has {sent:,} sent touches, with exactly those {kind}"
        )
    finally:
        app.close()
        for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
            path.unlink(missing_ok=True)
    return timing


# -- raw email: aiosmtplib alone -----------------------------------------------------------


def sample_email(project: Path, seeded: Path, workdir: Path) -> bytes:
    """The wire bytes of one message exactly as the engine builds it, to size the raw messages."""
    from cadence.channels.base import OutgoingEmail
    from cadence.channels.email.mime import build_message, wire_bytes
    from cadence.engine.dispatcher import Dispatcher, PassReport

    db = workdir / "sample.db"
    shutil.copy(seeded, db)
    app = load_app(project, db)
    try:
        dispatcher = Dispatcher(app, None, None, "bench-sample")  # type: ignore[arg-type]  # claim and render only
        jobs = dispatcher.claim(app.clock.now(), PassReport())[:1]
        dispatcher.prepare(jobs, app.clock.now())
        outgoing = jobs[0].outgoing
        assert isinstance(outgoing, OutgoingEmail) and jobs[0].error is None
        return wire_bytes(build_message(outgoing, app.clock.now()))
    finally:
        app.close()
        db.unlink()


async def _raw_email(host: str, port: int, messages: list[tuple[str, str, bytes]], connections: int) -> None:
    import aiosmtplib

    pending = deque(messages)

    async def worker() -> None:
        smtp = aiosmtplib.SMTP(hostname=host, port=port, local_hostname="bench.local", timeout=30, start_tls=False)
        await smtp.connect()
        await smtp.ehlo()
        try:
            while pending:
                sender, to, data = pending.popleft()
                await smtp.mail(sender, options=[f"SIZE={len(data)}"])
                await smtp.rcpt(to)
                await smtp.data(data)
        finally:
            await smtp.quit()

    await asyncio.gather(*(worker() for _ in range(connections)))


def raw_email_pass(sample: bytes, count: int, connections: int, sink: ServerProcess, round_no: int) -> Pass:
    head, sep, rest = sample.partition(b"Message-ID: ")
    _, eol, tail = rest.partition(b"\r\n")  # each raw message gets a Message-ID of its own
    assert sep and eol, "the sample message has a Message-ID header"
    ids = [f"<{round_no:04d}{i:020d}@acme.example>".encode() for i in range(count)]  # as long as the engine's
    messages = [
        ("alice@acme.example", f"raw{i}@northwind.example", b"".join((head, sep, message_id, eol, tail)))
        for i, message_id in enumerate(ids)
    ]
    before = sink.count
    _, timing = timed_pass(lambda: asyncio.run(_raw_email(sink.info["host"], sink.info["port"], messages, connections)))
    if sink.count - before != count:
        raise SystemExit(f"raw email: the sink received {sink.count - before}, not {count}")
    return timing


# -- raw SMS: the official twilio client alone --------------------------------------------


async def _raw_sms(info: dict[str, Any], messages: list[dict[str, str]], concurrency: int) -> list[str]:
    import aiohttp
    from twilio.http.async_http_client import AsyncTwilioHttpClient
    from twilio.http.response import Response
    from twilio.rest import Client

    origin = info["base_url"].rstrip("/")

    class LocalHttpClient(AsyncTwilioHttpClient):
        """Stock async client, every api.twilio.com URL sent to the local server instead."""

        def __init__(self) -> None:
            super().__init__(pool_connections=False, timeout=30)
            self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency))

        async def request(self, method: str, url: str, params: Any = None, data: Any = None,
                          headers: Any = None, auth: Any = None, timeout: Any = None,
                          allow_redirects: bool = False) -> Response:  # fmt: skip
            parts = urlsplit(url)
            sent = dict(headers or {})
            if auth is not None:
                sent["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            assert self.session is not None
            async with self.session.request(
                method.upper(), origin + parts.path, params=params, data=data, headers=sent,
                timeout=aiohttp.ClientTimeout(total=30), allow_redirects=allow_redirects,
            ) as response:  # fmt: skip
                return Response(response.status, await response.text(), response.headers)

    http = LocalHttpClient()
    client = Client(info["account_sid"], info["token"], http_client=http)
    gate = asyncio.Semaphore(concurrency)

    async def one(options: dict[str, str]) -> str:
        async with gate:
            created = await client.messages.create_async(**options)
        return str(created.sid)

    try:
        return list(await asyncio.gather(*(one(m) for m in messages)))
    finally:
        await http.close()


def raw_sms_pass(count: int, concurrency: int, fake: ServerProcess) -> Pass:
    messages = [
        {"to": f"+1{AREA_CODES[(i // 10_000) % len(AREA_CODES)]}555{i % 10_000:04d}", "from_": "+15550100001",
         "body": "Hi First1, Alice from Acme here. Sent you an email about SDR ramp time at Northwind 1."
                 " Worth a quick chat? Reply STOP to opt out.",
         "status_callback": "https://cadence.acme.example/twilio/status"}
        for i in range(count)
    ]  # fmt: skip
    before = fake.count
    sids, timing = timed_pass(lambda: asyncio.run(_raw_sms(fake.info, messages, concurrency)))
    if fake.count - before != count or len(set(sids)) != count:
        raise SystemExit(f"raw SMS: the server accepted {fake.count - before}, not {count}")
    return timing


# -- the run ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=20_000, help="due email touches (default 20000; 0 skips)")
    parser.add_argument("--sms", type=int, default=20_000, help="due SMS touches (default 20000; 0 skips)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of raw + engine (medians are reported)")
    parser.add_argument("--batch-size", type=int, default=500, help="engine.batch_size (default 500)")
    parser.add_argument(
        "--connections", type=int, default=8, help="SMTP connections and Twilio concurrency, engine and raw (8)"
    )
    parser.add_argument(
        "--last-step", action="store_true", help="one-step sequences: each touch also completes its enrollment"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    repeat = max(1, args.repeat)
    figures: dict[str, Any] = {
        "batch_size": args.batch_size, "connections": args.connections, "repeat": repeat, "last_step": args.last_step,
    }  # fmt: skip
    with (
        tempfile.TemporaryDirectory(prefix="cadence-bench-") as tmp,
        ServerProcess("smtp") as sink,
        ServerProcess("twilio") as fake,
    ):
        workdir = Path(tmp)
        os.environ["TWILIO_ACCOUNT_SID"] = fake.info["account_sid"]  # the engine reads credentials from here
        os.environ["TWILIO_AUTH_TOKEN"] = fake.info["token"]
        project = make_project(workdir, sink.info, fake.info, args.batch_size, args.connections, args.last_step)
        channels = []
        if args.emails > 0:
            seeded_email, seed_s = timed(lambda: seed(project, workdir, "bench-email", args.emails, "E"))
            sample = sample_email(project, seeded_email, workdir)
            figures |= {"emails": args.emails, "email_bytes": len(sample), "seed_email_s": seed_s}
            channels.append("email")
        if args.sms > 0:
            seeded_sms, seed_s = timed(lambda: seed(project, workdir, "bench-sms", args.sms, "S"))
            figures |= {"sms": args.sms, "seed_sms_s": seed_s}
            channels.append("sms")
        runs: dict[str, list[Pass]] = {f"{k}_{c}": [] for c in channels for k in ("raw", "engine")}
        for round_no in range(repeat):
            if "email" in channels:
                runs["raw_email"].append(raw_email_pass(sample, args.emails, args.connections, sink, round_no))
                runs["engine_email"].append(engine_pass(project, seeded_email, workdir, "email", args.emails, sink))
            if "sms" in channels:
                runs["raw_sms"].append(raw_sms_pass(args.sms, args.connections, fake))
                runs["engine_sms"].append(engine_pass(project, seeded_sms, workdir, "sms", args.sms, fake))
    for key, passes in runs.items():
        count = args.emails if key.endswith("email") else args.sms
        figures[f"{key}_runs_per_s"] = [count / p.seconds for p in passes]
        figures[f"{key}_per_s"] = count / statistics.median(p.seconds for p in passes)
        # CPU of this process only (the servers have their own): the cost per touch, less noisy than wall time
        figures[f"{key}_cpu_ms"] = 1000 * statistics.median(p.cpu_seconds for p in passes) / count
    checked: list[str] = []
    for channel, target in (("email", 500), ("sms", 300)):
        if channel in channels:
            engine, raw = figures[f"engine_{channel}_runs_per_s"], figures[f"raw_{channel}_runs_per_s"]
            figures[f"{channel}_ratio"] = figures[f"engine_{channel}_per_s"] / figures[f"raw_{channel}_per_s"]
            figures[f"{channel}_ratio_runs"] = [e / r for e, r in zip(engine, raw, strict=True)]
            figures[f"{channel}_target_per_s"] = target
            checked += [f"round {i + 1}, {p.checked}" for i, p in enumerate(runs[f"engine_{channel}"])]
    figures["verified"] = checked
    if args.json:
        print(json.dumps(_rounded(figures), indent=2))
        return 0
    f = figures
    shape = "one-step sequences (each touch completes its enrollment)" if args.last_step else "step 1 of 2"
    print(
        f"due touches dispatched by `cadence.service.run_once` on SQLite (WAL): {shape}, batch_size"
        f" {f['batch_size']}, {f['connections']} connections; medians of {repeat} rounds, raw and engine in turn"
    )

    def runs_of(key: str) -> str:
        return " / ".join(f"{v:,.0f}" for v in f[f"{key}_runs_per_s"])

    rows: list[tuple[str, str, str]] = []
    for channel, unit, engine_label, raw_label in (
        ("email", "emails/s", "engine, email (smtp)", "raw aiosmtplib"),
        ("sms", "SMS/s", "engine, SMS (twilio)", "raw twilio client"),
    ):
        if channel not in channels:
            continue
        ratios = " / ".join(f"{r:.0%}" for r in f[f"{channel}_ratio_runs"])
        goal = f"target >= 50% and >= 500 {unit}" if channel == "email" else f"target >= 300 {unit}"
        rows += [
            (
                engine_label,
                f"{f[f'engine_{channel}_per_s']:,.0f}",
                f"{unit} (runs: {runs_of(f'engine_{channel}')}); {f[f'engine_{channel}_cpu_ms']:.2f} ms CPU a touch",
            ),
            (
                raw_label,
                f"{f[f'raw_{channel}_per_s']:,.0f}",
                f"{unit} (runs: {runs_of(f'raw_{channel}')}); {f[f'raw_{channel}_cpu_ms']:.2f} ms CPU a message",
            ),
            (f"engine / raw, {channel}", f"{f[f'{channel}_ratio']:.0%}", f"(runs: {ratios}); {goal}"),
        ]
    for label, value, unit in rows:
        print(f"  {label:<22} {value:>8}  {unit}")
    print("verified after each engine pass:")
    for line in checked:
        print(f"  {line}")
    return 0


def _rounded(value: Any) -> Any:
    """Figures for a JSON line: floats to 3 places, inside lists and mappings too (bench/claim.py, workers.py)."""
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


if __name__ == "__main__":
    raise SystemExit(main())
