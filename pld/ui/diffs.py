"""Text diffs for the review pages: word-level spans shown old beside new, a unified diff, and
side-by-side rows.

Heuristics are a few sentences long, so a word-level diff shows what a reviewer changed far more
readably than a line diff; prompts are many lines, so those get a unified or side-by-side line
diff. Everything here is pure (strings in, data out) except :func:`side_html` and
:func:`diff_html`, which only format: the pages decide how to show it.
"""

from __future__ import annotations

import difflib
import html
import re
from dataclasses import dataclass
from itertools import zip_longest

EQUAL, INSERT, DELETE = "equal", "insert", "delete"

# Words, runs of whitespace and single punctuation marks: joining the tokens gives the text back.
_TOKEN = re.compile(r"\s+|\w+|[^\w\s]")

_STYLE = {
    INSERT: "background-color:rgba(46,160,67,0.25);text-decoration:none;",
    DELETE: "background-color:rgba(248,81,73,0.25);text-decoration:line-through;",
}


@dataclass(frozen=True)
class Span:
    """A piece of a word diff: ``op`` is 'equal', 'insert' or 'delete'."""

    op: str
    text: str


@dataclass(frozen=True)
class Row:
    """One row of a side-by-side line diff. ``left``/``right`` are None where that side has no
    line; ``op`` is 'equal', 'replace', 'insert' or 'delete'."""

    op: str
    left: str | None
    right: str | None


def tokens(text: str) -> list[str]:
    """``text`` cut into words, whitespace runs and punctuation; ``"".join`` restores it."""
    return _TOKEN.findall(text)


def word_diff(old: str, new: str) -> list[Span]:
    """The word-level difference from ``old`` to ``new``, adjacent spans of one kind merged.

    Joining the equal and delete spans gives ``old``; joining equal and insert gives ``new``.
    """
    a, b = tokens(old or ""), tokens(new or "")
    spans: list[Span] = []

    def add(op: str, parts: list[str]) -> None:
        text = "".join(parts)
        if not text:
            return
        if spans and spans[-1].op == op:
            spans[-1] = Span(op, spans[-1].text + text)
        else:
            spans.append(Span(op, text))

    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            add(EQUAL, a[i1:i2])
        else:
            # A replacement: the old words (struck on the old side), then the new ones.
            add(DELETE, a[i1:i2])
            add(INSERT, b[j1:j2])
    return spans


def changed(spans: list[Span]) -> bool:
    """True when a word diff holds any insertion or deletion."""
    return any(s.op != EQUAL for s in spans)


def side_html(spans: list[Span], side: str) -> str:
    """One side of a word diff as escaped HTML: ``side`` DELETE gives the old text with its
    deleted words struck through in red, INSERT the new text with its inserted words in green."""
    tag = "del" if side == DELETE else "ins"
    parts = []
    for s in spans:
        if s.op == EQUAL:
            parts.append(html.escape(s.text))
        elif s.op == side:
            parts.append(f'<{tag} style="{_STYLE[side]}">{html.escape(s.text)}</{tag}>')
    body = "".join(parts) or "<em>(empty)</em>"
    return f'<div class="pld-diff" style="white-space:pre-wrap;line-height:1.6">{body}</div>'


def diff_html(old: str, new: str, *, old_title: str = "Before",
              new_title: str = "After") -> str:
    """``old`` and ``new`` side by side, the words :func:`word_diff` finds changed marked
    within each: struck through in the old text, highlighted in the new. Interleaving them
    in one text ("~~delivery~~parcel ~~did~~is") is hard to read once a sentence is
    rewritten."""
    spans = word_diff(old, new)
    columns = "".join(
        f'<div><div style="font-size:0.8em;opacity:0.7">{html.escape(title)}</div>'
        f"{side_html(spans, side)}</div>"
        for title, side in ((old_title, DELETE), (new_title, INSERT)))
    return ('<div class="pld-diff-sides" style="display:grid;grid-template-columns:1fr 1fr;'
            f'gap:1em">{columns}</div>')


def unified(old: str, new: str, *, old_name: str = "before", new_name: str = "after") -> str:
    """A unified line diff of ``old`` and ``new`` ('' when they are equal)."""
    return "".join(difflib.unified_diff(
        (old or "").splitlines(keepends=True), (new or "").splitlines(keepends=True),
        fromfile=old_name, tofile=new_name,
    ))


def side_by_side(old: str, new: str) -> list[Row]:
    """The line diff of ``old`` and ``new`` as rows for a two-column view; a replaced block is
    paired line by line, the longer side padded with None."""
    a, b = (old or "").splitlines(), (new or "").splitlines()
    rows: list[Row] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            rows.extend(Row(EQUAL, x, y) for x, y in zip(a[i1:i2], b[j1:j2], strict=True))
        elif tag == "delete":
            rows.extend(Row(DELETE, x, None) for x in a[i1:i2])
        elif tag == "insert":
            rows.extend(Row(INSERT, None, y) for y in b[j1:j2])
        else:
            rows.extend(Row("replace", x, y) for x, y in zip_longest(a[i1:i2], b[j1:j2]))
    return rows
