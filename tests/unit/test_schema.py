"""The published JSON Schema: generated from the model, never drifting from it, and true to the starter files.

jsonschema is a dev dependency, used only here.
"""

from __future__ import annotations

import json
from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from cadence.spec.schema import main, schema_text, sequence_schema
from cadence.spec.source import parse_yaml

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "schemas" / "sequence.schema.json"
SEQUENCES = sorted((ROOT / "sequences").glob("*.yaml"))


def load(text: str, path: str = "s.yaml") -> Any:
    doc, diags = parse_yaml(text, path)
    assert doc is not None and not diags, diags
    return doc.data


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    return Draft202012Validator(sequence_schema())


def test_committed_schema_equals_what_the_code_generates() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == schema_text(), "run `python -m cadence.spec.schema`"


def test_main_writes_the_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "out" / "sequence.schema.json"
    assert main([str(target)]) == 0
    assert json.loads(target.read_text(encoding="utf-8")) == sequence_schema()
    assert capsys.readouterr().out == f"wrote {target}\n"


def test_schema_is_a_valid_draft_2020_12_schema_with_metadata() -> None:
    schema = sequence_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"]
    assert schema["title"] == "cadence sequence"
    assert schema["description"]
    assert schema["required"] == ["id", "name", "steps"]


def test_the_starter_sequences_are_found() -> None:
    assert [p.name for p in SEQUENCES] == [
        "nurture-monthly.yaml",
        "nurture-quarterly.yaml",
        "outbound-hot.yaml",
        "outbound-reengage.yaml",
        "outbound-saas.yaml",
    ]


@pytest.mark.parametrize("path", SEQUENCES, ids=lambda p: p.name)
def test_every_sequence_in_sequences_validates_against_the_schema(path: Path, validator: Draft202012Validator) -> None:
    errors = [e.message for e in validator.iter_errors(load(path.read_text(encoding="utf-8"), str(path)))]
    assert errors == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            """
            id: s
            name: S
            steps:
              - {id: a, day: 1, channel: fax}
            """,
            "'fax' is not one of ['email', 'sms', 'call', 'task']",
            id="unknown-channel",
        ),
        pytest.param(
            """
            id: s
            name: S
            colour: blue
            steps:
              - {id: a, day: 1, channel: task, title: T}
            """,
            "Additional properties are not allowed ('colour' was unexpected)",
            id="unknown-key",
        ),
        pytest.param(
            """
            id: s
            name: S
            steps:
              - {id: a, day: 0, channel: task, title: T}
            """,
            "0 is less than the minimum of 1",
            id="day-zero",
        ),
        pytest.param(
            """
            id: s
            steps:
              - {id: a, day: 1, channel: task, title: T}
            """,
            "'name' is a required property",
            id="missing-name",
        ),
        pytest.param(
            """
            id: s
            name: S
            exit_on: [replied, wandered_off]
            steps:
              - {id: a, day: 1, channel: task, title: T}
            """,
            "'wandered_off' is not one of",
            id="unknown-exit-event",
        ),
    ],
)
def test_schema_flags_what_an_editor_should_underline(text: str, message: str, validator: Draft202012Validator) -> None:
    messages = [e.message for e in validator.iter_errors(load(dedent(text)))]
    assert len(messages) == 1
    assert messages[0].startswith(message)
