"""Untrusted text shown literally: a message, a tooltip, a part of a Markdown sentence, or a
Plotly hover label.

Reviewer names, model strings, model output, uploaded text, task and file names reach text that
Streamlit renders as Markdown (alerts, captions, tooltips, labels). Backslash-escaping every
character Markdown (and Streamlit's ``$``-math) gives a meaning to makes it show exactly as
written: ``a_b*`` stays ``a_b*`` instead of turning italic, and ``http://x`` no link.

The one way to show such text in the app:

* a message (a refusal, an error, the outcome of an action, any sentence with an untrusted
  part) is a plain string, built in ``pld`` or in the page without any Markdown, and shown with
  :func:`say` (alerts, captions, toasts; the flash message of :mod:`pld.ui.page` too) or, as a
  widget's tooltip, passed through :func:`tip`;
* where a sentence needs Markdown of its own (a bold name in a list), each untrusted part goes
  in through :func:`literal`;
* longer untrusted text (a heuristic, a comment, a model's reply) goes to ``st.text`` or
  ``st.code``, which never render Markdown.

Plotly renders a subset of HTML (``<b>``, ``<br>``, ``<a href>``, entities) in hover labels,
legends and tick labels, including the values ``px.scatter(hover_data=...)`` puts in them:
:func:`hover` escapes such text first.
"""

from __future__ import annotations

import html
import re
import textwrap
from typing import Any

import streamlit as st

# CommonMark's escapable ASCII punctuation, plus "$" (Streamlit renders $...$ as math).
_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$&:\"'])")

HOVER_WIDTH = 80
HOVER_MAX = 600
# The Streamlit calls :func:`say` shows a message with (all render Markdown).
SAY_KINDS = ("success", "info", "warning", "error", "caption", "toast")


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


def say(kind: str, message: object, where: Any = None) -> None:
    """Show the plain ``message`` as ``kind`` (:data:`SAY_KINDS`: an alert, a caption or a
    toast) in ``where`` (a column or container; the page by default), character for
    character: a name, a model string or a quoted file in it is never Markdown."""
    if kind not in SAY_KINDS:
        raise ValueError(f"say: kind {kind!r} is not one of {', '.join(SAY_KINDS)}")
    getattr(where or st, kind)(literal(message))


def tip(message: str | None) -> str | None:
    """A widget's tooltip (``help=``) saying the plain ``message`` literally; None (no
    tooltip) stays None."""
    return None if message is None else literal(message)


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
