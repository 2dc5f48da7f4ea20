"""Reading JSON out of model replies: fences and surrounding prose tolerated, errors clear."""

from __future__ import annotations

import pytest

from pld.llm.json_reply import loads_reply, strip_fences


def test_strip_fences() -> None:
    assert strip_fences('```json\n{"a": 1}\n```') == '{"a": 1}'
    assert strip_fences('```\n{"a": 1}```') == '{"a": 1}'
    assert strip_fences('  {"a": 1} ') == '{"a": 1}'
    assert strip_fences('{"a": "```"}') == '{"a": "```"}'
    assert strip_fences('Sure:\n```json\n{"a": 1}\n```\nDone.') == '{"a": 1}'


@pytest.mark.parametrize("text", [
    '{"a": 1}',
    '```json\n{"a": 1}\n```',
    'Here is the JSON you asked for:\n{"a": 1}\nHope it helps.',
])
def test_loads_reply_accepts_what_models_write(text: str) -> None:
    assert loads_reply(text) == {"a": 1}


def test_loads_reply_names_the_parse_error() -> None:
    with pytest.raises(ValueError, match=r"not valid JSON: .*line 1"):
        loads_reply('{"a": ')


@pytest.mark.parametrize("text, reason", [
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('{"label": "a", "n": ' + "9" * 5000 + "}", "Exceeds the limit"),
])
def test_loads_reply_turns_every_parser_failure_into_value_error(text: str, reason: str) -> None:
    # Before: RecursionError and the int-conversion ValueError escaped the stages' handlers.
    with pytest.raises(ValueError, match=reason) as err:
        loads_reply(text)
    assert type(err.value) is ValueError
