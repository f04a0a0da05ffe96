"""Email rendering: one Markdown template gives the plain part and the HTML part, and a lead's
values can never add markup or leave a hole."""

from __future__ import annotations

from pathlib import Path

import pytest

from cadence.plan.render import Renderer, RenderError, clean_context, markdown_to_html

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
