"""Untrusted text shown literally: inside a Markdown sentence, or in a Plotly hover label.

Reviewer names, model strings and uploaded file names sometimes belong inside a sentence that
Streamlit renders as Markdown (a caption, an alert). Backslash-escaping every character Markdown
(and Streamlit's ``$``-math) gives a meaning to makes the sentence show the text exactly as
written: ``a_b*`` stays ``a_b*`` instead of turning italic, and ``http://x`` no link.

Plotly renders a subset of HTML (``<b>``, ``<br>``, ``<a href>``, entities) in hover labels,
legends and tick labels, including the values ``px.scatter(hover_data=...)`` puts in them:
:func:`hover` escapes such text first.
"""

from __future__ import annotations

import html
import re
import textwrap

# CommonMark's escapable ASCII punctuation, plus "$" (Streamlit renders $...$ as math).
_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$&:\"'])")

HOVER_WIDTH = 80
HOVER_MAX = 600


# GitHub-flavoured Markdown (Streamlit's) turns bare URLs and e-mail addresses into links after
# parsing, so escapes do not stop it: an invisible word joiner inside "://", after "www" and
# after "@" does, and the reader sees the same characters.
WORD_JOINER = "\u2060"
_AUTOLINK = re.compile(r"(?i)(?<=https\\:)(?=//)|(?<=http\\:)(?=//)"  # http(s)://
                       r"|(?<=\bwww)(?=\\\.)|(?<=@)(?=\w)")  # www. and user@host


def literal(text: object) -> str:
    """``text`` escaped so that Markdown renders it character for character (and a URL or an
    address in it is no link)."""
    escaped = _SPECIAL.sub(r"\\\1", str(text)).replace("\n", " ")
    return _AUTOLINK.sub(WORD_JOINER, escaped)


def hover(text: object, width: int = HOVER_WIDTH, limit: int = HOVER_MAX) -> str:
    """``text`` for a Plotly label (hover text, customdata, legend, axis tick), shown literally.

    Plotly reads these strings as its HTML subset, so a rule or a label written by a model or an
    uploader could otherwise draw bold text, line breaks or a link (``<a href>``) into the
    chart, or hide its own words behind an entity. ``<``, ``>`` and ``&`` are HTML-escaped
    (Plotly turns ``&lt;``, ``&gt;`` and ``&amp;`` back into the characters; quotes need no
    escaping outside a tag). A hover label never wraps by itself, so long text is cut to
    ``limit`` characters and broken into lines of at most ``width`` with ``<br>``.
    """
    value = " ".join(str(text).split())
    if len(value) > limit:
        value = value[:limit - 1].rstrip() + "…"
    lines = textwrap.wrap(value, width, break_long_words=True, break_on_hyphens=False) or [""]
    return "<br>".join(html.escape(line, quote=False) for line in lines)
