"""`make demo`: the whole job on the embedded default (SQLite, file outbox), start to finish.

It runs the commands a team would run (init, validate, import, enroll, preview), then
simulates ten weeks by moving the injected clock from one moment that matters to the
next (a touch falling due, a cool-off ending, a pause ending, a rep's next move) and
running one engine pass there. Along the way the reps act through the real commands:
`cadence log TASK_ID CODE` on call tasks and `cadence event LEAD EVENT` for an SMS STOP and
replies to nurture emails, while a reply, an out-of-office reply and a bounce arrive as raw
email that `cadence inbox process` reads, so every rule in config.yaml gets its turn. It ends with
a table per lead, the outbox counts and one lead's `cadence history`.

Everything is deterministic: the same story, to the minute, on every run.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.table import Table

from cadence.app import App
from cadence.cli import demo_mail
from cadence.clock import FixedClock, parse_instant
from cadence.engine.runner import RunReport, run_once
from cadence.enrollment.status import lead_status
from cadence.manage.users import add_user
from cadence.names import Channel, EnrollmentState, Event, HistoryKind, TouchStatus
from cadence.store import leads, listings, touches

START = "2026-11-23T07:00:00-05:00"  # a Monday morning in New York, Thanksgiving week
WEEKS = 10
HEARTBEAT = timedelta(hours=6)  # while tasks are open, a pass at least this often lets them expire
NEW_YORK = ZoneInfo("America/New_York")
console = Console(highlight=False)


def local(when: datetime) -> str:
    return when.astimezone(NEW_YORK).strftime("%a %Y-%m-%d %H:%M")


def cadence(folder: Path, *args: str, now: datetime) -> int:
    """Run one `cadence` command in this process, as typed at a shell in `folder`, at `now`."""
    from cadence.cli.app import app

    stamp = now.astimezone(NEW_YORK).isoformat(timespec="minutes")
    console.print(f"[bold cyan]$ CADENCE_NOW={stamp} cadence {' '.join(args)}[/]")
    os.environ["CADENCE_NOW"] = now.isoformat()
    cwd = Path.cwd()
    os.chdir(folder)
    try:
        code = app(list(args), prog_name="cadence", standalone_mode=False)
    finally:
        os.chdir(cwd)
        sys.stdout.flush()
    return int(code or 0)


@dataclass(frozen=True)
class Beat:
    """A rep's or a prospect's move: once `lead`'s touch of `step` reaches `status`, wait `delay`, then act.

    `command` may name `{task}`, the id of that touch (the call task to log), and `{mail}`, the
    .eml file the lead's mail server sends back about that touch (`mail` names which: a reply,
    an out-of-office reply or a bounce; see `cadence.cli.demo_mail`).
    """

    lead: str
    sequence: str
    step: str
    status: TouchStatus
    delay: timedelta
    command: tuple[str, ...]
    story: str
    mail: str | None = None

    def due(self, app: App) -> tuple[datetime, int] | None:
        """(when to act, the touch id) once the trigger happened, else None."""
        with app.engine.connect() as conn:
            row = listings.latest_touch(conn, self.lead, self.sequence, self.step, self.status)
        if row is None or row.sent_at is None:
            return None
        return office_hours(row.sent_at + self.delay), row.id


def h(hours: float) -> timedelta:
    return timedelta(hours=hours)


def office_hours(when: datetime) -> datetime:
    """The reps work 09:00-17:00 New York time on weekdays: a move due outside that waits for the next morning."""
    at = when.astimezone(NEW_YORK)
    if at.weekday() < 5 and 9 <= at.hour < 17:
        return when
    day = at.date() + timedelta(days=0 if at.hour < 9 else 1)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return datetime(day.year, day.month, day.day, 9, tzinfo=NEW_YORK)


OPEN, SENT = TouchStatus.TASK_OPEN, TouchStatus.SENT  # the touch states the beats wait for
BEATS = [
    Beat("L1", "outbound-saas", "call-1", OPEN, h(1), ("log", "{task}", "connected_interested"),
         "Dana picks up and wants a demo: rule 1 finishes her as qualified."),
    Beat("L2", "outbound-saas", "call-1", OPEN, h(2), ("log", "{task}", "not_now", "--note", "after Q4 close"),
         "Sam says the timing is bad: rule 2 recycles him into nurture-quarterly in 30 days."),
    Beat("L3", "outbound-saas", "call-1", OPEN, h(1), ("log", "{task}", "wrong_number"),
         "Priya's number is wrong: rule 4 drops the call and SMS steps; her emails go on."),
    Beat("L4", "outbound-saas", "call-1", OPEN, h(1), ("log", "{task}", "do_not_call"),
         "Oliver asks not to be called: rule 6 suppresses calls and SMS to his number everywhere."),
    Beat("L5", "outbound-saas", "sms-1", SENT, h(2), ("event", "L5", "sms_stop", "--note", "replied STOP"),
         "Mia texts STOP: no more SMS to her number from any sequence; emails go on."),
    Beat("L6", "outbound-saas", "bump", SENT, h(3), ("inbox", "process", "{mail}"),
         "Leo replies to the bump by email: cadence reads it as a reply (`replied` is in exit_on), the sequence "
         "ends and Bob gets a task with Leo's first line.", "reply"),
    Beat("L7", "outbound-saas", "intro", SENT, h(1), ("inbox", "process", "{mail}"),
         "Ana's Exchange auto-reply says she is back on Dec 9: read as out of office, her sequence pauses until "
         "midnight that day in São Paulo.", "out_of_office"),
    Beat("L4", "outbound-saas", "value", SENT, h(2), ("inbox", "process", "{mail}"),
         "Oliver's mailbox is gone: the value email bounces (550 5.1.1 user unknown). The delivery report marks "
         "his address invalid and ends the sequence.", "bounce"),
    *(
        Beat("L8", "outbound-saas", step, OPEN, h(1), ("log", "{task}", code),
             f"Nobody answers Chris's phone ({step}): rule 3 lets the sequence go on.")
        for step, code in (("call-1", "no_answer"), ("call-2", "left_voicemail"), ("call-3", "no_answer"),
                           ("call-4", "left_voicemail"))
    ),
    Beat("L2", "nurture-quarterly", "recap", SENT, h(26), ("event", "L2", "replied", "--note", "ready to talk"),
         "Sam answers the nurture email: rule 7 puts him in outbound-hot and opens a task for his owner."),
    Beat("L2", "outbound-hot", "call-now", OPEN, h(0.5), ("log", "{task}", "meeting_booked"),
         "Alice calls Sam at once and books the meeting: qualified."),
    Beat("L8", "nurture-monthly", "digest-1", SENT, h(24), ("event", "L8", "replied", "--note", "let's talk"),
         "Chris, recycled into nurture, replies to the first digest: back to outbound-hot."),
    Beat("L8", "outbound-hot", "call-now", OPEN, h(1), ("log", "{task}", "left_voicemail"),
         "Bob calls Chris back and leaves a voicemail; the hot sequence's nudge follows."),
]  # fmt: skip


def next_moment(app: App, now: datetime, waiting: list[datetime]) -> datetime:
    """The next time anything can happen: a touch due, a cool-off or pause ending, a beat, a task expiring."""
    with app.engine.connect() as conn:
        soon = listings.upcoming(conn)
    moments = [t for t in (soon.next_due, soon.next_recycle, soon.next_resume, *waiting) if t is not None]
    if soon.open_tasks:
        moments.append(now + HEARTBEAT)
    return max(min(moments, default=now + timedelta(days=1)), now + timedelta(minutes=1))


def automatic_events(app: App, since: datetime, until: datetime) -> list[str]:
    """What the engine did on its own: sequences completing, recycles coming due, pauses ending."""
    lines = []
    with app.engine.connect() as conn:
        rows = listings.history_between(conn, since, until)
    for r in rows:
        d, cause = r.detail, r.cause or ""
        if r.kind == HistoryKind.ENROLLED and cause.startswith("recycle"):
            lines.append(f"{local(r.at)}  {r.lead_id} enrolled into {d['sequence']} ({cause})")
        elif r.kind == HistoryKind.ACTION and d.get("event") == Event.COMPLETED:
            lines.append(f"{local(r.at)}  {r.lead_id} completed a sequence: {'; '.join(d['actions'])}")
        elif r.kind == HistoryKind.ACTION and d.get("action") == "resume":
            lines.append(f"{local(r.at)}  {r.lead_id} is back: {d['sequence']} resumes ({cause})")
    return lines


def simulate(folder: Path, app: App, clock: FixedClock) -> Counter[str]:
    end = clock.now() + timedelta(weeks=WEEKS)
    totals: Counter[str] = Counter()
    week: Counter[str] = Counter()
    week_start = clock.now()
    pending = list(BEATS)
    console.rule(f"{WEEKS} weeks, one engine pass at every moment that matters (times in New York)")
    while clock.now() < end:
        now = clock.now()
        while now >= week_start + timedelta(weeks=1):
            _week_summary(app, week_start, week)
            totals.update(week)
            week_start, week = week_start + timedelta(weeks=1), Counter()
        report: RunReport = asyncio.run(run_once(app))
        for channel, n in report.dispatch.sent.items():
            week[f"{channel} sent"] += n
        week["tasks opened"] += report.dispatch.tasks_opened
        week["skipped"] += report.dispatch.skipped
        week["tasks expired"] += report.sweep.expired
        waiting = []
        for beat in list(pending):
            found = beat.due(app)
            if found is None:
                continue
            when, touch_id = found
            if when > now:
                waiting.append(when)
                continue
            pending.remove(beat)
            console.print(f"\n[bold]{local(now)}[/] {beat.story}")
            mail = _write_mail(folder, app, beat, touch_id, now) if beat.mail else ""
            cadence(folder, *(part.format(task=touch_id, mail=mail) for part in beat.command), now=now)
        clock.set(min(next_moment(app, now, waiting), end))
    _week_summary(app, week_start, week)
    totals.update(week)
    missed = [f"{b.lead} {b.sequence}/{b.step}" for b in pending]
    if missed:
        raise SystemExit(f"the demo's story went wrong: these moments never came: {', '.join(missed)}")
    return totals


def _write_mail(folder: Path, app: App, beat: Beat, touch_id: int, now: datetime) -> str:
    with app.engine.connect() as conn:
        touch, lead = touches.get(conn, touch_id), leads.get(conn, beat.lead)
    assert touch is not None and lead is not None and beat.mail is not None
    sender = app.settings.sender(touch.sender or lead.owner or "")
    return demo_mail.write(folder, beat.mail, touch, lead, f"{sender.name} <{sender.email}>", now)


def _week_summary(app: App, start: datetime, week: Counter[str]) -> None:
    stop = start + timedelta(weeks=1)
    counts = ", ".join(f"{n} {what}" for what, n in sorted(week.items()) if n) or "nothing due"
    console.print(f"\n[bold magenta]week of {local(start)[:14]}:[/] {counts}")
    for line in automatic_events(app, start, stop):
        console.print(f"  {line}", markup=False)


SUMMARY_CHANNELS = (Channel.EMAIL, Channel.SMS, Channel.CALL, Channel.TASK)
# A touch that reached the lead or a rep's queue: counted per channel in the summary.
WORKED = (TouchStatus.SENT, TouchStatus.DONE, TouchStatus.EXPIRED, TouchStatus.TASK_OPEN)


def summary(folder: Path, app: App, lead_ids: list[str]) -> None:
    table = Table("lead", "name", "sequences, in order", *SUMMARY_CHANNELS, "skipped", "stage", title="Every lead")
    totals: Counter[str] = Counter()
    for lead_id in lead_ids:
        data = lead_status(app, lead_id)
        lead = data["lead"]
        done: Counter[str] = Counter()
        skipped = 0
        for t in data["touches"]:
            if t["id"] is None:
                continue
            if t["status"] in WORKED:
                done[t["channel"]] += 1
            elif t["status"] == TouchStatus.SKIPPED:
                skipped += 1
        path = " → ".join(
            e["sequence"] + ("" if e["state"] == EnrollmentState.FINISHED else f" ({e['state']})")
            for e in data["enrollments"]
        )
        name = " ".join(filter(None, [lead["first_name"], lead["last_name"]]))
        table.add_row(lead_id, name, path, *(str(done[c]) for c in SUMMARY_CHANNELS), str(skipped), lead["stage"])
        totals.update(done)
        totals["skipped"] += skipped
    table.add_section()
    table.add_row("all", "", "", *(str(totals[c]) for c in (*SUMMARY_CHANNELS, "skipped")), "")
    console.print(table)
    console.print("email and sms count what was sent; call and task count tasks opened (worked, expired or open)")
    outbox = folder / "outbox"
    emails = sorted((outbox / "email").glob("*.eml"))
    texts = (outbox / "sms.jsonl").read_text().splitlines() if (outbox / "sms.jsonl").exists() else []
    with app.engine.connect() as conn:
        sent = listings.sent_by_channel(conn)
    counts = Table("channel", "in the outbox", "recorded as sent", title="Outbox")
    shown = outbox.relative_to(Path.cwd()) if outbox.is_relative_to(Path.cwd()) else outbox
    counts.add_row("email", f"{len(emails)} .eml files in {shown / 'email'}", str(sent.get(Channel.EMAIL, 0)))
    counts.add_row("sms", f"{len(texts)} lines in {shown / 'sms.jsonl'}", str(sent.get(Channel.SMS, 0)))
    console.print(counts)
    if texts:
        first = json.loads(texts[0])
        console.print(f"first SMS, to {first['to']}: {first['body']}", markup=False)


def main(folder: Path = Path("demo")) -> None:
    os.environ.pop("CADENCE_DATABASE_URL", None)  # the demo is the embedded default: SQLite in the folder
    os.environ.setdefault("CADENCE_SECRET", "demo-secret")  # signs the unsubscribe links in the emails
    if not sys.stdout.isatty():
        os.environ.setdefault("COLUMNS", "120")  # rich reads it at each print: a log file gets readable tables
    if folder.exists():
        shutil.rmtree(folder)
    clock = FixedClock(parse_instant(START))
    now: Callable[[], datetime] = clock.now
    cadence(Path.cwd(), "init", str(folder), now=now())
    folder = folder.resolve()
    for args in (
        ("validate",),
        ("leads", "import", "leads.csv"),
        ("enroll", "outbound-saas", "--all-new"),
        ("enroll", "outbound-saas", "L1"),  # refused: already active
        ("preview", "outbound-saas", "--lead", "L1"),
        ("preview", "outbound-saas", "--timezone", "Asia/Kolkata", "--country", "IN"),
    ):
        cadence(folder, *args, now=now())
    app = App.load(folder / "config.yaml", clock)
    try:
        simulate(folder, app, clock)
        with app.engine.connect() as conn:
            lead_ids = listings.enrolled_lead_ids(conn)
        lead_ids.sort(key=lambda lid: (len(lid), lid))
        console.rule("where everyone ended up")
        summary(folder, app, lead_ids)
    finally:
        app.close()
    console.rule("what the inbox heard: a reply, an out-of-office reply and a bounce, read from raw email")
    cadence(folder, "inbox", "list", now=clock.now())
    console.rule("the whole story of one lead")
    cadence(folder, "history", "L2", now=clock.now())
    console.rule("every touch of the lead who texted STOP: the SMS after it skipped, the emails went on")
    cadence(folder, "touches", "--lead", "L5", now=clock.now())
    open_workspace(folder, clock.now())


DEMO_USERS = (  # (id, role, name, password): printed at the end, for clicking through the workspace
    ("alice", "sdr", "Alice Moreno", "alice-demo-password"),
    ("bob", "sdr", "Bob Okafor", "bob-demo-password"),
    ("maria", "manager", "Maria Manager", "maria-demo-password"),
)
SERVE_URL = "http://127.0.0.1:8080"


def open_workspace(folder: Path, end: datetime) -> None:
    """Make the demo folder ready for `make serve-demo`: users, a local public_url, the moment the story ended.

    The emails went out with the starter's https links; the folder is served afterwards on
    loopback over http, where a Secure session cookie would never come back, hence the local URL.
    """
    config = folder / "config.yaml"
    text = config.read_text(encoding="utf-8")
    config.write_text(re.sub(r"(?m)^public_url:.*$", f"public_url: {SERVE_URL}", text), encoding="utf-8")
    for user_id, role, name, password in DEMO_USERS:
        add_user(config, user_id, password, role=role, name=name)
    (folder / ".demo-now").write_text(end.isoformat(), encoding="utf-8")
    console.rule("click through what the demo built")
    console.print(f"make serve-demo, then open {SERVE_URL} and sign in as:", markup=False)
    for user_id, role, _, password in DEMO_USERS:
        console.print(f"  {user_id:<6} {password:<22} ({role})", markup=False)


def serve(folder: Path = Path("demo")) -> None:
    """`make serve-demo`: the demo folder's workspace at the moment the demo's story ended."""
    from cadence.cli.app import app

    moment = folder / ".demo-now"
    if not moment.exists():
        raise SystemExit("no demo here yet: run `make demo` first")
    os.environ.pop("CADENCE_DATABASE_URL", None)
    os.environ["CADENCE_NOW"] = moment.read_text(encoding="utf-8").strip()
    os.environ.setdefault("CADENCE_SECRET", "demo-secret")
    print(f"serving {folder}/ at {SERVE_URL} (CADENCE_NOW={os.environ['CADENCE_NOW']}); Ctrl-C to stop")
    app(["--config", str(folder / "config.yaml"), "serve", "--port", "8080"], prog_name="cadence")


if __name__ == "__main__":
    if sys.argv[1:] == ["demo"]:
        main()
    elif sys.argv[1:] == ["serve"]:
        serve()
    else:
        raise SystemExit("usage: python -m cadence.cli.demo demo|serve")
