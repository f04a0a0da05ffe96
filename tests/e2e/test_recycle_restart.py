"""A pending recycle is stored: a new `cadence` process, weeks later, carries it out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from cadence.clock import parse_instant
from tests.conftest import ROOT, Cli
from tests.e2e.cli_flow import MON, import_two, log, ok, outbox_emails, run, status


def cadence_process(project: Path, db_url: str, now: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m cadence ...` in its own process: nothing survives from the commands before it but the store."""
    env = {**os.environ, "CADENCE_NOW": now, "CADENCE_DATABASE_URL": db_url, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "cadence", "--config", str(project / "config.yaml"), *args],
        cwd=project, env=env, text=True, capture_output=True, timeout=120, check=False,
    )  # fmt: skip


def test_a_recycle_pending_across_a_restart_is_carried_out_by_a_new_process(
    cli: Cli, project: Path, db_url: str
) -> None:
    import_two(cli, project)
    ok(cli("enroll", "outbound-saas", "L1", now=MON))
    run(cli, "2026-11-30T10:00:00-05:00")
    log(cli, "L1", "not_now", "2026-12-01T11:00:00-05:00")  # recycle into nurture-quarterly on Dec 31
    assert [e["sequence"] for e in status(cli, "L1")["enrollments"]] == ["outbound-saas"]
    engine = cadence_process(project, db_url, "2026-12-31T11:00:00-05:00", "run", "--once", "--json")
    assert engine.returncode == 0, engine.stderr
    report = json.loads(engine.stdout)
    assert report["sweep"]["recycled"] == 1 and report["dispatch"]["sent"] == {"email": 1}
    nurture = status(cli, "L1", "2026-12-31T11:05:00-05:00")["enrollments"][-1]
    assert (nurture["sequence"], nurture["state"]) == ("nurture-quarterly", "active")
    assert parse_instant(nurture["enrolled_at"]) == parse_instant("2026-12-31T11:00:00-05:00")
    assert outbox_emails(project, "dana@northwind.example")[-1] == "Picking this back up, Dana"
    assert run(cli, "2027-01-05T11:00:00-05:00")["sweep"]["recycled"] == 0  # carried out once, then gone
