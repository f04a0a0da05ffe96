"""Printing: rich tables for people, plain JSON for scripts."""

from __future__ import annotations

import sys
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, NoReturn, cast

import typer

if TYPE_CHECKING:
    from rich.console import Console


class _FirstUse:
    """A rich Console made the first time it is used, so `cadence --version` never imports rich.console.

    Every attribute (read or written) is the real console's, and so is `with console:` (rich's Live
    and Progress hold the console that way); methods come bound to the real one, so rich's own code
    never sees this stand-in past the first call.
    """

    def __init__(self, **options: Any) -> None:
        object.__setattr__(self, "_options", options)
        object.__setattr__(self, "_console", None)

    def _real(self) -> Console:
        made: Console | None = object.__getattribute__(self, "_console")
        if made is None:
            from rich.console import Console

            made = Console(**object.__getattribute__(self, "_options"))
            object.__setattr__(self, "_console", made)
        return made

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._real(), name, value)

    def __enter__(self) -> Console:
        return self._real().__enter__()

    def __exit__(self, *exc: object) -> None:
        self._real().__exit__(*exc)

    def __repr__(self) -> str:
        return repr(self._real())


console = cast("Console", _FirstUse(highlight=False))
errors = cast("Console", _FirstUse(stderr=True, highlight=False))


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def print_json(value: Any) -> None:
    import json

    sys.stdout.write(json.dumps(value, indent=2, default=_default, ensure_ascii=False) + "\n")


def fail(message: str, code: int = 1) -> NoReturn:
    errors.print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)
    raise typer.Exit(code)


def say_when_cut(shown: int, total: int) -> None:
    """A list cut at --limit says so (on stderr, so --json output stays one document)."""
    if shown < total:
        errors.print(f"showing {shown:,} of {total:,}; use --limit", markup=False)


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
