"""`cadence validate`: broken files report `path:line:col: message`, pointing where a manager should look.

Each broken file is written out whole, so its line numbers can be counted by eye.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from textwrap import dedent

import pytest
from typer.testing import CliRunner

from cadence.cli.app import app
from cadence.config import check_settings, quiet_window
from cadence.spec.load import Windows, load_catalog, load_sequence
from cadence.spec.sandbox import RenderLimits
from cadence.spec.templates import TemplateFolder
from cadence.spec.values import Window

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = {
    "t/email.md.j2": "Hi {{ lead.first_name | default('there') }},\n\nA short note.\n",
    "t/call.md.j2": "Ask about {{ lead.company }}.\n",
    "t/sms.txt.j2": "Hi {{ lead.first_name }}, quick question: worth a call this week? Reply STOP to opt out.\n",
    "t/long-sms.txt.j2": "Hi {{ lead.first_name }}, " + "this message keeps going " * 7 + "\n",
    "t/broken.md.j2": "Hi {{ lead.first_name }},\n\n{{ lead.company }\nThanks\n",
}


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    for name, text in TEMPLATES.items():
        path = tmp_path / "templates" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (tmp_path / "sequences").mkdir()
    return tmp_path


def diagnose(workspace: Path, text: str) -> list[str]:
    path = workspace / "sequences" / "s.yaml"
    path.write_text(dedent(text).lstrip())
    _, diags = load_sequence(path, TemplateFolder(workspace / "templates"), "sequences/s.yaml")
    return [str(d) for d in diags]


def test_a_valid_sequence_has_no_diagnostics(workspace: Path) -> None:
    assert (
        diagnose(
            workspace,
            """
            id: s
            name: S
            steps:
              - {id: intro, day: 1, channel: email, subject: Hi, template: t/email.md.j2}
              - {id: call-1, day: 1, channel: call, template: t/call.md.j2}
              - {id: bump, day: 3, channel: email, reply_to: intro, template: t/email.md.j2}
              - {id: sms-1, day: 4, at: "10:30", channel: sms, template: t/sms.txt.j2}
              - {id: li-1, day: 5, channel: task, title: Connect on LinkedIn}
            """,
        )
        == []
    )


def test_spread_zero_written_as_a_number_means_no_spread(workspace: Path, tmp_path: Path) -> None:
    text = """
        id: s
        name: S
        schedule: {spread: 0}
        steps:
          - {id: li-1, day: 1, channel: task, title: Connect}
        """
    assert diagnose(workspace, text) == []
    config = tmp_path / "config.yaml"
    config.write_text("schedule: {window: always, spread: 0}\n")
    settings, diags = check_settings(config)
    assert diags == []
    assert settings is not None and settings.schedule.spread == "0"


CASES = {
    "unknown-key": (
        """
        id: s
        name: S
        steps:
          - id: intro
            day: 1
            channel: email
            subject: Hi
            template: t/email.md.j2
            delay: 2
        """,
        ["sequences/s.yaml:9:5: unknown key 'delay'"],
    ),
    "unknown-top-level-key": (
        """
        id: s
        name: S
        colour: blue
        steps:
          - {id: li-1, day: 1, channel: task, title: Connect}
        """,
        ["sequences/s.yaml:3:1: unknown key 'colour'"],
    ),
    "unknown-channel": (
        """
        id: s
        name: S
        steps:
          - id: fax-1
            day: 1
            channel: fax
            template: t/call.md.j2
        """,
        ["sequences/s.yaml:6:5: channel: Input should be 'email', 'sms', 'call' or 'task'"],
    ),
    "duplicate-step-id": (
        """
        id: s
        name: S
        steps:
          - {id: intro, day: 1, channel: email, subject: Hi, template: t/email.md.j2}
          - {id: call-1, day: 1, channel: call, template: t/call.md.j2}
          - id: intro
            day: 2
            channel: email
            subject: Again
            template: t/email.md.j2
        """,
        ["sequences/s.yaml:6:5: duplicate step id 'intro' (first used by step 1)"],
    ),
    "reply-to-a-later-step": (
        """
        id: s
        name: S
        steps:
          - id: bump
            day: 1
            channel: email
            reply_to: intro
            template: t/email.md.j2
          - {id: intro, day: 2, channel: email, subject: Hi, template: t/email.md.j2}
        """,
        [
            "sequences/s.yaml:7:5: reply_to 'intro' names a later step; it must name an earlier email step",
        ],
    ),
    "reply-to-a-call-step": (
        """
        id: s
        name: S
        steps:
          - {id: call-1, day: 1, channel: call, template: t/call.md.j2}
          - id: bump
            day: 2
            channel: email
            reply_to: call-1
            subject: Following up
            template: t/email.md.j2
        """,
        ["sequences/s.yaml:8:5: reply_to 'call-1' is a call step, not an email"],
    ),
    "reply-to-on-an-sms-step": (
        """
        id: s
        name: S
        steps:
          - {id: intro, day: 1, channel: email, subject: Hi, template: t/email.md.j2}
          - id: sms-1
            day: 2
            channel: sms
            reply_to: intro
            template: t/sms.txt.j2
        """,
        ["sequences/s.yaml:8:5: reply_to only applies to email steps"],
    ),
    "reply-to-nothing": (
        """
        id: s
        name: S
        steps:
          - {id: intro, day: 1, channel: email, subject: Hi, template: t/email.md.j2}
          - id: bump
            day: 2
            channel: email
            reply_to: intor
            template: t/email.md.j2
        """,
        ["sequences/s.yaml:8:5: reply_to 'intor' names no step; it must name an earlier email step"],
    ),
    "days-decrease": (
        """
        id: s
        name: S
        steps:
          - {id: intro, day: 3, channel: email, subject: Hi, template: t/email.md.j2}
          - id: call-1
            day: 2
            channel: call
            template: t/call.md.j2
        """,
        ["sequences/s.yaml:6:5: day 2 comes after day 3: days must not decrease"],
    ),
    "duplicate-yaml-key": (
        """
        id: s
        name: S
        steps:
          - id: intro
            day: 1
            channel: email
            day: 2
            subject: Hi
            template: t/email.md.j2
        """,
        ["sequences/s.yaml:7:5: duplicate key 'day'"],
    ),
    "yaml-syntax-error": (
        """
        id: s
        name: S
        steps:
          - id: intro
            day: 1
           channel: email
        """,
        [
            "sequences/s.yaml:6:4: YAML syntax error: expected <block end>, but found '<block mapping start>'"
            " (while parsing a block collection started at line 4, column 3)"
        ],
    ),
    "yaml-unclosed-quote-names-where-it-opened": (
        """
        id: s
        name: "Outbound
        steps: []
        """,
        [
            "sequences/s.yaml:4:1: YAML syntax error: found unexpected end of stream"
            " (while scanning a quoted scalar started at line 2, column 7)"
        ],
    ),
    "bad-window": (
        """
        id: s
        name: S
        schedule:
          days: [mon, tue]
          window: "9 to 5"
        steps:
          - {id: li-1, day: 1, channel: task, title: Connect}
        """,
        ['sequences/s.yaml:5:3: window: window must look like "09:00-17:00" or be "always", not \'9 to 5\''],
    ),
    "overnight-window": (
        """
        id: s
        name: S
        schedule: {window: "22:00-06:00"}
        steps:
          - {id: li-1, day: 1, channel: task, title: Connect}
        """,
        [
            "sequences/s.yaml:3:12: window: window '22:00-06:00' must end after it starts"
            " (overnight windows are not supported)"
        ],
    ),
    "bad-at": (
        """
        id: s
        name: S
        steps:
          - {id: sms-1, day: 1, channel: sms, at: "10h30", template: t/sms.txt.j2}
        """,
        ["sequences/s.yaml:4:39: at: time of day must look like \"10:30\", not '10h30'"],
    ),
    "at-after-the-window-closes": (
        """
        id: s
        name: S
        schedule: {window: "09:00-17:00"}
        steps:
          - id: sms-1
            day: 1
            at: "17:30"
            channel: sms
            template: t/sms.txt.j2
        """,
        ["sequences/s.yaml:7:5: at '17:30' is not before the window closes (09:00-17:00): the step could never be due"],
    ),
    "missing-template-and-subject": (
        """
        id: s
        name: S
        steps:
          - id: intro
            day: 1
            channel: email
        """,
        [
            "sequences/s.yaml:4:5: email step 'intro' needs a template",
            "sequences/s.yaml:4:5: email step 'intro' needs a subject (or reply_to an earlier email)",
        ],
    ),
    "jinja-syntax-error-in-subject": (
        """
        id: s
        name: S
        steps:
          - id: intro
            day: 1
            channel: email
            subject: "{{ lead.company }"
            template: t/email.md.j2
        """,
        ["sequences/s.yaml:7:5: subject: Jinja2 syntax error: unexpected '}'"],
    ),
    "every-problem-is-reported-not-just-the-first": (
        """
        id: s
        name: S
        steps:
          - {id: intro, day: 2, channel: email, subject: Hi, template: t/email.md.j2}
          - {id: intro, day: 1, channel: task, title: Research}
          - {id: bump, day: 3, channel: email, reply_to: later, template: t/email.md.j2}
          - {id: later, day: 4, channel: email, subject: Hi, template: t/email.md.j2}
        """,
        [
            "sequences/s.yaml:5:6: duplicate step id 'intro' (first used by step 1)",
            "sequences/s.yaml:5:17: day 1 comes after day 2: days must not decrease",
            "sequences/s.yaml:6:40: reply_to 'later' names a later step; it must name an earlier email step",
        ],
    ),
}


@pytest.mark.parametrize(("text", "expected"), CASES.values(), ids=CASES.keys())
def test_broken_sequence_is_reported_at_its_line(workspace: Path, text: str, expected: list[str]) -> None:
    assert diagnose(workspace, text) == expected


def test_missing_template_is_reported_at_the_template_key(workspace: Path) -> None:
    diags = diagnose(
        workspace,
        """
        id: s
        name: S
        steps:
          - id: intro
            day: 1
            channel: email
            subject: Hi
            template: t/intro.md.j2
        """,
    )
    assert diags == [f"sequences/s.yaml:8:5: template 't/intro.md.j2' not found under {workspace / 'templates'}"]


def test_jinja_syntax_error_is_reported_at_the_templates_own_line(workspace: Path) -> None:
    diags = diagnose(
        workspace,
        """
        id: s
        name: S
        steps:
          - {id: intro, day: 1, channel: email, subject: Hi, template: t/broken.md.j2}
        """,
    )
    assert diags == [f"{workspace / 'templates' / 't' / 'broken.md.j2'}:3:1: Jinja2 syntax error: unexpected '}}'"]


def test_sms_longer_than_one_segment_is_a_warning_not_an_error(workspace: Path) -> None:
    path = workspace / "sequences" / "s.yaml"
    path.write_text(
        dedent(
            """\
            id: s
            name: S
            steps:
              - id: sms-1
                day: 1
                channel: sms
                template: t/long-sms.txt.j2
            """
        )
    )
    loaded, diags = load_sequence(path, TemplateFolder(workspace / "templates"), "sequences/s.yaml")
    assert [str(d) for d in diags] == [
        "sequences/s.yaml:7:5: warning: SMS text is about 190 characters (GSM-7, fields counted as 10):"
        " it will split into 2 segments"
    ]
    assert diags[0].severity == "warning"
    assert loaded is not None  # a warning does not keep the sequence out of the catalog


def test_sequence_with_errors_is_left_out_of_the_catalog(workspace: Path) -> None:
    (workspace / "sequences" / "good.yaml").write_text(
        "id: good\nname: Good\nsteps:\n  - {id: li-1, day: 1, channel: task, title: Connect}\n"
    )
    (workspace / "sequences" / "bad.yaml").write_text("id: bad\nname: Bad\nsteps:\n  - {id: x, day: 1, channel: fax}\n")
    catalog = load_catalog(workspace / "sequences", TemplateFolder(workspace / "templates"), base=workspace)
    assert sorted(catalog.sequences) == ["good"]
    assert [str(d) for d in catalog.errors] == [
        "sequences/bad.yaml:4:21: channel: Input should be 'email', 'sms', 'call' or 'task'"
    ]
    with pytest.raises(KeyError, match="its file has errors"):
        catalog.get("bad")


def test_two_files_with_the_same_sequence_id_are_refused(workspace: Path) -> None:
    for name in ("a.yaml", "b.yaml"):
        (workspace / "sequences" / name).write_text(
            "id: same\nname: Same\nsteps:\n  - {id: li-1, day: 1, channel: task, title: Connect}\n"
        )
    catalog = load_catalog(workspace / "sequences", TemplateFolder(workspace / "templates"), base=workspace)
    assert [str(d) for d in catalog.errors] == [
        "sequences/b.yaml:1:1: sequence id 'same' is already used by sequences/a.yaml"
    ]


# -- config.yaml -----------------------------------------------------------------------------------------------

CONFIG_CASES = {
    "unknown-key": (
        """
        timezone: America/New_York
        country: US
        colour: red
        senders:
          - {id: alice, name: Alice Moreno, email: alice@acme.example}
        """,
        ["3:1: unknown key 'colour'"],
    ),
    "bad-timezone": (
        """
        country: US
        timezone: America/Nowhere
        senders:
          - {id: alice, name: Alice Moreno, email: alice@acme.example}
        """,
        ["2:1: timezone: unknown time zone 'America/Nowhere' (use an IANA name like America/New_York)"],
    ),
    "duplicate-sender-id": (
        """
        timezone: America/New_York
        senders:
          - {id: alice, name: Alice Moreno, email: alice@acme.example}
          - {id: bob, name: Bob Okafor, email: bob@acme.example}
          - id: alice
            name: Alice Two
            email: alice2@acme.example
        """,
        ["5:5: sender id 'alice' appears twice (first as sender 1)"],
    ),
    "bad-default-window": (
        """
        timezone: America/New_York
        schedule:
          window: "9-5"
        """,
        ['3:3: window: window must look like "09:00-17:00" or be "always", not \'9-5\''],
    ),
    "bad-sender-phone": (
        """
        senders:
          - id: alice
            name: Alice Moreno
            email: alice@acme.example
            phone: "555-0100"
        """,
        ["5:5: phone: phone '555-0100' is not in E.164 form (+15550100001): (0) Missing or invalid default region."],
    ),
    "duplicate-yaml-key": (
        """
        timezone: America/New_York
        country: US
        timezone: Europe/London
        """,
        ["3:1: duplicate key 'timezone'"],
    ),
}


@pytest.mark.parametrize(("text", "expected"), CONFIG_CASES.values(), ids=CONFIG_CASES.keys())
def test_broken_config_is_reported_at_its_line(tmp_path: Path, text: str, expected: list[str]) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(dedent(text).lstrip())
    _, diags = check_settings(path)
    assert [str(d) for d in diags] == [f"{path}:{e}" for e in expected]


def test_starter_config_is_valid() -> None:
    settings, diags = check_settings(ROOT / "config.yaml")
    assert diags == []
    assert settings is not None
    assert [s.id for s in settings.senders] == ["alice", "bob"]


# -- the `cadence validate` command ----------------------------------------------------------------------------


@pytest.fixture
def starter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(ROOT / "config.yaml", root / "config.yaml")
    shutil.copytree(ROOT / "sequences", root / "sequences")
    shutil.copytree(ROOT / "templates", root / "templates")
    monkeypatch.chdir(root)  # diagnostics name files relative to where the command runs
    return root


def validate(project: Path, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, ["--config", str(project / "config.yaml"), "validate", *args])


def test_validate_passes_the_starter_project(starter: Path) -> None:
    result = validate(starter)
    assert result.exit_code == 0, result.output
    assert "5 sequence(s) valid, 0 error(s), 0 warning(s)" in result.stdout
    assert result.stderr == ""


def test_validate_json_on_the_starter_project(starter: Path) -> None:
    result = validate(starter, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"ok": True, "sequences": 5, "diagnostics": []}


def _break_starter(starter: Path) -> None:
    seq = starter / "sequences" / "outbound-saas.yaml"
    text = seq.read_text()
    text = text.replace(
        "    reply_to: intro\n    template: outbound-saas/bump.md.j2",
        "    reply_to: value\n    template: outbound-saas/bump.md.j2",
    )
    text = text.replace("template: outbound-saas/value.md.j2", "template: outbound-saas/valu.md.j2")
    seq.write_text(text)
    sms = starter / "templates" / "outbound-saas" / "sms-2.txt.j2"
    sms.write_text("{% if lead.first_name %}Hi {{ lead.first_name }}\n")


def test_validate_reports_every_problem_on_stderr_and_exits_1(starter: Path) -> None:
    _break_starter(starter)
    result = validate(starter)
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    templates = starter / "templates"
    assert lines == [
        "sequences/outbound-saas.yaml:23:5: reply_to 'value' names a later step; it must name an earlier email step",
        f"sequences/outbound-saas.yaml:47:5: template 'outbound-saas/valu.md.j2' not found under {templates}",
        f"{templates / 'outbound-saas' / 'sms-2.txt.j2'}:1:1: Jinja2 syntax error: Unexpected end of template."
        " Jinja was looking for the following tags: 'elif' or 'else' or 'endif'."
        " The innermost block that needs to be closed is 'if'.",
        "4 sequence(s) valid, 3 error(s), 0 warning(s)",
    ]


def test_validate_json_lists_every_diagnostic(starter: Path) -> None:
    _break_starter(starter)
    result = validate(starter, "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert report["sequences"] == 4
    assert [(d["path"], d["line"], d["col"], d["severity"]) for d in report["diagnostics"]] == [
        ("sequences/outbound-saas.yaml", 23, 5, "error"),
        ("sequences/outbound-saas.yaml", 47, 5, "error"),
        (str(starter / "templates" / "outbound-saas" / "sms-2.txt.j2"), 1, 1, "error"),
    ]
    assert report["diagnostics"][0]["message"] == (
        "reply_to 'value' names a later step; it must name an earlier email step"
    )


def test_validate_reports_a_broken_config_and_exits_1(starter: Path) -> None:
    config = starter / "config.yaml"
    config.write_text(config.read_text().replace("timezone: America/New_York", "timezone: America/Nowhere"))
    result = validate(starter, "--json")
    assert result.exit_code == 1
    diags = json.loads(result.stdout)["diagnostics"]
    assert [(d["line"], d["message"]) for d in diags] == [
        (3, "timezone: unknown time zone 'America/Nowhere' (use an IANA name like America/New_York)")
    ]


def test_validate_warning_alone_exits_0(starter: Path) -> None:
    sms = starter / "templates" / "outbound-saas" / "sms-1.txt.j2"
    sms.write_text("Hi {{ lead.first_name }}, " + "a long message " * 12 + "\n")
    result = validate(starter)
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[0].startswith("sequences/outbound-saas.yaml:29:5: warning: SMS text is about")
    assert "5 sequence(s) valid, 0 error(s), 1 warning(s)" in result.stdout


# -- every problem in one pass, `at` against the window, templates within the render limits ---------------------


def test_a_schema_error_in_one_step_does_not_hide_the_checks_of_the_others(workspace: Path) -> None:
    diags = diagnose(
        workspace,
        """
        id: s
        name: S
        steps:
          - {id: intro, day: 2, channel: email, subject: Hi, template: t/email.md.j2}
          - {id: fax-1, day: 2, channel: fax, template: t/call.md.j2}
          - {id: intro, day: 1, channel: task, title: Research}
          - {id: bump, day: 3, channel: email, reply_to: later, template: t/missing.md.j2}
          - {id: later, day: 4, channel: email, subject: "{{ lead.company }", template: t/broken.md.j2}
          - {id: chase, day: 5, channel: email, reply_to: fax-1, template: t/email.md.j2}
        """,
    )
    templates = workspace / "templates"
    assert diags == [
        "sequences/s.yaml:5:25: channel: Input should be 'email', 'sms', 'call' or 'task'",
        "sequences/s.yaml:6:6: duplicate step id 'intro' (first used by step 1)",
        "sequences/s.yaml:6:17: day 1 comes after day 2: days must not decrease",
        "sequences/s.yaml:7:40: reply_to 'later' names a later step; it must name an earlier email step",
        f"sequences/s.yaml:7:57: template 't/missing.md.j2' not found under {templates}",
        f"{templates / 't' / 'broken.md.j2'}:3:1: Jinja2 syntax error: unexpected '}}'",
        "sequences/s.yaml:8:41: subject: Jinja2 syntax error: unexpected '}'",
    ]  # and nothing about `reply_to: fax-1`: that step's own error is reported, a guess about it would mislead


def _with_at(workspace: Path, at: str, channel: str = "email", schedule: str = "") -> list[str]:
    template = "t/sms.txt.j2" if channel == "sms" else "t/email.md.j2"
    path = workspace / "sequences" / "s.yaml"
    path.write_text(
        f"id: s\nname: S\n{schedule}steps:\n"
        f"  - {{id: s1, day: 1, channel: {channel}, at: '{at}', subject: Hi, template: {template}}}\n"
    )
    if channel == "sms":
        path.write_text(path.read_text().replace("subject: Hi, ", ""))
    windows = Windows(Window.parse("09:00-17:00"), quiet_window("21:00-08:00"))
    _, diags = load_sequence(path, TemplateFolder(workspace / "templates"), "sequences/s.yaml", windows)
    return [str(d) for d in diags]


def test_an_at_before_the_inherited_window_opens_is_a_warning(workspace: Path) -> None:
    assert _with_at(workspace, "07:30") == [
        "sequences/s.yaml:4:38: warning: at '07:30' is before the window opens (09:00-17:00, config.yaml's schedule):"
        " the step goes out at 09:00 instead"
    ]
    assert _with_at(workspace, "07:30", schedule="schedule: {window: '07:00-12:00'}\n") == []


def test_an_at_after_the_inherited_window_closes_is_an_error(workspace: Path) -> None:
    assert _with_at(workspace, "18:00") == [
        "sequences/s.yaml:4:38: at '18:00' is not before the window closes (09:00-17:00, config.yaml's schedule):"
        " the step could never be due"
    ]


def test_an_sms_at_inside_quiet_hours_could_never_be_due(workspace: Path) -> None:
    assert _with_at(workspace, "21:30", "sms", "schedule: {window: always}\n") == [
        "sequences/s.yaml:5:36: at '21:30' is not before the window closes (00:00-24:00; SMS only 08:00-21:00):"
        " the step could never be due"
    ]
    assert _with_at(workspace, "21:30", "email", "schedule: {window: always}\n") == []


def test_validate_warns_about_an_at_before_the_window_opens(starter: Path) -> None:
    seq = starter / "sequences" / "outbound-saas.yaml"
    seq.write_text(seq.read_text().replace('at: "10:30"', 'at: "08:15"'))
    result = validate(starter)
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "sequences/outbound-saas.yaml:27:5: warning: at '08:15' is before the window opens"
        " (09:00-17:00; SMS only 08:00-21:00): the step goes out at 09:00 instead"
    ]


def test_a_template_that_never_ends_is_an_error_at_its_own_line(starter: Path) -> None:
    config = starter / "config.yaml"
    config.write_text(config.read_text() + "render:\n  timeout_seconds: 0.2\n")
    template = starter / "templates" / "outbound-saas" / "bump.md.j2"
    template.write_text(
        "Hi {{ lead.first_name }},\n{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}\n"
    )
    started = time.monotonic()
    result = validate(starter, "--json")
    assert time.monotonic() - started < 5
    assert result.exit_code == 1
    assert [(d["path"], d["line"], d["message"]) for d in json.loads(result.stdout)["diagnostics"]] == [
        (
            str(template),
            2,
            "took longer than 0.2 s to render (render.timeout_seconds): a loop that runs too long?"
            " (rendered with sample values)",
        )
    ]


def test_render_limits_come_from_config_and_are_checked(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("render:\n  timeout_seconds: 0.5\n  max_email_kib: 64\n  max_sms_chars: 320\n")
    settings, diags = check_settings(config)
    assert diags == [] and settings is not None
    assert settings.render.limits == RenderLimits(timeout_seconds=0.5, max_email_bytes=65536, max_sms_chars=320)
    assert check_settings(tmp_path / "missing.yaml")[1][0].message == "file not found"
    config.write_text("render:\n  timeout_seconds: .inf\n  max_email_kib: 0\n  max_sms_chars: 5000\n")
    assert [str(d) for d in check_settings(config)[1]] == [
        f"{config}:2:3: timeout_seconds: Input should be less than or equal to 60",
        f"{config}:3:3: max_email_kib: Input should be greater than or equal to 1",
        f"{config}:4:3: max_sms_chars: Input should be less than or equal to 1600",
    ]


def test_days_and_durations_too_large_to_plan_are_refused_at_their_line(workspace: Path) -> None:
    diags = diagnose(
        workspace,
        """
        id: s
        name: S
        schedule: {spread: 99999999w}
        steps:
          - {id: li-1, day: 99999999999999999999, channel: task, title: Connect}
        """,
    )
    assert diags == [
        "sequences/s.yaml:3:12: spread: duration '99999999w' is longer than ten years",
        "sequences/s.yaml:5:16: day: Input should be less than or equal to 1000",
    ]
