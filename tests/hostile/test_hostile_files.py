"""Hostile sequence files, config.yaml files and templates (tests/hostile/yaml/, tests/hostile/templates/).

Each file either gets a clear error naming the place (`path:line:col`) or is handled, through
the real command (`cadence validate`, and for templates the renderer the engine, `enroll` and
`preview` use). Never a traceback, never a hang: nothing takes more than a few seconds (the
promise is a second for YAML; SECONDS is generous so that a busy CI machine stays green).
Files too big to keep in git (5 MB) are written by the tests themselves.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from cadence.cli.app import app
from cadence.plan.render import Renderer, RenderError, RenderLimits, clean_context
from tests.conftest import Cli

CORPUS = Path(__file__).resolve().parent
SECONDS = 5.0
CONFIG = """\
timezone: America/New_York
country: US
senders:
  - {id: alice, name: Alice Moreno, email: alice@acme.example}
render:
  timeout_seconds: 0.3
"""
GOOD = "id: good\nname: Good\nsteps:\n  - {id: intro, day: 1, channel: email, subject: Hi, template: ok.md.j2}\n"

# file -> (line, col, how the first diagnostic begins); every file is refused as a whole
SEQUENCES = {
    "nul_byte.yaml": (2, 10, "holds a NUL character (byte 0x00)"),
    "nul_escape.yaml": (2, 7, "YAML error: text holds a NUL character"),
    "lone_surrogate.yaml": (2, 7, "YAML error: text holds a lone surrogate"),
    "control_character.yaml": (2, 11, "YAML syntax error: character #x0007 is not allowed"),
    "deep_nesting_flow.yaml": (3, 71, "values nest more than 64 levels deep"),
    "deep_nesting_block.yaml": (66, 127, "values nest more than 64 levels deep"),
    "alias_inside_itself.yaml": (3, 8, "values nest more than 64 levels deep"),
    "alias_bomb.yaml": (3, 14, "the file holds more than 10,000 values once its aliases are expanded"),
    "merge_bomb.yaml": (3, 5, "the file holds more than 10,000 values once its aliases are expanded"),
    "many_steps.yaml": (1114, 17, "the file holds more than 10,000 values"),
    "huge_int.yaml": (5, 10, "YAML error: cannot read '99999999999999999999'... (5,000 characters) as a whole number"),
    "big_day.yaml": (4, 17, "day: Input should be less than or equal to 1000"),
    "huge_float.yaml": (4, 17, "day: Input should be a finite number"),
    "huge_duration.yaml": (3, 12, "spread: duration '999999999w' is longer than ten years"),
    "huge_weight.yaml": (9, 27, "weight: Input should be less than or equal to 1000"),
    "tabs.yaml": (4, 1, "YAML syntax error: found character '\\t' that cannot start any token"),
    "duplicate_keys.yaml": (8, 5, "duplicate key 'day'"),
    "wrong_types.yaml": (1, 1, "id: Input should be a valid string"),
    "unknown_keys.yaml": (3, 1, "unknown key 'colour'"),
    "latin1.yaml": (2, 10, "not UTF-8 text (byte 0xe9): save it as UTF-8"),
    "binary_garbage.yaml": (2, 118, "not UTF-8 text (byte 0x80): save it as UTF-8"),
    "empty.yaml": (1, 1, "a sequence file must be a mapping with id, name and steps"),
    "only_a_list.yaml": (1, 1, "a sequence file must be a mapping with id, name and steps"),
    "two_documents.yaml": (3, 1, "YAML syntax error: expected a single document in the stream, but found another"),
    "bad_date.yaml": (2, 7, "YAML error: cannot read '2026-13-45' as a date: month must be in 1..12"),
    "complex_key.yaml": (3, 3, "YAML error: a key must be a plain value, not a list or a mapping"),
    "python_tag.yaml": (2, 7, "YAML error: could not determine a constructor for the tag"),
    "unclosed_quote.yaml": (5, 1, "YAML syntax error: found unexpected end of stream (while scanning a quoted scalar"),
}
CONFIGS = {
    "config_nul_byte.yaml": (2, 11, "holds a NUL character (byte 0x00)"),
    "config_alias_bomb.yaml": (2, 19, "the file holds more than 10,000 values once its aliases are expanded"),
    "config_deep_nesting.yaml": (2, 71, "values nest more than 64 levels deep"),
    "config_huge_numbers.yaml": (3, 18, "YAML error: cannot read '99999999999999999999'... (4,400 characters)"),
    "config_wrong_types.yaml": (1, 1, "timezone: Input should be a valid string"),
    "config_unknown_keys.yaml": (2, 1, "unknown key 'colour'"),
    "config_latin1.yaml": (3, 26, "not UTF-8 text (byte 0xe9): save it as UTF-8"),
    "config_tabs.yaml": (3, 1, "YAML syntax error: found character '\\t' that cannot start any token"),
    "config_duration_overflow.yaml": (2, 3, "cooloff: duration '999999999w' is longer than ten years"),
}
# template -> (what `validate` says at the template's line, or None when only a lead's data can break it,
#              how the renderer's error begins after the template's name)
TEMPLATES: dict[str, tuple[tuple[int, str] | None, str]] = {
    "nested_loops.md.j2": ((2, "took longer than 0.3 s to render"), "line 2: took longer than 0.3 s to render"),
    "silent_loops.md.j2": ((2, "took longer than 0.3 s to render"), "line 2: took longer than 0.3 s to render"),
    "huge_output.md.j2": ((1, "writes more than 256 KiB"), "writes more than 256 KiB (render.max_email_kib)"),
    "sms_too_long.txt.j2": ((1, "writes more than 1,600 characters"), "writes more than 1,600 characters"),
    "string_times_a_billion.md.j2": ((2, "a repeated value would be 1,000,000,000 characters"), "line 2: a repeated"),
    "power_tower.md.j2": ((1, "a power too large to show"), "line 1: a power too large to show"),
    "format_width.md.j2": ((1, "a format width of 999999999"), "line 1: a format width of 999999999"),
    "printf_width.md.j2": ((1, "a format width of 999999999"), "line 1: a format width of 999999999"),
    "center_filter.md.j2": ((1, "a width or count of 999,999,999"), "line 1: a width or count of 999,999,999"),
    "join_flood.md.j2": ((1, "the result of |join would be"), "line 1: the result of |join would be"),
    "macro_recursion.md.j2": ((1, "calls itself too deeply"), "line 1: calls itself too deeply"),
    "macro_doubling.md.j2": ((1, "a joined value would be 524,288"), "line 1: a joined value would be 524,288"),
    "namespace_doubling.md.j2": ((2, "a joined value would be 524,288"), "line 2: a joined value would be 524,288"),
    "include_itself.md.j2": ((1, "calls itself too deeply"), "line 1: calls itself too deeply"),
    "recursive_loop.md.j2": ((1, "calls itself too deeply"), "line 1: calls itself too deeply"),
    "sandbox_mro.md.j2": ((1, "unsafe template: access to attribute '__class__'"), "line 1: unsafe template"),
    "sandbox_globals.md.j2": ((1, "unsafe template: access to attribute '__init__'"), "line 1: unsafe template"),
    "sandbox_format.md.j2": ((1, "unsafe template: access to attribute '__class__'"), "line 1: unsafe template"),
    "syntax_error.md.j2": ((3, "Jinja2 syntax error: unexpected '}'"), "line 3: Jinja2 syntax error"),
    "unclosed_block.md.j2": ((2, "Jinja2 syntax error: Unexpected end of template"), "line 2: Jinja2 syntax error"),
    "deep_nesting.md.j2": ((1, "the template nests too deeply to be compiled"), "the template nests too deeply"),
    "nul_byte.md.j2": ((2, "holds a NUL character (byte 0x00)"), "line 2: holds a NUL character"),
    "latin1.md.j2": ((2, "not UTF-8 text (byte 0xe9)"), "line 2: not UTF-8 text (byte 0xe9)"),
    "lipsum.md.j2": (None, "'lipsum' is undefined"),
    "undefined_field.md.j2": (None, "'dict object' has no attribute 'nickname' (the lead lacks a field"),
    "text_plus_number.md.j2": (None, 'line 2: TypeError: can only concatenate str (not "int") to str'),
    "division_by_zero.md.j2": (None, "line 1: ZeroDivisionError: division by zero"),
    "float_overflow.md.j2": (None, "line 1: a number is too large"),
    "nul_output.md.j2": (None, "the text holds a NUL character"),
}


def _project(root: Path, config: str = CONFIG) -> Path:
    (root / "sequences").mkdir(parents=True)
    shutil.copytree(CORPUS / "templates", root / "templates")
    (root / "config.yaml").write_text(config)
    (root / "sequences" / "good.yaml").write_text(GOOD)
    return root


def _validate(root: Path, *args: str) -> tuple[Result, float]:
    cwd = os.getcwd()
    os.chdir(root)  # diagnostics name files relative to where the command runs
    try:
        started = time.monotonic()
        result = CliRunner().invoke(app, ["--config", str(root / "config.yaml"), *args])
        return result, time.monotonic() - started
    finally:
        os.chdir(cwd)


def _diagnostics(result: Result) -> list[tuple[str, int, int, str]]:
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    report = json.loads(result.stdout)
    return [(d["path"], d["line"], d["col"], d["message"]) for d in report["diagnostics"]]


def _first(result: Result) -> tuple[str, int, int, str]:
    diagnostics = _diagnostics(result)
    assert diagnostics, result.output
    return diagnostics[0]


@pytest.mark.parametrize("name", SEQUENCES)
def test_a_hostile_sequence_file_is_an_error_at_its_place_and_the_others_still_load(tmp_path: Path, name: str) -> None:
    root = _project(tmp_path / "project")
    shutil.copy(CORPUS / "yaml" / name, root / "sequences" / name)
    result, elapsed = _validate(root, "validate", "--json")
    line, col, message = SEQUENCES[name]
    path, *place, said = _first(result)
    assert (path, *place) == (f"sequences/{name}", line, col)
    assert said.startswith(message), said
    assert result.exit_code == 1 and json.loads(result.stdout)["sequences"] == 1  # good.yaml still loads
    assert elapsed < SECONDS


def test_a_5_mb_sequence_file_is_refused_without_being_read(tmp_path: Path) -> None:
    root = _project(tmp_path / "project")
    (root / "sequences" / "huge.yaml").write_text("# " + "x" * (5 * 1024 * 1024) + "\nid: huge\n")
    result, elapsed = _validate(root, "validate", "--json")
    assert _first(result) == ("sequences/huge.yaml", 1, 1, "file is too large (5.0 MiB): the limit is 256 KiB")
    assert result.exit_code == 1 and elapsed < SECONDS


@pytest.mark.parametrize("name", CONFIGS)
def test_a_hostile_config_is_an_error_at_its_place_and_no_command_shows_a_traceback(tmp_path: Path, name: str) -> None:
    root = _project(tmp_path / "project")
    shutil.copy(CORPUS / "yaml" / name, root / "config.yaml")
    line, col, message = CONFIGS[name]
    result, elapsed = _validate(root, "validate", "--json")
    path, *place, said = _first(result)
    assert (path, *place) == (str(root / "config.yaml"), line, col)
    assert said.startswith(message), said
    assert result.exit_code == 1 and elapsed < SECONDS
    tasks, elapsed = _validate(root, "tasks")  # any command that needs the config says the same
    assert tasks.exit_code == 1 and isinstance(tasks.exception, SystemExit)
    assert tasks.stderr.startswith(f"{root / 'config.yaml'}:{line}:{col}: {message}")
    assert elapsed < SECONDS


def test_a_5_mb_config_is_refused_without_being_read(tmp_path: Path) -> None:
    root = _project(tmp_path / "project", config=CONFIG + "# " + "x" * (5 * 1024 * 1024) + "\n")
    result, elapsed = _validate(root, "validate", "--json")
    assert _first(result) == (str(root / "config.yaml"), 1, 1, "file is too large (5.0 MiB): the limit is 256 KiB")
    assert result.exit_code == 1 and elapsed < SECONDS


def _sequence_for(template: str) -> str:
    if template.endswith(".txt.j2"):
        step = f"{{id: text, day: 1, channel: sms, template: {template}}}"
    else:
        step = f"{{id: mail, day: 1, channel: email, subject: Hi, template: {template}}}"
    return f"id: uses\nname: Uses\nsteps:\n  - {step}\n"


@pytest.mark.parametrize("name", TEMPLATES)
def test_a_hostile_template_is_an_error_in_validate_or_fails_its_render_with_the_reason(
    tmp_path: Path, name: str
) -> None:
    root = _project(tmp_path / "project")
    (root / "sequences" / "uses.yaml").write_text(_sequence_for(name))
    result, elapsed = _validate(root, "validate", "--json")
    in_validate, when_rendered = TEMPLATES[name]
    assert elapsed < SECONDS
    if in_validate is None:  # only a lead's data breaks it: the file is fine, the send-time render says why
        assert result.exit_code == 0, result.output
    else:
        line, message = in_validate
        path, *place, said = _first(result)
        assert (path, *place) == (str(root / "templates" / name), line, 1)
        assert message in said, said
        assert result.exit_code == 1
    channel = "sms" if name.endswith(".txt.j2") else "email"
    context = clean_context(
        {
            "lead": {"id": "L1", "first_name": "Dana", "company": "Northwind", "fields": {"seats": "12", "zero": 0}},
            "sender": {"first_name": "Alice"},
            "step": {"id": "s", "day": 1, "channel": channel},
        }
    )
    # Only the templates that must time out get 0.3 s: for the others a busy machine (the suite runs on
    # every core) could pause this process past so short a deadline, and the reason would be the clock's.
    timeout = 0.3 if "took longer than" in when_rendered else 10.0
    renderer = Renderer(root / "templates", limits=RenderLimits(timeout_seconds=timeout))
    started = time.monotonic()
    with pytest.raises(RenderError) as caught:
        renderer.text(name, context)
    assert str(caught.value).startswith(f"{name}: {when_rendered}"), str(caught.value)
    assert time.monotonic() - started < SECONDS


def test_a_5_mb_template_is_refused_without_being_read(tmp_path: Path) -> None:
    root = _project(tmp_path / "project")
    (root / "templates" / "huge.md.j2").write_text("Hi {{ lead.first_name }}\n" + "x" * (5 * 1024 * 1024))
    (root / "sequences" / "uses.yaml").write_text(_sequence_for("huge.md.j2"))
    result, elapsed = _validate(root, "validate", "--json")
    huge = str(root / "templates" / "huge.md.j2")
    assert _first(result) == (huge, 1, 1, "file is too large (5.0 MiB): the limit is 256 KiB")
    assert result.exit_code == 1 and elapsed < SECONDS


RUNAWAY = (  # value-dependent, so validate's sample render passes and only a lead's data makes it run away
    "Hi {{ lead.first_name }},\n"
    "{% for i in range(lead.fields.rows|int) %}{% for j in range(lead.fields.rows|int) %}{% endfor %}{% endfor %}\n"
)
LEADS = (
    "id,email,first_name,company,owner,timezone,country,rows\n"
    "H1,h1@example.com,Ann,Acme,alice,America/New_York,US,2\n"
    "H2,h2@example.com,Bob,Acme,alice,America/New_York,US,100000\n"
    "H3,h3@example.com,Cid,Acme,alice,America/New_York,US,3\n"
)


def _json(result: Result) -> Any:
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return json.loads(result.stdout)


def test_a_template_that_runs_away_for_one_lead_is_bounded_in_preview_enroll_and_the_engine(
    project: Path, cli: Cli
) -> None:
    (project / "config.yaml").write_text((project / "config.yaml").read_text() + "render:\n  timeout_seconds: 0.3\n")
    (project / "templates" / "runaway.md.j2").write_text(RUNAWAY)
    (project / "sequences" / "runaway.yaml").write_text(
        "id: runaway\nname: Runaway\nsteps:\n"
        "  - {id: pitch, day: 1, channel: email, subject: 'Hi {{ lead.first_name }}', template: runaway.md.j2}\n"
    )
    (project / "hostile.csv").write_text(LEADS)
    assert cli("validate").exit_code == 0
    assert cli("leads", "import", "hostile.csv").exit_code == 0
    started = time.monotonic()
    preview = _json(cli("preview", "runaway", "--lead", "H2", "--render", "--json"))
    assert preview[0]["render_error"].startswith(
        "runaway.md.j2: line 2: took longer than 0.3 s to render (render.timeout_seconds)"
    )
    refused = _json(cli("enroll", "runaway", "H2", "--json"))
    assert refused["enrolled"] == [] and "took longer than 0.3 s" in refused["refused"][0]["reason"]
    assert _json(cli("status", "H2", "--json"))["enrollments"] == []  # a refusal writes nothing
    assert len(_json(cli("enroll", "runaway", "H1", "H3", "--json"))["enrolled"]) == 2
    assert len(_json(cli("enroll", "runaway", "H2", "--allow-missing", "--json"))["enrolled"]) == 1
    assert cli("run", "--once", now="2026-11-23T10:00:00-05:00").exit_code == 0
    assert time.monotonic() - started < 4 * SECONDS
    statuses = {lead: _json(cli("status", lead, "--json"))["touches"] for lead in ("H1", "H2", "H3")}
    assert [t["status"] for t in statuses["H1"]] == ["sent"] and [t["status"] for t in statuses["H3"]] == ["sent"]
    (failed,) = statuses["H2"]
    assert failed["status"] == "failed"
    assert "runaway.md.j2: line 2: took longer than 0.3 s to render" in failed["error"]
