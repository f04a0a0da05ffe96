"""`cadence plan`, `cadence apply` and `cadence run` with edited files, and A/B variants, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

from cadence.plan.variants import assign
from cadence.spec.model import Step
from tests.conftest import Cli

MON = "2026-11-30T08:00:00-05:00"
RUN_AT = "2026-11-30T16:00:00-05:00"


def _ok(result) -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code == 0, result.output


def _imported(result) -> None:  # type: ignore[no-untyped-def]
    """examples/leads.csv has four bad rows on purpose: they are rejected (exit 1), the eight good ones go in."""
    assert result.exit_code == 1 and "imported 8" in result.stdout, result.output


def _started(cli: Cli) -> None:
    _imported(cli("leads", "import", "leads.csv", now=MON))
    _ok(cli("enroll", "outbound-saas", "--all-new", now=MON))


def _edit_bump_day(project: Path) -> None:
    path = project / "sequences" / "outbound-saas.yaml"
    text = path.read_text()
    assert "  - id: bump\n    day: 3\n" in text
    path.write_text(text.replace("  - id: bump\n    day: 3\n", "  - id: bump\n    day: 4\n"))


def test_run_refuses_unapplied_edits_and_says_what_to_do(cli: Cli, project: Path) -> None:
    _started(cli)
    _edit_bump_day(project)
    refused = cli("run", "--once", now=RUN_AT)
    assert refused.exit_code == 1
    assert "sequence files differ from their published versions: outbound-saas" in refused.stderr
    assert "cadence plan" in refused.stderr and "--use published" in refused.stderr
    status = json.loads(cli("status", "L1", "--json", now=RUN_AT).stdout)
    assert all(t["status"] == "scheduled" for t in status["touches"])  # nothing went out
    published = cli("run", "--once", "--use", "published", "--json", now=RUN_AT)
    _ok(published)
    assert json.loads(published.stdout)["dispatch"]["sent"]["email"] >= 1
    assert "unapplied edits in outbound-saas" in published.stderr


def test_plan_then_apply_through_the_cli(cli: Cli, project: Path) -> None:
    _started(cli)
    _edit_bump_day(project)
    planned = json.loads(cli("plan", "outbound-saas", "--json", now=RUN_AT).stdout)
    [seq] = planned["sequences"]
    assert (seq["sequence"], seq["status"], seq["from_version"], seq["to_version"]) == (
        "outbound-saas",
        "changed",
        1,
        2,
    )
    [change] = seq["changes"]
    live = seq["live_enrollments"]
    assert (change["step"], change["fields"], change["enrollments"]) == ("bump", {"day": [3, 4]}, live)
    text = cli("plan", now=RUN_AT)
    _ok(text)
    assert f"bump: day: 3 -> 4, {live} active enrollments" in text.stdout
    not_confirmed = cli("apply", now=RUN_AT)  # no --yes and nobody answering: nothing happens
    assert not_confirmed.exit_code == 1
    still = json.loads(cli("plan", "--json", now=RUN_AT).stdout)["sequences"]
    assert [s["status"] for s in still if s["sequence"] == "outbound-saas"] == ["changed"]
    applied = json.loads(cli("apply", "outbound-saas", "--yes", "--json", now=RUN_AT).stdout)
    assert applied["applied"] is True and applied["sequences"] == planned["sequences"]
    assert json.loads(cli("plan", "outbound-saas", "--json", now=RUN_AT).stdout)["sequences"] == []
    _ok(cli("run", "--once", now=RUN_AT))
    history = json.loads(cli("history", "L1", "--json", now=RUN_AT).stdout)
    assert any(h["kind"] == "migrated" for h in history)


def test_auto_apply_applies_before_the_engine_runs(cli: Cli, project: Path) -> None:
    _started(cli)
    _edit_bump_day(project)
    config = project / "config.yaml"
    config.write_text(config.read_text() + "auto_apply: true\n")
    result = cli("run", "--once", now=RUN_AT)
    _ok(result)
    assert "applied outbound-saas v2" in result.stderr
    status = json.loads(cli("status", "L1", "--json", now=RUN_AT).stdout)
    assert {e["version"] for e in status["enrollments"]} == {2}


VARIANTS = """id: ab-test
name: A/B test
kind: outbound
schedule: {window: always, spread: 0}
steps:
  - id: intro
    day: 1
    channel: email
    variants:
      - {id: a, subject: "Quick question", template: outbound-saas/intro.md.j2}
      - {id: b, subject: "{{ lead.company }} + Acme", template: outbound-saas/value.md.j2, weight: 2}
  - {id: bump, day: 2, channel: email, reply_to: intro, template: outbound-saas/bump.md.j2}
"""


def test_variants_are_assigned_by_lead_recorded_and_sent(cli: Cli, project: Path) -> None:
    (project / "sequences" / "ab-test.yaml").write_text(VARIANTS)
    _ok(cli("validate"))
    _imported(cli("leads", "import", "leads.csv", now=MON))
    enrolled = json.loads(cli("enroll", "ab-test", "--all-new", "--json", now=MON).stdout)["enrolled"]
    _ok(cli("run", "--once", now="2026-11-30T10:00:00-05:00"))
    _ok(cli("run", "--once", now="2026-12-01T10:00:00-05:00"))
    import yaml

    from cadence.spec.model import Sequence

    spec = Sequence.model_validate(yaml.safe_load(VARIANTS))
    step: Step = spec.steps[0]
    seen = set()
    for item in enrolled:
        lead = item["lead"]
        touches = json.loads(cli("status", lead, "--json", now="2026-12-01T12:00:00-05:00").stdout)["touches"]
        by_step = {t["step"]: t for t in touches}
        expected = assign("ab-test", step, lead)
        seen.add(expected)
        assert by_step["intro"]["variant"] == expected
        assert by_step["intro"]["status"] == "sent"
        if expected == "a":
            assert by_step["intro"]["subject"] == "Quick question"
        else:
            assert by_step["intro"]["subject"].endswith(" + Acme")
        assert by_step["bump"]["subject"] == f"Re: {by_step['intro']['subject']}"  # the thread follows the variant
    assert seen == {"a", "b"}


def test_validate_points_at_a_broken_variant(cli: Cli, project: Path) -> None:
    broken = VARIANTS.replace("outbound-saas/value.md.j2", "outbound-saas/missing.md.j2").replace("{id: b,", "{id: a,")
    (project / "sequences" / "ab-test.yaml").write_text(broken)
    result = cli("validate")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert any(line.startswith("sequences/ab-test.yaml:11:") and "duplicate variant id 'a'" in line for line in lines)
    assert any(
        line.startswith("sequences/ab-test.yaml:11:") and "outbound-saas/missing.md.j2' not found" in line
        for line in lines
    )
