"""JSON Schema for sequence files, so editors can autocomplete keys and flag mistakes as they type.

The schema is generated from the pydantic model in `cadence.spec.model`, so the
two cannot disagree about keys, types and allowed values. It checks a file's
shape only: what needs the whole file or the templates folder (duplicate step
ids, `reply_to` targets, day order, templates that exist) is left to
`cadence validate`.

`python -m cadence.spec.schema [PATH]` writes it (default:
schemas/sequence.schema.json); a test keeps the committed file equal to what
this module produces. To use it in VS Code or any editor with the YAML language
server, put this first in a sequence file:

    # yaml-language-server: $schema=../schemas/sequence.schema.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from cadence.spec.model import Sequence

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID = "urn:cadence:schema:sequence"
DEFAULT_PATH = Path("schemas") / "sequence.schema.json"


def sequence_schema() -> dict[str, Any]:
    """The JSON Schema of one `sequences/*.yaml` file."""
    generated = Sequence.model_json_schema()
    generated.pop("title", None)
    generated.pop("description", None)
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": SCHEMA_ID,
        "title": "cadence sequence",
        "description": (
            "One outreach sequence (sequences/*.yaml): its schedule and its steps. Generated from "
            "cadence.spec.model by `python -m cadence.spec.schema`; `cadence validate` checks the rest "
            "(duplicate step ids, reply_to targets, day order, templates)."
        ),
        **generated,
    }


def schema_text() -> str:
    """The schema exactly as it is written to disk."""
    return json.dumps(sequence_schema(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else DEFAULT_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(schema_text(), encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
