"""A realistic store for the workspace's browser tests: the starter's leads, ten days into outbound-saas.

The eight good leads of the starter's `leads.csv` (Alice: Dana Wu in New York, Sam Patel in Los
Angeles, Mia Jones in Sydney, Ana Costa in Sao Paulo; Bob: Priya Nair in Kolkata, Oliver Smith
in London, Leo Garcia in Chicago, Chris Lee in New York) are enrolled in outbound-saas on Monday
2026-11-16 and the real engine runs hour by hour until TODAY, Wednesday 2026-11-25 at 1 pm in New
York. Every working day at 5 pm (New York) until Monday the reps log the tasks they have open
(mostly "no answer"; Oliver is interested and books a meeting, Chris's number is wrong); Priya
writes back on Thursday (read from the inbox), and Chris's address bounces on Friday.

What is left for TODAY: Alice has four open tasks (Mia's LinkedIn task and the second calls of
Dana and Sam, overdue since Tuesday, then Ana's second call, due today) and Bob two.

`build` makes this once (about 3 s); `install` copies it into a test's own project and SQLite
file, so every test starts from the same store and may change it freely.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select

from cadence.app import App
from cadence.clock import FixedClock, parse_instant
from cadence.engine.runner import run_once
from cadence.enrollment.enroll import enroll
from cadence.enrollment.lead_import import import_leads, read_rows
from cadence.outcomes.dispositions import log_disposition
from cadence.outcomes.events import record_event
from cadence.outcomes.inbound_mail import Source, take_in
from cadence.store.db import make_engine, upgrade
from cadence.store.tables import LeadT, TouchT
from tests.conftest import ROOT
from tests.integration.test_workspace_auth import ENV, PASSWORDS, with_users

__all__ = ["ENV", "PASSWORDS", "TODAY", "Built", "build", "install", "reply_mail"]

ENROLL_AT = "2026-11-16T08:00:00-05:00"  # a Monday, before anyone's window
LAST_ROUND = "2026-11-24T00:00:00-05:00"  # the reps log their open tasks every day until Monday
TODAY = "2026-11-25T13:00:00-05:00"  # Wednesday: 1 pm in New York, 10 am in Los Angeles, 3 pm in Sao Paulo
SEQUENCE = "outbound-saas"
NEW_YORK = ZoneInfo("America/New_York")
LOGGED = {
    ("L4", "call-1"): "connected_interested",
    ("L2", "call-1"): "left_voicemail",
    ("L8", "call-1"): "wrong_number",
}
EVENTS = {  # New York time -> (lead, what happens)
    "2026-11-17T16:00": ("L4", "meeting_booked"),
    "2026-11-19T10:00": ("L3", "reply"),
    "2026-11-20T11:00": ("L8", "bounced"),
}
PRIYA_WROTE = "Thanks Alice. We are mid-way through our planning cycle; could you check back in Q1?\n\nPriya"


@dataclass(frozen=True)
class Built:
    """The template: a project folder (config.yaml with the users) and its SQLite file."""

    project: Path
    database: Path


def _at(clock: FixedClock, when: str) -> None:
    clock.set(parse_instant(when))


def _intro(app: App, lead: str) -> str:
    with app.engine.connect() as conn:
        query = select(TouchT.c.message_id).where(TouchT.c.lead_id == lead, TouchT.c.step_id == "intro")
        message_id = conn.execute(query).scalar_one()
    assert message_id, f"{lead}'s intro has no Message-ID"
    return str(message_id)


def reply_mail(app: App, lead: str, text: str, *, mid: str, date: str = "Wed, 25 Nov 2026 12:40:00 -0500") -> bytes:
    """A reply from the lead, threaded on its intro's Message-ID, as a mail client would write it."""
    with app.engine.connect() as conn:
        row = conn.execute(select(LeadT.c.email, LeadT.c.first_name, LeadT.c.last_name).where(LeadT.c.id == lead)).one()
    msg = EmailMessage()
    msg["From"] = f"{row.first_name} {row.last_name} <{row.email}>"
    msg["To"] = "Alice Moreno <alice@acme.example>"
    msg["Subject"] = "Re: your note"
    msg["Message-ID"] = mid
    msg["Date"] = date
    msg["In-Reply-To"] = _intro(app, lead)
    msg["References"] = _intro(app, lead)
    msg.set_content(text + "\n\nOn Mon, Alice Moreno <alice@acme.example> wrote:\n> Hi there\n> quick question\n")
    return msg.as_bytes()


def _log_open_tasks(app: App) -> None:
    with app.engine.connect() as conn:
        query = select(TouchT.c.id, TouchT.c.lead_id, TouchT.c.step_id, TouchT.c.channel)
        found = conn.execute(query.where(TouchT.c.status == "task_open").order_by(TouchT.c.id)).all()
    for task_id, lead, step, channel in found:
        code = LOGGED.get((lead, step), "done" if channel == "task" else "no_answer")
        log_disposition(app, task_id, code)


def _happen(app: App, lead: str, what: str) -> None:
    if what == "reply":
        raw = reply_mail(
            app, lead, PRIYA_WROTE, mid="<q1-planning@globex.example>", date="Thu, 19 Nov 2026 20:30:00 +0530"
        )
        out = take_in(app, raw, Source("file", label="priya.eml"))
        assert out.lead == lead, out.as_json()
    else:
        record_event(app, lead, what, source="calendar" if what == "meeting_booked" else "inbox")


def build(root: Path) -> Built:
    """The starter project and a store ten days into outbound-saas, in `root` (see the module's docstring)."""
    project = root / "project"
    project.mkdir(parents=True)
    shutil.copy(ROOT / "config.yaml", project / "config.yaml")
    shutil.copytree(ROOT / "sequences", project / "sequences")
    shutil.copytree(ROOT / "templates", project / "templates")
    shutil.copy(ROOT / "examples" / "leads.csv", project / "leads.csv")
    with_users(project)
    database = root / "cadence.db"
    engine = make_engine(f"sqlite:///{database}")
    upgrade(engine)
    engine.dispose()
    clock = FixedClock(parse_instant(ENROLL_AT))
    app = App.load(project / "config.yaml", clock, database_url=f"sqlite:///{database}", environ=ENV)
    try:
        report = import_leads(app.engine, read_rows(project / "leads.csv"), app.settings, clock.now())
        assert report.imported == 8, report.as_json()  # four of the twelve rows are wrong on purpose
        leads = [f"L{n}" for n in range(1, 9)]
        assert enroll(app, SEQUENCE, leads).refused == []
        events = {parse_instant(f"{at}:00-05:00"): happening for at, happening in EVENTS.items()}
        now, end, last_round = clock.now(), parse_instant(TODAY), parse_instant(LAST_ROUND)
        while now < end:
            now = min(now + timedelta(hours=1), end)
            clock.set(now)
            for at in sorted(e for e in events if e <= now):
                _happen(app, *events.pop(at))
            asyncio.run(run_once(app))
            if _new_york_hour(now) == 17 and now < last_round:
                _log_open_tasks(app)
        assert not events
    finally:
        app.close()
    assert not database.with_name(database.name + "-wal").exists()  # closed cleanly: one file holds it all
    return Built(project, database)


def _new_york_hour(at: datetime) -> int:
    return at.astimezone(NEW_YORK).hour


def install(built: Built, project: Path, database_url: str) -> None:
    """Copy the template into a test's project folder (from the `project` fixture) and SQLite file (`sqlite_url`)."""
    shutil.copy(built.project / "config.yaml", project / "config.yaml")
    target = Path(database_url.removeprefix("sqlite:///"))
    shutil.copy(built.database, target)
