"""The sequences pages of the workspace: the report's numbers, the unapplied edit, and Apply.

A small A/B sequence runs through the real engine (sends, call tasks, dispositions, events);
the pages are read over HTTP from a real uvicorn and their numbers (`data-` attributes)
compared with `build_report(...).as_json()` and `make_plan(...).as_json()`, which are what
`cadence report --json` and `cadence plan --json` print. These pages add no SQL of their own,
so they run on SQLite only.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest

from cadence.app import App
from cadence.clock import FixedClock, parse_instant
from cadence.engine.runner import run_once
from cadence.enrollment.enroll import enroll
from cadence.enrollment.lead_import import import_leads
from cadence.enrollment.task_queue import task_queue
from cadence.manage.chart import reached
from cadence.manage.edit_plan import make_plan
from cadence.manage.report import EVENT_KEYS, TOUCH_KEYS, build_report
from cadence.outcomes.dispositions import log_disposition
from cadence.outcomes.events import record_event
from cadence.store.versions import published
from cadence.web import create_app
from tests.http_server import Switchboard, serving
from tests.integration.test_workspace_auth import ENV, csrf_of, sign_in, with_users

MON = "2026-11-30"
AB = """\
id: ab
name: Subject line test
kind: outbound
steps:
  - id: intro
    day: 1
    channel: email
    template: outbound-saas/bump.md.j2
    variants:
      - {id: short, subject: "Quick question"}
      - {id: long, subject: "A question about your SDR ramp time"}
  - {id: call-1, day: 1, channel: call, template: outbound-saas/call-script.md.j2}
  - {id: wrap, day: 3, channel: email, subject: "Closing the loop", template: outbound-saas/breakup.md.j2}
"""
EDITED = AB.replace("day: 3, channel: email", "day: 4, channel: email") + (
    '  - {id: linkedin, day: 5, channel: task, title: "Connect on LinkedIn"}\n'
)
LEADS = [
    {"id": f"L{n}", "email": f"lead{n}@co{n}.example", "first_name": f"Lead{n}", "last_name": "Doe",
     "company": f"Co{n}", "phone": f"+1212555{n:04d}", "owner": "alice" if n % 2 else "bob",
     "timezone": "America/New_York", "country": "US"}
    for n in range(1, 7)
]  # fmt: skip


@dataclass
class Site:
    base: str
    app: App
    project: Path

    @contextmanager
    def client(self, user: str | None = None) -> Iterator[httpx.Client]:
        """A browser of its own, signed in as `user` (or anonymous)."""
        with httpx.Client(base_url=self.base, timeout=30) as client:
            if user is not None:
                assert sign_in(client, user).status_code == 303
            yield client


def _at(app: App, local: str) -> None:
    assert isinstance(app.clock, FixedClock)
    app.clock.set(parse_instant(f"{local}-05:00"))


def _scenario(app: App) -> None:
    """Six leads through `ab` on Monday: intros sent, calls opened and partly worked, replies and the rest."""
    rows = [(i + 2, row) for i, row in enumerate(LEADS)]
    assert import_leads(app.engine, rows, app.settings, app.clock.now()).imported == 6
    assert enroll(app, "ab", [r["id"] for r in LEADS]).refused == []
    _at(app, f"{MON}T10:00")
    assert asyncio.run(run_once(app)).dispatch.sent["email"] == 6
    _at(app, f"{MON}T11:00")
    asyncio.run(run_once(app))
    calls = {t["lead"]["id"]: t["id"] for t in task_queue(app) if t["step"] == "call-1"}
    assert len(calls) == 6
    log_disposition(app, calls["L1"], "meeting_booked")
    log_disposition(app, calls["L3"], "no_answer")
    log_disposition(app, calls["L4"], "left_voicemail")
    _at(app, f"{MON}T12:00")
    record_event(app, "L2", "replied")
    record_event(app, "L5", "bounced")
    record_event(app, "L6", "unsubscribed")
    _at(app, f"{MON}T13:00")


@pytest.fixture
def site(project: Path, sqlite_url: str) -> Iterator[Site]:
    with_users(project)
    (project / "sequences" / "ab.yaml").write_text(AB)
    clock = FixedClock(parse_instant(f"{MON}T08:00:00-05:00"))
    app = App.load(project / "config.yaml", clock, database_url=sqlite_url, environ=ENV)
    _scenario(app)
    switchboard = Switchboard()
    switchboard.target = create_app(app, environ=ENV)
    with serving(switchboard) as base:
        yield Site(base, app, project)
    app.close()


class _Tags(HTMLParser):
    """Every start tag with its attributes, in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))


def _tags(html: str, tag: str, marker: str) -> list[dict[str, str]]:
    parser = _Tags()
    parser.feed(html)
    return [attrs for name, attrs in parser.tags if name == tag and marker in attrs]


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _version(app: App, sequence_id: str) -> int | None:
    with app.engine.connect() as conn:
        row = published(conn, [sequence_id]).get(sequence_id)
    return row.version if row else None


# -- access ---------------------------------------------------------------------------------------------------------


def test_anonymous_visitors_are_sent_to_sign_in_and_cannot_apply(site: Site) -> None:
    with site.client() as anonymous:
        for path in ("/sequences", "/sequences/ab"):
            answer = anonymous.get(path)
            assert answer.status_code == 303 and answer.headers["location"] == f"/login?next={path}"
        assert anonymous.post("/sequences/ab/apply", data={}).status_code == 401


def test_both_sdrs_see_the_numbers_but_neither_the_plan_nor_apply(site: Site) -> None:
    (site.project / "sequences" / "ab.yaml").write_text(EDITED)
    for sdr in ("alice", "bob"):
        with site.client(sdr) as client:
            listing = client.get("/sequences")
            assert listing.status_code == 200 and 'href="/sequences/ab"' in listing.text
            page = client.get("/sequences/ab")
            assert page.status_code == 200 and 'class="funnel-table"' in page.text
            assert "Unapplied edits" not in page.text and "/sequences/ab/apply" not in page.text
            refused = client.post("/sequences/ab/apply", data={"csrf": csrf_of(page.text)})
            assert refused.status_code == 403 and "Only managers" in refused.text
    assert _version(site.app, "ab") == 1  # nothing was applied


def test_the_manager_sees_the_plan_and_an_apply_button_that_asks_first(site: Site) -> None:
    with site.client("maria") as client:
        page = client.get("/sequences/ab")
        assert page.status_code == 200 and "Unapplied edits" in page.text
        assert 'data-status="none"' in page.text and "/sequences/ab/apply" not in page.text  # the file is published
        (site.project / "sequences" / "ab.yaml").write_text(EDITED)
        page = client.get("/sequences/ab")
        [form] = _tags(page.text, "form", "data-confirm")
        assert form["action"] == "/sequences/ab/apply" and form["method"] == "post"
        assert form["data-confirm"] == "Publish ab v2 and migrate its 2 live enrollments?"


def test_unknown_sequences_are_not_found(site: Site) -> None:
    with site.client("maria") as client:
        token = csrf_of(client.get("/sequences").text)
        assert client.get("/sequences/nope").status_code == 404
        assert client.post("/sequences/nope/apply", data={"csrf": token}).status_code == 404


# -- numbers --------------------------------------------------------------------------------------------------------


def test_the_list_shows_each_sequence_with_the_report_numbers_and_its_edit_state(site: Site) -> None:
    with site.client("alice") as client:
        rows = {r["data-sequence"]: r for r in _tags(client.get("/sequences").text, "tr", "data-sequence")}
    report = {s["sequence"]: s for s in build_report(site.app).as_json()["sequences"]}
    assert set(rows) == set(report)
    for sid, seq in report.items():
        row = rows[sid]
        assert row["data-active"] == str(seq["active"]) and row["data-paused"] == str(seq["paused"])
        assert row["data-finished"] == str(sum(seq["finished"].values()))
        assert row["data-reply-rate"] == _text(seq["reply_rate"]) and row["data-meetings"] == str(seq["meetings"])
    ab = report["ab"]
    assert (ab["active"], sum(ab["finished"].values()), ab["contacted"]) == (2, 4, 6)
    assert (ab["replied"], ab["meetings"]) == (1, 1)
    assert rows["ab"]["data-meeting-rate"] == str(round(1 / 6, 4))
    assert rows["ab"]["data-edits"] == "published"  # enrolling published it
    assert rows["outbound-saas"]["data-edits"] == "new"  # never published: nothing enrolled into it yet


def test_the_sequence_page_shows_the_same_numbers_as_cadence_report_json(site: Site) -> None:
    with site.client("bob") as client:
        html = client.get("/sequences/ab").text
    expected = build_report(site.app, sequence_id="ab").as_json()["sequences"][0]
    [totals] = _tags(html, "dl", "data-sequence")
    for key, value in expected.items():
        if isinstance(value, (int, float)) or value is None:
            assert totals[f"data-{key.replace('_', '-')}"] == _text(value), key
    assert json.loads(totals["data-finished"]) == expected["finished"]
    table = _tags(html, "tr", "data-channel")
    bars = _tags(html, "g", "data-reached")
    wanted = [pair for step in expected["steps"] for pair in [(step, None), *((step, v) for v in step["variants"])]]
    assert len(table) == len(bars) == len(wanted) == 5  # intro, its two variants, call-1, wrap
    for row, bar, (step, variant) in zip(table, bars, wanted, strict=True):
        counts = variant or step
        assert (row["data-step"], row["data-variant"]) == (step["step"], variant["variant"] if variant else "")
        assert row["data-channel"] == step["channel"]
        for key in (*TOUCH_KEYS, *EVENT_KEYS):
            assert row[f"data-{key.replace('_', '-')}"] == str(counts[key]), (step["step"], key)
        assert row["data-reply-rate"] == _text(counts["reply_rate"])
        assert json.loads(row["data-dispositions"]) == counts["dispositions"]
        assert bar["data-reached"] == str(reached({"channel": step["channel"], **counts}))
        assert bar["data-replied"] == str(counts["replied"])
    intro = expected["steps"][0]
    assert intro["sent"] == 6 and {v["variant"] for v in intro["variants"]} == {"short", "long"}
    call = expected["steps"][1]
    assert call["tasks_opened"] == 6 and call["tasks_done"] == 3 and call["meetings"] == 1
    assert "<svg" in html and "style=" not in html and "<script>" not in html


# -- plan and apply -------------------------------------------------------------------------------------------------


def test_an_edited_file_shows_as_unapplied_with_the_plan_diff_and_its_impact(site: Site) -> None:
    (site.project / "sequences" / "ab.yaml").write_text(EDITED)
    with site.client("maria") as client:
        listing = client.get("/sequences").text
        html = client.get("/sequences/ab").text
    assert {r["data-sequence"]: r["data-edits"] for r in _tags(listing, "tr", "data-sequence")}["ab"] == "changed"
    site.app.reread_files()
    plan = make_plan(site.app, ["ab"]).as_json()["sequences"][0]
    [head] = _tags(html, "p", "data-status")
    assert (head["data-status"], head["data-from-version"], head["data-to-version"]) == ("changed", "1", "2")
    assert head["data-live"] == str(plan["live_enrollments"]) == "2"
    shown = [(li["data-step"], li["data-change"], li["data-enrollments"]) for li in _tags(html, "li", "data-change")]
    assert shown == [(c["step"], c["change"], str(c["enrollments"])) for c in plan["changes"]]
    assert {c["step"] for c in plan["changes"]} == {"wrap", "linkedin"}
    for change in plan["changes"]:
        assert change["summary"] in unescape(html)
    [impact] = _tags(html, "p", "data-migrated")
    for key, value in plan["enrollments"].items():
        assert impact[f"data-{key.replace('_', '-')}"] == str(value)
    moved = {tr["data-lead"]: (tr["data-old-step"], tr["data-new-step"]) for tr in _tags(html, "tr", "data-lead")}
    assert moved == {"L3": ("wrap", "wrap"), "L4": ("wrap", "wrap")}  # their wrap moves from day 3 to day 4


def test_apply_without_the_csrf_token_changes_nothing(site: Site) -> None:
    (site.project / "sequences" / "ab.yaml").write_text(EDITED)
    with site.client("maria") as client:
        client.get("/sequences/ab")
        forged = client.post("/sequences/ab/apply", data={"csrf": "forged"})
        assert forged.status_code == 403 and "This form has expired" in forged.text
        assert client.post("/sequences/ab/apply", data={}).status_code == 403
    assert _version(site.app, "ab") == 1


def test_apply_publishes_the_file_and_migrates_the_enrolled_leads(site: Site) -> None:
    (site.project / "sequences" / "ab.yaml").write_text(EDITED)
    with site.client("maria") as client:
        page = client.get("/sequences/ab").text
        done = client.post("/sequences/ab/apply", data={"csrf": csrf_of(page)})
        assert done.status_code == 200, done.text
        assert "published ab v2; migrated 2 live enrollments" in done.text
        assert 'data-status="none"' in done.text  # the page now says there is nothing left to apply
        listing = client.get("/sequences").text
    assert _version(site.app, "ab") == 2
    assert {r["data-sequence"]: r["data-edits"] for r in _tags(listing, "tr", "data-sequence")}["ab"] == "published"
    assert make_plan(site.app, ["ab"]).empty


def test_apply_of_a_broken_file_is_refused_with_the_reason_and_changes_nothing(site: Site) -> None:
    broken = AB.replace("  - {id: call-1, day: 1,", "  - {id: call-1, day: x,")
    (site.project / "sequences" / "ab.yaml").write_text(broken)
    with site.client("maria") as client:
        listing = client.get("/sequences").text
        assert {r["data-sequence"]: r["data-edits"] for r in _tags(listing, "tr", "data-sequence")}["ab"] == "broken"
        page = client.get("/sequences/ab")
        assert page.status_code == 200 and "/sequences/ab/apply" not in page.text  # nothing to press
        refused = client.post("/sequences/ab/apply", data={"csrf": csrf_of(page.text)})
    assert refused.status_code == 409 and "nothing was applied" in refused.text
    assert _version(site.app, "ab") == 1
