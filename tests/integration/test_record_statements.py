"""The record path writes a batch in a few statements, not one a touch, on each store.

A relay that greylists most of a batch (451 at RCPT TO) makes each of those touches a
retry: their deferrals go out as one UPDATE. The rest are sent and complete their
sequence, and the completion rule recycles them: each kind of row in one statement.
The retries are then sent once each.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import event, select

from cadence.clock import parse_instant
from cadence.store.tables import HistoryT, LeadT, RecycleT, TouchT
from tests.integration.test_sender_caps import _enrolled, _pass_at, _project
from tests.smtp_sink import SmtpSink

LEADS, GREYLISTED = 40, 30
RECYCLE = {"when": {"event": "completed", "kind": "outbound"}, "then": {"recycle": "nurture-monthly", "after": "14d"}}


def _with_rules(project: Path, rules: list[dict[str, Any]]) -> None:
    path = project / "config.yaml"
    config = yaml.safe_load(path.read_text())
    config["rules"] = rules
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def test_a_greylisted_batch_is_recorded_in_one_statement_a_kind(
    project: Path, db_url: str, smtp_sink: SmtpSink
) -> None:
    """Sent, completed and recycled (config.yaml's usual end of an outbound sequence), or greylisted and
    retried: each kind of write goes out once for the batch, whatever its size."""
    _project(project, smtp_sink)
    _with_rules(project, [RECYCLE])
    app = _enrolled(project, db_url, LEADS)
    smtp_sink.defer(GREYLISTED)
    deferring: list[int] = []  # rows carried by each statement that pushes an enrollment's due time
    written: Counter[str] = Counter()  # statements per table written, during recording
    history_rows: list[int] = []  # rows carried by each INSERT INTO history

    def listen(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, executemany: bool) -> None:
        rows = len(parameters) if executemany else 1
        if re.match(r"UPDATE enrollment SET next_due_at=[^,]+ WHERE", statement):
            deferring.append(rows)
        if match := re.match(r"(?:INSERT INTO|UPDATE) (\w+)", statement):
            written[match.group(1)] += 1
        if statement.startswith("INSERT INTO history"):
            history_rows.append(rows)

    event.listen(app.engine, "before_cursor_execute", listen)
    try:
        first = _pass_at(app, parse_instant("2026-11-30T10:00:00-05:00"))
    finally:
        event.remove(app.engine, "before_cursor_execute", listen)
    done = LEADS - GREYLISTED
    try:
        assert first["sent"] == {"email": done} and first["retrying"] == GREYLISTED
        assert deferring == [GREYLISTED]  # every retry in one UPDATE
        # touch, finished, the completed event, the rule's action: one INSERT each, for every lead that completed
        assert history_rows == [done] * 4
        assert written["recycle"] == 1 and written["lead"] == 1  # the recycles, the leads' stages
        with app.engine.connect() as conn:
            statuses = Counter(s for (s,) in conn.execute(select(TouchT.c.status)))
            assert statuses == Counter({"sent": done, "scheduled": GREYLISTED})
            recycled = conn.execute(select(RecycleT.c.lead_id, RecycleT.c.sequence_id)).all()
            assert sorted(recycled) == sorted((f"L{i}", "nurture-monthly") for i in range(GREYLISTED, LEADS))
            stages = Counter(s for (s,) in conn.execute(select(LeadT.c.stage)))
            assert stages["nurture"] == done

        writes: list[tuple[str, int]] = []  # the retry pass's writes: (statement, rows it carried)

        def on_retry(_c: Any, _cur: Any, statement: str, parameters: Any, _ctx: Any, executemany: bool) -> None:
            if statement.startswith(("INSERT", "UPDATE", "DELETE")):
                writes.append((" ".join(statement.split()[:4]), len(parameters) if executemany else 1))

        event.listen(app.engine, "before_cursor_execute", on_retry)
        try:
            later = _pass_at(app, parse_instant("2026-11-30T11:00:00-05:00"))  # past every backoff
        finally:
            event.remove(app.engine, "before_cursor_execute", on_retry)
        # Claimed again, sent, recorded, completed and recycled: each write a set-based statement (1) or an
        # executemany over the batch, never one a touch.
        assert all(rows in (1, GREYLISTED) for _, rows in writes) and len(writes) < 20, writes
        touch_updates = [rows for statement, rows in writes if statement.startswith("UPDATE touch SET status=")]
        assert touch_updates.count(GREYLISTED) == 2  # claimed again (one UPDATE), then settled (one UPDATE)
        assert later["sent"] == {"email": GREYLISTED}
        with app.engine.connect() as conn:
            statuses = Counter(s for (s,) in conn.execute(select(TouchT.c.status)))
            kinds = conn.execute(select(HistoryT.c.lead_id, HistoryT.c.kind).order_by(HistoryT.c.id)).all()
            stages = Counter(s for (s,) in conn.execute(select(LeadT.c.stage)))
    finally:
        app.close()
    assert statuses == Counter({"sent": LEADS}) and stages["nurture"] == LEADS
    for i in range(LEADS):  # each lead's history reads as if its touch were recorded alone
        own = [kind for lead, kind in kinds if lead == f"L{i}"]
        assert own[-4:] == ["touch", "finished", "event", "action"], own
    assert Counter(m.rcpt_tos[0] for m in smtp_sink.received) == Counter(
        {f"lead{i}@northwind.example": 1 for i in range(LEADS)}
    )  # every lead once, the greylisted ones on their retry
