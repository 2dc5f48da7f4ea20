"""Untrusted text inside Markdown sentences is shown character for character."""

from __future__ import annotations

import html
import re
from collections.abc import Callable

import pytest
from markdown_it import MarkdownIt

from pld.ui.escape import WORD_JOINER, hover, literal, say, tip


def test_markdown_renders_escaped_text_literally() -> None:
    md = MarkdownIt("commonmark")
    for text in ("bob", "*ana*", "**x** _y_ `z`", "[click](http://e.vil)", "# head",
                 "a\\b", "1. list", "<b>bold</b>", "$x^2$"):
        html = md.renderInline(literal(text))
        assert "<em>" not in html and "<strong>" not in html and "<code>" not in html
        assert "<a " not in html and "<b>" not in html
    assert md.renderInline(literal("*ana* & co")) == "*ana* &amp; co"
    assert literal("$5") == "\\$5"


# The patterns of GitHub-flavoured Markdown's autolink literals (mdast-util-gfm-autolink-literal,
# which Streamlit's Markdown runs on the text after escapes are undone).
GFM_URL = re.compile(r"(https?://|www(?=\.))([-.\w]+)([^ \t\r\n]*)", re.IGNORECASE)
GFM_EMAIL = re.compile(r"([-.\w+]+)@([-\w]+(?:\.[-\w]+)+)")


def test_urls_and_addresses_in_text_are_no_links() -> None:
    for text in ("see http://evil.example/x now", "HTTPS://a.b", "go to www.evil.com",
                 "carl@bank.example", "teacher:openai-compatible/m@http://127.0.0.1:8000/v1"):
        shown = re.sub(r"\\(.)", r"\1", literal(text))  # what Markdown's parser leaves
        assert not GFM_URL.search(shown) and not GFM_EMAIL.search(shown), shown
        # The reader sees the same characters: only invisible word joiners were added.
        assert shown.replace(WORD_JOINER, "") == text
    assert WORD_JOINER not in literal("no link here: a_b*")


def test_hover_escapes_plotly_html() -> None:
    assert hover('<b>x</b> <a href="http://e.vil">y</a>') == (
        '&lt;b&gt;x&lt;/b&gt; &lt;a href="http://e.vil"&gt;y&lt;/a&gt;')
    # An entity the text spells out stays spelled out (Plotly would turn "&lt;" into "<").
    assert hover("a &lt;br&gt; & b") == "a &amp;lt;br&amp;gt; &amp; b"
    assert hover("if the user's \"refund\" fails") == "if the user's \"refund\" fails"
    assert hover(3) == "3" and hover("") == ""


def test_hover_keeps_lines_short() -> None:
    text = " ".join(["word"] * 60) + "\n<i>" + "x" * 200
    out = hover(text, width=40)
    lines = out.split("<br>")
    assert len(lines) > 5 and all(len(html.unescape(line)) <= 40 for line in lines)
    assert "<i>" not in out and "&lt;i&gt;" in out
    assert hover("y" * 1000).replace("<br>", "").endswith("…")
    assert len(hover("y" * 1000).replace("<br>", "")) == 600


class _Recorder:
    """Stands in for ``st`` or a column: records what each element was given."""

    def __init__(self) -> None:
        self.shown: list[tuple[str, str]] = []

    def __getattr__(self, kind: str) -> Callable[[str], None]:
        return lambda body: self.shown.append((kind, body))


def test_say_shows_a_plain_message_literally() -> None:
    where = _Recorder()
    name = '<a href="https://e.vil/x">re-login</a>![i](https://e.vil/i.png)'
    say("error", f"Not approved: {name} did 'edit'", where=where)
    say("caption", "a_b*", where=where)
    assert where.shown == [("error", literal(f"Not approved: {name} did 'edit'")),
                           ("caption", literal("a_b*"))]
    html_out = MarkdownIt("commonmark").render(where.shown[0][1])
    assert "<a " not in html_out and "<img" not in html_out
    with pytest.raises(ValueError, match="kind"):
        say("markdown_unsafe", "x", where=where)


def test_tip_escapes_a_tooltip_and_keeps_none() -> None:
    assert tip(None) is None
    assert tip("[x](http://e.vil)") == literal("[x](http://e.vil)")
