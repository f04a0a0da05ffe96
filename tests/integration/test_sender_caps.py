"""A mailbox's daily cap and per-minute pace, through a real SMTP server on loopback, on each store.

Excess waits for the next allowed slot; it is never dropped and never sent twice. The
mailbox's day is config.yaml's time zone, whatever the lead's.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import event, select

from cadence.app import App
from cadence.clock import FixedClock, parse_instant
from cadence.engine.runner import run_once
from cadence.enrollment.enroll import enroll
from cadence.enrollment.lead_import import import_leads
from cadence.store.tables import EnrollmentT, TouchT
from tests.conftest import make_app
from tests.smtp_sink import SmtpSink, point_project_at

ENROLL_AT = "2026-11-30T08:00:00-05:00"  # a Monday, before the window opens (New York)
ONE_EMAIL = (
    "id: one-email\nname: One email\nkind: outbound\nschedule: {spread: 0}\nsteps:\n"
    "  - {id: only, day: 1, channel: email, subject: hi, template: outbound-saas/bump.md.j2}\n"
)


def _project(project: Path, sink: SmtpSink, **alice: Any) -> None:
    point_project_at(project, sink, connections=2, rules=[])
    path = project / "config.yaml"
    config = yaml.safe_load(path.read_text())
    config["senders"][0].update(alice)  # alice
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    (project / "sequences" / "one-email.yaml").write_text(ONE_EMAIL)


def _enrolled(project: Path, db_url: str, count: int, zone: str = "America/New_York") -> App:
    app = make_app(project, db_url, ENROLL_AT)
    rows: list[tuple[int, dict[str, str | None]]] = [
        (
            i + 2,
            {
                "id": f"L{i}", "email": f"lead{i}@northwind.example", "first_name": f"Lead{i}",
                "company": "Northwind", "owner": "alice", "timezone": zone, "country": "US",
            },
        )
        for i in range(count)
    ]  # fmt: skip
    report = import_leads(app.engine, rows, app.settings, app.clock.now())
    assert not report.rejected, report.rejected
    assert len(enroll(app, "one-email", [f"L{i}" for i in range(count)]).enrolled) == count
    return app


def _pass_at(app: App, when: datetime) -> dict[str, Any]:
    assert isinstance(app.clock, FixedClock)
    app.clock.set(when)
    return asyncio.run(run_once(app)).dispatch.as_json()


def _touches(app: App) -> list[Any]:
    with app.engine.connect() as conn:
        return list(conn.execute(select(TouchT.c.lead_id, TouchT.c.status, TouchT.c.sent_at)).mappings())


def _waiting(app: App) -> list[datetime]:
    with app.engine.connect() as conn:
        rows = conn.execute(select(EnrollmentT.c.next_due_at).where(EnrollmentT.c.state == "active"))
        return sorted(due for (due,) in rows if due is not None)


def test_the_daily_cap_holds_the_excess_for_the_next_business_day_and_drops_none(
    project: Path, db_url: str, smtp_sink: SmtpSink
) -> None:
    _project(project, smtp_sink, daily_cap=3)
    app = _enrolled(project, db_url, 5)
    try:
        monday = _pass_at(app, parse_instant("2026-11-30T10:00:00-05:00"))
        assert monday["sent"] == {"email": 3} and monday["deferred"] == 2
        assert smtp_sink.count == 3
        tuesday_window = parse_instant("2026-12-01T09:00:00-05:00")
        waiting = _waiting(app)
        assert len(waiting) == 2 and all(w >= tuesday_window for w in waiting)  # tomorrow, inside the window

        later = _pass_at(app, parse_instant("2026-11-30T16:30:00-05:00"))  # still Monday: the cap still holds
        assert later["sent"] == {} and smtp_sink.count == 3

        tuesday = _pass_at(app, parse_instant("2026-12-01T10:00:00-05:00"))
        assert tuesday["sent"] == {"email": 2}
    finally:
        touches = _touches(app)
        app.close()
    assert Counter(m.rcpt_tos[0] for m in smtp_sink.received) == Counter(
        {f"lead{i}@northwind.example": 1 for i in range(5)}
    )  # every lead once
    assert Counter(t["status"] for t in touches) == Counter({"sent": 5})


def test_the_mailbox_day_is_config_time_zone_not_the_leads(project: Path, db_url: str, smtp_sink: SmtpSink) -> None:
    # Leads in Los Angeles: at 18:00 New York time on Monday their window is still open, but the
    # mailbox (config.yaml: America/New_York) has had its Monday; at 00:30 Tuesday New York time,
    # 21:30 Monday in LA, the lead's window is shut. The cap is per New York day throughout.
    _project(project, smtp_sink, daily_cap=2)
    app = _enrolled(project, db_url, 4, zone="America/Los_Angeles")
    try:
        first = _pass_at(app, parse_instant("2026-11-30T16:00:00-05:00"))  # 13:00 in LA
        assert first["sent"] == {"email": 2} and first["deferred"] == 2
        second = _pass_at(app, parse_instant("2026-12-01T13:00:00-05:00"))  # Tuesday: a new mailbox day
        assert second["sent"] == {"email": 2}
    finally:
        touches = _touches(app)
        app.close()
    days = Counter(t["sent_at"].astimezone(parse_instant(ENROLL_AT).tzinfo).date().isoformat() for t in touches)
    assert days == Counter({"2026-11-30": 2, "2026-12-01": 2})


def test_the_per_minute_pace_spreads_sends_and_sends_each_once(project: Path, db_url: str, smtp_sink: SmtpSink) -> None:
    _project(project, smtp_sink, per_minute=2)
    app = _enrolled(project, db_url, 7)
    start = parse_instant("2026-11-30T10:00:00-05:00")
    try:
        for second in range(0, 15 * 60, 20):  # a pass every 20 seconds for a quarter of an hour
            _pass_at(app, start + timedelta(seconds=second))
    finally:
        touches = _touches(app)
        app.close()
    sent = sorted(t["sent_at"] for t in touches if t["status"] == "sent")
    assert len(sent) == 7 and len(touches) == 7  # all of them, once each
    for i, at in enumerate(sent):  # never more than two in any minute
        assert sum(1 for other in sent[i:] if other - at < timedelta(minutes=1)) <= 2, sent
    assert smtp_sink.count == 7 and len(set(smtp_sink.message_ids)) == 7


def test_a_batch_over_the_cap_is_deferred_in_one_statement(project: Path, db_url: str, smtp_sink: SmtpSink) -> None:
    """One mailbox at its cap holds back nearly the whole batch: one UPDATE for all of it, not one a lead."""
    _project(project, smtp_sink, daily_cap=3)
    app = _enrolled(project, db_url, 40)
    deferring: list[int] = []  # how many enrollments each deferring statement carried

    def listen(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, executemany: bool) -> None:
        if re.match(r"UPDATE enrollment SET next_due_at=[^,]+ WHERE", statement):
            deferring.append(len(parameters) if executemany else 1)

    event.listen(app.engine, "before_cursor_execute", listen)
    try:
        monday = _pass_at(app, parse_instant("2026-11-30T10:00:00-05:00"))
    finally:
        event.remove(app.engine, "before_cursor_execute", listen)
    try:
        assert monday["sent"] == {"email": 3} and monday["deferred"] == 37
        assert deferring == [37]
        tuesday_window = parse_instant("2026-12-01T09:00:00-05:00")
        assert [w >= tuesday_window for w in _waiting(app)] == [True] * 37
    finally:
        app.close()
