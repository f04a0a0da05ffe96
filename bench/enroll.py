"""Import and enroll 100,000 leads into the 14-step `outbound-saas` sequence on SQLite (issue 2).

What is timed, each on a fresh temporary SQLite file (WAL, as `cadence` runs it):

- import: `cadence.leads.import_leads` over a generated CSV file (reading, validating
  email, phone, time zone and owner, and upserting), in rows per second;
- enroll (the headline): `cadence.enroll.enroll` of every imported lead, which loads the
  leads, checks refusals (live outbound enrollment, suppression, do-not-contact), plans
  each lead's first due time in its own calendar and writes enrollment and history rows;
  run `--repeat` times, each on a fresh copy of the imported store; the median is the figure;
- naive: the same enrollments on a sample, done the way a scheduler library invites, with
  APScheduler 3 and a `SQLAlchemyJobStore`: one persisted job per touch (14 per lead), each
  with a `DateTrigger` at the touch's due time from our planner's timeline. Measured twice:
  with the job store's SQLite as it comes (a synced commit per job, so the disk decides) and
  with our pragmas (WAL, synchronous=NORMAL), which leaves the cost of the design itself;
- raw sqlite3: `executemany` of enrollment-shaped rows into a table with the same indexes,
  in transactions of 2,000 rows like enrollment's: half of it (two rows per enrollment) is
  the ceiling any enrollment on this store can approach.

Nothing leaves the machine. Run: `.venv/bin/python bench/enroll.py [--leads N] [--naive-sample N]
[--repeat N] [--json]`; the defaults take about a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cadence.app import App
from cadence.clock import FixedClock, parse_instant
from cadence.enrollment.enroll import enroll
from cadence.enrollment.lead_import import import_leads, read_rows

ROOT = Path(__file__).resolve().parent.parent

SEQUENCE = "outbound-saas"
NOW = "2026-11-23T08:00:00-05:00"  # a Monday morning in New York, before the window opens
# (country, time zone, phone pattern): every pattern yields numbers phonenumbers accepts as valid
PLACES = (
    ("US", "America/New_York", "+1212555{:04d}"),
    ("US", "America/Chicago", "+1212555{:04d}"),
    ("US", "America/Los_Angeles", "+1212555{:04d}"),
    ("CA", "America/Toronto", "+1416555{:04d}"),
    ("GB", "Europe/London", "+447700{:06d}"),
    ("DE", "Europe/Berlin", "+4915123{:06d}"),
    ("FR", "Europe/Paris", "+3361234{:04d}"),
    ("NL", "Europe/Amsterdam", "+31612{:06d}"),
    ("IN", "Asia/Kolkata", "+9198765{:05d}"),
    ("JP", "Asia/Tokyo", "+8190123{:05d}"),
    ("AU", "Australia/Sydney", "+614123{:05d}"),
    ("BR", "America/Sao_Paulo", "+55119876{:05d}"),
)
COMPANIES = ("Northwind", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark", "Wayne")


def make_project(workdir: Path) -> Path:
    project = workdir / "project"
    project.mkdir()
    shutil.copy(ROOT / "config.yaml", project / "config.yaml")
    shutil.copytree(ROOT / "sequences", project / "sequences")
    shutil.copytree(ROOT / "templates", project / "templates")
    return project


def write_leads_csv(path: Path, count: int) -> None:
    header = ["id", "email", "phone", "first_name", "last_name", "company", "title", "timezone", "country"]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for i in range(count):
            country, tz, phone = PLACES[i % len(PLACES)]
            company = COMPANIES[i % len(COMPANIES)]
            digits = int(phone.rsplit(":", 1)[1][:2])  # width of the pattern's number field
            writer.writerow(
                [
                    f"L{i:06d}",
                    f"lead{i}@{company.lower()}{i % 97}.io",
                    phone.format(i % 10**digits),
                    f"First{i}",
                    f"Last{i}",
                    f"{company} {i % 97}",
                    "Head of Sales",
                    tz,
                    country,
                ]
            )


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def load_app(project: Path, db_url: str) -> App:
    app = App.load(project / "config.yaml", FixedClock(parse_instant(NOW)), database_url=db_url)
    _ = app.engine, app.catalog  # migrations and loading the sequence files are start-up, not per-lead work
    return app


def bench_ours(project: Path, workdir: Path, count: int, repeat: int) -> dict[str, Any]:
    """Import once, then enroll everyone `repeat` times, each on a fresh copy of the imported store."""
    csv_path = workdir / "leads.csv"
    write_leads_csv(csv_path, count)
    imported_db = workdir / "imported.db"
    app = load_app(project, f"sqlite:///{imported_db}")
    imported, import_s = timed(lambda: import_leads(app.engine, read_rows(csv_path), app.settings, app.clock.now()))
    app.close()  # the last connection checkpoints the WAL into the file, so the file alone is the store
    if imported.rejected or imported.imported != count:
        raise SystemExit(f"import went wrong: {imported.imported} imported, first rejects {imported.rejected[:3]}")
    lead_ids = [f"L{i:06d}" for i in range(count)]
    runs: list[float] = []
    refuse_per_s = 0.0
    for attempt in range(repeat):
        db = workdir / f"enroll-{attempt}.db"
        shutil.copy(imported_db, db)
        app = load_app(project, f"sqlite:///{db}")
        report, seconds = timed(lambda: enroll(app, SEQUENCE, lead_ids, cause="bench"))  # noqa: B023
        if report.refused or len(report.enrolled) != count:
            raise SystemExit(f"enroll went wrong: {len(report.enrolled)} enrolled, first refusals {report.refused[:3]}")
        runs.append(seconds)
        if attempt == 0:  # a second pass must refuse everyone (the collision rule) and change nothing
            again, refuse_s = timed(lambda: enroll(app, SEQUENCE, lead_ids[:10_000], cause="bench"))  # noqa: B023
            assert not again.enrolled and len(again.refused) == min(count, 10_000)
            refuse_per_s = len(again.refused) / refuse_s
        app.close()
        db.unlink()
    enroll_s = statistics.median(runs)
    return {
        "leads": count,
        "import_s": import_s,
        "import_rows_per_s": count / import_s,
        "enroll_runs_s": runs,
        "enroll_s": enroll_s,
        "enroll_per_s": count / enroll_s,
        "enroll_best_per_s": count / min(runs),
        "refuse_per_s": refuse_per_s,
        "import_and_enroll_per_s": count / (import_s + enroll_s),
    }


def send_touch(lead_id: str, step_id: str) -> None:
    """The job the naive design would run for one touch (never run here: the scheduler is paused)."""


def bench_naive(project: Path, db_url: str, workdir: Path, sample: int, *, tuned: bool) -> dict[str, Any]:
    """One APScheduler job per touch, persisted in a SQLAlchemyJobStore on its own SQLite file.

    Untuned is the job store as a user gets it (rollback journal, a synced commit per job);
    tuned gives it our pragmas (WAL, synchronous=NORMAL), so what remains is the design's cost.
    """
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.date import DateTrigger
    from sqlalchemy import create_engine, event, select

    from cadence.store.tables import LeadT

    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    app = load_app(project, db_url)
    spec = app.catalog.get(SEQUENCE).spec
    now = app.clock.now()
    lead_t = LeadT
    ids = [f"L{i:06d}" for i in range(sample)]
    engine = create_engine(f"sqlite:///{workdir / ('apscheduler-tuned.db' if tuned else 'apscheduler.db')}")
    if tuned:

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.execute("PRAGMA journal_mode=WAL")
            dbapi_conn.execute("PRAGMA synchronous=NORMAL")

    store = SQLAlchemyJobStore(engine=engine)
    scheduler = BackgroundScheduler(jobstores={"default": store}, timezone=UTC)
    scheduler.start(paused=True)  # started, so add_job writes through to the store; paused, so nothing runs

    def naive() -> int:
        jobs = 0
        with app.engine.connect() as conn:
            leads = conn.execute(
                select(lead_t.c.id, lead_t.c.timezone, lead_t.c.country).where(lead_t.c.id.in_(ids))
            ).all()
        for lead in leads:
            timeline = app.planner(spec, lead.timezone, lead.country).timeline(now, lead.id)
            for step, _day, due in timeline:
                scheduler.add_job(
                    send_touch,
                    DateTrigger(run_date=due, timezone=UTC),
                    args=(lead.id, step.id),
                    id=f"{lead.id}:{spec.id}:{step.id}",
                    misfire_grace_time=None,
                )
                jobs += 1
        return jobs

    jobs, naive_s = timed(naive)
    scheduler.shutdown(wait=False)
    engine.dispose()
    app.close()
    assert jobs == sample * len(spec.steps)
    prefix = "naive_tuned" if tuned else "naive"
    return {"sample": sample, "jobs": jobs, f"{prefix}_s": naive_s, f"{prefix}_per_s": sample / naive_s}


RAW_SCHEMA = """
CREATE TABLE enrollment (
    id INTEGER PRIMARY KEY, lead_id VARCHAR(200) NOT NULL, sequence_id VARCHAR(100) NOT NULL,
    version_id INTEGER NOT NULL, kind VARCHAR(20) NOT NULL, state VARCHAR(20) NOT NULL,
    enrolled_at DATETIME NOT NULL, next_index INTEGER, next_step VARCHAR(100), next_due_at DATETIME,
    dropped_channels JSON NOT NULL);
CREATE INDEX ix_enrollment_lead_id ON enrollment (lead_id);
CREATE INDEX ix_enrollment_sequence_id ON enrollment (sequence_id);
CREATE INDEX ix_enrollment_next_due_at ON enrollment (next_due_at);
CREATE UNIQUE INDEX uq_live ON enrollment (lead_id) WHERE kind = 'outbound' AND state IN ('active', 'paused');
"""
RAW_INSERT = (
    "INSERT INTO enrollment (lead_id, sequence_id, version_id, kind, state, enrolled_at, next_index,"
    " next_step, next_due_at, dropped_channels) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def bench_raw_sqlite(workdir: Path, count: int, repeat: int, *, indexes: bool, chunk: int = 2000) -> dict[str, Any]:
    """sqlite3 executemany of enrollment-shaped rows, our pragmas, a transaction per chunk.

    With `indexes`, the table has enrollment's four secondary indexes; without, only its
    primary key. Best of `repeat` runs, each into a fresh file: a ceiling should not be lowered by noise.
    """
    schema = RAW_SCHEMA if indexes else RAW_SCHEMA.split(";")[0] + ";"
    base = datetime(2026, 11, 23, 14, 0)
    rows = [
        (f"L{i:06d}", SEQUENCE, 1, "outbound", "active", "2026-11-23 13:00:00.000000", 0, "intro",
         str(base + timedelta(seconds=i % 2700)), "[]")
        for i in range(count)
    ]  # fmt: skip
    runs = []
    for attempt in range(repeat):
        path = workdir / f"raw-{attempt}.db"
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(schema)

        def insert(conn: sqlite3.Connection = conn) -> None:
            for start in range(0, count, chunk):
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(RAW_INSERT, rows[start : start + chunk])
                conn.execute("COMMIT")

        runs.append(timed(insert)[1])
        conn.close()
        path.unlink()
    key = "raw" if indexes else "raw_bare"
    return {f"{key}_rows": count, f"{key}_s": min(runs), f"{key}_rows_per_s": count / min(runs)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=100_000, help="leads to import and enroll (default 100000)")
    parser.add_argument("--naive-sample", type=int, default=500, help="leads enrolled the naive way (default 500)")
    parser.add_argument("--repeat", type=int, default=3, help="enroll runs, each on a fresh copy (median is reported)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.naive_sample > args.leads:
        parser.error("--naive-sample cannot exceed --leads")
    with tempfile.TemporaryDirectory(prefix="cadence-bench-") as tmp:
        workdir = Path(tmp)
        project = make_project(workdir)
        figures = bench_ours(project, workdir, args.leads, max(1, args.repeat))
        imported = f"sqlite:///{workdir / 'imported.db'}"
        figures |= bench_naive(project, imported, workdir, args.naive_sample, tuned=False)
        figures |= bench_naive(project, imported, workdir, args.naive_sample, tuned=True)
        figures |= bench_raw_sqlite(workdir, args.leads, max(1, args.repeat), indexes=True)
        figures |= bench_raw_sqlite(workdir, args.leads, max(1, args.repeat), indexes=False)
    figures["ratio_vs_naive"] = figures["enroll_per_s"] / figures["naive_per_s"]
    figures["ratio_vs_naive_tuned"] = figures["enroll_per_s"] / figures["naive_tuned_per_s"]
    # Each enrollment writes two rows (enrollment + history): the raw rate halved is the ceiling.
    figures["share_of_raw_ceiling"] = figures["enroll_per_s"] / (figures["raw_rows_per_s"] / 2)
    if args.json:
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}, indent=2))
        return 0
    f = figures
    runs = ", ".join(f"{f['leads'] / r:,.0f}" for r in f["enroll_runs_s"])
    print(f"{f['leads']:,} leads into {SEQUENCE} (14 steps) on SQLite (WAL); each enrollment writes 2 rows")
    for label, value, unit in (
        ("import", f"{f['import_rows_per_s']:,.0f}", f"rows/s ({f['import_s']:.1f} s)"),
        ("enroll (headline)", f"{f['enroll_per_s']:,.0f}", f"enrollments/s (median of: {runs})"),
        ("import + enroll", f"{f['import_and_enroll_per_s']:,.0f}", "leads/s"),
        ("refused re-enrollment", f"{f['refuse_per_s']:,.0f}", "leads/s (the first 10,000 enrolled again)"),
        (
            "naive APScheduler 3",
            f"{f['naive_per_s']:,.1f}",
            f"enrollments/s ({f['sample']:,} leads, {f['jobs']:,} jobs)",
        ),
        ("naive, WAL + NORMAL", f"{f['naive_tuned_per_s']:,.1f}", "enrollments/s (same sample, our pragmas)"),
        ("raw sqlite3 executemany", f"{f['raw_rows_per_s']:,.0f}", "rows/s (enrollment rows and indexes, best run)"),
        ("  same, primary key only", f"{f['raw_bare_rows_per_s']:,.0f}", "rows/s"),
        ("ours / naive", f"{f['ratio_vs_naive']:,.0f}x", f"({f['ratio_vs_naive_tuned']:,.0f}x vs naive on WAL)"),
        ("ours / raw ceiling", f"{f['share_of_raw_ceiling']:.0%}", "of raw rows/s / 2"),
    ):
        print(f"  {label:<24} {value:>10}  {unit}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
