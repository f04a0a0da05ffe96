"""The big jobs as an operator runs them: `cadence enroll --all-new` over 1M leads, then `cadence run` at 1M (issue 15).

Each command runs as its own process, as a user types it, on one SQLite store seeded with N
imported leads (stage `new`, never enrolled, over the 12 places of bench/enroll.py):

- `cadence enroll outbound-saas --all-new`: wall time, enrollments a second, and the peak RSS
  of the process (`wait4`'s ru_maxrss); afterwards the store must hold exactly N live
  enrollments and N `enrolled` history rows;
- `cadence run --once` on the store it leaves (N active enrollments, none due yet: Monday 08:00,
  before every window opens): the peak RSS of a worker pass over a store of that size, and
  its wall time;
- `python -c "import cadence.cli.app"` in the same way, as the RSS floor of any command.

The seeding (one multi-row insert a chunk, as bench/plan.py seeds) is not timed.

    .venv/bin/python bench/big_jobs.py [--leads N] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.enroll import COMPANIES, NOW, PLACES, SEQUENCE, load_app, make_project
from cadence.names import EnrollmentState, HistoryKind
from cadence.store.bulk import insert_many
from cadence.store.tables import EnrollmentT, HistoryT, LeadT

CHUNK = 20_000


def seed(project: Path, db_url: str, count: int) -> None:
    app = load_app(project, db_url)
    try:
        now = app.clock.now()
        constant = {
            "stage": "new", "owner": "alice", "sms_consent": False, "do_not_contact": False, "email_invalid": False,
            "phone_invalid": False, "fields": {}, "created_at": now, "updated_at": now,
        }  # fmt: skip
        columns = ("id", "email", "first_name", "company", "timezone", "country")
        for start in range(0, count, CHUNK):
            rows = []
            for i in range(start, min(count, start + CHUNK)):
                country, tz, _ = PLACES[i % len(PLACES)]
                company = COMPANIES[i % len(COMPANIES)]
                rows.append((f"L{i:07d}", f"lead{i}@{company.lower()}{i % 97}.io", f"First{i}", company, tz, country))
            with app.engine.begin() as conn:
                insert_many(conn, LeadT, columns, rows, constant)
    finally:
        app.close()


# Linux hands a forked child its parent's peak RSS, and exec keeps it: timed straight from this process
# (90 MB once it has seeded), every command would seem to peak at 90 MB. So a small launcher process
# starts the command and reports its wait4() usage; the command forks from the launcher's few MB.
_LAUNCHER = """
import os, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(proc.pid, 0)
print(os.waitstatus_to_exitcode(status), time.perf_counter() - start, usage.ru_maxrss)
"""


def measured(args: list[str], project: Path, db_url: str) -> dict[str, Any]:
    """Run one command in `project`; its wall seconds and peak RSS (MiB)."""
    env = {**os.environ, "CADENCE_NOW": NOW, "CADENCE_DATABASE_URL": db_url}
    done = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, sys.executable, *args], cwd=project, env=env, capture_output=True, text=True
    )
    code, seconds, peak_kib = done.stdout.split()
    if done.returncode != 0 or code != "0":
        raise SystemExit(f"{' '.join(args)} exited {code}: {done.stderr[-2000:]}")
    return {"seconds": float(seconds), "peak_rss_mib": int(peak_kib) / 1024}


def counts(project: Path, db_url: str) -> tuple[int, int]:
    app = load_app(project, db_url)
    try:
        with app.engine.connect() as conn:
            active = EnrollmentT.c.state == EnrollmentState.ACTIVE
            live = conn.execute(select(func.count()).select_from(EnrollmentT).where(active)).scalar_one()
            enrolled = conn.execute(
                select(func.count()).select_from(HistoryT).where(HistoryT.c.kind == HistoryKind.ENROLLED)
            ).scalar_one()
            return int(live), int(enrolled)
    finally:
        app.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=1_000_000, help="imported leads (default 1000000)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cadence-big-") as tmp:
        workdir = Path(tmp)
        project = make_project(workdir)
        db_url = f"sqlite:///{workdir / 'cadence.db'}"
        started = time.perf_counter()
        seed(project, db_url, options.leads)
        seeded_s = time.perf_counter() - started
        floor = measured(["-c", "import cadence.cli.app"], project, db_url)
        enroll = measured(["-m", "cadence", "enroll", SEQUENCE, "--all-new"], project, db_url)
        live, enrolled = counts(project, db_url)
        if live != options.leads or enrolled != options.leads:
            wanted = f"{options.leads:,} live enrollments and history rows"
            raise SystemExit(f"expected {wanted}, found {live:,} and {enrolled:,}")
        run = measured(["-m", "cadence", "run", "--once"], project, db_url)
        figures = {
            "leads": options.leads,
            "seed_s": round(seeded_s, 1),
            "import_floor_rss_mib": round(floor["peak_rss_mib"], 1),
            "enroll_all_new_s": round(enroll["seconds"], 2),
            "enroll_per_s": round(options.leads / enroll["seconds"]),
            "enroll_peak_rss_mib": round(enroll["peak_rss_mib"], 1),
            "run_once_s": round(run["seconds"], 2),
            "run_once_peak_rss_mib": round(run["peak_rss_mib"], 1),
            "live_enrollments": live,
        }
    if options.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(f"{options.leads:,} imported leads on SQLite (seeded in {figures['seed_s']} s, not timed)")
    print(f"  RSS of `import cadence.cli.app` alone:     {figures['import_floor_rss_mib']:>8} MiB")
    print(
        f"  cadence enroll {SEQUENCE} --all-new:   {figures['enroll_all_new_s']:>8} s, "
        f"{figures['enroll_per_s']:,}/s, peak RSS {figures['enroll_peak_rss_mib']} MiB "
        "(targets: 12,000/s, under 200 MB)"
    )
    print(
        f"  cadence run --once at {live:,} active:  {figures['run_once_s']:>8} s, "
        f"peak RSS {figures['run_once_peak_rss_mib']} MiB (target: under 150 MB)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
