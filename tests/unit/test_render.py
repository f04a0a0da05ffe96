"""Email rendering: one Markdown template gives the plain part and the HTML part, and a lead's
values can never add markup or leave a hole."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from cadence.plan.render import Renderer, RenderError, RenderLimitError, RenderLimits, clean_context, markdown_to_html

TEMPLATE = """Hi {{ lead.first_name }},

{{ lead.company }} books **30% more meetings** with us:

1. Send in the prospect's morning.
2. Call the same day.

Read more at https://acme.example/case or <a href="https://acme.example/demo">book a demo</a>.

{{ sender.first_name }}
"""


@pytest.fixture
def renderer(tmp_path: Path) -> Renderer:
    path = tmp_path / "t" / "intro.md.j2"
    path.parent.mkdir(parents=True)
    path.write_text(TEMPLATE, encoding="utf-8")
    return Renderer(tmp_path)


def ctx(**lead: str) -> dict[str, object]:
    """The context as the engine builds it: blank values dropped, so strict rendering sees them as missing."""
    return clean_context(
        {"lead": {"first_name": "Dana", "company": "Northwind", **lead}, "sender": {"first_name": "Alice"}}
    )


def test_one_template_gives_plain_text_and_html(renderer: Renderer) -> None:
    mail = renderer.email("{{ lead.company }} + Acme", "t/intro.md.j2", ctx())
    assert mail.subject == "Northwind + Acme"
    assert mail.text.startswith("Hi Dana,\n\nNorthwind books **30% more meetings** with us:")
    assert "<p>Hi Dana,</p>" in mail.html
    assert "<strong>30% more meetings</strong>" in mail.html
    assert "<ol>\n<li>Send in the prospect's morning.</li>\n<li>Call the same day.</li>\n</ol>" in mail.html
    # the template author's own HTML is kept; a bare URL stays text (mail clients link it themselves)
    assert '<a href="https://acme.example/demo">book a demo</a>' in mail.html
    assert "Read more at https://acme.example/case or" in mail.html
    assert mail.html.rstrip().endswith("<p>Alice</p>")


def test_a_leads_values_cannot_add_markup_to_the_html(renderer: Renderer) -> None:
    mail = renderer.email("Hi", "t/intro.md.j2", ctx(company='<img src="https://evil.example/x"> & Co'))
    assert "<img" not in mail.html
    assert "<p>&lt;img src=&quot;https://evil.example/x&quot;&gt; &amp; Co books" in mail.html
    assert '<img src="https://evil.example/x"> & Co books' in mail.text  # the plain part is plain text


def test_a_missing_field_renders_nothing(renderer: Renderer) -> None:
    with pytest.raises(RenderError, match="first_name"):
        renderer.email("Hi", "t/intro.md.j2", {"lead": {"company": "Northwind"}, "sender": {"first_name": "A"}})
    with pytest.raises(RenderError, match="first_name"):
        renderer.email("Hi", "t/intro.md.j2", ctx(first_name=""))  # empty counts as missing


def test_dangerous_tags_in_a_template_are_neutralised() -> None:
    html = markdown_to_html("Hello <script>alert(1)</script> and <iframe src=x></iframe>")
    assert "<script>" not in html and "<iframe" not in html
    assert "&lt;script>" in html


# -- bounded, and every failure a RenderError naming the template --------------------------------------------------


def _renderer(tmp_path: Path, templates: dict[str, str], **limits: float) -> Renderer:
    for name, text in templates.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return Renderer(tmp_path, limits=RenderLimits(**limits))  # type: ignore[arg-type]


def _failure(renderer: Renderer, name: str, context: dict[str, object] | None = None) -> tuple[RenderError, float]:
    started = time.monotonic()
    with pytest.raises(RenderError) as caught:
        renderer.text(name, context if context is not None else ctx())
    return caught.value, time.monotonic() - started


RAISING = {  # template file -> (its text, how the error begins)
    "seats.md.j2": (
        "Hi {{ lead.first_name }},\n{{ lead.fields.seats + 10 }} seats",
        'seats.md.j2: line 2: TypeError: can only concatenate str (not "int") to str',
    ),
    "division.md.j2": ("{{ 100 / lead.fields.zero }}", "division.md.j2: line 1: ZeroDivisionError: division by zero"),
    "overflow.md.j2": ("{{ 10.0 ** 400 }}", "overflow.md.j2: line 1: a number is too large"),
    "recursion.md.j2": (
        "{% macro again() %}{{ again() }}{% endmacro %}{{ again() }}",
        "recursion.md.j2: line 1: calls itself too deeply",
    ),
    "sandbox.md.j2": (
        "{{ lead.__class__.__mro__ }}",
        "sandbox.md.j2: line 1: unsafe template: access to attribute '__class__'",
    ),
    "include.md.j2": ('{% include "nowhere.md.j2" %}', "include.md.j2: line 1: template 'nowhere.md.j2' not found"),
}


@pytest.mark.parametrize("name", RAISING)
def test_any_error_a_template_raises_becomes_a_render_error_naming_the_template_and_line(
    tmp_path: Path, name: str
) -> None:
    source, expected = RAISING[name]
    renderer = _renderer(tmp_path, {name: source})
    lead = clean_context({"lead": {"first_name": "Dana", "fields": {"seats": "12", "zero": 0}}})
    error, _ = _failure(renderer, name, lead)
    assert str(error).startswith(expected), str(error)
    with pytest.raises(RenderError, match=name):  # the HTML part, which the engine renders too, says the same
        renderer.html(name, lead)


def test_a_loop_that_runs_too_long_fails_within_the_timeout(tmp_path: Path) -> None:
    renderer = _renderer(
        tmp_path,
        {"loop.md.j2": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}Hi"},
        timeout_seconds=0.3,
    )
    error, elapsed = _failure(renderer, "loop.md.j2")
    assert str(error) == (
        "loop.md.j2: line 1: took longer than 0.3 s to render (render.timeout_seconds): a loop that runs too long?"
    )
    assert isinstance(error, RenderLimitError)
    assert elapsed < 2


@pytest.mark.parametrize(
    "source",
    ["{% for x in [1] recursive %}{{ loop([1]) }}{% endfor %}", "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}"],
)
def test_a_template_that_calls_itself_is_stopped_by_its_depth_not_by_the_clock(tmp_path: Path, source: str) -> None:
    """Python's recursion limit is thousands of frames away; on a busy machine the time limit came first and
    named the wrong fault. The depth guard stops it at 100 nested calls, whatever the clock says."""
    renderer = _renderer(tmp_path, {"again.md.j2": source}, timeout_seconds=60)
    error, _ = _failure(renderer, "again.md.j2")
    assert isinstance(error, RenderLimitError)
    assert str(error).startswith("again.md.j2: line 1: calls itself too deeply"), str(error)
    assert isinstance(error.__cause__, RecursionError)
    assert str(error.__cause__) == "more than 100 calls inside one another"
    lead_loop = "{% for x in [1, 2, 3] recursive %}{% if loop.depth < 50 %}{{ loop([x]) }}{% endif %}{% endfor %}ok"
    assert _renderer(tmp_path, {"deep.md.j2": lead_loop}).text("deep.md.j2", ctx()) == "ok"  # 50 deep is fine


def test_a_loop_that_writes_nothing_is_stopped_off_the_main_thread_too(tmp_path: Path) -> None:
    source = "{% set xs = range(100000)|list %}{% for a in xs %}{% for b in xs %}{% endfor %}{% endfor %}"
    renderer = _renderer(tmp_path, {"silent.md.j2": source}, timeout_seconds=0.3)
    outcome: list[BaseException] = []

    def render() -> None:
        try:
            renderer.text("silent.md.j2", ctx())
        except BaseException as exc:  # handed back to the test's thread
            outcome.append(exc)

    worker = threading.Thread(target=render)
    started = time.monotonic()
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive() and time.monotonic() - started < 3
    assert [type(e) for e in outcome] == [RenderLimitError]
    assert "took longer than 0.3 s" in str(outcome[0])


def test_an_email_over_the_size_limit_fails_with_the_limit_named(tmp_path: Path) -> None:
    renderer = _renderer(tmp_path, {"flood.md.j2": "{% for i in range(100000) %}{{ 'lorem ipsum ' * 10 }}{% endfor %}"})
    error, elapsed = _failure(renderer, "flood.md.j2")
    assert str(error) == "flood.md.j2: writes more than 256 KiB (render.max_email_kib)"
    assert elapsed < 2
    small = _renderer(tmp_path / "small", {"t.md.j2": "x" * 3000}, max_email_bytes=2048)
    with pytest.raises(RenderLimitError, match="writes more than 2 KiB"):
        small.email("Hi", "t.md.j2", ctx())


def test_an_sms_over_1600_characters_fails_and_an_email_of_that_length_does_not(tmp_path: Path) -> None:
    renderer = _renderer(tmp_path, {"long.txt.j2": "{% for i in range(200) %}Hi there! {% endfor %}"})
    as_sms = clean_context({**ctx(), "step": {"id": "sms-1", "day": 1, "channel": "sms"}})
    error, _ = _failure(renderer, "long.txt.j2", as_sms)
    assert str(error) == "long.txt.j2: writes more than 1,600 characters (render.max_sms_chars)"
    assert len(renderer.text("long.txt.j2", ctx())) == 1999  # the same text is a fine email
    with pytest.raises(RenderLimitError):
        renderer.text("long.txt.j2", ctx(), channel="sms")


GREEDY = {
    "repeat": "{{ 'x' * 10**9 }}",
    "power": "{{ 10 ** 100000000 }}",
    "format width": "{{ '{:>999999999}'.format(lead.first_name) }}",
    "printf width": "{{ '%999999999s' % lead.first_name }}",
    "center": "{{ lead.first_name|center(999999999) }}",
    "ljust": "{{ lead.first_name.ljust(999999999) }}",
    "batch": "{{ [1]|batch(999999999, 'x')|list }}",
    "join": "{{ range(100000)|join('x' * 10000) }}",
    "replace": "{{ ('x' * 200000).replace('x', 'yyyyyyyyyy') }}",
    "doubling macro": "{% macro grow(s) %}{{ grow(s ~ s) }}{% endmacro %}{{ grow('x') }}",
    "doubling namespace": (
        "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}"
    ),
    "collected block": "{% set b %}{% for i in range(100000) %}{{ 'x' * 200000 }}{% endfor %}{% endset %}{{ b }}",
}


@pytest.mark.parametrize("case", GREEDY)
def test_operations_that_would_allocate_gigabytes_are_refused_before_they_run(tmp_path: Path, case: str) -> None:
    renderer = _renderer(tmp_path, {"greedy.md.j2": GREEDY[case]})
    error, elapsed = _failure(renderer, "greedy.md.j2")
    assert isinstance(error, RenderLimitError), str(error)
    assert str(error).startswith("greedy.md.j2: "), str(error)
    assert elapsed < 1


def test_text_with_a_nul_or_a_lone_surrogate_is_never_sent(tmp_path: Path) -> None:
    renderer = _renderer(tmp_path, {"nul.md.j2": "a{{ '\\x00' }}b", "surrogate.md.j2": "a{{ '\\ud800' }}b"})
    assert "NUL character" in str(_failure(renderer, "nul.md.j2")[0])
    assert "invalid character" in str(_failure(renderer, "surrogate.md.j2")[0])


def test_bounds_leave_ordinary_templates_alone(tmp_path: Path) -> None:
    source = (
        "{% set ns = namespace(total=0) %}{% for n in [1, 2, 3] %}{% set ns.total = ns.total + n %}{% endfor %}"
        "{{ ns.total }} {{ '{:,}'.format(5000000) }} {{ '%.1f' % 2.25 }} {{ 'ab' * 3 }} {{ 2 ** 10 }}"
        " {{ ['a', 'b']|join(', ') }} {{ 'Hi'|center(6) }}|{% macro m(x) %}<{{ x }}>{% endmacro %}{{ m('y') }}"
    )
    renderer = _renderer(tmp_path, {"ok.md.j2": source})
    assert renderer.text("ok.md.j2", ctx()) == "6 5,000,000 2.2 ababab 1024 a, b   Hi  |<y>"
