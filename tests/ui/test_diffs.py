"""Text diffs for the review pages."""

from __future__ import annotations

import html
import re

from pld.ui import diffs
from pld.ui.diffs import DELETE, EQUAL, INSERT, Row, Span


def _side(spans: list[Span], keep: str) -> str:
    return "".join(s.text for s in spans if s.op in (EQUAL, keep))


def test_word_diff_marks_replaced_words_and_restores_both_texts() -> None:
    old = "Answer yes when the claim names a date."
    new = "Answer yes when the claim names an exact date, else no."
    spans = diffs.word_diff(old, new)
    assert _side(spans, DELETE) == old
    assert _side(spans, INSERT) == new
    assert Span(DELETE, "a") in spans
    assert any(s.op == INSERT and "exact" in s.text for s in spans)
    assert spans[0] == Span(EQUAL, "Answer yes when the claim names ")


def test_word_diff_of_equal_texts_has_no_change() -> None:
    spans = diffs.word_diff("same text", "same text")
    assert spans == [Span(EQUAL, "same text")]
    assert not diffs.changed(spans)
    assert diffs.changed(diffs.word_diff("same text", "same texts"))


def test_word_diff_from_and_to_empty() -> None:
    assert diffs.word_diff("", "new rule") == [Span(INSERT, "new rule")]
    assert diffs.word_diff("old rule", "") == [Span(DELETE, "old rule")]
    assert diffs.word_diff("", "") == []


def _text(html_part: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", html_part))


def test_diff_html_escapes_and_marks() -> None:
    out = diffs.diff_html("if x < 3 or z", "if x <= 3 & y")
    assert "<script" not in diffs.diff_html("a", "<script>alert(1)</script>")
    assert "&lt;" in out and "&amp;" in out
    assert "<ins" in out and "<del" in out
    assert "(empty)" in diffs.side_html([], INSERT)


def test_diff_html_shows_old_and_new_side_by_side_with_changes_marked_in_each() -> None:
    # Before: "~~delivery~~parcel ~~did~~is ~~not~~late…", deleted and added words in turn.
    old = "If the delivery did not arrive on time, answer late."
    new = "If the parcel is late or lost, answer late."
    out = diffs.diff_html(old, new, old_title="v1", new_title="v2")
    sides = re.findall(r'<div class="pld-diff"[^>]*>(.*?)</div>', out)
    assert len(sides) == 2
    before, after = sides
    assert _text(before) == old and _text(after) == new
    assert "<del" in before and "<ins" not in before
    assert "<ins" in after and "<del" not in after
    assert re.search(r"<del[^>]*>delivery", before) and re.search(r"<ins[^>]*>parcel", after)
    assert out.index("v1") < out.index(before) < out.index("v2") < out.index(after)
    assert "grid-template-columns:1fr 1fr" in out


def test_unified_diff() -> None:
    assert diffs.unified("a\nb\n", "a\nb\n") == ""
    out = diffs.unified("a\nb\n", "a\nc\n", old_name="v1", new_name="v2")
    assert out.splitlines()[:2] == ["--- v1", "+++ v2"]
    assert "-b" in out.splitlines() and "+c" in out.splitlines()


def test_side_by_side_pairs_replaced_lines_and_pads() -> None:
    rows = diffs.side_by_side("keep\nold1\nold2\nend", "keep\nnew1\nend\nextra")
    assert rows == [
        Row(EQUAL, "keep", "keep"),
        Row("replace", "old1", "new1"),
        Row("replace", "old2", None),
        Row(EQUAL, "end", "end"),
        Row(INSERT, None, "extra"),
    ]
    assert diffs.side_by_side("gone", "") == [Row(DELETE, "gone", None)]
