"""Rendering that always ends: Jinja2's sandbox with limits on time and size.

Jinja2's sandbox keeps a template away from Python's internals, but not from running for
hours or filling the memory: a `{% for %}` inside a `{% for %}`, `'x' * 10**9`,
`"{:>999999999}".format(1)`, a macro that doubles its argument at every call. Templates
are managers' files and the engine renders them in its event loop, so one runaway
template would hold up every send. Each render here is bounded:

- **Output.** The text is streamed (as `Template.generate()` does) and counted as it comes: more
  than the channel allows (`render.max_email_kib`, `render.max_sms_chars`) stops it.
- **Values.** No string, list or buffer inside a template (a `{% set %}` block, a macro's
  output) may outgrow the email limit, and together they may not build more than 64
  times it (`cadence.spec.budget`). The operations that allocate in one step are checked before
  they run: `*`, `**`, `%`, `+` and `~`, widths (`center`, `ljust`, `indent`, `"{:>N}"`,
  `"%Nd"`), `replace`, `join`, `batch` and `slice`. `lipsum()` is gone.
- **Time** (`render.timeout_seconds`). Every `{% for %}` is compiled to pass through a
  guard that reads the clock at each item, and so does every call, operator and collected
  block. This works in any thread (the engine's event loop, the web server's pool), which a
  SIGALRM timer would not, and it costs nothing in templates without loops; arming and
  restoring a SIGALRM handler for each render measured 13 us, against 16 us for rendering
  the starter's intro email body itself.
- **Depth** (`budget.MAX_CALL_DEPTH`, 100). Calls nest at most that deep, so a template that
  calls itself is named for what it does at once, not when the clock runs out.

Whatever goes wrong (a limit, a Jinja2 error, a Python error raised by an expression such
as `{{ lead.fields.seats + 10 }}` on text, the sandbox's SecurityError, an OverflowError,
a RecursionError, a MemoryError) ends as a `RenderError` naming the template and, when
the traceback shows it, the template's line. Nothing else escapes a render.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment, SecurityError

from cadence.spec import budget
from cadence.spec.budget import RenderError, RenderLimitError, RenderLimits

__all__ = [
    "BoundedEnvironment",
    "RenderError",
    "RenderLimitError",
    "RenderLimits",
    "TemplateFileError",
    "explain",
    "render_bounded",
]


class _BoundedCodeGenerator(CodeGenerator):
    """Jinja2's code generator, with collected output and `~` going through the environment's checks."""

    def buffer(self, frame: Frame) -> None:
        frame.buffer = self.temporary_identifier()
        self.writeline(f"{frame.buffer} = environment.bounded_buffer()")

    @optimizeconst
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        # Jinja2's own join, handed its parts first: `s ~ s ~ s ...` is measured before it is built
        if frame.eval_ctx.volatile:
            join = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            join = "markup_join"
        else:
            join = "str_join"
        self.write(f"environment.bounded_concat({join}, (")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class BoundedEnvironment(SandboxedEnvironment):
    """Jinja2's sandbox plus `limits`; render with `render_bounded`, which enforces them."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})
    code_generator_class = _BoundedCodeGenerator

    def __init__(self, limits: RenderLimits | None = None, **options: Any):
        super().__init__(**options)
        self.limits = limits or RenderLimits()
        self.globals.pop("lipsum", None)  # lipsum(n=10**6) writes without a loop to count
        self.globals["namespace"] = budget.BoundedNamespace
        budget.bound_filters(self.filters)

    @staticmethod
    def bounded_buffer() -> budget.Buffer:
        return budget.Buffer()

    @staticmethod
    def bounded_concat(join: Callable[[Any], str], parts: tuple[Any, ...]) -> str:
        budget.check_concat(parts)
        result = join(parts)
        budget.check_size(result)
        return result

    def _generate(
        self, source: nodes.Template, name: str | None, filename: str | None, defer_init: bool = False
    ) -> str:
        for loop in list(source.find_all(nodes.For)):
            loop.iter = nodes.Filter(loop.iter, budget.LOOP_GUARD, [], [], None, None, lineno=loop.iter.lineno)
        return super()._generate(source, name, filename, defer_init)  # type: ignore[no-any-return]

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        budget.check_binop(operator, left, right)
        result = self.binop_table[operator](left, right)
        budget.check_size(result)
        return result

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        budget.check_call(obj, args, kwargs)
        budget.enter_call()
        try:
            result = super().call(context, obj, *args, **kwargs)
        finally:
            budget.leave_call()
        budget.check_size(result, "the result of a call")
        return result

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        formatter = super().wrap_str_format(value)
        if formatter is None:
            return None
        check = budget.format_guard(value.__self__)

        def bounded(*args: Any, **kwargs: Any) -> str:
            check(args, kwargs)
            return formatter(*args, **kwargs)

        return bounded


# -- one render -----------------------------------------------------------------------------------------------------


def render_bounded(
    load: Callable[[], jinja2.Template],
    ctx: Mapping[str, Any],
    *,
    where: str,
    max_chars: int,
    max_bytes: int | None = None,
) -> str:
    """The template `load` gives, rendered with `ctx` within its environment's limits, or a RenderError.

    `max_chars` bounds the text as it streams; `max_bytes`, when given, also bounds its UTF-8 size.
    """
    template: jinja2.Template | None = None
    try:
        try:
            template = load()
        except (RecursionError, MemoryError, SyntaxError) as exc:  # Python's own limits on the compiled code
            raise RenderLimitError("the template nests too deeply to be compiled", where) from exc
        except jinja2.TemplateSyntaxError as exc:
            other = f" in {exc.name}" if exc.name and exc.name != where else ""
            raise RenderError(
                f"Jinja2 syntax error{other}: {exc.message}", where, exc.lineno, template_fault=True
            ) from exc
        env = template.environment
        limits = env.limits if isinstance(env, BoundedEnvironment) else RenderLimits()
        text = _stream(template, ctx, limits, max_chars, max_bytes)
        return _checked_output(text, max_chars, max_bytes)
    except RenderError as exc:
        if exc.where is not None:
            raise
        raise type(exc)(exc.reason, where, exc.line or _template_line(exc.__traceback__, template)) from None
    except jinja2.UndefinedError as exc:
        raise RenderError(f"{exc.message} (the lead lacks a field the template needs)", where) from exc
    except Exception as exc:  # a template's own error: the reason goes to the touch, never a traceback
        error = RenderLimitError if isinstance(exc, RecursionError | MemoryError) else RenderError
        line = exc.lineno if isinstance(exc, TemplateFileError) else _template_line(exc.__traceback__, template)
        raise error(explain(exc), where, line, template_fault=isinstance(exc, _TEMPLATE_FAULTS)) from exc


def _stream(
    template: jinja2.Template, ctx: Mapping[str, Any], limits: RenderLimits, max_chars: int, max_bytes: int | None
) -> str:
    spending = budget.Budget(limits.timeout_seconds, max(limits.max_email_bytes, max_chars))
    outer = budget.begin(spending)
    try:
        parts: list[str] = []
        size = 0
        try:  # Template.generate() without its extra generator: this loop runs once per piece of output
            for chunk in template.root_render_func(template.new_context(dict(ctx))):
                size += len(chunk)
                if size > max_chars:
                    raise RenderLimitError(_too_long(max_chars, max_bytes))
                parts.append(chunk)
        except Exception:
            template.environment.handle_exception()  # re-raises with the traceback at the template's lines
        if time.monotonic() > spending.deadline:  # a timeout swallowed on the way is still a timeout
            raise budget.timeout(spending)
        return "".join(parts)
    finally:
        budget.end(outer)


def _checked_output(text: str, max_chars: int, max_bytes: int | None) -> str:
    if "\x00" in text:
        raise RenderError("the text holds a NUL character, which no mail server or database accepts")
    if not text.isascii():
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError as exc:
            raise RenderError(f"the text holds an invalid character ({exc.reason})") from None
        if max_bytes is not None and size > max_bytes:
            raise RenderLimitError(_too_long(max_chars, max_bytes))
    return text


def _too_long(max_chars: int, max_bytes: int | None) -> str:
    if max_bytes is None:
        return f"writes more than {max_chars:,} characters (render.max_sms_chars)"
    return f"writes more than {max_bytes / 1024:g} KiB (render.max_email_kib)"


# -- reasons a sales manager can act on ---------------------------------------------------------------------------


class TemplateFileError(jinja2.TemplateError):
    """A template file that cannot be read as text (too large, not UTF-8, a NUL byte), with its line."""

    def __init__(self, message: str, lineno: int = 1):
        super().__init__(message)
        self.lineno = lineno


# failures that do not depend on the lead's data: `cadence validate` finds them with sample values
_TEMPLATE_FAULTS = (
    jinja2.TemplateSyntaxError,
    jinja2.TemplateNotFound,
    TemplateFileError,
    SecurityError,
    RecursionError,
    MemoryError,
)


def explain(exc: BaseException) -> str:
    """Why a template failed, in words a manager can act on."""
    if isinstance(exc, jinja2.TemplateSyntaxError):
        where = f" in {exc.name}" if exc.name else ""
        return f"Jinja2 syntax error{where} at line {exc.lineno}: {exc.message}"
    if isinstance(exc, jinja2.TemplateNotFound):
        return f"template {exc.name!r} not found"
    if isinstance(exc, SecurityError):
        return f"unsafe template: {exc}"
    if isinstance(exc, RecursionError):
        return "calls itself too deeply (a macro or include that never stops calling itself?)"
    if isinstance(exc, MemoryError):
        return "needs more memory than there is"
    if isinstance(exc, OverflowError):
        return f"a number is too large: {exc.args[-1] if exc.args else exc}"
    if isinstance(exc, jinja2.TemplateError):
        return str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _template_line(tb: TracebackType | None, template: jinja2.Template | None) -> int | None:
    """The template line of the innermost frame Jinja2 rewrote to point at the template."""
    if template is None:
        return None
    filename = template.filename or "<template>"
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
