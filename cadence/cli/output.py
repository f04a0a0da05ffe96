"""Printing: rich tables for people, plain JSON for scripts."""

from __future__ import annotations

import json
import sys
from datetime import date, datetime
from typing import Any, NoReturn

import typer
from rich.console import Console

console = Console(highlight=False)
errors = Console(stderr=True, highlight=False)


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def print_json(value: Any) -> None:
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
