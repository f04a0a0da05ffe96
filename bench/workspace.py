"""Web workspace latency: My day for an SDR with 200 open tasks, a lead page with 500 history rows (issue 14).

What is timed: `cadence serve` (uvicorn, one worker) in its own process on 127.0.0.1, on a
SQLite store prepared here, and an httpx client in this process signed in as the SDR (and as
a manager for the lead page), sending `--requests` sequential GETs to each page after a few
warm-up requests. Each figure is the wall time of one request as the client sees it: p50,
p90, p99 and max. The target in issue 14 is p99 under 100 ms on this 2-core machine.

The store holds 200 leads owned by alice, each with its call task open (enrolled into a
sequence whose first step is a call, one engine pass), and one more lead, L-HIST, with 500
rows of history (touches, events, dispositions) written through the store as the engine
would, so the timeline has the size a long-running lead reaches.

Run: `.venv/bin/python bench/workspace.py [--requests N] [--json]`. Needs nothing but the
venv; every connection is to loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cadence.app import App  # noqa: E402
from cadence.clock import FixedClock, parse_instant  # noqa: E402
from cadence.engine.runner import run_once  # noqa: E402
from cadence.enrollment.enroll import enroll  # noqa: E402
from cadence.enrollment.lead_import import import_leads  # noqa: E402
from cadence.manage.users import add_user  # noqa: E402
from cadence.names import HistoryKind  # noqa: E402
from cadence.store import history  # noqa: E402

ENROLL_AT = "2026-11-23T08:00:00-05:00"
NOW = "2026-11-23T11:00:00-05:00"
CALLS_FIRST = """\
id: calls-first
name: Calls first
kind: outbound
steps:
  - {id: call-1, day: 1, channel: call, template: outbound-saas/call-script.md.j2}
  - {id: intro, day: 2, channel: email, subject: "Hello", template: outbound-saas/intro.md.j2}
"""
PASSWORDS = {"alice": "alice-bench-password", "maria": "maria-bench-password"}


def prepare(folder: Path, tasks: int, history_rows: int) -> None:
    shutil.copytree(ROOT / "cadence" / "starter", folder)
    (folder / "sequences" / "calls-first.yaml").write_text(CALLS_FIRST)
    config = yaml.safe_load((folder / "config.yaml").read_text())
    config["public_url"] = "http://127.0.0.1"
    config["tasks"] = {"expire_after_days": 30}
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    add_user(folder / "config.yaml", "alice", PASSWORDS["alice"], role="sdr", name="Alice Moreno")
    add_user(folder / "config.yaml", "maria", PASSWORDS["maria"], role="manager", name="Maria Manager")
    app = App.load(folder / "config.yaml", FixedClock(parse_instant(ENROLL_AT)))
    try:
        local = {"owner": "alice", "timezone": "America/New_York", "country": "US"}
        rows = [
            (n + 2, {"id": f"B{n:03d}", "email": f"b{n}@bench{n % 50}.example", "first_name": f"Lead{n}",
                     "last_name": "Bench", "company": f"Bench {n % 50}", "title": "VP Sales",
                     "phone": f"+1212555{n:04d}", **local})
            for n in range(tasks)
        ]  # fmt: skip
        long_lead = {"id": "L-HIST", "email": "hist@long.example", "first_name": "Long", "last_name": "Story",
                     "company": "Long Co", "title": "CRO", "phone": "+12125559999", **local}  # fmt: skip
        rows.append((tasks + 2, long_lead))
        assert not import_leads(app.engine, rows, app.settings, app.clock.now()).rejected
        assert not enroll(app, "calls-first", [f"B{n:03d}" for n in range(tasks)]).refused
        assert not enroll(app, "outbound-saas", ["L-HIST"]).refused
        assert isinstance(app.clock, FixedClock)
        app.clock.set(parse_instant(NOW))
        report = asyncio.run(run_once(app))
        assert report.dispatch.tasks_opened >= tasks, report.dispatch
        start = parse_instant(NOW) - timedelta(days=120)
        kinds = [HistoryKind.TOUCH, HistoryKind.EVENT, HistoryKind.DISPOSITION, HistoryKind.ACTION]
        with app.engine.begin() as conn:
            for n in range(history_rows):
                kind = kinds[n % len(kinds)]
                detail: dict[str, Any] = {
                    "n": n, "step": f"step-{n % 14}", "event": "out_of_office", "code": "no_answer",
                    "actions": [f"action {n}"], "status": "sent",
                }  # fmt: skip
                history.add(conn, "L-HIST", start + timedelta(hours=n * 5), kind, detail, f"bench row {n}")
    finally:
        app.close()


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(p: float) -> float:
        return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))]

    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "max": ordered[-1], "mean": statistics.fmean(ordered)}


def sign_in(client: httpx.Client, user: str) -> None:
    import re

    form = client.get("/login").text
    token = re.search(r'name="csrf" value="([^"]+)"', form)
    assert token, form[:300]
    answer = client.post("/login", data={"user": user, "password": PASSWORDS[user], "csrf": token.group(1)})
    assert answer.status_code == 303, answer.text[:300]


def timed_gets(client: httpx.Client, path: str, count: int, expect: str) -> list[float]:
    for _ in range(5):
        client.get(path)
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        answer = client.get(path)
        samples.append((time.perf_counter() - start) * 1000)
        if answer.status_code != 200 or expect not in answer.text:
            raise SystemExit(f"GET {path}: {answer.status_code} {answer.text[:300]}")
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="timed requests per page (default 200)")
    parser.add_argument("--tasks", type=int, default=200, help="open tasks of the SDR (default 200)")
    parser.add_argument("--history", type=int, default=500, help="history rows of the lead (default 500)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="cadence-bench-web-"))
    folder = work / "project"
    prepare(folder, args.tasks, args.history)
    port = 18000 + os.getpid() % 1000
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADENCE_")}
    env.update(CADENCE_NOW=NOW, CADENCE_SECRET="bench-secret")
    server = subprocess.Popen(
        [sys.executable, "-m", "cadence", "--config", str(folder / "config.yaml"), "serve", "--port", str(port)],
        cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    figures: dict[str, Any] = {"requests": args.requests, "tasks": args.tasks, "history_rows": args.history}
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(base + "/login", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        with httpx.Client(base_url=base, timeout=30) as sdr, httpx.Client(base_url=base, timeout=30) as manager:
            sign_in(sdr, "alice")
            sign_in(manager, "maria")
            figures["today_ms"] = percentiles(timed_gets(sdr, "/today", args.requests, "B000"))
            figures["lead_ms"] = percentiles(timed_gets(manager, "/leads/L-HIST", args.requests, "bench row 499"))
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(f"web workspace on loopback, {args.requests} sequential requests a page, one uvicorn worker")
    for key, label in (("today_ms", f"/today ({args.tasks} open tasks)"), ("lead_ms", "/leads/L-HIST (500 rows)")):
        f = figures[key]
        print(f"  {label:<32} p50 {f['p50']:6.1f} ms  p90 {f['p90']:6.1f}  p99 {f['p99']:6.1f}  max {f['max']:6.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
