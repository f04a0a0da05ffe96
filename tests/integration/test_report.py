"""`cadence report` against a scenario driven through the real engine and the CLI, on both stores.

Thirteen leads go through a five-step sequence from Monday to Thursday: replies, a
bounce, an unsubscribe before any touch, an SMS stop, SMS replies, every kind of
disposition outcome, an expired task, render failures and a skipped SMS. Each
number the report prints is checked twice: against the scenario as constructed
(written out below), and against counts derived here by walking the touch and
history rows directly.
"""

from __future__ import annotations

import csv
import json
import shutil
import struct
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from sqlalchemy import select, text, update
from typer.testing import CliRunner

from cadence.store.tables import HistoryT, TouchT
from tests.conftest import ROOT, Cli, engine_for, new_pg_database

NY = "-05:00"
MON, TUE, WED, THU = "2026-11-30", "2026-12-01", "2026-12-02", "2026-12-03"
PILOT = """\
id: pilot
name: Pilot - five steps
kind: outbound
schedule: {window: "09:00-17:00", days: [mon, tue, wed, thu, fri], holidays: lead, spread: 30m}
exit_on: [replied, meeting_booked, bounced, unsubscribed]
steps:
  - {id: intro, day: 1, channel: email, subject: "{{ lead.company }} + Acme", template: pilot/intro.md.j2}
  - {id: call-1, day: 1, channel: call, template: pilot/call.md.j2}
  - {id: bump, day: 2, channel: email, subject: "Following up", template: pilot/bump.md.j2}
  - {id: text, day: 3, channel: sms, template: pilot/text.txt.j2}
  - {id: wrap, day: 4, channel: email, subject: "Closing the loop", template: pilot/wrap.md.j2}
"""
TEMPLATES = {
    "intro.md.j2": "Hi {{ lead.first_name }}, a note about {{ lead.company }}.\n\n{{ sender.first_name }}\n",
    "call.md.j2": "Call {{ lead.first_name }} at {{ lead.company }}: {{ lead.phone }}\n",
    "bump.md.j2": "Hi {{ lead.first_name }}, bumping this up.\n",
    "text.txt.j2": "Hi {{ lead.first_name }}, {{ sender.first_name }} here about {{ lead.company }}. STOP to opt out.",
    "wrap.md.j2": "Hi {{ lead.first_name }}, I will stop here.\n",
}
# L7 has no SMS consent (its text is skipped); L11 has no company (intro, call and text cannot render).
LEADS = "id,email,phone,first_name,company,owner,timezone,country,sms_consent\n" + "".join(
    f"L{n},l{n}@lead{n}.example,+1212555{n:04d},Lead{n},{'' if n == 11 else f'Co{n}'},"
    f"{'alice' if n % 2 else 'bob'},America/New_York,US,{'no' if n == 7 else 'yes'}\n"
    for n in range(1, 14)
)
CALLS = {  # call-1 dispositions logged on Monday at 11:00 (L10's call is never worked: it expires)
    "L2": "connected_interested",
    "L3": "no_answer",
    "L5": "not_now",
    "L6": "left_voicemail",
    "L7": "no_answer",
    "L9": "meeting_booked",
    "L12": "left_voicemail",
}
EVENTS = [  # (lead, event, local time); the intro goes out on Monday at 10:00 and each later step at 10:00
    ("L13", "unsubscribed", f"{MON}T08:30"),  # before any touch: credited to nothing
    ("L4", "bounced", f"{MON}T10:30"),  # after the intro
    ("L1", "replied", f"{MON}T12:00"),  # after the intro; its call is still open, so not a touch yet
    ("L8", "meeting_booked", f"{MON}T14:00"),  # after the intro
    ("L3", "replied", f"{TUE}T15:00"),  # after the bump (its call was done on Monday)
    ("L6", "sms_stop", f"{WED}T14:00"),  # after the text
    ("L12", "sms_reply", f"{WED}T15:00"),  # after the text (sms_reply is not in exit_on: L12 goes on)
    ("L12", "sms_reply", f"{WED}T16:00"),  # the same touch again: still one reply
    ("L6", "unsubscribed", f"{THU}T15:00"),  # after the wrap (L6 had completed at 10:00)
]
VARIANTS = {f"L{n}": ("A" if n <= 6 else "B") for n in range(1, 13)}  # the intro's A/B arms
TOUCH_KEYS = ("sent", "failed", "skipped", "tasks_opened", "tasks_done", "tasks_expired")
EVENT_KEYS = ("replied", "bounced", "unsubscribed", "sms_stops", "meetings")


def _ok(result: Any) -> str:
    assert result.exit_code == 0, result.output
    return str(result.stdout)


def _at(local: str) -> str:
    return f"{local}:00{NY}"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A store of this module's own: the scenario is built once per backend and only read by the tests."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("report-store") / "cadence.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    with new_pg_database("cadence_report") as url:  # the server is up, or the test fails (never skips)
        yield url


@pytest.fixture(scope="module")
def scenario(store_url: str, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    project = tmp_path_factory.mktemp("report-project")
    shutil.copy(ROOT / "config.yaml", project / "config.yaml")
    shutil.copytree(ROOT / "sequences", project / "sequences")
    shutil.copytree(ROOT / "templates", project / "templates")
    _write_pilot(project)
    (project / "pilot.csv").write_text(LEADS)
    cli = Cli(project, store_url, CliRunner())
    _ok(cli("leads", "import", "pilot.csv", now=_at(f"{MON}T08:00")))
    # --allow-missing: L11 lacks a company, and its failures at send time are part of what is counted.
    _ok(cli("enroll", "pilot", "--allow-missing", *(f"L{n}" for n in range(1, 14)), now=_at(f"{MON}T08:00")))
    timeline: list[tuple[str, list[str]]] = [(f"{d}T10:00", ["run", "--once"]) for d in (MON, TUE, WED, THU)]
    timeline += [(when, ["event", lead, name]) for lead, name, when in EVENTS]
    calls_logged = False
    for when, args in sorted(timeline, key=lambda item: item[0]):
        if not calls_logged and when > f"{MON}T11:00":
            _log_calls(cli)
            calls_logged = True
        _ok(cli(*args, now=_at(when)))
    engine = engine_for(cli.db_url)
    with engine.begin() as conn:  # the intro's A/B arms, as dispatch records them on the touch
        for lead, variant in VARIANTS.items():
            conn.execute(
                update(TouchT).where(TouchT.c.lead_id == lead, TouchT.c.step_id == "intro").values(variant=variant)
            )
    engine.dispose()
    return cli


def _write_pilot(project: Path) -> None:
    (project / "sequences" / "pilot.yaml").write_text(PILOT)
    (project / "templates" / "pilot").mkdir()
    for name, body in TEMPLATES.items():
        (project / "templates" / "pilot" / name).write_text(body)


def _log_calls(cli: Cli) -> None:
    now = _at(f"{MON}T11:00")
    tasks = json.loads(_ok(cli("tasks", "--json", now=now)))
    by_lead = {t["lead"]["id"]: t["id"] for t in tasks if t["step"] == "call-1"}
    for lead, code in CALLS.items():
        _ok(cli("log", str(by_lead[lead]), code, now=now))


def _report(cli: Cli, *args: str) -> dict[str, Any]:
    return json.loads(_ok(cli("report", *args, "--json", now=_at(f"{THU}T16:00"))))  # type: ignore[no-any-return]


# -- an independent count, walking the rows -----------------------------------------------------------------------


def _rows(cli: Cli) -> tuple[list[Any], list[Any]]:
    engine = engine_for(cli.db_url)
    with engine.connect() as conn:
        touches = list(conn.execute(select(TouchT)).mappings())
        history = list(conn.execute(select(HistoryT).order_by(HistoryT.c.id)).mappings())
    engine.dispose()
    return touches, history


def _when(touch: Any) -> datetime | None:
    """When a touch reached its lead, or None if it did not (sent message, done task)."""
    if touch["step_index"] < 0:
        return None
    if touch["channel"] in ("email", "sms"):
        return touch["sent_at"] if touch["status"] == "sent" else None
    return touch["done_at"] if touch["status"] == "done" else None


def _derive(touches: list[Any], history: list[Any], since: datetime | None = None) -> dict[str, Any]:
    """Per (step) and (step, variant): touch counts, dispositions and credited events; per lead for the sequence."""
    steps: dict[Any, Counter[str]] = defaultdict(Counter)
    credited: dict[Any, set[int]] = defaultdict(set)
    leads: dict[str, set[str]] = defaultdict(set)
    unattributed: dict[str, set[str]] = defaultdict(set)

    def keep(at: datetime | None) -> bool:
        return at is not None and (since is None or at >= since)

    for t in touches:
        if t["step_index"] < 0:
            continue
        arms = [t["step_id"], *([(t["step_id"], t["variant"])] if t["variant"] else [])]
        happened = t["sent_at"] if t["status"] == "sent" else t["done_at"]
        status_key = {"sent": "sent", "failed": "failed", "skipped": "skipped", "done": "tasks_done"}
        for key in arms:
            if t["status"] in status_key and keep(happened):
                steps[key][status_key[t["status"]]] += 1
            if t["status"] == "expired" and keep(t["done_at"]):
                steps[key]["tasks_expired"] += 1
            if t["channel"] in ("call", "task") and keep(t["sent_at"]):
                steps[key]["tasks_opened"] += 1
            if t["disposition"] and t["status"] == "done" and keep(t["done_at"]):
                steps[key][f"disposition:{t['disposition']}"] += 1
        if t["disposition"] == "meeting_booked" and t["status"] == "done" and keep(t["done_at"]):
            for key in arms:
                credited[(key, "meetings")].add(t["id"])
            leads["meetings"].add(t["lead_id"])
    names = {"replied": "replied", "sms_reply": "replied", "bounced": "bounced", "unsubscribed": "unsubscribed"}
    names |= {"sms_stop": "sms_stops", "meeting_booked": "meetings"}
    for h in history:
        name = names.get(h["detail"].get("event")) if h["kind"] == "event" else None
        if name is None or not keep(h["at"]):
            continue
        before = [t for t in touches if t["lead_id"] == h["lead_id"] and _when(t) and _when(t) <= h["at"]]
        if not before:
            unattributed[name].add(h["lead_id"])
            continue
        last = max(before, key=lambda t: (_when(t), t["id"]))
        if not keep(_when(last)):
            continue
        for key in [last["step_id"], *([(last["step_id"], last["variant"])] if last["variant"] else [])]:
            credited[(key, name)].add(last["id"])
        leads[name].add(h["lead_id"])
    for (key, name), ids in credited.items():
        steps[key][name] = len(ids)
    contacted = {t["lead_id"] for t in touches if keep(_when(t))}
    return {"steps": steps, "leads": leads, "contacted": contacted, "unattributed": unattributed}


def _flat(item: dict[str, Any]) -> Counter[str]:
    """A report entry as the derived counters: touch and event keys, and non-zero dispositions."""
    out: Counter[str] = Counter({k: item[k] for k in (*TOUCH_KEYS, *EVENT_KEYS) if item[k]})
    out.update({f"disposition:{code}": n for code, n in item["dispositions"].items() if n})
    return out


def _check_against_rows(seq: dict[str, Any], derived: dict[str, Any]) -> None:
    for step in seq["steps"]:
        assert _flat(step) == derived["steps"][step["step"]], step["step"]
        for arm in step["variants"]:
            assert _flat(arm) == derived["steps"][(step["step"], arm["variant"])], (step["step"], arm["variant"])
        reached = step["sent"] if step["channel"] in ("email", "sms") else step["tasks_done"]
        assert step["reply_rate"] == (round(step["replied"] / reached, 4) if reached else None)
    assert seq["contacted"] == len(derived["contacted"])
    for key in EVENT_KEYS:
        assert seq[key] == len(derived["leads"][key]), key
    assert seq["reply_rate"] == round(len(derived["leads"]["replied"]) / len(derived["contacted"]), 4)


# -- the tests ------------------------------------------------------------------------------------------------------


def _steps(seq: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["step"]: s for s in seq["steps"]}


def test_report_counts_equal_the_scenario_and_the_rows(scenario: Cli) -> None:
    data = _report(scenario, "pilot")
    assert [s["sequence"] for s in data["sequences"]] == ["pilot"]
    seq = data["sequences"][0]
    assert (seq["enrolled"], seq["active"], seq["paused"]) == (13, 1, 0)  # L10 waits for its bump on Friday
    assert seq["finished"] == {
        "bounced": 1, "completed": 4, "meeting_booked": 1, "qualified": 2, "recycled": 1, "replied": 2,
        "unsubscribed": 1,
    }  # fmt: skip
    assert (seq["qualified"], seq["disqualified"], seq["recycled"]) == (2, 0, 1)
    # Leads: 12 reached (all but L13); replied L1, L3, L12; bounced L4; L6 unsubscribed and stopped SMS;
    # meetings L8 (event) and L9 (disposition).
    assert (seq["contacted"], seq["replied"], seq["reply_rate"]) == (12, 3, 0.25)
    assert (seq["bounced"], seq["unsubscribed"], seq["sms_stops"], seq["meetings"]) == (1, 1, 1, 2)
    assert data["unattributed"] == {"replied": 0, "bounced": 0, "unsubscribed": 1, "sms_stops": 0, "meetings": 0}
    steps = _steps(seq)
    assert [s["step"] for s in seq["steps"]] == ["intro", "call-1", "bump", "text", "wrap"]
    intro, call, bump, text, wrap = (steps[k] for k in ("intro", "call-1", "bump", "text", "wrap"))
    assert (intro["sent"], intro["failed"], intro["replied"], intro["bounced"], intro["meetings"]) == (11, 1, 1, 1, 1)
    assert intro["reply_rate"] == round(1 / 11, 4)
    assert (call["tasks_opened"], call["tasks_done"], call["tasks_expired"], call["failed"]) == (11, 7, 1, 1)
    assert {c: n for c, n in call["dispositions"].items() if n} == dict(Counter(CALLS.values()))
    assert (call["meetings"], call["replied"], call["reply_rate"]) == (1, 0, 0.0)
    assert (bump["sent"], bump["replied"], bump["reply_rate"]) == (5, 1, 0.2)
    assert (text["sent"], text["skipped"], text["failed"], text["sms_stops"], text["replied"]) == (2, 1, 1, 1, 1)
    assert (wrap["sent"], wrap["unsubscribed"], wrap["reply_rate"]) == (4, 1, 0.0)
    arms = {v["variant"]: v for v in intro["variants"]}
    assert sorted(arms) == ["A", "B"]
    assert (arms["A"]["sent"], arms["A"]["replied"], arms["A"]["bounced"], arms["A"]["reply_rate"]) == (6, 1, 1, 0.1667)
    assert (arms["B"]["sent"], arms["B"]["failed"], arms["B"]["meetings"], arms["B"]["replied"]) == (5, 1, 1, 0)
    assert all(not s["variants"] for s in seq["steps"][1:])
    touches, history = _rows(scenario)
    _check_against_rows(seq, _derive(touches, history))


def test_since_counts_only_what_happened_from_that_date(scenario: Cli) -> None:
    data = _report(scenario, "pilot", "--since", TUE)  # Tuesday midnight in New York
    assert data["since"] == "2026-12-01T05:00:00+00:00"
    seq = data["sequences"][0]
    assert (seq["enrolled"], seq["active"]) == (0, 1)  # everyone enrolled on Monday; active is the state now
    assert seq["finished"] == {"completed": 4, "replied": 1}
    steps = _steps(seq)
    assert not any(steps["intro"][k] for k in (*TOUCH_KEYS, *EVENT_KEYS))  # Monday's intro and its events
    assert (steps["call-1"]["tasks_opened"], steps["call-1"]["tasks_done"], steps["call-1"]["tasks_expired"]) == (
        0, 0, 1,
    )  # fmt: skip
    assert (steps["bump"]["sent"], steps["bump"]["replied"]) == (5, 1)
    assert (seq["contacted"], seq["replied"], seq["reply_rate"]) == (5, 2, 0.4)
    assert data["unattributed"]["unsubscribed"] == 0
    touches, history = _rows(scenario)
    since = datetime.fromisoformat(data["since"])
    _check_against_rows(seq, _derive(touches, history, since))


def test_every_sequence_is_listed_and_the_table_and_csv_agree(scenario: Cli) -> None:
    data = _report(scenario)
    ids = [s["sequence"] for s in data["sequences"]]
    assert ids == sorted(ids) and {"pilot", "outbound-saas", "nurture-monthly"} <= set(ids)
    assert all(s["enrolled"] == 0 for s in data["sequences"] if s["sequence"] != "pilot")
    out = _ok(scenario("report", "pilot", "--csv", "report.csv", now=_at(f"{THU}T16:00")))
    assert "enrolled 13, active 1" in out and "intro" in out and "wrote report.csv" in out
    assert "call-1: connected_interested 1, meeting_booked 1, not_now 1, left_voicemail 2, no_answer 2" in out
    with (scenario.project / "report.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["level"], r["step"], r["variant"]) for r in rows] == [
        ("sequence", "", ""), ("step", "intro", ""), ("variant", "intro", "A"), ("variant", "intro", "B"),
        ("step", "call-1", ""), ("step", "bump", ""), ("step", "text", ""), ("step", "wrap", ""),
    ]  # fmt: skip
    pilot = next(s for s in data["sequences"] if s["sequence"] == "pilot")
    entries = [pilot, pilot["steps"][0], *pilot["steps"][0]["variants"], *pilot["steps"][1:]]
    for row, entry in zip(rows, entries, strict=True):
        for key in (*TOUCH_KEYS, *EVENT_KEYS):
            assert int(row[key]) == entry[key], (row["step"], key)
        assert row["reply_rate"] == ("" if entry["reply_rate"] is None else str(entry["reply_rate"]))
        for code, n in entry["dispositions"].items():
            assert int(row[f"disposition:{code}"]) == n
    assert (rows[0]["enrolled"], rows[0]["finished"], rows[1]["enrolled"]) == ("13", "12", "")


def test_unknown_sequence_and_bad_since_are_refused(scenario: Cli) -> None:
    result = scenario("report", "nope", now=_at(f"{THU}T16:00"))
    assert result.exit_code == 1 and "no sequence 'nope'" in result.output
    result = scenario("report", "--since", "last week", now=_at(f"{THU}T16:00"))
    assert result.exit_code == 1 and "not an ISO 8601 time" in result.output
    result = scenario("report", "--chart", "funnel.pdf", now=_at(f"{THU}T16:00"))
    assert result.exit_code == 1 and ".png or .svg" in result.output


# -- the picture ----------------------------------------------------------------------------------------------------


def _png_chunks(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos = 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, kind
        yield kind, body
        pos += 12 + length


def test_chart_draws_the_step_funnel_as_svg_and_png(scenario: Cli) -> None:
    _ok(scenario("report", "--chart", "funnel.svg", now=_at(f"{THU}T16:00")))
    root = ElementTree.parse(scenario.project / "funnel.svg").getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    texts = ["".join(t.itertext()).strip() for t in root.iter("{http://www.w3.org/2000/svg}text")]
    labels = ["intro (email)", "call-1 (call)", "bump (email)", "text (sms)", "wrap (email)"]
    assert all(label in texts for label in labels), texts
    assert "11 sent · 1 replied (9.1%)" in texts and "7 done · 0 replied (0.0%)" in texts
    assert any(t.startswith("pilot: 12 leads reached, 3 replied (25.0%)") for t in texts)
    assert not any(t.startswith("outbound-saas") for t in texts)  # sequences without activity are left out

    _ok(scenario("report", "pilot", "--chart", "funnel.png", now=_at(f"{THU}T16:00")))
    chunks = list(_png_chunks((scenario.project / "funnel.png").read_bytes()))
    kinds = [kind for kind, _ in chunks]
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and b"IDAT" in kinds
    width, height = struct.unpack(">II", chunks[0][1][:8])
    assert width > 500 and height > 200
    pixels = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    assert len(set(pixels)) > 10  # something was drawn, not a blank canvas
    text = dict(body.split(b"\x00", 1) for kind, body in chunks if kind == b"tEXt")
    assert text[b"Description"].decode() == "pilot: " + ", ".join(labels)


# -- the forecast, through the CLI ----------------------------------------------------------------------------------


def test_forecast_prints_each_sdrs_day_and_writes_nothing(project: Path, sqlite_url: str) -> None:
    _write_pilot(project)
    cli = Cli(project, sqlite_url, CliRunner())
    args = ["forecast", "pilot", "--leads", "5", "--reply-rate", "0.2", "--connect-rate", "0.5"]
    wed = "2026-11-25T08:00:00-05:00"  # the day before Thanksgiving
    data = json.loads(_ok(cli(*args, "--json", now=wed)))
    # alice gets leads 1, 3, 5 and bob 2, 4. Wednesday: intro and call-1; the bump (day 2) skips Thanksgiving
    # to Friday, the text (day 3) the weekend to Monday, the wrap is Tuesday. Each email loses the 20% who
    # reply, the call the 50% who connect; an SMS reply does not end `pilot` (sms_reply is not in its exit_on).
    days = {d["date"]: {s: {c: n for c, n in v.items() if n} for s, v in d["senders"].items()} for d in data["days"]}
    assert days == {
        "2026-11-25": {"alice": {"email": 3.0, "call": 2.4}, "bob": {"email": 2.0, "call": 1.6}},
        "2026-11-27": {"alice": {"email": 1.2}, "bob": {"email": 0.8}},
        "2026-11-30": {"alice": {"sms": 0.96}, "bob": {"sms": 0.64}},
        "2026-12-01": {"alice": {"email": 0.96}, "bob": {"email": 0.64}},
    }
    assert data["senders"] == {"alice": 3, "bob": 2} and data["over_cap"] == []
    table = _ok(cli(*args, now=wed))
    assert "2026-11-27 Fri" in table and "2026-11-26" not in table and "leads per SDR: alice 3, bob 2" in table
    engine = engine_for(sqlite_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM sequenceversion")).scalar() == 0
        assert conn.execute(text("SELECT count(*) FROM history")).scalar() == 0
    engine.dispose()
    refused = cli("forecast", "nope", "--leads", "5", now=wed)
    assert refused.exit_code == 1 and "nope" in refused.output


# -- A/B variants assigned by the engine ------------------------------------------------------------------------------

AB = """\
id: ab
name: Subject line test
kind: outbound
steps:
  - id: intro
    day: 1
    channel: email
    template: pilot/bump.md.j2
    variants:
      - {id: short, subject: "Quick question"}
      - {id: long, subject: "A question about your SDR ramp time", weight: 2}
  - {id: wrap, day: 3, channel: email, subject: "Closing the loop", template: pilot/wrap.md.j2}
"""


def test_variants_assigned_by_dispatch_are_counted_per_arm(cli: Cli, project: Path) -> None:
    _write_pilot(project)
    (project / "sequences" / "ab.yaml").write_text(AB)
    (project / "ab.csv").write_text(LEADS)
    _ok(cli("leads", "import", "ab.csv", now=_at(f"{MON}T08:00")))
    _ok(cli("enroll", "ab", *(f"L{n}" for n in range(1, 13)), now=_at(f"{MON}T08:00")))
    _ok(cli("run", "--once", now=_at(f"{MON}T10:00")))
    repliers = ["L2", "L5", "L8", "L9"]
    for lead in repliers:
        _ok(cli("event", lead, "replied", now=_at(f"{MON}T15:00")))
    touches, _ = _rows(cli)
    arms = {t["lead_id"]: t["variant"] for t in touches if t["step_id"] == "intro" and t["status"] == "sent"}
    assert len(arms) == 12 and set(arms.values()) == {"short", "long"}  # the engine recorded an arm per touch
    step = _steps(_report(cli, "ab")["sequences"][0])["intro"]
    got = {v["variant"]: (v["sent"], v["replied"]) for v in step["variants"]}
    sent = Counter(arms.values())
    replied = Counter(arms[lead] for lead in repliers)
    assert got == {arm: (sent[arm], replied[arm]) for arm in ("short", "long")}
    assert (step["sent"], step["replied"]) == (12, 4)
