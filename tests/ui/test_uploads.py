"""The Data page's first look at an uploaded file: every unreadable line is a clear error."""

from __future__ import annotations

import pytest

from pld.errors import BadInput
from pld.ui.uploads import peek


@pytest.mark.parametrize("line, reason", [
    (b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
    (b'{"n": ' + b"1" * 5000 + b"}", "Exceeds the limit"),
    (b'{"text": "b", ', "Expecting property name"),
])
def test_peek_names_the_line_of_unreadable_json(line: bytes, reason: str) -> None:
    # Before: RecursionError and the int-conversion ValueError escaped the page's handler.
    data = b'{"text": "a", "label": "p"}\n' + line + b"\n"
    with pytest.raises(BadInput, match=f"up.jsonl line 2: malformed JSON \\({reason}"):
        peek("up.jsonl", data)
