"""Nothing on the claim or sweep path scans what grows with history: EXPLAIN says so, on both stores.

Every statement the claim (`claim_batch`, then `record_batch`) and the sweep (each duty)
actually run is captured with a `before_cursor_execute` listener, in one scenario that takes
every branch: leads due, a suppressed lead, an email over its mailbox's daily cap, a retry,
open tasks past their deadline (one still undated, as the migration left it), a pause that
ended, a lost lease and a recycle due. Each statement is then explained with the parameters
it really ran with:

- SQLite: `EXPLAIN QUERY PLAN`; `SCAN <table>` (with or without an index: a full index walk
  reads everything too) is a scan, `SEARCH <table> USING ...` is not.
- PostgreSQL: `EXPLAIN (FORMAT JSON)` with `enable_seqscan = off`, so the planner takes any
  usable index even on these small tables; a `Seq Scan` left on a table means no index can
  serve it, and an index scan whose condition leaves the index's first column free is a
  walk of the whole index.

An index search whose only condition is a touch's `status` reads every touch in that status
and counts as a scan too: on SQLite always (unanalyzed, it picks such an index blind, and the
plan does not say which status), on PostgreSQL when the status is one where touches end up
(sent, done, expired...), not one of the few in play (sending, open...), which its statistics
may rightly prefer. So that the planners choose between indexes on real numbers, a year of
past work is stored first (sent emails, logged and expired calls, their history, a
suppression list), and PostgreSQL analyzes it; SQLite is left unanalyzed, as cadence leaves
it in production.

Plain `INSERT ... VALUES` statements scan nothing and are not explained.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine, event, insert, select, update

from cadence.app import App
from cadence.clock import FixedClock, parse_instant
from cadence.engine.claim import claim_batch
from cadence.engine.jobs import PassReport
from cadence.engine.record import record_batch
from cadence.engine.runner import _with_transports, run_once
from cadence.engine.sweep import sweep
from cadence.enrollment.enroll import enroll
from cadence.enrollment.lead_import import import_leads
from cadence.names import Channel, TouchStatus
from cadence.store import enrollments, recycles, suppressions
from cadence.store.tables import EnrollmentT, HistoryT, SuppressionT, TouchT
from tests.conftest import make_app

GROWING = ("touch", "suppression", "history")  # never scanned on these paths
INDEX_DRIVEN = ("enrollment", "lead", "recycle")  # read by key or range too
CHECKED = GROWING + INDEX_DRIVEN
WEAK = {"status", "channel", "kind"}  # a condition on these alone reads all of a status: history
WHOSE = {"sender", "owner"}  # ... and with these, all of a mailbox's or a rep's, unless bounded in time
# Where touches end up, and stay: all of one of these is history (analyzed PostgreSQL may rightly
# search the few touches in flight or open by their status alone).
IN_PLAY = (TouchStatus.SCHEDULED, TouchStatus.SENDING, TouchStatus.TASK_OPEN, TouchStatus.UNKNOWN)
HISTORICAL = {str(s) for s in TouchStatus} - set(IN_PLAY)
MONDAY = "2026-11-30T08:00:00-05:00"
THURSDAY = "2026-12-03T10:00:00-05:00"
LATER = parse_instant("2027-01-04T10:00:00-05:00")  # not due during the scenario
PAST_LEADS = 200  # leads worked in the year before, each with PAST_TOUCHES touches and as many history rows
PAST_TOUCHES = 20

SEQUENCES = {
    "x-email": (
        "id: x-email\nname: x\nsteps:\n"
        "  - {id: e1, day: 1, channel: email, subject: hi, template: outbound-saas/bump.md.j2}\n"
        "  - {id: e2, day: 3, channel: email, reply_to: e1, template: outbound-saas/bump.md.j2}\n"
    ),
    "x-calls": (
        "id: x-calls\nname: x\nsteps:\n"
        "  - {id: c1, day: 1, channel: call, template: outbound-saas/call-script.md.j2}\n"
        "  - {id: e1, day: 2, channel: email, subject: hi, template: outbound-saas/bump.md.j2}\n"
    ),
}
# lead -> (owner, sequence): what each one is there for
LEADS = {
    "A1": ("alice", "x-email"),  # due, sent
    "A2": ("alice", "x-email"),  # due, sent
    "K1": ("alice", "x-calls"),  # due: a call task opens
    "S1": ("alice", "x-email"),  # due, but suppressed: skipped
    "B0": ("bob", "x-email"),  # already sent bob's one email today
    "B1": ("bob", "x-email"),  # due, over bob's daily cap: deferred
    "R1": ("alice", "x-email"),  # a retry: its scheduled touch is claimed again
    "D1": ("alice", "x-email"),  # claimed by a worker that died: its lease runs out
    "T1": ("alice", "x-calls"),  # an open task past its deadline
    "T2": ("alice", "x-calls"),  # an open task past its deadline, not dated yet
    "P1": ("alice", "x-email"),  # paused until Tuesday
    "C1": ("alice", ""),  # a recycle due
}


@dataclass(frozen=True)
class Statement:
    path: str
    sql: str
    params: Any


@dataclass
class Scenario:
    app: App
    statements: list[Statement]
    claim: PassReport
    swept: dict[str, int]


def _lead(lead_id: str, owner: str) -> dict[str, str | None]:
    return {
        "id": lead_id, "email": f"{lead_id.lower()}@northwind.example", "phone": None, "first_name": lead_id,
        "last_name": "Wu", "company": "Northwind", "owner": owner, "timezone": "America/New_York", "country": "US",
        "sms_consent": "no",
    }  # fmt: skip


def _at(app: App, when: str | datetime) -> datetime:
    assert isinstance(app.clock, FixedClock)
    app.clock.set(parse_instant(when) if isinstance(when, str) else when)
    return app.clock.now()


def _due(app: App, lead_ids: list[str], at: datetime) -> None:
    with app.engine.begin() as conn:
        conn.execute(update(EnrollmentT).where(EnrollmentT.c.lead_id.in_(lead_ids)).values(next_due_at=at))


def _enrollment(app: App, lead_id: str) -> int:
    with app.engine.connect() as conn:
        found: int = conn.execute(select(EnrollmentT.c.id).where(EnrollmentT.c.lead_id == lead_id)).scalar_one()
    return found


def _past_year(app: App, monday: datetime) -> None:
    """A year of work before the scenario, so that what grows with history is there to be scanned."""
    leads = [_lead(f"H{n:04d}", ("alice", "bob")[n % 2]) for n in range(PAST_LEADS)]
    report = import_leads(app.engine, list(enumerate(leads, start=2)), app.settings, monday)
    assert not report.rejected, report.rejected
    with app.engine.begin() as conn:
        version = conn.execute(select(EnrollmentT.c.version_id).limit(1)).scalar_one()
        conn.execute(
            insert(EnrollmentT),
            [
                {"lead_id": lead["id"], "sequence_id": "x-email", "version_id": version, "kind": "outbound",
                 "state": "finished", "enrolled_at": monday - timedelta(days=365), "dropped_channels": [],
                 "finished_at": monday - timedelta(days=2), "outcome": "completed"}
                for lead in leads
            ],
        )  # fmt: skip
        ids = dict(
            conn.execute(select(EnrollmentT.c.lead_id, EnrollmentT.c.id).where(EnrollmentT.c.state == "finished")).all()
        )
        touches, stories, blocked = [], [], []
        for n, lead in enumerate(leads):
            for k in range(PAST_TOUCHES):
                at = monday - timedelta(days=360 - k * 18, hours=n % 7)
                call = k % 4 == 3
                touches.append(
                    {"enrollment_id": ids[lead["id"]], "lead_id": lead["id"], "sequence_id": "x-email",
                     "step_id": f"s{k}", "step_index": k, "channel": Channel.CALL if call else Channel.EMAIL,
                     "status": (TouchStatus.DONE, TouchStatus.EXPIRED)[k % 2] if call else TouchStatus.SENT,
                     "owner": lead["owner"], "sender": None if call else lead["owner"], "due_at": at,
                     "sent_at": at, "done_at": at + timedelta(days=1) if call else None, "attempts": 1}
                )  # fmt: skip
                stories.append({"lead_id": lead["id"], "at": at, "kind": "touch", "detail": {"step": f"s{k}"}})
            blocked.append({"channel": Channel.EMAIL, "address": f"gone{n}@elsewhere.example", "reason": "bounced",
                            "created_at": monday})  # fmt: skip
        conn.execute(insert(TouchT), touches)
        conn.execute(insert(HistoryT), stories)
        conn.execute(insert(SuppressionT), blocked)
    if app.engine.dialect.name == "postgresql":
        with app.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")


@contextmanager
def _capture(engine: Engine, into: list[Statement], path: str) -> Iterator[None]:
    def listen(conn: Any, cursor: Any, sql: str, params: Any, context: Any, executemany: bool) -> None:
        into.append(Statement(path, sql, params[0] if executemany and params else params))

    event.listen(engine, "before_cursor_execute", listen)
    try:
        yield
    finally:
        event.remove(engine, "before_cursor_execute", listen)


def _build(project: Path, db_url: str) -> Scenario:
    config = yaml.safe_load((project / "config.yaml").read_text())
    for sender in config["senders"]:
        if sender["id"] == "bob":
            sender["daily_cap"] = 1
    (project / "config.yaml").write_text(yaml.safe_dump(config))
    for name, body in SEQUENCES.items():
        (project / "sequences" / f"{name}.yaml").write_text(body)
    app = make_app(project, db_url, MONDAY)
    rows = [_lead(lead_id, owner) for lead_id, (owner, _) in LEADS.items()]
    report = import_leads(app.engine, list(enumerate(rows, start=2)), app.settings, app.clock.now())
    assert not report.rejected, report.rejected
    for sequence in SEQUENCES:
        enroll(app, sequence, [lead for lead, (_, seq) in LEADS.items() if seq == sequence])
    _due(app, list(LEADS), LATER)
    monday = parse_instant(MONDAY)
    _past_year(app, monday)

    # Monday 10:00: the calls of T1 and T2 open; then D1 is claimed by a worker that dies.
    _due(app, ["T1", "T2"], monday + timedelta(hours=1))
    _at(app, monday + timedelta(hours=2))
    assert asyncio.run(run_once(app)).dispatch.tasks_opened == 2
    _due(app, ["D1"], monday + timedelta(hours=1))
    assert len(claim_batch(app, "dead-worker", _at(app, monday + timedelta(hours=2, minutes=1)), PassReport())) == 1

    now = parse_instant(THURSDAY)
    ids = {lead: _enrollment(app, lead) for lead in ("P1", "B0", "R1")}
    with app.engine.begin() as conn:
        # T2's task as migration 0007 leaves a task opened before it: undated.
        conn.execute(update(TouchT).where(TouchT.c.lead_id == "T2").values(expires_at=None))
        suppressions.add(conn, Channel.EMAIL, "s1@northwind.example", "unsubscribed", "S1", monday)
        enrollments.pause(conn, ids["P1"], now - timedelta(days=2))
        recycles.add(conn, "C1", "x-email", now - timedelta(hours=1), "test", None, monday)
        sent = {
            "enrollment_id": ids["B0"], "lead_id": "B0", "sequence_id": "x-email", "step_id": "e1",
            "step_index": 0, "channel": Channel.EMAIL, "status": TouchStatus.SENT, "owner": "bob", "sender": "bob",
            "due_at": now - timedelta(hours=1), "sent_at": now - timedelta(hours=1), "attempts": 1,
        }  # fmt: skip
        conn.execute(insert(TouchT).values(**sent))
        retry_id = conn.execute(
            insert(TouchT)
            .values(
                **{**sent, "enrollment_id": ids["R1"], "lead_id": "R1", "owner": "alice",
                   "sender": "alice", "status": TouchStatus.SCHEDULED, "sent_at": None, "error": "try again",
                   "message_id": "<r1@acme.example>"}
            )
            .returning(TouchT.c.id)
        ).scalar_one()  # fmt: skip
        conn.execute(
            update(EnrollmentT)
            .where(EnrollmentT.c.lead_id == "R1")
            .values(pending_touch_id=retry_id, next_due_at=now - timedelta(minutes=5))
        )
    _due(app, ["A1", "A2", "K1", "S1", "B1"], now - timedelta(minutes=5))

    statements: list[Statement] = []
    _at(app, now)
    with _capture(app.engine, statements, "sweep"):
        swept = sweep(app, now).as_json()
    claimed = PassReport()
    with _capture(app.engine, statements, "claim"):
        jobs = claim_batch(app, "worker", now, claimed)

    async def send_and_record() -> None:
        dispatcher, stack = await _with_transports(app)  # its transports; the claim is "worker"'s
        async with stack:
            await dispatcher.render_and_send(jobs)
            with _capture(app.engine, statements, "record"):
                await record_batch(app, "worker", jobs, claimed)

    asyncio.run(send_and_record())
    return Scenario(app, statements, claimed, swept)


@pytest.fixture
def scenario(project: Path, db_url: str) -> Iterator[Scenario]:
    built = _build(project, db_url)
    yield built
    built.app.close()


def _explained(sql: str) -> bool:
    """Statements that can read a table: every SELECT, UPDATE and DELETE, and an INSERT fed by a SELECT."""
    words = sql.lstrip().split(None, 1)
    first = words[0].upper() if words else ""
    return first in ("SELECT", "UPDATE", "DELETE", "WITH") or (first == "INSERT" and "SELECT" in sql.upper())


def _sqlite_plan(engine: Engine, statement: Statement) -> tuple[list[str], list[str]]:
    """(plan lines, problems): a `SCAN` of a checked table is a problem."""
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement.sql, statement.params).all()
        conn.rollback()
    lines = [str(row[3]) for row in rows]
    return lines, [line for line in lines if _sqlite_scans(line)]


def _sqlite_scans(line: str) -> bool:
    """`SCAN t` reads all of t (through an index or not); `SEARCH t USING ... (status=?)` reads all of
    one status, and unanalyzed SQLite chooses it blind (the plan does not show which status)."""
    if scan := re.match(r"SCAN (\w+)", line):
        return scan.group(1) in CHECKED
    search = re.match(r"SEARCH (\w+) USING .*?\((.*)\)$", line)
    if search is None:
        return False
    return _weak(search.group(1), set(re.findall(r"(\w+)\s*(?:[<>=]|IS\b|IN\b)", search.group(2))))


def _weak(table: str | None, columns: set[str], weak: set[str] = WEAK) -> bool:
    """An index condition on a table that grows with history, naming only a status or a channel (or `weak`)."""
    return table in GROWING and bool(columns) and columns <= weak


def _pg_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _pg_nodes(child)


def _pg_plan(engine: Engine, statement: Statement) -> tuple[list[str], list[str]]:
    """(plan lines, problems): on a checked table, a Seq Scan, an index scan whose condition leaves
    the index's first column free (a walk of the whole index), or one on a finished status alone."""
    with engine.connect() as conn:
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        raw = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement.sql, statement.params).scalar()
        indexes = {
            name: (table, re.search(r"USING \w+ \((\w+)", definition).group(1))  # type: ignore[union-attr]
            for name, table, definition in conn.exec_driver_sql(
                "SELECT indexname, tablename, indexdef FROM pg_indexes WHERE schemaname = current_schema()"
            )
        }
        conn.rollback()
    plan: Any = json.loads(raw) if isinstance(raw, str) else raw
    lines: list[str] = []
    problems: list[str] = []
    for node in _pg_nodes(plan[0]["Plan"]):
        kind, index = node["Node Type"], node.get("Index Name")
        table, first = indexes.get(index, (node.get("Relation Name"), None))
        cond = node.get("Index Cond") or node.get("Recheck Cond") or ""
        line = f"{kind} on {table} using {index} cond {cond} filter {node.get('Filter', '')}"
        lines.append(line if table else kind)
        if table not in CHECKED:
            continue
        columns = set(re.findall(r"\(*(\w+)\)*(?:::[a-z ]+?)?\s*(?:=|<>|<=|>=|<|>|IS\b)", cond))
        full = kind == "Seq Scan" or (index is not None and first not in columns)
        if full or (_weak(table, columns, WEAK | WHOSE) and HISTORICAL & set(re.findall(r"\w+", cond))):
            problems.append(line)
    return lines, problems


def _plans(scenario: Scenario) -> list[tuple[Statement, list[str], list[str]]]:
    engine = scenario.app.engine
    explain = _pg_plan if engine.dialect.name == "postgresql" else _sqlite_plan
    return [(s, *explain(engine, s)) for s in scenario.statements if _explained(s.sql)]


def _show(statement: Statement, lines: list[str]) -> str:
    plan = "\n    ".join(lines)
    return f"[{statement.path}] {' '.join(statement.sql.split())}\n  params: {statement.params}\n  plan:\n    {plan}"


def test_the_scenario_takes_every_branch_of_the_claim_and_the_sweep(scenario: Scenario) -> None:
    assert scenario.swept["unknown"] == 1  # D1's lease ran out
    assert scenario.swept["expired"] == 2  # T1, and T2 once dated
    assert scenario.swept["resumed"] == 1 and scenario.swept["recycled"] == 1  # P1, C1
    report = scenario.claim
    assert report.skipped == 1 and report.deferred >= 1  # S1 suppressed; B1 over bob's cap
    assert report.tasks_opened == 1 and report.sent["email"] >= 3  # K1's call; A1, A2, R1's retry, ...
    with scenario.app.engine.connect() as conn:
        retried = conn.execute(
            select(TouchT.c.status, TouchT.c.attempts).where(TouchT.c.message_id == "<r1@acme.example>")
        ).one()
    assert tuple(retried) == (TouchStatus.SENT, 2)
    paths = {s.path for s in scenario.statements}
    assert paths == {"sweep", "claim", "record"}


def test_no_statement_of_the_claim_or_the_sweep_scans_a_table(scenario: Scenario) -> None:
    """Neither touch, suppression nor history (which grow with every touch) nor enrollment, lead or recycle."""
    scans = [_show(s, lines) + "\n  scans: " + "; ".join(found) for s, lines, found in _plans(scenario) if found]
    assert not scans, f"{len(scans)} statements scan a table:\n\n" + "\n\n".join(scans)


def test_the_due_claim_is_an_index_range_scan_on_next_due_at(scenario: Scenario) -> None:
    due = [
        (s, lines)
        for s, lines, _ in _plans(scenario)
        if s.path == "claim" and re.search(r"FROM enrollment\s+WHERE", s.sql) and "next_due_at <=" in s.sql
    ]
    assert len(due) == 1, [s.sql for s, _ in due]
    statement, lines = due[0]
    ranged = [line for line in lines if "enrollment" in line and "next_due_at" in line]
    if scenario.app.engine.dialect.name == "sqlite":
        ranged = [line for line in ranged if line.startswith("SEARCH enrollment USING")]
    else:
        ranged = [line for line in ranged if line.startswith(("Index Scan", "Index Only Scan", "Bitmap"))]
    assert ranged, _show(statement, lines)
