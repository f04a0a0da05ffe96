"""Message rendering: Jinja2's sandbox over templates/, strict about missing fields.

A template that needs a field the lead lacks (and has no `| default(...)`) raises
`RenderError` instead of producing "Hi ,". Empty strings count as missing for the
same reason. Email bodies are Markdown: the plain-text part is the rendered
Markdown itself, the HTML part is rendered a second time with autoescape on (so a
lead's company name cannot inject markup) and then converted as GitHub Flavored
Markdown (tables, strikethrough; bare URLs stay text) by cmark-gfm. It is C, about
20 times faster than Python-Markdown, which was half the engine's CPU per email; its
tag filter also neutralises <script>, <iframe> and the like in a template.

Every render is bounded in time and size (`cadence.spec.sandbox`, config.yaml's `render:`),
and whatever goes wrong while rendering one template (a missing field, a Python error
raised by an expression, a loop that never ends) is a `RenderError` naming the template,
so the engine fails that one touch and `validate`, `enroll` and `preview` say why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import cmarkgfm
import jinja2
from cmarkgfm.cmark import Options as CmarkOptions

from cadence.names import Channel
from cadence.spec.sandbox import BoundedEnvironment, RenderError, RenderLimitError, RenderLimits, render_bounded
from cadence.spec.templates import template_loader

__all__ = ["RenderError", "RenderLimitError", "RenderLimits", "RenderedEmail", "Renderer", "clean_context"]


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def clean_context(values: Mapping[str, Any]) -> dict[str, Any]:
    """Drop None and blank values so that strict rendering treats them as missing."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        kind = type(value)  # exact types first: an ABC isinstance per value cost more than the rest
        if kind is str or (kind not in _PLAIN and isinstance(value, str)):
            if value.strip():
                out[key] = value
        elif kind is dict or (kind not in _PLAIN and isinstance(value, Mapping)):
            out[key] = clean_context(value)
        else:
            out[key] = value
    return out


_PLAIN = frozenset({int, float, bool, list, tuple})  # never a str or a Mapping


class Renderer:
    """Renders from `templates_dir`, or first from `sources` (the templates of a published version).

    A published version carries its templates' text, so editing a template file changes
    nothing that is sent until `cadence apply` publishes it; templates a version does not
    carry (an `{% include %}`d partial, versions published before sources were stored) are
    read from the folder.

    An SMS may write `limits.max_sms_chars` characters, anything else `limits.max_email_bytes`;
    the channel is the one of the step being rendered (`ctx["step"]["channel"]`) unless given.
    """

    def __init__(
        self, templates_dir: Path, sources: Mapping[str, str] | None = None, limits: RenderLimits | None = None
    ):
        self.templates_dir = templates_dir
        self.limits = limits or RenderLimits()
        loader = template_loader(templates_dir, sources)
        common: dict[str, Any] = {"loader": loader, "keep_trailing_newline": False, "auto_reload": False}
        self.text_env = BoundedEnvironment(self.limits, undefined=jinja2.StrictUndefined, autoescape=False, **common)
        self.html_env = BoundedEnvironment(self.limits, undefined=jinja2.StrictUndefined, autoescape=True, **common)

    def _render(
        self,
        env: BoundedEnvironment,
        name: str | None,
        source: str | None,
        ctx: Mapping[str, Any],
        channel: str | None = None,
    ) -> str:
        load = partial(env.get_template, name) if name is not None else partial(self._compiled, env, source or "")
        if (channel or _channel_of(ctx)) == Channel.SMS:
            max_chars, max_bytes = self.limits.max_sms_chars, None
        else:
            max_chars = max_bytes = self.limits.max_email_bytes  # a character is at least one byte
        return render_bounded(load, ctx, where=name or "subject", max_chars=max_chars, max_bytes=max_bytes).strip()

    def _compiled(self, env: BoundedEnvironment, source: str) -> jinja2.Template:
        """A subject compiled once per renderer: a batch sends the same few subjects thousands of times."""
        cache: dict[tuple[int, str], jinja2.Template] = self.__dict__.setdefault("_strings", {})
        key = (id(env), source)
        if key not in cache:
            cache[key] = env.from_string(source)
        return cache[key]

    def text(self, name: str, ctx: Mapping[str, Any], *, channel: str | None = None) -> str:
        """The template as plain text: an email's text part, an SMS, a call script."""
        return self._render(self.text_env, name, None, ctx, channel)

    def subject(self, source: str, ctx: Mapping[str, Any]) -> str:
        subject = " ".join(self._render(self.text_env, None, source, ctx, Channel.EMAIL).split())
        if not subject:
            raise RenderError("subject renders empty")
        return subject

    def html(self, name: str, ctx: Mapping[str, Any]) -> str:
        """The Markdown template rendered with autoescape, then converted to HTML."""
        html = markdown_to_html(self._render(self.html_env, name, None, ctx, Channel.EMAIL))
        limit = self.limits.max_email_bytes
        if len(html) > limit // 4 and len(html.encode("utf-8")) > limit:  # a character is at most 4 bytes
            raise RenderLimitError(f"{name}: its HTML part is over {limit / 1024:g} KiB (render.max_email_kib)")
        return html

    def email(self, subject: str, name: str, ctx: Mapping[str, Any]) -> RenderedEmail:
        return RenderedEmail(subject=self.subject(subject, ctx), text=self.text(name, ctx), html=self.html(name, ctx))


# UNSAFE keeps the raw HTML a template author writes (values are escaped before this
# runs); FOOTNOTES keeps what Python-Markdown's "extra" offered that GFM lacks by default.
# No autolink: a lead's value that holds a URL must stay text, as it did before, not
# become a link in the email sent to that lead (and mail clients link URLs themselves).
_CMARK_OPTIONS = CmarkOptions.CMARK_OPT_UNSAFE | CmarkOptions.CMARK_OPT_FOOTNOTES
_CMARK_EXTENSIONS = ["table", "strikethrough", "tagfilter"]


def _channel_of(ctx: Mapping[str, Any]) -> str | None:
    step = ctx.get("step")
    if type(step) is dict or isinstance(step, Mapping):  # the exact type first: this runs for every render
        return step.get("channel")
    return None


def markdown_to_html(text: str) -> str:
    return cmarkgfm.markdown_to_html_with_extensions(text, options=_CMARK_OPTIONS, extensions=_CMARK_EXTENSIONS)
