"""What one render may spend: its time, the size of its values, and the checks that keep it within them.

`cadence.spec.sandbox` calls these from the template's own code: every loop item, call,
operator, joined value and collected block. The budget of the render in progress lives in
a thread-local, so renders in the engine's event loop and in the web server's threads each
have their own, and code outside a render (Jinja2 folding constants while it compiles)
meets the default limits.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping, Sized
from dataclasses import dataclass
from functools import wraps
from typing import Any

from jinja2.utils import Namespace


@dataclass(frozen=True)
class RenderLimits:
    """config.yaml's `render:` section: how long one template may take and how much it may write."""

    timeout_seconds: float = 2.0
    max_email_bytes: int = 256 * 1024
    max_sms_chars: int = 1600


class RenderError(Exception):
    """A message could not be rendered completely; nothing may be sent.

    `where` names the template (or "subject"), `line` its line when known. `template_fault`
    says the template fails whatever the lead's data (a loop that runs too long, a missing
    include), so `cadence validate` reports it as an error rather than a warning.
    """

    template_fault = False

    def __init__(
        self, reason: str, where: str | None = None, line: int | None = None, *, template_fault: bool | None = None
    ):
        self.reason, self.where, self.line = reason, where, line
        if template_fault is not None:
            self.template_fault = template_fault
        super().__init__(f"{where}: " * bool(where) + f"line {line}: " * bool(line) + reason)


class RenderLimitError(RenderError):
    """The template ran too long, wrote too much or called itself without end (`render:` in config.yaml)."""

    template_fault = True


_SIZED = (str, list, tuple, dict)
_MAX_INT_BITS = 14_300  # about 4,300 digits, the most Python will print
LOOP_GUARD = "_cadence_bounded_loop"
_PRINTF_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_FORMAT_FIELD = re.compile(r"\{[^{}]*\}")
_NESTED_FORMAT_FIELD = re.compile(r"\{[^{}]*:[^{}]*\{")  # "{:{width}}" takes its width from the arguments
_DIGITS = re.compile(r"\d+")
_SPENDABLE = 64  # times the email limit: what one render may build in all, garbage included


class Budget:
    """What the render in progress on this thread may still spend (`begin` makes it the current one)."""

    __slots__ = ("cap", "deadline", "depth", "seconds", "spent")

    def __init__(self, seconds: float, cap: int):
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.cap = cap
        self.spent = 0
        self.depth = 0  # calls in progress, one inside another (a macro calling itself, `loop(...)`)


_current = threading.local()


def begin(budget: Budget) -> Budget | None:
    """Make `budget` this thread's; returns the one to give back to `end`."""
    outer = current()
    _current.budget = budget
    return outer


def end(outer: Budget | None) -> None:
    _current.budget = outer


def current() -> Budget | None:
    return getattr(_current, "budget", None)


def tick() -> None:
    budget = current()
    if budget is not None and time.monotonic() > budget.deadline:
        raise timeout(budget)


# Calls one inside another that a template may make: far more than any real template nests, and reached
# in a millisecond by one that calls itself for ever. Python's own recursion limit would stop it too, but
# only after thousands of frames, and on a busy machine the render's time limit can come first, which
# tells the manager "a loop that runs too long" about a template that calls itself.
MAX_CALL_DEPTH = 100


def enter_call() -> None:
    budget = current()
    if budget is not None:
        budget.depth += 1
        if budget.depth > MAX_CALL_DEPTH:
            budget.depth -= 1
            raise RecursionError(f"more than {MAX_CALL_DEPTH} calls inside one another")


def leave_call() -> None:
    budget = current()
    if budget is not None:
        budget.depth -= 1


def timeout(budget: Budget) -> RenderLimitError:
    return RenderLimitError(
        f"took longer than {budget.seconds:g} s to render (render.timeout_seconds): a loop that runs too long?"
    )


def cap() -> int:
    budget = current()
    return budget.cap if budget is not None else RenderLimits.max_email_bytes


def refuse(what: str, size: int) -> RenderLimitError:
    return RenderLimitError(f"{what} would be {size:,} characters, over the limit of {cap():,} (render.max_email_kib)")


def check_size(value: Any, what: str = "a value", *, new: bool = True) -> None:
    """No value may outgrow the limit, and the `new` ones count towards what the render builds in all."""
    if isinstance(value, _SIZED):
        budget = current()
        if budget is None:
            if len(value) > RenderLimits.max_email_bytes:
                raise refuse(what, len(value))
            return
        if len(value) > budget.cap:
            raise refuse(what, len(value))
        if not new:
            return
        budget.spent += len(value)
        if budget.spent > budget.cap * _SPENDABLE:
            raise RenderLimitError(f"builds more than {budget.cap * _SPENDABLE:,} characters of values as it runs")


def check_counts(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """A width or count argument bigger than any message could be allocates for nothing."""
    limit = cap()
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and abs(value) > limit:
            raise RenderLimitError(f"a width or count of {value:,} is over the limit of {limit:,}")
        if isinstance(value, Mapping):  # format_map's fields
            check_counts(tuple(value.values()), {})


def _check_spec_numbers(spec_numbers: list[str]) -> None:
    limit = cap()
    for digits in spec_numbers:
        if len(digits) > len(str(limit)) or int(digits) > limit:
            raise RenderLimitError(f"a format width of {digits[:12]} is over the limit of {limit:,}")


def _check_printf(fmt: str, args: Any) -> None:
    """`'%999999999d' % 1` would allocate a gigabyte before anything could count it."""
    numbers, star = [], False
    for width, precision in _PRINTF_SPEC.findall(fmt):
        for part in (width, precision):
            star = star or part == "*"
            if part and part != "*":
                numbers.append(part)
    _check_spec_numbers(numbers)
    if star:
        check_counts(args if isinstance(args, tuple) else (args,), {})


def _predicted_str_call(method: str, owner: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int:
    """How long the result of `owner.method(*args)` will be, for the methods that can multiply a string."""
    if method == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        old, new = args[0], args[1]
        count = owner.count(old) if old else len(owner) + 1
        return len(owner) + count * max(0, len(new) - len(old))
    if method == "expandtabs":
        size = args[0] if args else kwargs.get("tabsize", 8)
        return len(owner) + owner.count("\t") * (size if isinstance(size, int) else 8)
    if method == "join" and args and isinstance(args[0], list | tuple):
        return len(args[0]) * len(owner)
    return 0


# -- filters that can multiply their input, checked before they run ----------------------------------------------


def _predict_indent(s: Any, width: Any = 4, *_: Any, **__: Any) -> int:
    text = str(s)
    pad = len(width) if isinstance(width, str) else width if isinstance(width, int) else 4
    return len(text) + (text.count("\n") + 1) * pad


def _predict_replace(s: Any, old: Any = "", new: Any = "", *_: Any, **__: Any) -> int:
    if isinstance(s, str) and isinstance(old, str) and isinstance(new, str):
        return _predicted_str_call("replace", s, (old, new), {})
    return 0


def _predict_join(value: Any, d: Any = "", *_: Any, **__: Any) -> int:
    return len(value) * len(d) if isinstance(value, Sized) and isinstance(d, str) else 0


def _predict_format(value: Any, *args: Any, **kwargs: Any) -> int:
    if isinstance(value, str):
        _check_printf(value, kwargs or args)
    return 0


def _bits(number: int) -> int:
    return max(number.bit_length(), 1)


def _nothing(*_: Any, **__: Any) -> int:
    return 0


# name -> (the predicted size of its result, whether its numbers are widths or counts)
_FILTER_PREDICTIONS: dict[str, tuple[Callable[..., int], bool]] = {
    "center": (_nothing, True),
    "indent": (_predict_indent, True),
    "batch": (_nothing, True),
    "slice": (_nothing, True),
    "format": (_predict_format, False),
    "replace": (_predict_replace, False),
    "join": (_predict_join, False),
}


def _bounded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    predict, takes_counts = _FILTER_PREDICTIONS[name]
    passes_context = getattr(func, "jinja_pass_arg", None) is not None

    @wraps(func)  # keeps jinja_pass_arg: pass_eval_context filters still get their context
    def bounded(*args: Any, **kwargs: Any) -> Any:
        tick()
        values = args[1:] if passes_context else args
        if takes_counts:
            check_counts(values[1:], kwargs)
        if values and (size := predict(*values, **kwargs)) > cap():
            raise refuse(f"the result of |{name}", size)
        result = func(*args, **kwargs)
        check_size(result, f"the result of |{name}")
        return result

    return bounded


def bound_filters(filters: dict[str, Callable[..., Any]]) -> None:
    """Swap an environment's filters that can multiply their input for checked ones, and add the loop guard."""
    for name in _FILTER_PREDICTIONS:
        filters[name] = _bounded_filter(name, filters[name])
    filters[LOOP_GUARD] = bounded_loop


def bounded_loop(iterable: Any) -> Any:
    """Every `{% for %}` iterates through this, so a loop that writes nothing still sees the clock."""
    for item in iterable:
        tick()
        yield item


class Buffer(list):  # type: ignore[type-arg]
    """The buffer of a `{% set %}` block, a macro or a `{% filter %}`: output that is not streamed."""

    __slots__ = ("size",)

    def __init__(self) -> None:
        super().__init__()
        self.size = 0

    def append(self, item: Any) -> None:
        self.size += len(item)
        if self.size > cap():
            raise refuse("text collected in a block or macro", self.size)
        tick()
        super().append(item)

    def extend(self, items: Any) -> None:
        for item in items:
            self.append(item)


class BoundedNamespace(Namespace):
    """`namespace()` whose attributes, set in a loop, cannot grow past the limits."""

    def __setitem__(self, name: str, value: Any) -> None:
        check_size(value)
        super().__setitem__(name, value)


def check_binop(operator: str, left: Any, right: Any) -> None:
    """`*`, `**`, `+` and `%` measured before Python allocates their result."""
    tick()
    limit = cap()
    if operator == "*":
        seq, count = (left, right) if isinstance(left, _SIZED) else (right, left)
        if isinstance(seq, _SIZED) and isinstance(count, int) and len(seq) * count > limit:
            raise refuse("a repeated value", len(seq) * count)
        if isinstance(left, int) and isinstance(right, int) and _bits(left) + _bits(right) > _MAX_INT_BITS:
            raise RenderLimitError("a product of numbers too large to show")
    elif operator == "**":
        if isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right * _bits(left) > _MAX_INT_BITS:
            raise RenderLimitError(f"a power too large to show ({right:,} as exponent)")
    elif operator == "+":
        if isinstance(left, _SIZED) and isinstance(right, _SIZED) and len(left) + len(right) > limit:
            raise refuse("a sum of values", len(left) + len(right))
    elif operator == "%" and isinstance(left, str):
        _check_printf(left, right)


def check_call(obj: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """A call's arguments, and for a string's own methods (`ljust`, `replace`...) the size of their result."""
    tick()
    for value in args:
        check_size(value, "an argument", new=False)
    owner = getattr(obj, "__self__", None)
    if isinstance(owner, str):
        check_counts(args, kwargs)
        size = _predicted_str_call(getattr(obj, "__name__", ""), owner, args, kwargs)
        if size > cap():
            raise refuse(f"the result of .{obj.__name__}()", size)


def check_concat(parts: tuple[Any, ...]) -> None:
    size = sum(len(p) for p in parts if isinstance(p, str))
    if size > cap():
        raise refuse("a joined value", size)


def format_guard(fmt: str) -> Callable[[tuple[Any, ...], Mapping[str, Any]], None]:
    """Checks `fmt.format(...)`: its own widths now, the widths it takes from its arguments at each call."""
    _check_spec_numbers([n for field in _FORMAT_FIELD.findall(fmt) for n in _DIGITS.findall(field)])
    if _NESTED_FORMAT_FIELD.search(fmt) is None:
        return lambda args, kwargs: None
    return check_counts
