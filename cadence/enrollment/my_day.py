"""My day: an SDR's open tasks for today, and everything the workspace shows when one is opened.

`my_day` lists the overdue tasks, then today's (each in the lead's own calendar), by due time
and then the hottest lead first. Each row carries what a rep decides on before dialling: who
the lead is, the step, the lead's local time and whether the step's window is open for that
lead right now (their zone, weekdays and holidays), so nobody is called at 7 am or on a
holiday. The list is one query however many tasks there are; calendars and specs are cached.

`task_detail` is the opened task: its script, the lead's last touches and what the lead wrote
back (inbox replies and SMS replies), read in one connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from cadence.names import TASK_CHANNELS, Event, HistoryKind, InboundKind, TouchStatus
from cadence.store import enrollments, history, inbound, leads, touches, views
from cadence.store.rows import LeadRow, TouchRow

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from cadence.app import App
    from cadence.plan.planner import Planner
    from cadence.plan.timing import Window

Due = Literal["overdue", "today", "later"]
RECENT_TOUCHES = 5
RECENT_REPLIES = 5
_RANK: dict[Due, int] = {"overdue": 0, "today": 1, "later": 2}
# Touches that happened (or may have): what a rep wants to know before calling.
_HAPPENED = (TouchStatus.SENT, TouchStatus.DONE, TouchStatus.EXPIRED, TouchStatus.FAILED, TouchStatus.UNKNOWN)


@dataclass(frozen=True)
class Reach:
    """Whether the lead may be called now: inside the step's window, on an allowed day of their calendar."""

    timezone: str
    open_now: bool
    opens_at: datetime | None  # when the window next opens, if it is closed now


@dataclass(frozen=True)
class DayTask:
    """One row of My day."""

    id: int
    owner: str | None
    due: Due
    due_at: datetime
    lead_id: str
    lead_name: str
    company: str | None
    job_title: str | None
    score: float | None
    sequence: str
    step: str
    channel: str
    subject: str | None  # the task's own title ("Connect on LinkedIn"), if the step has one
    reach: Reach

    @property
    def order(self) -> tuple[int, datetime, float, int]:
        return (_RANK[self.due], self.due_at, -(self.score or 0.0), self.id)


@dataclass(frozen=True)
class MyDay:
    owner: str | None  # None: everyone's (a manager's view)
    now: datetime
    tasks: list[DayTask]

    @property
    def overdue(self) -> int:
        return sum(1 for t in self.tasks if t.due == "overdue")

    @property
    def today(self) -> int:
        return sum(1 for t in self.tasks if t.due == "today")


@dataclass(frozen=True)
class PastTouch:
    at: datetime
    channel: str
    step: str
    status: str
    subject: str | None
    disposition: str | None
    note: str | None


@dataclass(frozen=True)
class Reply:
    """Something the lead wrote: an email read from the inbox, or an SMS."""

    at: datetime
    via: Literal["email", "sms"]
    kind: str
    subject: str | None
    text: str


@dataclass(frozen=True)
class TaskDetail:
    """An opened task: the script and what happened with the lead so far."""

    id: int
    owner: str | None
    status: str
    due_at: datetime
    sequence: str
    step: str
    channel: str
    subject: str | None
    script: str | None
    disposition: str | None
    note: str | None
    done_at: datetime | None
    lead: LeadRow
    reach: Reach
    touches: list[PastTouch]
    replies: list[Reply]

    @property
    def is_open(self) -> bool:
        return self.status == TouchStatus.TASK_OPEN


def step_window(planner: Planner, step_id: str) -> Window:
    """The window a task's step is worked in (a rule's note to the owner has no step: the calendar's)."""
    try:
        return planner.window_for(planner.sequence.step(step_id))
    except KeyError:
        return planner.calendar.window


def reach(planner: Planner, step_id: str, now: datetime) -> Reach:
    """Is the step's window open for this lead now, and if not, when it next opens."""
    cal, window = planner.calendar, step_window(planner, step_id)
    if cal.is_open(now, window):
        return Reach(str(cal.tz), True, None)
    today = cal.local_date(now)
    start = cal.bounds(today, window)[0] if cal.is_allowed(today) else None
    if start is None or start <= now:
        start = cal.bounds(cal.next_allowed(today), window)[0]
    return Reach(str(cal.tz), False, start)


def _planner(app: App, conn: Connection, version_id: int, lead: LeadRow) -> Planner:
    spec, _ = app.specs.get(conn, version_id)
    return app.planner(spec, lead.timezone, lead.country, lead.region)


def my_day(app: App, owner: str | None, *, now: datetime | None = None, include_later: bool = False) -> MyDay:
    """The open tasks of `owner` (everyone's with None) that are overdue or due today, in working order."""
    now = now or app.clock.now()
    rows: list[DayTask] = []
    with app.engine.connect() as conn:
        for task, lead, version_id in views.open_tasks(conn, owner):
            planner = _planner(app, conn, version_id, lead)
            cal = planner.calendar
            due_day, today = cal.local_date(task.due_at), cal.local_date(now)
            due: Due = "overdue" if due_day < today else ("today" if due_day == today else "later")
            if due == "later" and not include_later:
                continue
            rows.append(
                DayTask(
                    id=task.id, owner=task.owner, due=due, due_at=task.due_at, lead_id=lead.id, lead_name=lead.name,
                    company=lead.company, job_title=lead.title, score=lead.score, sequence=task.sequence_id,
                    step=task.step_id, channel=task.channel, subject=task.subject,
                    reach=reach(planner, task.step_id, now),
                )
            )  # fmt: skip
    rows.sort(key=lambda t: t.order)
    return MyDay(owner, now, rows)


def following(before: Sequence[DayTask], after: Sequence[DayTask], done: int) -> DayTask | None:
    """The task to open once `done` is logged or snoozed: the one after it in the list as it was, else the first."""
    was = next((t for t in before if t.id == done), None)
    rest = [t for t in after if t.id != done]
    if was is not None:
        later = [t for t in rest if t.order > was.order]
        if later:
            return later[0]
    return rest[0] if rest else None


def _touches(rows: list[TouchRow], task_id: int) -> list[PastTouch]:
    happened = [t for t in rows if t.id != task_id and t.status in _HAPPENED]
    happened.sort(key=lambda t: (t.done_at or t.sent_at or t.due_at, t.id), reverse=True)
    return [
        PastTouch(t.done_at or t.sent_at or t.due_at, t.channel, t.step_id, t.status, t.subject, t.disposition, t.note)
        for t in happened[:RECENT_TOUCHES]
    ]


def _replies(conn: Connection, lead_id: str) -> list[Reply]:
    mail = [
        Reply(m.read_at, "email", m.kind, m.subject, m.text or "")
        for m in inbound.of_lead(conn, lead_id, limit=RECENT_REPLIES)
        if m.kind in (InboundKind.REPLY, InboundKind.OUT_OF_OFFICE) and m.text
    ]
    texts = [
        Reply(h.at, "sms", Event.SMS_REPLY, None, str(h.detail.get("body") or ""))
        for h in history.of_lead(conn, lead_id)
        if h.kind == HistoryKind.EVENT and h.detail.get("event") == Event.SMS_REPLY
    ]
    return sorted(mail + texts, key=lambda r: r.at, reverse=True)[:RECENT_REPLIES]


def task_detail(app: App, task_id: int, *, now: datetime | None = None) -> TaskDetail | None:
    """A call or manual task with its lead's recent story; None when there is no such task."""
    now = now or app.clock.now()
    with app.engine.connect() as conn:
        task = touches.get(conn, task_id)
        if task is None or task.channel not in TASK_CHANNELS:
            return None
        lead = leads.get(conn, task.lead_id)
        enrollment = enrollments.get(conn, task.enrollment_id)
        assert lead is not None and enrollment is not None
        planner = _planner(app, conn, enrollment.version_id, lead)
        past = _touches(views.touches_of(conn, lead.id), task.id)
        replies = _replies(conn, lead.id)
    return TaskDetail(
        id=task.id, owner=task.owner, status=task.status, due_at=task.due_at, sequence=task.sequence_id,
        step=task.step_id, channel=task.channel, subject=task.subject, script=task.body,
        disposition=task.disposition, note=task.note, done_at=task.done_at, lead=lead,
        reach=reach(planner, task.step_id, now), touches=past, replies=replies,
    )  # fmt: skip


def worker_for(app: App, user_id: str) -> str | None:
    """Who `log_disposition` records as having worked a task: the signed-in user (an SDR, or a manager
    working it for its owner), so the lead's history says who really called."""
    known = any(s.id == user_id for s in app.settings.senders) or app.settings.user(user_id) is not None
    return user_id if known else None
