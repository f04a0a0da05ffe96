"""YAML with line numbers, and diagnostics that point at them.

PyYAML's plain `safe_load` forgets where values came from and follows YAML 1.1,
where `no` is False (Norway's country code!) and `09:00` is the integer 540. We
compose the node tree ourselves, keep each key's line and column, refuse duplicate
keys, and resolve only `true`/`false` as booleans and only plain decimals as ints.
Pydantic errors are then mapped back onto those positions, so every problem a
manager sees reads `sequences/outbound.yaml:12:5: ...`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

Loc = tuple[str | int, ...]


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One problem in one file, with the place a manager should look."""

    path: str
    line: int
    col: int
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        prefix = "" if self.severity == "error" else f"{self.severity}: "
        return f"{self.path}:{self.line}:{self.col}: {prefix}{self.message}"

    @property
    def is_error(self) -> bool:
        return self.severity == "error"


class SpecError(Exception):
    """Raised when a file cannot be used; carries every diagnostic found."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = diagnostics
        super().__init__("\n".join(str(d) for d in diagnostics))


class _Loader(yaml.SafeLoader):
    """A SafeLoader with YAML 1.2-like scalars (no yes/no booleans, no base-60 ints)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:int")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^[-+]?(?:0|[1-9][0-9_]*)$"), list("-+0123456789"))


@dataclass
class Located:
    """A parsed YAML document plus the (line, col) of every key and list item."""

    path: str
    data: Any
    positions: dict[Loc, tuple[int, int]]

    def where(self, loc: Iterable[str | int]) -> tuple[int, int]:
        """The position of the deepest part of `loc` that exists in the file."""
        key = tuple(loc)
        while key:
            if key in self.positions:
                return self.positions[key]
            key = key[:-1]
        return self.positions.get((), (1, 1))

    def diag(self, loc: Iterable[str | int], message: str, severity: str = "error") -> Diagnostic:
        line, col = self.where(loc)
        return Diagnostic(self.path, line, col, message, severity)


def parse_yaml(text: str, path: str) -> tuple[Located | None, list[Diagnostic]]:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        started = exc.context_mark
        if exc.problem and exc.context and started and (started.line + 1, started.column + 1) != (line, col):
            # an unclosed quote or bracket fails far from where it opened: say where that was
            problem += f" ({exc.context} started at line {started.line + 1}, column {started.column + 1})"
        return None, [Diagnostic(path, line, col, f"YAML syntax error: {problem}")]
    except yaml.YAMLError as exc:
        return None, [Diagnostic(path, 1, 1, f"YAML syntax error: {exc}")]
    finally:
        loader.dispose()
    positions: dict[Loc, tuple[int, int]] = {(): (1, 1)}
    problems: list[Diagnostic] = []
    if node is None:
        return Located(path, None, positions), problems

    def build(n: yaml.Node, loc: Loc) -> Any:
        if isinstance(n, yaml.MappingNode):
            loader.flatten_mapping(n)
            out: dict[Any, Any] = {}
            for key_node, value_node in n.value:
                key = loader.construct_object(key_node, deep=True)
                if not isinstance(key, str | int):
                    key = str(key)
                pos = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                if key in out:
                    problems.append(Diagnostic(path, *pos, f"duplicate key {key!r}"))
                positions[(*loc, key)] = pos
                out[key] = build(value_node, (*loc, key))
            return out
        if isinstance(n, yaml.SequenceNode):
            items = []
            for index, item in enumerate(n.value):
                positions[(*loc, index)] = (item.start_mark.line + 1, item.start_mark.column + 1)
                items.append(build(item, (*loc, index)))
            return items
        return loader.construct_object(n, deep=True)

    try:
        data = build(node, ())
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        return None, [Diagnostic(path, line, col, f"YAML error: {exc.problem}")]
    return Located(path, data, positions), problems


def read_yaml(path: Path, shown_as: str | None = None) -> tuple[Located | None, list[Diagnostic]]:
    name = shown_as or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, [Diagnostic(name, 1, 1, "file not found")]
    except UnicodeDecodeError as exc:
        return None, [Diagnostic(name, 1, 1, f"not UTF-8 text: {exc.reason}")]
    return parse_yaml(text, name)


M = TypeVar("M", bound=BaseModel)


def _message(err: Any) -> str:
    kind = err["type"]
    loc = err["loc"]
    field = next((str(p) for p in reversed(loc) if isinstance(p, str)), "value")
    if kind == "extra_forbidden":
        return f"unknown key {field!r}"
    if kind == "missing":
        return f"missing required key {field!r}"
    msg = str(err["msg"])
    msg = msg.removeprefix("Value error, ")
    return f"{field}: {msg}" if field != "value" else msg


def validate_model(model: type[M], doc: Located) -> tuple[M | None, list[Diagnostic]]:
    """Validate `doc` against a pydantic model; every error gets the file position."""
    try:
        return model.model_validate(doc.data if doc.data is not None else {}), []
    except ValidationError as exc:
        diags = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            diags.append(doc.diag(loc, _message(err)))
        return None, sorted(set(diags))
