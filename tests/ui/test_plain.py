"""Untrusted text inside Markdown sentences is shown character for character."""

from __future__ import annotations

from markdown_it import MarkdownIt

from pld.ui.plain import literal


def test_markdown_renders_escaped_text_literally() -> None:
    md = MarkdownIt("commonmark")
    for text in ("bob", "*ana*", "**x** _y_ `z`", "[click](http://e.vil)", "# head",
                 "a\\b", "1. list", "<b>bold</b>", "$x^2$"):
        html = md.renderInline(literal(text))
        assert "<em>" not in html and "<strong>" not in html and "<code>" not in html
        assert "<a " not in html and "<b>" not in html
    assert md.renderInline(literal("*ana* & co")) == "*ana* &amp; co"
    assert literal("$5") == "\\$5"
