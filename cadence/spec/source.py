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

from cadence.spec.diagnostics import Diagnostic

Loc = tuple[str | int, ...]


# Limits that no file a manager writes comes near (the starter's largest is 3 KiB and 150
# values), chosen so that a hostile file is refused within a second: pure-Python PyYAML
# reads about a megabyte a second, and an alias bomb or thousands of nested brackets would
# otherwise expand without end or overflow the stack.
MAX_FILE_BYTES = 256 * 1024  # sequence files, config.yaml and templates
MAX_DEPTH = 64  # levels of nesting
MAX_VALUES = 10_000  # values in one file, each use of an alias counted again
_MERGE_TAG = "tag:yaml.org,2002:merge"
_KINDS = {
    "tag:yaml.org,2002:int": "a whole number",
    "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:timestamp": "a date",
}


class FileProblem(Exception):
    """A file that cannot be read as text, with the place to look."""

    def __init__(self, line: int, col: int, message: str):
        self.line, self.col, self.message = line, col, message
        super().__init__(message)


def read_text(path: Path) -> str:
    """A manager's file as text: at most MAX_FILE_BYTES of UTF-8, without NUL characters.

    Read in binary and checked here, once, for sequence files, config.yaml and templates, so
    a 5 MB file or a stray NUL from a bad export is refused before any parser sees it.
    """
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise FileProblem(1, 1, "file not found") from None
    except IsADirectoryError:
        raise FileProblem(1, 1, "is a folder, not a file") from None
    except OSError as exc:
        raise FileProblem(1, 1, f"cannot be read: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        size = _file_size(path)
        shown = f"{size / 1024 / 1024:.1f} MiB" if size > MAX_FILE_BYTES else "larger than that"
        raise FileProblem(1, 1, f"file is too large ({shown}): the limit is {MAX_FILE_BYTES // 1024} KiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, col = _position(raw[: exc.start].decode("utf-8", errors="replace"))
        raise FileProblem(line, col, f"not UTF-8 text (byte 0x{raw[exc.start]:02x}): save it as UTF-8") from None
    if (nul := text.find("\x00")) >= 0:
        line, col = _position(text[:nul])
        raise FileProblem(line, col, "holds a NUL character (byte 0x00): is it really a text file?")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _position(before: str) -> tuple[int, int]:
    """(line, column) just after `before`, both counted from 1."""
    return before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1


class _TooBig(yaml.MarkedYAMLError):
    """Nesting or values past the limits: reported without the "syntax error" prefix."""


class _Loader(yaml.SafeLoader):
    """A SafeLoader with YAML 1.2-like scalars (no yes/no booleans, no base-60 ints) and limits."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self.values = 0
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        mark = self.peek_event().start_mark
        self.values += 1
        if self.values > MAX_VALUES:
            raise _TooBig(problem=f"the file holds more than {MAX_VALUES:,} values", problem_mark=mark)
        if self.depth >= MAX_DEPTH:
            raise _TooBig(problem=f"values nest more than {MAX_DEPTH} levels deep", problem_mark=mark)
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


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


def _at(path: str, mark: yaml.Mark | None, message: str) -> Diagnostic:
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    return Diagnostic(path, line, col, message)


def parse_yaml(text: str, path: str) -> tuple[Located | None, list[Diagnostic]]:
    """The document with every key's position; any problem is a diagnostic, never an exception."""
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:  # a control character: PyYAML checks the whole text first
        line, col = _position(text[: exc.position])
        return None, [Diagnostic(path, line, col, f"YAML syntax error: character #x{exc.character:04x} is not allowed")]
    try:
        node = loader.get_single_node()
    except _TooBig as exc:
        return None, [_at(path, exc.problem_mark, str(exc.problem))]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        started = exc.context_mark
        if exc.context and problem.startswith("but "):  # "expected a single document..., but found another"
            problem, started = f"{exc.context}, {problem}", None
        if (
            exc.problem
            and exc.context
            and started
            and mark
            and (started.line, started.column) != (mark.line, mark.column)
        ):
            # an unclosed quote or bracket fails far from where it opened: say where that was
            problem += f" ({exc.context} started at line {started.line + 1}, column {started.column + 1})"
        return None, [_at(path, mark, f"YAML syntax error: {problem}")]
    except yaml.YAMLError as exc:
        return None, [Diagnostic(path, 1, 1, f"YAML syntax error: {exc}")]
    except RecursionError:  # defensive: MAX_DEPTH keeps the composer well inside the stack
        return None, [Diagnostic(path, 1, 1, "values nest too deeply")]
    finally:
        loader.dispose()
    if node is None:
        return Located(path, None, {(): (1, 1)}), []
    try:
        return _Builder(loader, path).document(node)
    except _TooBig as exc:
        return None, [_at(path, exc.problem_mark, str(exc.problem))]
    except yaml.MarkedYAMLError as exc:
        return None, [_at(path, exc.problem_mark, f"YAML error: {exc.problem}")]


class _Builder:
    """Turns the node tree into plain data and positions, counting values as aliases expand them."""

    def __init__(self, loader: _Loader, path: str):
        self.loader = loader
        self.path = path
        self.positions: dict[Loc, tuple[int, int]] = {(): (1, 1)}
        self.problems: list[Diagnostic] = []
        self.values = 0

    def document(self, node: yaml.Node) -> tuple[Located, list[Diagnostic]]:
        data = self.build(node, (), 0)
        return Located(self.path, data, self.positions), self.problems

    def build(self, n: yaml.Node, loc: Loc, depth: int) -> Any:
        self.values += 1
        if self.values > MAX_VALUES:  # an alias bomb: a few lines that expand a billion times
            raise _TooBig(
                problem=f"the file holds more than {MAX_VALUES:,} values once its aliases are expanded",
                problem_mark=n.start_mark,
            )
        if depth >= MAX_DEPTH:  # an alias inside itself nests without end
            raise _TooBig(problem=f"values nest more than {MAX_DEPTH} levels deep", problem_mark=n.start_mark)
        if isinstance(n, yaml.MappingNode):
            return self.mapping(n, loc, depth)
        if isinstance(n, yaml.SequenceNode):
            items = []
            for index, item in enumerate(n.value):
                self.positions[(*loc, index)] = (item.start_mark.line + 1, item.start_mark.column + 1)
                items.append(self.build(item, (*loc, index), depth + 1))
            return items
        return self.leaf(n)

    def mapping(self, n: yaml.MappingNode, loc: Loc, depth: int) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        # `<<: *defaults` first, so the keys written here win over the merged ones
        for key_node, value_node in n.value:
            if key_node.tag == _MERGE_TAG:
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                for source in sources:
                    if not isinstance(source, yaml.MappingNode):
                        raise yaml.constructor.ConstructorError(
                            problem="<< must name a mapping or a list of mappings", problem_mark=source.start_mark
                        )
                    for key, value in self.build(source, loc, depth + 1).items():
                        out.setdefault(key, value)
        written: set[Any] = set()
        for key_node, value_node in n.value:
            if key_node.tag == _MERGE_TAG:
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise yaml.constructor.ConstructorError(
                    problem="a key must be a plain value, not a list or a mapping", problem_mark=key_node.start_mark
                )
            key = self.leaf(key_node)
            if not isinstance(key, str | int):
                key = str(key)
            pos = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if key in written:
                self.problems.append(Diagnostic(self.path, *pos, f"duplicate key {key!r}"))
            written.add(key)
            self.positions[(*loc, key)] = pos
            out[key] = self.build(value_node, (*loc, key), depth + 1)
        return out

    def leaf(self, n: yaml.Node) -> Any:
        try:
            value = self.loader.construct_object(n, deep=True)
        except yaml.MarkedYAMLError:
            raise
        except (ValueError, OverflowError) as exc:  # `day: 99999...` past 4,300 digits, `2026-13-45`
            kind = _KINDS.get(str(n.tag), "a value")
            text = str(n.value)
            shown = repr(text) if len(text) <= 40 else f"{text[:20]!r}... ({len(text):,} characters)"
            reason = str(exc).split(";")[0]
            raise yaml.constructor.ConstructorError(
                problem=f"cannot read {shown} as {kind}: {reason}", problem_mark=n.start_mark
            ) from None
        if isinstance(value, str) and not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise yaml.constructor.ConstructorError(
                    problem="text holds a lone surrogate escape (\\ud800-\\udfff)", problem_mark=n.start_mark
                ) from None
        if isinstance(value, str) and "\x00" in value:
            raise yaml.constructor.ConstructorError(
                problem="text holds a NUL character (\\0)", problem_mark=n.start_mark
            )
        return value


def read_yaml(path: Path, shown_as: str | None = None) -> tuple[Located | None, list[Diagnostic]]:
    name = shown_as or str(path)
    try:
        text = read_text(path)
    except FileProblem as exc:
        return None, [Diagnostic(name, exc.line, exc.col, exc.message)]
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
