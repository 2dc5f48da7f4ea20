"""Merging a cluster's rules: the teacher's reply and the chunks of a large cluster."""

from __future__ import annotations

import pytest

from pld.pipeline.consolidate.merge import chunks, parse_reply


def test_parse_reply_and_helpers() -> None:
    assert parse_reply('```json\n{"heuristic": " h ", "labels_covered": ["a"]}\n```') \
        == ("h", ["a"])
    for bad, why in [("[]", "JSON object"), ('{"heuristic": ""}', "non-empty"),
                     ('{"heuristic": "h", "labels_covered": "a"}', "list"), ("{", "JSON")]:
        with pytest.raises(ValueError, match=why):
            parse_reply(bad)
    assert [len(c) for c in chunks(list(range(10)), 4)] == [4, 3, 3]
    assert [len(c) for c in chunks(list(range(4)), 4)] == [4]
