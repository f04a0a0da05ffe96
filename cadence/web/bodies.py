"""Request bodies from outside, read strictly: whatever a caller sends gets a 4xx with the reason, never a 500.

The database is the last place to find out that a value cannot be stored: PostgreSQL
refuses NUL bytes in text, neither store can encode a lone UTF-16 surrogate (which JSON's
`\\ud800` escape produces), and a non-finite number has no JSON spelling to store. So a body
is refused here, before anything is written, when it

- has a Content-Type the route does not take (415);
- is not UTF-8, not JSON, nested deeper than Python can parse, or holds `NaN`, `Infinity`
  or a number too large for a float or a 64-bit integer (400);
- holds, anywhere in a key or a value, a NUL byte or a lone surrogate (422, naming the field).

A form (application/x-www-form-urlencoded, an HTML form's default) is read the same way:
strict UTF-8 after percent-decoding, each field once.
"""

from __future__ import annotations

import json
import math
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request

JSON_TYPES = ("application/json",)
FORM_TYPE = "application/x-www-form-urlencoded"
MAX_FORM_FIELDS = 200
LARGEST_INT = 2**63  # no value a lead or an event carries needs more, and no column could hold it


class Refused(Exception):
    """The request cannot be taken; `status` is the HTTP status that says why (the message, the reason)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def media_type(request: Request) -> str:
    """The Content-Type without its parameters, lower-cased ("" when the caller sent none)."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def is_json(kind: str) -> bool:
    return kind in JSON_TYPES or (kind.startswith("application/") and kind.endswith("+json"))


def _charset(request: Request) -> str | None:
    for param in request.headers.get("content-type", "").split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return None


def _text(raw: bytes, request: Request) -> str:
    charset = _charset(request)
    if charset not in (None, "utf-8", "utf8"):
        raise Refused(415, f"the body must be UTF-8, not {charset}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Refused(400, f"the body is not UTF-8 (byte {exc.start} is {raw[exc.start]:#04x})") from exc


class _BadNumber(ValueError):
    """A number the body spells that cannot be kept (json.loads lets it through, or fails obscurely)."""


def _no_constants(name: str) -> Any:
    raise _BadNumber(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _BadNumber(f"the number {_cut(text)} is too large")
    return value


def _integer(text: str) -> int:
    if len(text.lstrip("-")) > len(str(LARGEST_INT)):  # before int(), which is slow on thousands of digits
        raise _BadNumber(f"the number {_cut(text)} is too large")
    value = int(text)
    if not -LARGEST_INT <= value < LARGEST_INT:
        raise _BadNumber(f"the number {_cut(text)} is too large")
    return value


def _cut(text: str) -> str:
    return text if len(text) <= 24 else f"{text[:20]}... ({len(text)} digits)"


def parse_json(raw: bytes, request: Request) -> Any:
    """The JSON value of the body, or Refused(400) saying what is wrong with it."""
    text = _text(raw, request)
    try:
        return json.loads(text, parse_constant=_no_constants, parse_float=_finite, parse_int=_integer)
    except RecursionError as exc:
        raise Refused(400, "the body is nested too deeply") from exc
    except _BadNumber as exc:
        raise Refused(400, str(exc)) from exc
    except ValueError as exc:  # JSONDecodeError
        raise Refused(400, f"the body is not JSON: {exc}") from exc


def parse_form(raw: bytes, request: Request) -> dict[str, str]:
    """The fields of a url-encoded form, each given once, or Refused saying what is wrong."""
    text = _text(raw, request)
    try:
        pairs = parse_qsl(text, keep_blank_values=True, errors="strict", max_num_fields=MAX_FORM_FIELDS)
    except UnicodeDecodeError as exc:
        raise Refused(400, f"a form field is not UTF-8 once percent-decoded: {exc.reason}") from exc
    except ValueError as exc:  # more than MAX_FORM_FIELDS fields
        raise Refused(400, f"the form has more than {MAX_FORM_FIELDS} fields") from exc
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in fields:
            raise Refused(422, f"field {_shown(name)} is given more than once")
        fields[name] = value
    return fields


def _shown(name: str) -> str:
    return repr(name[:60] + ("..." if len(name) > 60 else ""))


def _unstorable(text: str) -> str | None:
    if "\x00" in text:
        return "contains a NUL byte"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (half of a UTF-16 pair)"
    return None


def check_storable(value: Any) -> None:
    """Raise Refused(422) naming the first key or string (by its path) that no store could keep."""
    pending: list[tuple[str, Any]] = [("", value)]
    while pending:
        path, item = pending.pop()
        if isinstance(item, str):
            problem = _unstorable(item)
            if problem:
                raise Refused(422, f"{_where(path)} {problem}")
        elif isinstance(item, dict):
            for key, child in item.items():
                problem = _unstorable(key)
                if problem:
                    raise Refused(422, f"a field name in {_where(path)} {problem}")
                pending.append((f"{path}.{key}" if path else key, child))
        elif isinstance(item, list):
            pending.extend((f"{path}[{i}]", child) for i, child in enumerate(item))


def _where(path: str) -> str:
    return f"field {_shown(path)}" if path else "the body"
