"""The templates a manager writes: where they live, whether they parse, and how long an SMS will be.

`cadence validate` and the catalog check templates here without a lead: a Jinja2 syntax
error is pinned to the template's own line, and SMS text is estimated with sample values
(every field stands in as ten characters) to warn when it splits into several segments.
Every template is also rendered once with sample values within the render limits, so a
template that never ends or writes megabytes is an error before anyone enrolls. Template
files are read like sequence files: at most 256 KiB of UTF-8 text without NUL characters.
Rendering for a real lead is `cadence.plan.render`'s job.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jinja2
from jinja2.loaders import split_template_path

from cadence.names import Channel
from cadence.spec.sandbox import BoundedEnvironment, RenderLimits, TemplateFileError, render_bounded
from cadence.spec.source import FileProblem, read_text

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


class _FolderLoader(jinja2.BaseLoader):
    """The templates folder, each file read with the same limits as a sequence file."""

    def __init__(self, root: Path):
        self.root = root

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str, Callable[[], bool]]:
        path = self.root.joinpath(*split_template_path(template))  # refuses "../"
        if not path.is_file():
            raise jinja2.TemplateNotFound(template)
        try:
            text = read_text(path)
        except FileProblem as exc:
            raise TemplateFileError(exc.message, exc.line) from None
        return text, os.path.normpath(path), lambda: True


def template_loader(templates_dir: Path, sources: Mapping[str, str] | None = None) -> jinja2.BaseLoader:
    """The folder's templates, with `sources` (a published version's own text) taking precedence."""
    loader: jinja2.BaseLoader = _FolderLoader(templates_dir)
    if sources:
        loader = jinja2.ChoiceLoader([jinja2.DictLoader(dict(sources)), loader])
    return loader


class TemplateFolder:
    """The `templates/` folder as `cadence validate` sees it: existence, syntax, sample renders."""

    def __init__(self, templates_dir: Path, limits: RenderLimits | None = None):
        self.templates_dir = templates_dir
        self.limits = limits or RenderLimits()
        common: dict[str, Any] = {"loader": template_loader(templates_dir), "auto_reload": False}
        self._env = BoundedEnvironment(self.limits, undefined=jinja2.StrictUndefined, **common)
        self._sample_env = BoundedEnvironment(self.limits, undefined=_Sample, **common)

    def exists(self, name: str) -> bool:
        return (self.templates_dir / name).is_file()

    def compile_error(self, name: str) -> tuple[int, str] | None:
        """(line, message) of what keeps a template from compiling, or None."""
        try:
            self._env.get_template(name)
        except jinja2.TemplateSyntaxError as exc:
            return exc.lineno, f"Jinja2 syntax error: {exc.message or 'syntax error'}"
        except TemplateFileError as exc:
            return exc.lineno, str(exc)
        except jinja2.TemplateNotFound as exc:
            return 1, f"template {exc.name!r} not found under {self.templates_dir}"
        except (RecursionError, MemoryError, SyntaxError):  # Python's own limits on the compiled code
            return 1, "the template nests too deeply to be compiled"
        return None

    def string_syntax_error(self, source: str) -> str | None:
        try:
            self._env.from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            return exc.message or "syntax error"
        except (RecursionError, MemoryError, SyntaxError):
            return "nests too deeply to be compiled"
        return None

    def sample(self, name: str, *, channel: str | None = None) -> str:
        """The template rendered with every field standing in as ten characters (or a RenderError)."""
        if channel == Channel.SMS:
            max_chars, max_bytes = self.limits.max_sms_chars, None
        else:
            max_chars = max_bytes = self.limits.max_email_bytes
        return render_bounded(
            lambda: self._sample_env.get_template(name), {}, where=name, max_chars=max_chars, max_bytes=max_bytes
        )

    def sample_string(self, source: str) -> str:
        limit = self.limits.max_email_bytes
        return render_bounded(
            lambda: self._sample_env.from_string(source), {}, where="subject", max_chars=limit, max_bytes=limit
        )
