"""`make demo`: the whole job on the embedded default (SQLite, file outbox), start to finish.

It runs the real commands a team would run (init, validate, import, enroll,
preview), then simulates six weeks of `cadence run --once` passes every half hour
by advancing the injected clock, and prints what went out on each channel.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from cadence.app import App
from cadence.clock import FixedClock, parse_instant
from cadence.service import run_once
from cadence.store.queries import TouchT

START = "2026-11-23T07:00:00-05:00"  # a Monday morning in New York, Thanksgiving week
WEEKS = 6
STEP = timedelta(minutes=30)
console = Console(highlight=False)


def cadence(folder: Path, *args: str, now: str = START, check: bool = True) -> subprocess.CompletedProcess[str]:
    console.print(f"[bold cyan]$ CADENCE_NOW={now} cadence {' '.join(args)}[/]")
    env = {**os.environ, "CADENCE_NOW": now, "CADENCE_SECRET": os.environ.get("CADENCE_SECRET", "demo-secret")}
    env.pop("CADENCE_DATABASE_URL", None)
    result = subprocess.run(
        [sys.executable, "-m", "cadence", *args], cwd=folder, env=env, text=True, capture_output=True, check=False
    )
    sys.stdout.write(result.stdout)
    sys.stdout.write(result.stderr)
    if check and result.returncode != 0:
        raise SystemExit(f"cadence {' '.join(args)} failed with exit code {result.returncode}")
    return result


def simulate(folder: Path) -> None:
    clock = FixedClock(parse_instant(START))
    app = App.load(folder / "config.yaml", clock, environ={**os.environ, "CADENCE_SECRET": "demo-secret"})
    end = clock.now() + timedelta(weeks=WEEKS)
    console.rule(f"simulating {WEEKS} weeks of `cadence run --once` every 30 minutes")
    per_day: Counter[str] = Counter()
    try:
        while clock.now() < end:
            report = asyncio.run(run_once(app))
            for channel, n in report.dispatch.sent.items():
                per_day[channel] += n
            per_day["task"] += report.dispatch.tasks_opened
            clock.set(clock.now() + STEP)
        with app.engine.connect() as conn:
            rows = conn.execute(
                select(TouchT.c.channel, TouchT.c.status, func.count()).group_by(TouchT.c.channel, TouchT.c.status)
            ).all()
    finally:
        app.close()
    table = Table("channel", "status", "touches", title="Touches after six weeks")
    for channel, status, count in sorted(rows):
        table.add_row(channel, status, str(count))
    console.print(table)
    outbox = folder / "outbox"
    emails = sorted((outbox / "email").glob("*.eml")) if (outbox / "email").exists() else []
    texts = (outbox / "sms.jsonl").read_text().splitlines() if (outbox / "sms.jsonl").exists() else []
    console.print(
        f"[bold]outbox:[/] {len(emails)} emails in {outbox / 'email'}, {len(texts)} SMS in {outbox / 'sms.jsonl'}"
    )
    if texts:
        first = json.loads(texts[0])
        console.print(f"first SMS: to {first.get('to')}: {first.get('body')}")
    if emails:
        console.print(f"first email file: {emails[0]}")


def main() -> None:
    folder = Path("demo")
    if folder.exists():
        shutil.rmtree(folder)
    cadence(Path.cwd(), "init", str(folder))
    cadence(folder, "validate")
    cadence(folder, "leads", "import", "leads.csv")
    cadence(folder, "enroll", "outbound-saas", "--all-new")
    cadence(folder, "enroll", "outbound-saas", "L1", check=False)
    cadence(folder, "preview", "outbound-saas", "--lead", "L1")
    cadence(folder, "preview", "outbound-saas", "--timezone", "Asia/Kolkata", "--country", "IN")
    simulate(folder)
    cadence(folder, "status", "L1", now="2027-01-04T12:00:00-05:00")
    cadence(folder, "tasks", "--owner", "alice", now="2027-01-04T12:00:00-05:00")


if __name__ == "__main__":
    if sys.argv[1:] == ["demo"]:
        main()
    else:
        raise SystemExit("usage: python -m cadence.demo demo")
