"""The templates a manager writes: where they live, whether they parse, and how long an SMS will be.

`cadence validate` and the catalog check templates here without a lead: a Jinja2 syntax
error is pinned to the template's own line, and SMS text is estimated with sample values
(every field stands in as ten characters) to warn when it splits into several segments.
Rendering for a real lead is `cadence.plan.render`'s job.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = set("^{}\\[~]|€")


def sms_segments(text: str) -> tuple[int, str]:
    """How many SMS segments `text` costs, and its encoding (GSM-7 or UCS-2)."""
    if all(ch in GSM7 or ch in GSM7_EXTENDED for ch in text):
        units = sum(2 if ch in GSM7_EXTENDED else 1 for ch in text)
        return (1 if units <= 160 else math.ceil(units / 153)), "GSM-7"
    units = sum(2 if ord(ch) > 0xFFFF else 1 for ch in text)
    return (1 if units <= 70 else math.ceil(units / 67)), "UCS-2"


class _Sample(jinja2.Undefined):
    """Stands in for any field when estimating a template's length at validation time."""

    def __str__(self) -> str:
        return "x" * 10

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Sample()


def template_loader(templates_dir: Path, sources: Mapping[str, str] | None = None) -> jinja2.BaseLoader:
    """The folder's templates, with `sources` (a published version's own text) taking precedence."""
    loader: jinja2.BaseLoader = jinja2.FileSystemLoader(str(templates_dir))
    if sources:
        loader = jinja2.ChoiceLoader([jinja2.DictLoader(dict(sources)), loader])
    return loader


class TemplateFolder:
    """The `templates/` folder as `cadence validate` sees it: existence, syntax, sample renders."""

    def __init__(self, templates_dir: Path):
        self.templates_dir = templates_dir
        common: dict[str, Any] = {"loader": template_loader(templates_dir), "auto_reload": False}
        self._env = SandboxedEnvironment(undefined=jinja2.StrictUndefined, **common)
        self._sample_env = SandboxedEnvironment(undefined=_Sample, **common)

    def exists(self, name: str) -> bool:
        return (self.templates_dir / name).is_file()

    def syntax_error(self, name: str) -> tuple[int, str] | None:
        """(line, message) of the first syntax error in a template, or None."""
        try:
            self._env.get_template(name)
        except jinja2.TemplateSyntaxError as exc:
            return exc.lineno, exc.message or "syntax error"
        return None

    def string_syntax_error(self, source: str) -> str | None:
        try:
            self._env.from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            return exc.message or "syntax error"
        return None

    def sample(self, name: str) -> str:
        """The template rendered with every field standing in as ten characters."""
        return self._sample_env.get_template(name).render()

    def sample_string(self, source: str) -> str:
        return self._sample_env.from_string(source).render()
