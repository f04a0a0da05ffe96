"""My day in the web workspace: the list, an opened task, logging a disposition and snoozing, over real HTTP.

Alice owns Dana Wu (Denver, a hostile company name, a phone) and Kim Lee (New York, the hotter
lead); Bob owns Max Roe. Each gets the intro on Monday, then the call-1 task opens. Logging and
snoozing write, so those tests run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from sqlalchemy import event, select

from cadence.app import App
from cadence.clock import FixedClock, parse_instant
from cadence.engine.runner import run_once
from cadence.engine.sweep import sweep
from cadence.enrollment.enroll import enroll
from cadence.enrollment.lead_import import import_leads
from cadence.enrollment.my_day import my_day
from cadence.outcomes.inbound_mail import Source, take_in
from cadence.outcomes.sms_replies import receive_sms
from cadence.store.tables import HistoryT, TouchT
from cadence.web import create_app
from tests.http_server import Switchboard, serving
from tests.integration.test_workspace_auth import ENV, csrf_of, sign_in, with_users

ENROLL_AT = "2026-11-23T08:00:00-05:00"  # a Monday, before the window
SEND_AT = "2026-11-23T13:00:00-05:00"  # the intros go out
OPEN_AT = "2026-11-23T14:00:00-05:00"  # the call-1 tasks open
WORK_AT = "2026-11-23T16:41:00-05:00"  # 2:41 pm in Denver, 4:41 pm in New York
HOSTILE = "<script>alert(1)</script>"
LEADS = [
    {"id": "L1", "email": "dana@northwind.example", "first_name": "Dana", "last_name": "Wu", "company": HOSTILE,
     "title": "VP Sales", "owner": "alice", "timezone": "America/Denver", "phone": "+13035550142", "score": "80"},
    {"id": "L2", "email": "kim@northwind.example", "first_name": "Kim", "last_name": "Lee", "company": "Northwind",
     "title": "Head of Sales", "owner": "alice", "timezone": "America/New_York", "score": "90"},
    {"id": "L3", "email": "max@other.example", "first_name": "Max", "last_name": "Roe", "company": "Other",
     "owner": "bob", "timezone": "America/Denver"},
]  # fmt: skip
HX = {"HX-Request": "true"}


@dataclass
class Desk:
    client: httpx.Client
    app: App
    tasks: dict[str, int]  # lead id -> its open call-1 task

    def at(self, when: str | datetime) -> None:
        assert isinstance(self.app.clock, FixedClock)
        self.app.clock.set(parse_instant(when) if isinstance(when, str) else when)

    def token(self, page: str = "/today") -> str:
        return csrf_of(self.client.get(page).text)

    def touch(self, task_id: int) -> dict[str, object]:
        with self.app.engine.connect() as conn:
            return dict(conn.execute(select(TouchT).where(TouchT.c.id == task_id)).mappings().one())

    def history(self, lead: str, kind: str) -> list[dict[str, object]]:
        with self.app.engine.connect() as conn:
            query = select(HistoryT).where(HistoryT.c.lead_id == lead, HistoryT.c.kind == kind).order_by(HistoryT.c.id)
            return [dict(row) for row in conn.execute(query).mappings()]


def _started(project: Path, db_url: str) -> tuple[App, dict[str, int]]:
    with_users(project)
    app = App.load(project / "config.yaml", FixedClock(parse_instant(ENROLL_AT)), database_url=db_url, environ=ENV)
    rows = [(i + 2, {**row, "country": "US"}) for i, row in enumerate(LEADS)]
    assert import_leads(app.engine, rows, app.settings, app.clock.now()).imported == len(LEADS)
    assert enroll(app, "outbound-saas", [row["id"] for row in LEADS]).refused == []
    for when in (SEND_AT, OPEN_AT):
        assert isinstance(app.clock, FixedClock)
        app.clock.set(parse_instant(when))
        asyncio.run(run_once(app))
    with app.engine.connect() as conn:
        opened = (TouchT.c.step_id == "call-1", TouchT.c.status == "task_open")
        query = select(TouchT.c.lead_id, TouchT.c.id).where(*opened)
        tasks = {lead: task for lead, task in conn.execute(query)}
    assert set(tasks) == {"L1", "L2", "L3"}
    assert isinstance(app.clock, FixedClock)
    app.clock.set(parse_instant(WORK_AT))
    return app, tasks


@pytest.fixture
def desk(project: Path, db_url: str) -> Iterator[Desk]:
    app, tasks = _started(project, db_url)
    switchboard = Switchboard()
    switchboard.target = create_app(app, environ=ENV)
    with serving(switchboard) as base, httpx.Client(base_url=base, timeout=30) as client:
        yield Desk(client, app, tasks)
    app.close()


@pytest.fixture
def quick_desk(project: Path, sqlite_url: str) -> Iterator[Desk]:
    """The same desk on SQLite only, for what only reads."""
    app, tasks = _started(project, sqlite_url)
    switchboard = Switchboard()
    switchboard.target = create_app(app, environ=ENV)
    with serving(switchboard) as base, httpx.Client(base_url=base, timeout=30) as client:
        yield Desk(client, app, tasks)
    app.close()


def _list(html: str) -> str:
    return html.split('<div id="task-list"', 1)[1].split('<section id="task-pane"', 1)[0]


def _rows(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'<tr data-task="(\d+)"', html)]


# -- who may see what -------------------------------------------------------------------------------


def test_anonymous_visitors_are_sent_to_sign_in_and_their_actions_refused(quick_desk: Desk) -> None:
    client, task = quick_desk.client, quick_desk.tasks["L1"]
    assert client.get("/today").headers["location"] == "/login?next=/today"
    assert client.get(f"/tasks/{task}").headers["location"] == f"/login?next=/tasks/{task}"
    for action in ("log", "snooze"):
        assert client.post(f"/tasks/{task}/{action}", data={"code": "no_answer", "until": "1h"}).status_code == 401
    assert quick_desk.touch(task)["status"] == "task_open"


def test_an_sdr_sees_only_their_own_day_and_tasks(quick_desk: Desk) -> None:
    client, tasks = quick_desk.client, quick_desk.tasks
    sign_in(client, "alice")
    page = client.get("/today")
    assert page.status_code == 200
    assert set(_rows(page.text)) == {tasks["L1"], tasks["L2"]}
    assert "Max Roe" not in page.text
    assert client.get("/today?owner=alice").status_code == 200
    assert client.get("/today?owner=bob").status_code == 403
    for headers in ({}, HX):
        refused = client.get(f"/tasks/{tasks['L3']}", headers=headers)
        assert refused.status_code == 403 and "another rep" in refused.text and "Max Roe" not in refused.text
    assert client.get("/tasks/99999", headers=HX).status_code == 404


def test_a_manager_sees_everyones_day_or_one_reps(quick_desk: Desk) -> None:
    client, tasks = quick_desk.client, quick_desk.tasks
    sign_in(client, "maria")
    assert set(_rows(client.get("/today").text)) == set(tasks.values())
    bobs = client.get("/today?owner=bob")
    assert bobs.status_code == 200 and _rows(bobs.text) == [tasks["L3"]] and "bob's day" in bobs.text
    pane = client.get(f"/tasks/{tasks['L1']}", headers=HX)
    assert pane.status_code == 200 and f'data-task-id="{tasks["L1"]}"' in pane.text


# -- the list ---------------------------------------------------------------------------------------


def test_my_day_shows_each_lead_with_local_time_and_whether_it_is_callable(quick_desk: Desk) -> None:
    client, tasks = quick_desk.client, quick_desk.tasks
    sign_in(client, "alice")
    page = client.get("/today").text
    assert _rows(page) == [tasks["L2"], tasks["L1"]]  # due together: the hotter lead first
    assert '<a href="/leads/L1">Dana Wu</a>' in page and "VP Sales" in page and "Head of Sales" in page
    assert "2:41 pm in Denver" in page and "4:41 pm in New York" in page
    assert _list(page).count("callable now") == 2
    assert '<script src="/static/today.js" defer></script>' in page and "data-keys" in page
    quick_desk.at("2026-11-23T17:30:00-05:00")  # 5:30 pm in New York: the window has closed there
    later = client.get("/today").text
    assert "3:30 pm in Denver" in later and "5:30 pm in New York" in later
    assert _list(later).count("callable now") == 1 and "opens 9:00 am Tue Nov 24, 2026" in _list(later)


def test_a_hostile_lead_field_is_shown_as_text(quick_desk: Desk) -> None:
    client, tasks = quick_desk.client, quick_desk.tasks
    sign_in(client, "alice")
    for answer in (client.get("/today"), client.get(f"/tasks/{tasks['L1']}", headers=HX)):
        assert HOSTILE not in answer.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in answer.text
    assert "<script>" not in client.get("/today").text


def test_overdue_tasks_come_first(desk: Desk) -> None:
    client, tasks = desk.client, desk.tasks
    sign_in(client, "alice")
    token = desk.token()
    snoozed = client.post(f"/tasks/{tasks['L1']}/snooze", data={"until": "tomorrow", "csrf": token}, headers=HX)
    assert snoozed.status_code == 200
    desk.at("2026-11-24T12:00:00-05:00")  # Tuesday: Kim's task is overdue, Dana's is due today
    page = client.get("/today").text
    assert _rows(page) == [tasks["L2"], tasks["L1"]]
    assert "1 overdue · 1 today" in page and "overdue since Mon Nov 23, 2026" in page


# -- an opened task ---------------------------------------------------------------------------------


def test_opening_a_task_shows_the_script_touches_replies_and_dispositions(quick_desk: Desk) -> None:
    client, app, tasks = quick_desk.client, quick_desk.app, quick_desk.tasks
    receive_sms(app, "+13035550142", "Call me after <b>4</b> please")  # an SMS reply: Dana's sequence goes on
    sign_in(client, "alice")
    detail = client.get(f"/tasks/{tasks['L1']}", headers=HX)
    assert detail.status_code == 200 and "<html" not in detail.text
    assert "Call me after &lt;b&gt;4&lt;/b&gt; please" in detail.text
    assert "email intro: sent" in detail.text  # the last touches
    assert "## Call Dana Wu at &lt;script&gt;" in detail.text  # the script, as text
    labels = list(app.settings.dispositions.values())
    for n, label in enumerate(labels[:9], start=1):
        assert f'data-key="{n}"><kbd>{n}</kbd> {label}' in detail.text
    assert 'name="note"' in detail.text and 'name="csrf"' in detail.text and 'value="tomorrow"' in detail.text
    full = client.get(f"/tasks/{tasks['L2']}")
    assert full.status_code == 200 and full.text.startswith("<!doctype html>")
    assert f'data-task-id="{tasks["L2"]}"' in full.text and "## Call Kim Lee at Northwind" in full.text
    assert re.search(rf'<tr data-task="{tasks["L2"]}" class="today selected">', full.text)


def test_an_email_reply_shows_on_the_task_it_opens_for_the_owner(quick_desk: Desk) -> None:
    client, app, tasks = quick_desk.client, quick_desk.app, quick_desk.tasks
    reply = EmailMessage()
    reply["From"], reply["To"], reply["Subject"] = "Kim <kim@northwind.example>", "alice@acme.example", "Re: hi"
    reply["Message-ID"] = "<r1@northwind.example>"
    reply.set_content("Thursday works for me.")
    take_in(app, reply.as_bytes(), Source("http"))  # the reply ends Kim's sequence and tells Alice
    sign_in(client, "alice")
    page = client.get("/today").text
    assert tasks["L2"] not in _rows(page)
    [notice] = [t for t in my_day(app, "alice").tasks if t.lead_id == "L2"]
    pane = client.get(f"/tasks/{notice.id}", headers=HX).text
    assert "Thursday works for me." in pane and "Re: hi" in pane
    cancelled = client.get(f"/tasks/{tasks['L2']}", headers=HX).text
    assert "Thursday works for me." in cancelled and "(cancelled)" in cancelled and 'name="code"' not in cancelled


# -- logging a disposition --------------------------------------------------------------------------


def test_logging_runs_the_rules_and_opens_the_next_task_in_place(desk: Desk) -> None:
    client, tasks = desk.client, desk.tasks
    sign_in(client, "alice")
    token = desk.token()
    form = {"code": "no_answer", "note": "rang out <twice>", "csrf": token}
    answer = client.post(f"/tasks/{tasks['L2']}/log", data=form, headers=HX)
    assert answer.status_code == 200 and "<html" not in answer.text
    assert f'data-task-id="{tasks["L1"]}"' in answer.text  # the next task, in the pane
    assert 'id="task-list" hx-swap-oob="true"' in answer.text and _rows(answer.text) == [tasks["L1"]]
    assert "done: No answer" in answer.text
    assert re.search(r"next step due \d+:\d\d [ap]m \w{3} \w{3} \d+, 2026 in New York", answer.text)  # the lead's clock
    done = desk.touch(tasks["L2"])
    assert done["status"] == "done" and done["disposition"] == "no_answer" and done["note"] == "rang out <twice>"
    [logged] = desk.history("L2", "disposition")
    assert logged["detail"]["by"] == "alice"  # type: ignore[index]
    plain = client.post(f"/tasks/{tasks['L1']}/log", data={"code": "connected_interested", "csrf": token})
    assert plain.status_code == 303 and plain.headers["location"] == "/today"
    assert desk.touch(tasks["L1"])["disposition"] == "connected_interested"
    assert "Nothing due" in client.get("/today").text


def test_a_manager_may_log_a_reps_task(desk: Desk) -> None:
    client, tasks = desk.client, desk.tasks
    sign_in(client, "maria")
    token = desk.token("/today?owner=bob")
    answer = client.post(f"/tasks/{tasks['L3']}/log", data={"code": "left_voicemail", "view": "bob", "csrf": token})
    assert answer.status_code == 303 and answer.headers["location"] == "/today?owner=bob"
    assert desk.touch(tasks["L3"])["disposition"] == "left_voicemail"
    logged = desk.history("L3", "disposition")
    assert logged[-1]["detail"]["by"] == "maria" and logged[-1]["cause"] == "logged by maria"  # who really called


def test_refused_logs_change_nothing_and_say_why(desk: Desk) -> None:
    client, tasks = desk.client, desk.tasks
    sign_in(client, "alice")
    token = desk.token()
    unknown = client.post(f"/tasks/{tasks['L1']}/log", data={"code": "teleported", "csrf": token}, headers=HX)
    assert unknown.status_code == 422 and "Unknown disposition" in unknown.text
    assert f'data-task-id="{tasks["L1"]}"' in unknown.text  # the task stays open in the pane
    forged = client.post(f"/tasks/{tasks['L1']}/log", data={"code": "no_answer"}, headers=HX)
    assert forged.status_code == 403
    others = client.post(f"/tasks/{tasks['L3']}/log", data={"code": "no_answer", "csrf": token}, headers=HX)
    assert others.status_code == 403 and "another rep" in others.text and "Max Roe" not in others.text
    assert client.get("/today?owner=bob").status_code == 403
    for lead in ("L1", "L3"):
        assert desk.touch(tasks[lead])["status"] == "task_open"
    # Bob logs his task; Alice (or a stale page) cannot log it again.
    client.cookies.clear()
    sign_in(client, "bob")
    bob_token = desk.token()
    assert client.post(f"/tasks/{tasks['L3']}/log", data={"code": "no_answer", "csrf": bob_token}).status_code == 303
    again = client.post(f"/tasks/{tasks['L3']}/log", data={"code": "not_interested", "csrf": bob_token}, headers=HX)
    assert again.status_code == 409 and "already logged (No answer)" in again.text
    assert desk.touch(tasks["L3"])["disposition"] == "no_answer"
    plain = client.post(f"/tasks/{tasks['L3']}/log", data={"code": "not_interested", "csrf": bob_token})
    assert plain.status_code == 409 and "<!doctype html>" in plain.text


# -- snoozing ---------------------------------------------------------------------------------------


def test_snoozing_moves_the_task_in_the_leads_calendar(desk: Desk) -> None:
    client, tasks = desk.client, desk.tasks
    sign_in(client, "alice")
    token = desk.token()
    now = desk.app.clock.now()
    hour = client.post(f"/tasks/{tasks['L2']}/snooze", data={"until": "1h", "csrf": token}, headers=HX)
    assert hour.status_code == 200 and "Snoozed Kim Lee until 5:41 pm Mon Nov 23, 2026 in New York" in hour.text
    assert desk.touch(tasks["L2"])["due_at"] == now + timedelta(hours=1)
    assert f'data-task-id="{tasks["L1"]}"' in hour.text  # the next task opens
    assert _rows(hour.text) == [tasks["L1"], tasks["L2"]]  # still today, now after Dana's
    tomorrow = client.post(f"/tasks/{tasks['L1']}/snooze", data={"until": "tomorrow", "csrf": token}, headers=HX)
    assert tomorrow.status_code == 200 and "9:00 am Tue Nov 24, 2026 in Denver" in tomorrow.text
    assert desk.touch(tasks["L1"])["due_at"] == parse_instant("2026-11-24T09:00:00-07:00")
    assert _rows(tomorrow.text) == [tasks["L2"]]  # Dana's task left today's list
    [snooze] = [h for h in desk.history("L1", "action") if h["detail"]["action"] == "snoozed"]  # type: ignore[index]
    assert snooze["cause"] == "snoozed by alice"
    dated = client.post(f"/tasks/{tasks['L2']}/snooze", data={"until": "2026-12-01", "csrf": token})
    assert dated.status_code == 303
    assert desk.touch(tasks["L2"])["due_at"] == parse_instant("2026-12-01T09:00:00-05:00")


def test_a_snooze_to_a_day_off_or_the_past_is_refused(desk: Desk) -> None:
    client, tasks = desk.client, desk.tasks
    sign_in(client, "alice")
    token = desk.token()
    before = desk.touch(tasks["L1"])["due_at"]
    for until, why in (
        ("2026-11-28", "not a working day"),  # a Saturday
        ("2026-11-26", "not a working day"),  # Thanksgiving
        ("2026-11-20", "already started"),
        ("next week", "1h, tomorrow or a date"),
        ("2026-02-30", "not a date"),
    ):
        answer = client.post(f"/tasks/{tasks['L1']}/snooze", data={"until": until, "csrf": token}, headers=HX)
        assert answer.status_code == 422 and why in answer.text, (until, answer.text[:300])
    others = client.post(f"/tasks/{tasks['L3']}/snooze", data={"until": "1h", "csrf": token}, headers=HX)
    assert others.status_code == 403
    assert client.post(f"/tasks/{tasks['L1']}/snooze", data={"until": "1h"}, headers=HX).status_code == 403
    assert desk.touch(tasks["L1"])["due_at"] == before
    assert desk.touch(tasks["L3"])["due_at"] == before  # opened in the same run as Dana's, and left alone


def test_a_snoozed_task_expires_only_its_allowed_days_after_its_new_due_time(desk: Desk) -> None:
    client, tasks = desk.client, desk.tasks
    sign_in(client, "alice")
    token = desk.token()
    assert client.post(f"/tasks/{tasks['L1']}/snooze", data={"until": "2026-12-01", "csrf": token}).status_code == 303
    sweep(desk.app, parse_instant("2026-11-30T12:00:00-05:00"))  # Kim's task (not snoozed) is long past its days
    assert desk.touch(tasks["L2"])["status"] == "expired"
    assert desk.touch(tasks["L1"])["status"] == "task_open"
    sweep(desk.app, parse_instant("2026-12-03T18:30:00-05:00"))  # Thu 4:30 pm in Denver: still within its days
    assert desk.touch(tasks["L1"])["status"] == "task_open"
    sweep(desk.app, parse_instant("2026-12-03T19:30:00-05:00"))  # the window closed on the second allowed day
    assert desk.touch(tasks["L1"])["status"] == "expired"


def test_a_snooze_on_a_task_logged_meanwhile_is_refused(desk: Desk) -> None:
    client, tasks = desk.client, desk.tasks
    sign_in(client, "alice")
    token = desk.token()
    assert client.post(f"/tasks/{tasks['L1']}/log", data={"code": "no_answer", "csrf": token}).status_code == 303
    late = client.post(f"/tasks/{tasks['L1']}/snooze", data={"until": "1h", "csrf": token}, headers=HX)
    assert late.status_code == 409 and "already logged (No answer)" in late.text


# -- scale ------------------------------------------------------------------------------------------


def test_my_day_reads_two_hundred_tasks_in_a_few_queries(project: Path, sqlite_url: str) -> None:
    with_users(project)
    app = App.load(project / "config.yaml", FixedClock(parse_instant(ENROLL_AT)), database_url=sqlite_url, environ=ENV)
    try:
        rows = [
            (i + 2, {"id": f"P{i}", "email": f"p{i}@example.com", "first_name": f"P{i}", "company": f"Co {i}",
                     "owner": "alice", "timezone": "America/Chicago", "country": "US", "score": str(i % 97)})
            for i in range(200)
        ]  # fmt: skip
        assert import_leads(app.engine, rows, app.settings, app.clock.now()).imported == 200
        assert enroll(app, "outbound-saas", [f"P{i}" for i in range(200)]).refused == []
        clock = app.clock
        assert isinstance(clock, FixedClock)
        clock.set(parse_instant(SEND_AT))
        for _ in range(90):  # a sender sends 20 a minute: minute by minute until every call task is open
            asyncio.run(run_once(app))
            if len(my_day(app, "alice").tasks) == 200:
                break
            clock.set(clock.now() + timedelta(minutes=1))
        statements: list[str] = []
        event.listen(app.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
        day = my_day(app, "alice")
        assert len(day.tasks) == 200 and len(statements) <= 3
        scores = [t.score or 0 for t in day.tasks if t.due_at == day.tasks[0].due_at]
        assert scores == sorted(scores, reverse=True)
    finally:
        app.close()
