"""Driving the CLI like a rep would: read state with `--json`, act with `log` and `event`, run the engine.

Time moves only through CADENCE_NOW. `run_next` jumps straight to the lead's next
due touch, so a test can follow a lead through weeks of outreach in a handful of passes.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from email import message_from_bytes
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any

from cadence.clock import parse_instant
from tests.conftest import Cli

NEW_YORK = datetime.fromisoformat("2026-11-30T00:00:00-05:00").tzinfo  # fixed -05:00: every test date is in EST
MON = "2026-11-30T08:00:00-05:00"  # a Monday in New York; every lead below lives there
LEAD_CSV = (
    "id,email,phone,first_name,last_name,company,owner,timezone,country,sms_consent,score\n"
    "L1,dana@northwind.example,+12125550101,Dana,Wu,Northwind,alice,America/New_York,US,yes,90\n"
    "L2,sam@contoso.example,+12125550102,Sam,Patel,Contoso,alice,America/New_York,US,yes,40\n"
)


def ok(result: Any) -> str:
    assert result.exit_code == 0, result.output
    return str(result.stdout)


def as_json(result: Any) -> Any:
    return json.loads(ok(result))


def at(text: str, days: float = 0, hours: float = 0, minutes: float = 0) -> str:
    """`text` moved by a duration, as an ISO time in New York (what CADENCE_NOW takes)."""
    moved = parse_instant(text) + timedelta(days=days, hours=hours, minutes=minutes)
    return moved.astimezone(NEW_YORK).isoformat()


def iso(value: datetime | str) -> str:
    """A stored UTC time (from `--json`) as a CADENCE_NOW value."""
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    return when.astimezone(NEW_YORK).isoformat()


def import_two(cli: Cli, project: Path) -> None:
    (project / "two.csv").write_text(LEAD_CSV)
    ok(cli("leads", "import", "two.csv"))


def status(cli: Cli, lead: str, now: str = MON) -> dict[str, Any]:
    data: dict[str, Any] = as_json(cli("status", lead, "--json", now=now))
    return data


def enrollment(cli: Cli, lead: str, sequence: str, now: str = MON) -> dict[str, Any]:
    """The lead's latest enrollment in `sequence`."""
    found = [e for e in status(cli, lead, now)["enrollments"] if e["sequence"] == sequence]
    assert found, f"{lead} was never enrolled in {sequence}"
    return found[-1]


def touches(cli: Cli, lead: str, now: str, sequence: str | None = None) -> dict[str, dict[str, Any]]:
    """Step id -> the lead's latest recorded touch of that step (planned ones excluded)."""
    out: dict[str, dict[str, Any]] = {}
    for t in status(cli, lead, now)["touches"]:
        if t["id"] is not None and (sequence is None or t["sequence"] == sequence):
            out[t["step"]] = t
    return out


def history(cli: Cli, lead: str, now: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = as_json(cli("history", lead, "--json", now=now))
    return items


def events(cli: Cli, lead: str, now: str) -> list[str]:
    return [h["detail"]["event"] for h in history(cli, lead, now) if h["kind"] == "event"]


def open_task(cli: Cli, lead: str, now: str, step: str | None = None) -> dict[str, Any]:
    tasks = as_json(cli("tasks", "--json", now=now))
    found = [t for t in tasks if t["lead"]["id"] == lead and (step is None or t["step"] == step)]
    assert found, f"no open task for {lead} ({step or 'any step'}) at {now}: {tasks}"
    task: dict[str, Any] = found[0]
    return task


def log(cli: Cli, lead: str, code: str, now: str, step: str | None = None) -> list[str]:
    """Log `code` on the lead's open task (of `step`); returns the actions taken."""
    task = open_task(cli, lead, now, step)
    done: list[str] = as_json(cli("log", str(task["id"]), code, "--json", now=now))["actions"]
    return done


def event(cli: Cli, lead: str, name: str, now: str, *extra: str) -> list[str]:
    done: list[str] = as_json(cli("event", lead, name, *extra, "--json", now=now))["actions"]
    return done


def next_due(cli: Cli, lead: str, now: str) -> str | None:
    """When the lead's next planned touch is due (any live enrollment), or None."""
    dues = [e["next_due_at"] for e in status(cli, lead, now)["enrollments"] if e["state"] == "active"]
    dues = [d for d in dues if d]
    return iso(min(dues)) if dues else None


def run(cli: Cli, now: str) -> dict[str, Any]:
    report: dict[str, Any] = as_json(cli("run", "--once", "--json", now=now))
    return report


def run_next(cli: Cli, lead: str, now: str) -> str:
    """Run the engine exactly when the lead's next touch is due; returns that time."""
    due = next_due(cli, lead, now)
    assert due is not None, f"{lead} has nothing due after {now}"
    run(cli, due)
    return due


def outbox_emails(project: Path, to: str) -> list[str]:
    """Subjects of the emails written to the outbox for address `to`, oldest touch first."""
    subjects = []
    for path in sorted((project / "outbox" / "email").glob("*.eml")):
        message = message_from_bytes(path.read_bytes())
        if to in str(message["To"]):
            subjects.append(str(make_header(decode_header(str(message["Subject"])))))
    return subjects


def outbox_sms(project: Path, to: str) -> list[str]:
    path = project / "outbox" / "sms.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [m["body"] for m in map(json.loads, lines) if m["to"] == to]


def insert_rules(project: Path, rules: str) -> None:
    """Put extra rules (YAML list items) at the top of config.yaml's `rules:`, so they match first."""
    config = project / "config.yaml"
    top = re.compile(r"^rules:.*$", re.MULTILINE)
    text, count = top.subn(lambda m: m.group(0) + "\n" + rules.rstrip("\n"), config.read_text(), count=1)
    assert count == 1
    config.write_text(text)
