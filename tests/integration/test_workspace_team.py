"""The team page: each rep's tasks and emails today, and the next ten business days' load, for managers only.

The load is checked against `cadence forecast --json` run through the CLI: four leads
enrolled now must cost each rep what the forecast of four new leads says (the same model,
applied to leads that exist), and the page's what-if must be the forecast itself. Today's
counts come from leads driven through the real engine. The page reads SQL of its own
(`cadence.store.team`), so the numbers run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from cadence.app import App
from cadence.clock import FixedClock, parse_instant
from cadence.engine.runner import run_once
from cadence.enrollment.enroll import enroll
from cadence.enrollment.lead_import import import_leads
from cadence.enrollment.task_queue import task_queue
from cadence.outcomes.dispositions import log_disposition
from cadence.web import create_app
from tests.conftest import Cli
from tests.http_server import Switchboard, serving
from tests.integration.test_workspace_auth import ENV, sign_in, with_users

MON, TUE = "2026-11-30", "2026-12-01"
START = f"{MON}T08:00:00-05:00"
LEADS = [
    {"id": f"L{n}", "email": f"lead{n}@co{n}.example", "first_name": f"Lead{n}", "last_name": "Doe",
     "company": f"Co{n}", "phone": f"+1212555{n:04d}", "owner": "alice" if n % 2 else "bob",
     "timezone": "America/New_York", "country": "US", "sms_consent": "yes"}
    for n in range(1, 5)
]  # fmt: skip
CHANNELS = ("email", "sms", "call", "task")


@dataclass
class Site:
    base: str
    app: App
    project: Path
    db_url: str

    @contextmanager
    def client(self, user: str | None = None) -> Iterator[httpx.Client]:
        with httpx.Client(base_url=self.base, timeout=30) as client:
            if user is not None:
                assert sign_in(client, user).status_code == 303
            yield client

    def at(self, when: str) -> None:
        assert isinstance(self.app.clock, FixedClock)
        self.app.clock.set(parse_instant(when))

    def forecast(self, *args: str) -> dict[str, Any]:
        """`cadence forecast ... --json` through the CLI, at the page's clock."""
        result = Cli(self.project, self.db_url, CliRunner())(
            "forecast", *args, "--json", now=self.app.clock.now().isoformat()
        )
        assert result.exit_code == 0, result.output
        data: dict[str, Any] = json.loads(result.output)
        return data


@contextmanager
def _site(project: Path, url: str) -> Iterator[Site]:
    with_users(project)
    config = project / "config.yaml"
    data = yaml.safe_load(config.read_text())
    data["senders"][0]["daily_cap"] = 3  # alice: a cap the what-if below goes over
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    app = App.load(config, FixedClock(parse_instant(START)), database_url=url, environ=ENV)
    rows = [(i + 2, row) for i, row in enumerate(LEADS)]
    assert import_leads(app.engine, rows, app.settings, app.clock.now()).imported == 4
    assert enroll(app, "outbound-saas", [r["id"] for r in LEADS]).refused == []
    switchboard = Switchboard()
    switchboard.target = create_app(app, environ=ENV)
    try:
        with serving(switchboard) as base:
            yield Site(base, app, project, url)
    finally:
        app.close()


@pytest.fixture
def site(project: Path, db_url: str) -> Iterator[Site]:
    with _site(project, db_url) as made:
        yield made


@pytest.fixture
def sqlite_site(project: Path, sqlite_url: str) -> Iterator[Site]:
    with _site(project, sqlite_url) as made:
        yield made


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))


def _tags(html: str, tag: str, marker: str) -> list[dict[str, str]]:
    parser = _Tags()
    parser.feed(html)
    return [attrs for name, attrs in parser.tags if name == tag and marker in attrs]


def _load(html: str) -> dict[tuple[str, str, str], dict[str, str]]:
    """(rep, day, channel) -> the load cell's attributes."""
    parser = _Tags()
    parser.feed(html)
    out: dict[tuple[str, str, str], dict[str, str]] = {}
    row: dict[str, str] = {}
    for name, attrs in parser.tags:
        if name == "tr" and "data-channel" in attrs:
            row = attrs
        elif name == "td" and "data-booked" in attrs:
            out[(row["data-rep"], attrs["data-day"], row["data-channel"])] = attrs
    return out


def _days(html: str) -> list[str]:
    return [th["data-day"] for th in _tags(html, "th", "data-day")]


# -- access ---------------------------------------------------------------------------------------------------------


def test_only_managers_open_the_team_page(sqlite_site: Site) -> None:
    with sqlite_site.client() as anonymous:
        answer = anonymous.get("/team")
        assert answer.status_code == 303 and answer.headers["location"] == "/login?next=/team"
    for sdr in ("alice", "bob"):
        with sqlite_site.client(sdr) as client:
            refused = client.get("/team")
            assert refused.status_code == 403 and "Only managers" in refused.text
            assert 'href="/team"' not in client.get("/sequences").text  # not offered in the menu either
    with sqlite_site.client("maria") as manager:
        page = manager.get("/team")
        assert page.status_code == 200 and {r["data-rep"] for r in _tags(page.text, "tr", "data-done-today")} == {
            "alice",
            "bob",
        }
        assert "style=" not in page.text and "<script>" not in page.text


def test_a_question_the_forecast_cannot_answer_is_said_on_the_page(sqlite_site: Site) -> None:
    with sqlite_site.client("maria") as manager:
        unknown = manager.get("/team", params={"sequence": "nope", "leads": "3"})
        assert unknown.status_code == 400 and "unknown sequence &#39;nope&#39;" in unknown.text
        assert len(_load(unknown.text)) == 2 * 4 * 10  # the booked load is still shown
        assert manager.get("/team", params={"reply_rate": "2"}).status_code == 400
        assert manager.get("/team", params={"reply_rate": "lots"}).status_code == 400
        assert manager.get("/team", params={"sequence": "outbound-saas", "leads": "many"}).status_code == 400


# -- numbers --------------------------------------------------------------------------------------------------------


def test_the_load_of_enrolled_leads_is_what_cadence_forecast_said_of_them(site: Site) -> None:
    with site.client("maria") as manager:
        html = manager.get("/team", params={"reply_rate": "0.1", "connect_rate": "0.2"}).text
    days = _days(html)
    assert len(days) == 10 and days[0] == MON and days[-1] == "2026-12-11"  # two working weeks
    said = site.forecast("outbound-saas", "--leads", "4", "--reply-rate", "0.1", "--connect-rate", "0.2")
    assert said["senders"] == {"alice": 2, "bob": 2}
    by_day = {d["date"]: d["senders"] for d in said["days"]}
    cells = _load(html)
    assert len(cells) == 2 * 4 * 10
    for (rep, day, channel), cell in cells.items():
        expected = by_day.get(day, {}).get(rep, {}).get(channel, 0.0)
        assert float(cell["data-booked"]) == pytest.approx(expected, abs=0.011), (rep, day, channel)
        assert float(cell["data-extra"]) == 0.0
    assert float(cells[("alice", MON, "email")]["data-booked"]) == 2.0  # both of alice's intros go out today


def test_the_what_if_is_cadence_forecast_and_a_day_over_the_cap_is_marked(site: Site) -> None:
    with site.client("maria") as manager:
        html = manager.get("/team", params={"sequence": "outbound-saas", "leads": "3", "reply_rate": "0.1"}).text
    said = site.forecast("outbound-saas", "--leads", "3", "--reply-rate", "0.1")
    by_day = {d["date"]: d["senders"] for d in said["days"]}
    cells = _load(html)
    for (rep, day, channel), cell in cells.items():
        assert float(cell["data-extra"]) == by_day.get(day, {}).get(rep, {}).get(channel, 0.0), (rep, day, channel)
    over = {key for key, cell in cells.items() if "data-over-cap" in cell}
    caps = {"alice": 3, "bob": 300}
    emails = {k: float(c["data-booked"]) + float(c["data-extra"]) for k, c in cells.items() if k[2] == "email"}
    assert over == {key for key, n in emails.items() if n > caps[key[0]]}
    assert ("alice", MON, "email") in over and emails[("alice", MON, "email")] == 4.0  # 2 booked + 2 asked about
    assert not any(rep == "bob" for rep, _, _ in over)


def test_today_counts_open_overdue_and_done_tasks_and_emails_against_the_cap(site: Site) -> None:
    site.at(f"{MON}T10:00:00-05:00")
    assert asyncio.run(run_once(site.app)).dispatch.sent["email"] == 4
    site.at(f"{MON}T11:00:00-05:00")
    asyncio.run(run_once(site.app))
    calls = {t["lead"]["id"]: t["id"] for t in task_queue(site.app) if t["step"] == "call-1"}
    assert len(calls) == 4
    log_disposition(site.app, calls["L1"], "no_answer")
    log_disposition(site.app, calls["L3"], "wrong_number")  # the rules drop L3's calls and SMS
    site.at(f"{MON}T13:00:00-05:00")
    with site.client("maria") as manager:
        monday_page = manager.get("/team").text
        monday = {r["data-rep"]: r for r in _tags(monday_page, "tr", "data-done-today")}
        site.at(f"{TUE}T08:30:00-05:00")
        tuesday = {r["data-rep"]: r for r in _tags(manager.get("/team").text, "tr", "data-done-today")}

    def counts(row: dict[str, str]) -> tuple[int, ...]:
        keys = ("due-today", "overdue", "done-today", "emails-today", "daily-cap")
        return tuple(int(row[f"data-{key}"]) for key in keys)

    assert counts(monday["alice"]) == (0, 0, 2, 2, 3)
    assert counts(monday["bob"]) == (2, 0, 0, 2, 300)
    assert counts(tuesday["alice"]) == (0, 0, 0, 0, 3)  # a new day, a new cap
    assert counts(tuesday["bob"]) == (0, 2, 0, 0, 300)  # yesterday's open calls are overdue
    load = _load(monday_page)
    for rep in ("alice", "bob"):  # sent and opened today: nothing more today; the open calls are worked now
        assert [float(load[(rep, MON, c)]["data-booked"]) for c in CHANNELS] == [0.0] * 4
        assert float(load[(rep, "2026-12-02", "email")]["data-booked"]) == 2.0  # so every bump is on Wednesday
    assert float(load[("alice", "2026-12-03", "sms")]["data-booked"]) == 1.0  # L3's SMS step is skipped
    assert float(load[("bob", "2026-12-03", "sms")]["data-booked"]) == 2.0
    queue = task_queue(site.app)
    assert sum(1 for t in queue if t["owner"] == "bob" and t["due"] == "overdue") == 2
