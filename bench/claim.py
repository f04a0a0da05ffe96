"""Claim one batch of due touches through the engine, beside raw SQL doing the same claim (issue 15).

The promise: the engine's claim costs the same at 10k, 100k and 1M active enrollments, on
SQLite and PostgreSQL, and a long history of sent touches does not slow it down. Targets,
each a ratio measured in the same run: SQLite within 3x of raw `sqlite3`, PostgreSQL within
2x of raw `psycopg`, the ratio not growing with size; the claim with 1M touches of history
within 1.5x of the claim with none.

What is timed, on each store (`--stores`), size (`--sizes`) and history (`--history`):

- engine: `cadence.engine.claim.claim_batch` of one batch of `engine.batch_size` (one
  transaction: lock the due enrollments, read their leads, suppressions, recent touches and
  the senders' counts, gate each one, insert the `sending` touches, update the enrollments);
  each claim is checked to return `--batch-size` jobs, none skipped or deferred;
- raw: the same claim in raw DBAPI on the same store, the floor any claim can approach: in
  one transaction (SQLite `BEGIN IMMEDIATE`, the same pragmas; PostgreSQL `FOR UPDATE SKIP
  LOCKED`) select the batch of due active enrollments by the `next_due_at` index (with their
  lead's owner), insert their touch rows in one multi-row `INSERT ... RETURNING`, update the
  enrollments in one statement, commit, return them. No suppression, caps or planning.

Each round runs both, engine first in even rounds and raw first in odd ones; after every
claim the claimed enrollments are re-armed (due again, their touches deleted; not timed), so
every claim sees the same due set. One untimed claim of each warms caches first, and checks
that both claim the same enrollments. Medians and p90 of `--repeat` rounds are reported, and
the write-ahead log each claim wrote. On SQLite every claim starts from an empty WAL
(checkpointed, untimed): otherwise the 1,000-page auto-checkpoint, and its fsync, lands on
whichever side's turn it is, and with history a claim and its re-arming dirty hundreds of
pages of the touch indexes. The WAL figure is what that checkpoint would cost in a real run.

Seeding (timed apart, not part of any figure): a handful of leads through cadence's own
import and enroll (a published one-step email sequence), then set-based SQL copying those
rows' shape (a recursive CTE on SQLite, `generate_series` on PostgreSQL) up to N active
enrollments, of which `--due` are due now and the rest due over the next 30 days (the index
must skip them). History: `--history` sent touches of earlier, finished enrollments of the
same leads, each with its history row, their `sent_at` scattered over `--history-days` up to
now, so today holds its share for the same two senders the claim counts (1M over 90 days: some
5,500 emails by noon, which every claim's sender count reads; a longer span, fewer). The history is
added on top of the same store, so each size is seeded once. PostgreSQL stores are ANALYZEd
after seeding, as autovacuum would; SQLite stores are left as cadence leaves them.

Loopback only: SQLite files in a temporary folder, PostgreSQL a throwaway database on
127.0.0.1 (dropped afterwards). Run: `.venv/bin/python bench/claim.py [--stores sqlite,postgresql]
[--sizes 10000,100000,1000000] [--history 0,1000000] [--due 2000] [--batch-size 200]
[--repeat 5] [--json]`, or `--profile` to profile the engine's claim at the first store, size
and history given. The full defaults take about 20 minutes on 2 cores, nearly all of it seeding
(1M active enrollments: 1 min on SQLite, 1.5 on PostgreSQL; 1M touches of history: 1-2 and 3-4 min).
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import json
import pstats
import secrets
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from dispatch import SEQUENCES, _rounded  # bench/dispatch.py; bench/ is on sys.path when this file runs

from cadence.app import App
from cadence.clock import FixedClock, parse_instant
from cadence.engine.claim import claim_batch
from cadence.engine.jobs import PassReport
from cadence.enrollment.enroll import enroll
from cadence.enrollment.lead_import import import_leads, read_rows
from cadence.names import Channel, EnrollmentState, HistoryKind, Outcome, TouchStatus

ROOT = Path(__file__).resolve().parent.parent

SEQUENCE = "bench-email"  # one email step: every claimed touch is an email, counted against its sender
STEP = "intro"  # its step (bench/dispatch.py), which the seeded history's touches carried out too
NOW = "2026-11-23T12:00:00-05:00"  # a Monday noon in New York: inside every lead's send window
HANDFUL = 4  # leads imported and enrolled through cadence's API; the rest copy their shape
WORKER = "bench-claim"
RAW_WORKER = "bench-raw"
FUTURE_SPAN = 30 * 86_400  # the not-yet-due enrollments are due over the next 30 days
SCATTER = 2_654_435_761  # Knuth's multiplicative hash: spreads row numbers over a span, no randomness
TARGETS = {"sqlite": 3.0, "postgresql": 2.0}
HISTORY_TARGET = 1.5
SUBJECT = "Company 7 + Acme"
BODY = (
    "Hi First7,\n\nI noticed Company 7 is hiring SDRs and, as Head of Sales, you are probably the one ramping"
    " them.\n\nAcme helps sales teams like yours book **30% more meetings** without adding headcount: every"
    " touch planned in the prospect's own time zone, every call queued for the right rep.\n\nWorth a 15-minute"
    " look next week?\n\nAlice\n"
)  # the size of a rendered intro: sent touches keep the text that went out
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
TOUCH_VALUES = 11  # values bound a claimed touch in the raw INSERT
RAW_CHUNK = 2_000  # touches an INSERT: SQLite binds at most 32,766 values a statement, PostgreSQL 65,535


def lead_id(k: int) -> str:
    return f"L{k:07d}"


def touch_insert(mark: str, rows: int) -> str:
    """The raw claim's one multi-row INSERT of `rows` claimed touches, `mark` the driver's placeholder."""
    columns = (
        "enrollment_id, lead_id, sequence_id, step_id, step_index, owner, sender, due_at, lease_until, message_id,"
        " claimed_by, channel, status, attempts"
    )
    row = "(" + ", ".join([mark] * TOUCH_VALUES) + f", '{Channel.EMAIL}', '{TouchStatus.SENDING}', 0)"
    return f"INSERT INTO touch ({columns}) VALUES " + ", ".join([row] * rows) + " RETURNING enrollment_id, id"


def _touch_values(rows: Any, domain: str, lease: Any) -> list[Any]:
    """The touch rows' values for the raw claim, flat, in insert_touches' column order."""
    values: list[Any] = []
    for eid, lead, sequence, index, step, due, owner in rows:
        message_id = f"<{secrets.token_hex(12)}@{domain}>"
        values += (eid, lead, sequence, step, index, owner, owner, due, lease, message_id, RAW_WORKER)
    return values


def insert_touches(conn: Any, mark: str, values: list[Any]) -> list[tuple[int, int]]:
    """(enrollment id, touch id) of the touches inserted, one statement a `RAW_CHUNK` rows."""
    step = RAW_CHUNK * TOUCH_VALUES
    touches: list[tuple[int, int]] = []
    for start in range(0, len(values), step):
        part = values[start : start + step]
        touches += conn.execute(touch_insert(mark, len(part) // TOUCH_VALUES), part).fetchall()
    return touches


# -- the project and the API-seeded handful ----------------------------------------------------


def make_project(workdir: Path, batch_size: int) -> Path:
    """The starter project plus the one-step bench sequence; caps raised so no claimed touch defers."""
    project = workdir / "project"
    project.mkdir()
    shutil.copytree(ROOT / "sequences", project / "sequences")
    shutil.copytree(ROOT / "templates", project / "templates")
    (project / "sequences" / f"{SEQUENCE}.yaml").write_text(SEQUENCES[SEQUENCE], encoding="utf-8")
    config = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    for sender in config["senders"]:
        sender.update(daily_cap=10_000_000, per_minute=10_000_000)  # counted all the same, never reached
    config["limits"] = {"per_lead_daily": 100}
    config["engine"] = {**config["engine"], "batch_size": batch_size}
    (project / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return project


def load_app(project: Path, url: str) -> App:
    app = App.load(project / "config.yaml", FixedClock(parse_instant(NOW)), url, {})
    _ = app.engine, app.catalog  # migrations and loading the sequence files are start-up, not claim work
    return app


def seed_handful(project: Path, workdir: Path, url: str) -> None:
    """Import and enroll `HANDFUL` leads through cadence itself: the rows every copy is shaped on."""
    csv_path = workdir / "handful.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "email", "phone", "first_name", "last_name", "company", "title", "timezone", "country"])
        for k in range(1, HANDFUL + 1):
            writer.writerow(
                [lead_id(k), f"l{k}@lead{k % 97}.example", f"+1212555{k % 10_000:04d}", f"First{k}", f"Last{k}",
                 f"Company {k % 97}", "Head of Sales", "America/New_York", "US"]
            )  # fmt: skip
    app = load_app(project, url)
    try:
        imported = import_leads(app.engine, read_rows(csv_path), app.settings, app.clock.now())
        if imported.rejected or imported.imported != HANDFUL:
            raise SystemExit(f"import went wrong: {imported.imported} imported, rejects {imported.rejected[:3]}")
        report = enroll(app, SEQUENCE, [lead_id(k) for k in range(1, HANDFUL + 1)], cause="bench")
        if report.refused or len(report.enrolled) != HANDFUL:
            raise SystemExit(f"enroll went wrong: {len(report.enrolled)} enrolled, refusals {report.refused[:3]}")
    finally:
        app.close()


# -- the stores: seeding, the raw claim and re-arming, one class per dialect ----------------------


class SqliteStore:
    """A SQLite file in WAL; raw work through `sqlite3` with cadence's pragmas."""

    kind = "sqlite"

    def __init__(self, workdir: Path, size: int) -> None:
        self.path = workdir / f"claim-{size}.db"
        self.url = f"sqlite:///{self.path}"
        self.conn: sqlite3.Connection | None = None

    def connect(self) -> sqlite3.Connection:
        """The raw connection: the pragmas `cadence.store.db.make_engine` sets."""
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON", "busy_timeout=30000"):
            conn.execute(f"PRAGMA {pragma}")
        self.conn = conn
        return conn

    @staticmethod
    def _ts(seconds: str) -> str:
        """A UTC epoch expression as the text SQLAlchemy's SQLite DATETIME stores."""
        return f"strftime('%Y-%m-%d %H:%M:%S', {seconds}, 'unixepoch') || '.000000'"

    @staticmethod
    def text(at: datetime) -> str:
        return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")

    def _due(self, k: str) -> str:
        """When the `k`th enrollment is due: the first `due` in the last minutes, oldest first; the rest later."""
        return self._ts(
            f"CASE WHEN {k} <= :due THEN :now - (:due + 1 - {k})"
            f" ELSE :now + 3600 + ({k} * {SCATTER}) % {FUTURE_SPAN} END"
        )

    def _numbers(self, name: str) -> str:
        """:first .. :last (none when :first > :last), as SQLite counts without a numbers table."""
        return (
            f"WITH RECURSIVE n({name}) AS (SELECT :first WHERE :first <= :last"
            f" UNION ALL SELECT {name} + 1 FROM n WHERE {name} < :last)"
        )

    def seed(self, size: int, due: int, now: int) -> None:
        """Copy the handful's lead, enrollment and history rows up to `size` active enrollments."""
        conn = self._seeding()
        due_at = self._due("k")
        params = {"first": HANDFUL + 1, "last": size, "template": lead_id(1), "due": due, "now": now}
        conn.execute("BEGIN")
        conn.execute(
            f"""{self._numbers("k")}
            INSERT INTO lead (id, email, phone, first_name, last_name, company, title, owner, timezone, country,
                sms_consent, stage, score, do_not_contact, email_invalid, phone_invalid, fields, created_at,
                updated_at, region)
            SELECT 'L' || printf('%07d', k), 'l' || k || '@lead' || (k % 97) || '.example',
                '+1212555' || printf('%04d', k % 10000), 'First' || k, 'Last' || k, 'Company ' || (k % 97), t.title,
                CASE k % 2 WHEN 0 THEN 'alice' ELSE 'bob' END, t.timezone, t.country, t.sms_consent, t.stage,
                t.score, t.do_not_contact, t.email_invalid, t.phone_invalid, t.fields, t.created_at, t.updated_at,
                t.region
            FROM n CROSS JOIN (SELECT * FROM lead WHERE id = :template) AS t""",
            params,
        )
        conn.execute(
            f"""{self._numbers("k")}
            INSERT INTO enrollment (lead_id, sequence_id, version_id, kind, state, enrolled_at, next_index,
                next_step, next_due_at, dropped_channels)
            SELECT 'L' || printf('%07d', k), t.sequence_id, t.version_id, t.kind, t.state, t.enrolled_at,
                t.next_index, t.next_step, {due_at}, t.dropped_channels
            FROM n CROSS JOIN (SELECT * FROM enrollment WHERE lead_id = :template) AS t""",
            params,
        )
        conn.execute(
            f"""{self._numbers("k")}
            INSERT INTO history (lead_id, at, kind, detail, cause)
            SELECT 'L' || printf('%07d', k), t.at, t.kind, t.detail, t.cause
            FROM n CROSS JOIN (SELECT * FROM history WHERE lead_id = :template) AS t""",
            params,
        )
        conn.execute(  # the handful's own enrollments follow the same due times as the copies
            f"UPDATE enrollment SET next_due_at = {self._due('CAST(substr(lead_id, 2) AS INTEGER)')}"
            " WHERE lead_id <= :template_last",
            params | {"template_last": lead_id(HANDFUL)},
        )
        conn.execute("COMMIT")
        self._settle(conn)

    def seed_history(self, size: int, before: int, after: int, now: int, span: int) -> None:
        """Sent touches `before`+1 .. `after` of finished enrollments (one a lead), and their history rows."""
        conn = self._seeding()
        params = {
            "first": before + 1, "last": after, "size": size, "now": now, "span": span - 60,
            "finished": str(EnrollmentState.FINISHED), "sent": str(TouchStatus.SENT), "email": str(Channel.EMAIL),
            "subject": SUBJECT, "body": BODY, "touch": str(HistoryKind.TOUCH), "template": lead_id(1), "step": STEP,
            "completed": str(Outcome.COMPLETED),
        }  # fmt: skip
        conn.execute("BEGIN")
        conn.execute(
            f"""{self._numbers("k")}
            INSERT INTO enrollment (lead_id, sequence_id, version_id, kind, state, enrolled_at, next_index,
                next_step, next_due_at, last_touch_at, finished_at, outcome, dropped_channels)
            SELECT 'L' || printf('%07d', k), t.sequence_id, t.version_id, t.kind, :finished,
                {self._ts(":now - :span - 86400")}, NULL, NULL, NULL, {self._ts(":now - 60")},
                {self._ts(":now - 60")}, :completed, t.dropped_channels
            FROM n CROSS JOIN (SELECT * FROM enrollment WHERE lead_id = :template) AS t""",
            params | {"first": min(size, before) + 1, "last": min(size, after)},
        )
        (top,) = conn.execute("SELECT coalesce(max(id), 0) FROM touch").fetchone()
        conn.execute(
            f"""{self._numbers("j")},
            m AS (SELECT j, 'L' || printf('%07d', (j - 1) % :size + 1) AS lead_id,
                  {self._ts(f":now - 60 - (j * {SCATTER}) % :span")} AS at FROM n)
            INSERT INTO touch (enrollment_id, lead_id, sequence_id, step_id, step_index, channel, status, owner,
                sender, due_at, sent_at, attempts, subject, body, message_id)
            SELECT e.id, m.lead_id, e.sequence_id, :step, 0, :email, :sent, l.owner, l.owner, m.at, m.at, 1,
                :subject, :body, '<h' || m.j || '@acme.example>'
            FROM m CROSS JOIN enrollment AS e CROSS JOIN lead AS l
            WHERE e.lead_id = m.lead_id AND e.state = :finished AND l.id = m.lead_id""",
            params,
        )
        conn.execute(
            """INSERT INTO history (lead_id, at, kind, detail, cause)
            SELECT lead_id, sent_at, :touch, json_object('sequence', sequence_id, 'step', step_id,
                'channel', channel, 'touch', id, 'status', status), NULL
            FROM touch WHERE id > :top""",
            params | {"top": top},
        )
        conn.execute("COMMIT")
        self._settle(conn)

    def _seeding(self) -> sqlite3.Connection:
        """A connection for bulk seeding only: a big page cache, no syncs (the measured ones keep cadence's)."""
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        for pragma in ("journal_mode=WAL", "synchronous=OFF", "cache_size=-262144", "temp_store=MEMORY"):
            conn.execute(f"PRAGMA {pragma}")
        return conn

    @staticmethod
    def _settle(conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # claims start from the file, not a long WAL
        conn.close()

    def due_set(self, now: datetime) -> dict[int, Any]:
        assert self.conn is not None
        query = "SELECT id, next_due_at FROM enrollment WHERE next_due_at <= ? AND state = ?"
        return dict(self.conn.execute(query, (self.text(now), str(EnrollmentState.ACTIVE))).fetchall())

    def claim(self, now: datetime, batch: int, domain: str) -> list[tuple[int, int]]:
        """The raw claim: (enrollment id, touch id) of each claimed due enrollment."""
        conn = self.conn
        assert conn is not None
        lease = self.text(now + timedelta(seconds=300))
        conn.execute("BEGIN IMMEDIATE")
        try:
            rows = conn.execute(
                """SELECT e.id, e.lead_id, e.sequence_id, e.next_index, e.next_step, e.next_due_at, l.owner
                FROM enrollment AS e JOIN lead AS l ON l.id = e.lead_id
                WHERE e.next_due_at <= ? AND e.state = ? ORDER BY e.next_due_at, e.id LIMIT ?""",
                (self.text(now), str(EnrollmentState.ACTIVE), batch),
            ).fetchall()
            if not rows:  # nothing due: no statement can have zero rows of VALUES
                conn.execute("COMMIT")
                return []
            touches = insert_touches(conn, "?", _touch_values(rows, domain, lease))
            conn.execute(
                "UPDATE enrollment SET next_due_at = NULL, pending_touch_id = v.column2 FROM (VALUES "
                + ", ".join(["(?, ?)"] * len(touches))
                + ") AS v WHERE enrollment.id = v.column1 AND enrollment.state = ?",
                [*(v for pair in touches for v in pair), str(EnrollmentState.ACTIVE)],
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return touches

    def wal_mark(self) -> int:
        """Checkpoint the WAL into the file (untimed), so the next claim starts from an empty one."""
        self.wal_since(0)
        return 0

    def wal_since(self, _mark: int) -> int:
        """Bytes the WAL holds now (written since the last checkpoint), checkpointing them."""
        assert self.conn is not None
        _busy, frames, _moved = self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()  # TRUNCATE says 0
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        (page_size,) = self.conn.execute("PRAGMA page_size").fetchone()
        return max(frames, 0) * page_size

    def rearm(self, due: dict[int, Any], enrollment_ids: Sequence[int]) -> None:
        """The claimed enrollments due again as they were, their `sending` touches gone."""
        conn = self.conn
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("DELETE FROM touch WHERE status = ?", (str(TouchStatus.SENDING),))
        conn.executemany(
            "UPDATE enrollment SET next_due_at = ?, pending_touch_id = NULL WHERE id = ?",
            [(due[e], e) for e in enrollment_ids],
        )
        conn.execute("COMMIT")

    def drop(self) -> None:
        if self.conn is not None:
            self.conn.close()
        for path in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")):
            path.unlink(missing_ok=True)


class PostgresStore:
    """A throwaway database on the loopback server; raw work through `psycopg`."""

    kind = "postgresql"

    def __init__(self, admin_url: str, size: int) -> None:
        import psycopg

        parts = urlsplit(admin_url)
        if parts.hostname not in LOOPBACK:
            raise SystemExit(f"PostgreSQL must be on the loopback interface, not {parts.hostname!r}")
        self.name = f"cadence_bench_claim_{size}_{secrets.token_hex(3)}"
        self.admin_url = admin_url
        self.dsn = parts._replace(path=f"/{self.name}").geturl()
        self.url = self.dsn.replace("postgresql://", "postgresql+psycopg://", 1)
        self.conn: Any = None
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{self.name}"')

    def connect(self) -> Any:
        import psycopg

        self.conn = psycopg.connect(self.dsn)
        return self.conn

    @staticmethod
    def text(at: datetime) -> datetime:
        return at

    @staticmethod
    def _due(k: str) -> str:
        return (
            f"to_timestamp(CASE WHEN {k} <= %(due)s THEN %(now)s - (%(due)s + 1 - {k})"
            f" ELSE %(now)s + 3600 + mod({k} * {SCATTER}, {FUTURE_SPAN}) END)"
        )

    def _seeding(self) -> Any:
        import psycopg

        return psycopg.connect(self.dsn)

    def seed(self, size: int, due: int, now: int) -> None:
        due_at = self._due("k")
        params = {"first": HANDFUL + 1, "last": size, "template": lead_id(1), "due": due, "now": now}
        numbers = "generate_series(%(first)s::bigint, %(last)s::bigint) AS n(k)"
        with self._seeding() as conn:
            conn.execute(
                f"""INSERT INTO lead (id, email, phone, first_name, last_name, company, title, owner, timezone,
                    country, sms_consent, stage, score, do_not_contact, email_invalid, phone_invalid, fields,
                    created_at, updated_at, region)
                SELECT 'L' || lpad(k::text, 7, '0'), 'l' || k || '@lead' || mod(k, 97) || '.example',
                    '+1212555' || lpad(mod(k, 10000)::text, 4, '0'), 'First' || k, 'Last' || k,
                    'Company ' || mod(k, 97), t.title, CASE mod(k, 2) WHEN 0 THEN 'alice' ELSE 'bob' END, t.timezone,
                    t.country, t.sms_consent, t.stage, t.score, t.do_not_contact, t.email_invalid, t.phone_invalid,
                    t.fields, t.created_at, t.updated_at, t.region
                FROM {numbers} CROSS JOIN (SELECT * FROM lead WHERE id = %(template)s) AS t""",
                params,
            )
            conn.execute(
                f"""INSERT INTO enrollment (lead_id, sequence_id, version_id, kind, state, enrolled_at, next_index,
                    next_step, next_due_at, dropped_channels)
                SELECT 'L' || lpad(k::text, 7, '0'), t.sequence_id, t.version_id, t.kind, t.state, t.enrolled_at,
                    t.next_index, t.next_step, {due_at}, t.dropped_channels
                FROM {numbers} CROSS JOIN (SELECT * FROM enrollment WHERE lead_id = %(template)s) AS t""",
                params,
            )
            conn.execute(
                f"""INSERT INTO history (lead_id, at, kind, detail, cause)
                SELECT 'L' || lpad(k::text, 7, '0'), t.at, t.kind, t.detail, t.cause
                FROM {numbers} CROSS JOIN (SELECT * FROM history WHERE lead_id = %(template)s) AS t""",
                params,
            )
            conn.execute(
                f"UPDATE enrollment SET next_due_at = {self._due('substr(lead_id, 2)::bigint')}"
                " WHERE lead_id <= %(template_last)s",
                params | {"template_last": lead_id(HANDFUL)},
            )
        self._settle()

    def seed_history(self, size: int, before: int, after: int, now: int, span: int) -> None:
        params = {
            "first": before + 1, "last": after, "size": size, "now": now, "span": span - 60,
            "finished": str(EnrollmentState.FINISHED), "sent": str(TouchStatus.SENT), "email": str(Channel.EMAIL),
            "subject": SUBJECT, "body": BODY, "touch": str(HistoryKind.TOUCH), "template": lead_id(1), "step": STEP,
            "completed": str(Outcome.COMPLETED),
        }  # fmt: skip
        numbers = "generate_series(%(first)s::bigint, %(last)s::bigint) AS n(k)"
        with self._seeding() as conn:
            conn.execute(
                f"""INSERT INTO enrollment (lead_id, sequence_id, version_id, kind, state, enrolled_at, next_index,
                    next_step, next_due_at, last_touch_at, finished_at, outcome, dropped_channels)
                SELECT 'L' || lpad(k::text, 7, '0'), t.sequence_id, t.version_id, t.kind, %(finished)s,
                    to_timestamp(%(now)s - %(span)s - 86400), NULL, NULL, NULL, to_timestamp(%(now)s - 60),
                    to_timestamp(%(now)s - 60), %(completed)s, t.dropped_channels
                FROM {numbers} CROSS JOIN (SELECT * FROM enrollment WHERE lead_id = %(template)s) AS t""",
                params | {"first": min(size, before) + 1, "last": min(size, after)},
            )
            (top,) = conn.execute("SELECT coalesce(max(id), 0) FROM touch").fetchone()
            conn.execute(
                f"""WITH m AS (
                    SELECT k AS j, 'L' || lpad((mod(k - 1, %(size)s) + 1)::text, 7, '0') AS lead_id,
                        to_timestamp(%(now)s - 60 - mod(k * {SCATTER}, %(span)s)) AS at
                    FROM {numbers})
                INSERT INTO touch (enrollment_id, lead_id, sequence_id, step_id, step_index, channel, status, owner,
                    sender, due_at, sent_at, attempts, subject, body, message_id)
                SELECT e.id, m.lead_id, e.sequence_id, %(step)s, 0, %(email)s, %(sent)s, l.owner, l.owner, m.at, m.at,
                    1, %(subject)s, %(body)s, '<h' || m.j || '@acme.example>'
                FROM m JOIN enrollment AS e ON e.lead_id = m.lead_id AND e.state = %(finished)s
                JOIN lead AS l ON l.id = m.lead_id""",
                params,
            )
            conn.execute(
                """INSERT INTO history (lead_id, at, kind, detail, cause)
                SELECT lead_id, sent_at, %(touch)s, json_build_object('sequence', sequence_id, 'step', step_id,
                    'channel', channel, 'touch', id, 'status', status), NULL
                FROM touch WHERE id > %(top)s""",
                params | {"top": top},
            )
        self._settle()

    def _settle(self) -> None:
        """Statistics for the planner, as autovacuum would gather on a live store."""
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")

    def due_set(self, now: datetime) -> dict[int, Any]:
        query = "SELECT id, next_due_at FROM enrollment WHERE next_due_at <= %s AND state = %s"
        due = dict(self.conn.execute(query, (now, str(EnrollmentState.ACTIVE))).fetchall())
        self.conn.commit()
        return due

    def claim(self, now: datetime, batch: int, domain: str) -> list[tuple[int, int]]:
        conn = self.conn
        lease = now + timedelta(seconds=300)
        try:
            rows = conn.execute(
                """SELECT e.id, e.lead_id, e.sequence_id, e.next_index, e.next_step, e.next_due_at, l.owner
                FROM enrollment AS e JOIN lead AS l ON l.id = e.lead_id
                WHERE e.next_due_at <= %s AND e.state = %s ORDER BY e.next_due_at, e.id LIMIT %s
                FOR UPDATE OF e SKIP LOCKED""",
                (now, str(EnrollmentState.ACTIVE), batch),
            ).fetchall()
            if not rows:
                conn.commit()
                return []
            touches = insert_touches(conn, "%s", _touch_values(rows, domain, lease))
            conn.execute(
                "UPDATE enrollment AS e SET next_due_at = NULL, pending_touch_id = v.touch FROM (VALUES "
                + ", ".join(["(%s::integer, %s::integer)"] * len(touches))
                + ") AS v(id, touch) WHERE e.id = v.id AND e.state = %s",
                [*(v for pair in touches for v in pair), str(EnrollmentState.ACTIVE)],
            )
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        return touches

    def wal_mark(self) -> int:
        """Where the WAL stands (PostgreSQL checkpoints in the background, never in a claim's commit)."""
        (lsn,) = self.conn.execute("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn").fetchone()
        self.conn.commit()
        return int(lsn)

    def wal_since(self, mark: int) -> int:
        return self.wal_mark() - mark

    def rearm(self, due: dict[int, Any], enrollment_ids: Sequence[int]) -> None:
        conn = self.conn
        conn.execute("DELETE FROM touch WHERE status = %s", (str(TouchStatus.SENDING),))
        with conn.cursor() as cur:
            cur.executemany(
                "UPDATE enrollment SET next_due_at = %s, pending_touch_id = NULL WHERE id = %s",
                [(due[e], e) for e in enrollment_ids],
            )
        conn.commit()

    def drop(self) -> None:
        import psycopg

        if self.conn is not None and not self.conn.closed:
            self.conn.close()
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


Store = SqliteStore | PostgresStore


# -- measuring ----------------------------------------------------------------------------------


@dataclass
class Claimer:
    """Engine and raw claims on one seeded store, each re-armed after it, so every claim sees the same due set.

    Every claim starts from the same write-ahead log: on SQLite an empty one (the WAL is checkpointed,
    untimed, before each claim), so no claim pays for the checkpoint another one's pages triggered
    (with history, a claim and its re-arming dirty some hundred pages of the touch indexes, and
    the 1,000-page auto-checkpoint with its fsync would land on whichever side's turn it was).
    How much WAL each claim wrote is recorded instead: the same work should write about the same.
    """

    app: App
    store: Store
    batch: int
    now: datetime = field(default_factory=lambda: parse_instant(NOW))
    due: dict[int, Any] = field(default_factory=dict)
    wal_kb: dict[str, list[float]] = field(default_factory=lambda: {"engine": [], "raw": []})

    def __post_init__(self) -> None:
        self.domain = self.app.settings.sender("alice").email.rpartition("@")[2]
        self.due = self.store.due_set(self.now)

    def engine(self, profile: cProfile.Profile | None = None) -> tuple[float, list[int]]:
        report = PassReport()
        mark = self.store.wal_mark()
        if profile is not None:
            profile.enable()
        start = time.perf_counter()
        jobs = claim_batch(self.app, WORKER, self.now, report)
        took = time.perf_counter() - start
        if profile is not None:
            profile.disable()
        self.wal_kb["engine"].append(self.store.wal_since(mark) / 1024)
        if len(jobs) != self.batch or report.claimed != self.batch or report.deferred or report.skipped:
            raise SystemExit(
                f"engine claim went wrong: {len(jobs)} jobs, claimed {report.claimed}, deferred {report.deferred},"
                f" skipped {report.skipped} (wanted {self.batch})"
            )
        ids = [job.enrollment.id for job in jobs]
        self.store.rearm(self.due, ids)
        return took, ids

    def raw(self) -> tuple[float, list[int]]:
        mark = self.store.wal_mark()
        start = time.perf_counter()
        claimed = self.store.claim(self.now, self.batch, self.domain)
        took = time.perf_counter() - start
        self.wal_kb["raw"].append(self.store.wal_since(mark) / 1024)
        if len(claimed) != self.batch:
            raise SystemExit(f"raw claim went wrong: {len(claimed)} claimed (wanted {self.batch})")
        ids = [eid for eid, _touch in claimed]
        self.store.rearm(self.due, ids)
        return took, ids


def summary(runs: list[float]) -> dict[str, Any]:
    ms = [1000 * r for r in runs]
    p90 = statistics.quantiles(ms, n=10, method="inclusive")[-1] if len(ms) > 1 else ms[0]
    return {"ms": statistics.median(ms), "p90_ms": p90, "runs_ms": ms}


def measure(claimer: Claimer, repeat: int) -> dict[str, Any]:
    """An untimed claim of each (warm caches, and the check that both claim the same), then `repeat` rounds."""
    _, engine_ids = claimer.engine()
    _, raw_ids = claimer.raw()
    if sorted(engine_ids) != sorted(raw_ids):
        raise SystemExit("the engine and the raw claim took different enrollments")
    runs: dict[str, list[float]] = {"engine": [], "raw": []}
    for round_no in range(repeat):
        for side in ("engine", "raw") if round_no % 2 == 0 else ("raw", "engine"):
            took, _ = claimer.engine() if side == "engine" else claimer.raw()
            runs[side].append(took)
    engine, raw = summary(runs["engine"]), summary(runs["raw"])
    if len(claimer.store.due_set(claimer.now)) != len(claimer.due):
        raise SystemExit("re-arming lost due enrollments")
    return {
        "engine_ms": engine["ms"], "engine_p90_ms": engine["p90_ms"], "raw_ms": raw["ms"], "raw_p90_ms": raw["p90_ms"],
        "ratio": engine["ms"] / raw["ms"], "engine_runs_ms": engine["runs_ms"], "raw_runs_ms": raw["runs_ms"],
        "engine_wal_kb": statistics.median(claimer.wal_kb["engine"][1:]),
        "raw_wal_kb": statistics.median(claimer.wal_kb["raw"][1:]),
    }  # fmt: skip


# -- the run ------------------------------------------------------------------------------------


def open_store(kind: str, workdir: Path, size: int, admin_url: str) -> Store:
    return SqliteStore(workdir, size) if kind == "sqlite" else PostgresStore(admin_url, size)


def bench_size(
    kind: str, size: int, args: argparse.Namespace, project: Path, workdir: Path, log: Callable[[str], None]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Seed one store at `size`, then measure it at each history, adding history on top; rows and seedings."""
    now = int(parse_instant(NOW).timestamp())
    span = args.history_days * 86_400
    results: list[dict[str, Any]] = []
    seedings: list[dict[str, Any]] = []
    store = open_store(kind, workdir, size, args.pg_url)
    app: App | None = None
    try:
        start = time.perf_counter()
        seed_handful(project, workdir, store.url)
        store.seed(size, args.due, now)
        seedings.append({"store": kind, "active": size, "history": 0, "seed_s": time.perf_counter() - start})
        log(f"  seeded {kind}, {size:,} active enrollments in {seedings[-1]['seed_s']:.1f} s")
        store.connect()
        app = load_app(project, store.url)
        seeded = 0
        for history in args.history:
            if history > seeded:
                start = time.perf_counter()
                store.seed_history(size, seeded, history, now, span)
                seeded = history
                seedings.append(
                    {"store": kind, "active": size, "history": history, "seed_s": time.perf_counter() - start}
                )
                log(f"  seeded {history:,} touches of history in {seedings[-1]['seed_s']:.1f} s")
            claimer = Claimer(app, store, args.batch_size)
            if args.profile:
                profile_claims(claimer, args.repeat)
                return results, seedings
            row = {"store": kind, "active": size, "history": history} | measure(claimer, args.repeat)
            log(
                f"  {kind} {size:,} active, {history:,} history: engine {row['engine_ms']:.1f} ms,"
                f" raw {row['raw_ms']:.1f} ms, {row['ratio']:.1f}x"
            )
            results.append(row)
    finally:
        if app is not None:
            app.close()
        store.drop()
    return results, seedings


def profile_claims(claimer: Claimer, repeat: int) -> None:
    """cProfile over `repeat` engine claims (after a warm-up), re-arming left out; the top 25 by cumulative time."""
    claimer.engine()
    profile = cProfile.Profile()
    for _ in range(max(repeat, 1)):
        claimer.engine(profile)
    stats = pstats.Stats(profile)
    stats.strip_dirs().sort_stats("cumulative").print_stats(25)
    stats.sort_stats("tottime").print_stats(15)


def history_ratios(results: list[dict[str, Any]], histories: list[int]) -> list[dict[str, Any]]:
    base = {(r["store"], r["active"]): r for r in results if r["history"] == histories[0]}
    out = []
    for r in results:
        zero = base.get((r["store"], r["active"]))
        if zero is None or r["history"] == histories[0]:
            continue
        out.append(
            {"store": r["store"], "active": r["active"], "history": r["history"],
             "engine_ratio": r["engine_ms"] / zero["engine_ms"], "raw_ratio": r["raw_ms"] / zero["raw_ms"]}
        )  # fmt: skip
    return out


def print_table(figures: dict[str, Any]) -> None:
    f = figures
    print(
        f"claim of one batch of {f['batch_size']} from {f['due']:,} due enrollments (engine.claim.claim_batch vs raw"
        f" DBAPI), medians of {f['repeat']} rounds (p90), engine and raw in turn"
    )
    print(
        f"  {'store':<11}{'active':>10}{'history':>11}{'engine ms':>18}{'raw ms':>16}{'engine/raw':>12}"
        f"  {'target':<11}{'WAL KB a claim, engine / raw':>30}"
    )
    for r in f["results"]:
        target = TARGETS[r["store"]]
        mark = "ok" if r["ratio"] <= target else "over"
        print(
            f"  {r['store']:<11}{r['active']:>10,}{r['history']:>11,}"
            f"{r['engine_ms']:>9.2f} ({r['engine_p90_ms']:>6.2f}){r['raw_ms']:>7.2f} ({r['raw_p90_ms']:>6.2f})"
            f"{r['ratio']:>11.1f}x  {f'<= {target:.0f}x {mark}':<11}"
            f"{r['engine_wal_kb']:>21,.0f} / {r['raw_wal_kb']:,.0f}"
        )
    if f["history_ratios"]:
        print(f"history: the claim with history / the claim with {f['history'][0]:,} (target <= {HISTORY_TARGET}x)")
        for h in f["history_ratios"]:
            mark = "ok" if h["engine_ratio"] <= HISTORY_TARGET else "over"
            print(
                f"  {h['store']:<11}{h['active']:>10,}{h['history']:>11,}  engine {h['engine_ratio']:.2f}x {mark},"
                f" raw {h['raw_ratio']:.2f}x"
            )
    print("seeding (not timed in any figure):")
    for s in f["seeding"]:
        what = f"{s['active']:,} active enrollments" if not s["history"] else f"history to {s['history']:,} touches"
        print(f"  {s['store']:<11}{what:<36}{s['seed_s']:>8.1f} s")


def int_list(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", default="sqlite,postgresql", help="sqlite, postgresql or both (default both)")
    parser.add_argument("--sizes", type=int_list, default=[10_000, 100_000, 1_000_000], help="active enrollments")
    parser.add_argument("--history", type=int_list, default=[0, 1_000_000], help="sent touches of history (0,1000000)")
    parser.add_argument("--history-days", type=int, default=90, help="the history's sent_at spans this many days (90)")
    parser.add_argument("--due", type=int, default=2_000, help="enrollments due now, of the active ones (2000)")
    parser.add_argument("--batch-size", type=int, default=200, help="engine.batch_size, and the raw claim's (200)")
    parser.add_argument("--repeat", type=int, default=5, help="rounds of engine + raw (medians and p90 reported)")
    parser.add_argument(
        "--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres", help="where to create the throwaway db"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the engine claim at the first store/size")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args(argv)
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    if not stores or set(stores) - set(TARGETS):
        parser.error(f"--stores takes {', '.join(TARGETS)}")
    args.history = sorted(set(args.history))
    if not args.sizes or not args.history or args.history[0] < 0:
        parser.error("--sizes and --history need at least one value, none negative")
    if not 1 <= args.batch_size <= args.due <= min(args.sizes) or min(args.sizes) <= HANDFUL:
        parser.error(f"need 1 <= --batch-size <= --due <= every size, and sizes above {HANDFUL}")
    if args.batch_size > 10_000 or args.history_days < 1:
        parser.error("--batch-size is at most 10000 (engine.batch_size), --history-days at least 1")
    args.repeat = max(1, args.repeat)

    def log(line: str) -> None:
        if not args.json:
            print(line, flush=True)

    results: list[dict[str, Any]] = []
    seedings: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="cadence-bench-claim-") as tmp:
        workdir = Path(tmp)
        project = make_project(workdir, args.batch_size)
        for kind in stores[:1] if args.profile else stores:
            for size in args.sizes[:1] if args.profile else args.sizes:
                log(f"{kind}, {size:,} active enrollments:")
                rows, seeded = bench_size(kind, size, args, project, workdir, log)
                results += rows
                seedings += seeded
                (workdir / "handful.csv").unlink(missing_ok=True)
    if args.profile:
        return 0
    figures = {
        "batch_size": args.batch_size, "due": args.due, "repeat": args.repeat, "history": args.history,
        "history_days": args.history_days, "results": results, "history_ratios": history_ratios(results, args.history),
        "seeding": seedings,
    }  # fmt: skip
    if not args.json:
        print_table(figures)
    print(json.dumps(_rounded(figures)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
