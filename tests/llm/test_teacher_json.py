"""The one helper that asks the teacher for JSON, on the fake OpenAI server."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pld.llm.teacher_json import UnusableReply, ask_json
from pld.workspace import Workspace
from tests.fakes.openai_server import FakeOpenAI

SCHEMA = {"type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]}


def parse(text: str) -> str:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON: {e.msg}") from e
    if not isinstance(data, dict) or not isinstance(data.get("x"), str):
        raise ValueError('"x" must be a string')
    return data["x"]


def ask(ws: Workspace, fake: FakeOpenAI, **kw: Any) -> tuple[str, Any]:
    return ask_json(ws, fake.model_string(), "give x", parse, schema=SCHEMA, max_tokens=50,
                    stage="test", shape_hint=' {"x": "..."}', **kw)


def test_a_bad_reply_is_reasked_once_with_its_error(ws: Workspace,
                                                    fake_openai: FakeOpenAI) -> None:
    replies = iter(["nope", '{"x": "ok"}'])
    fake_openai.responder = lambda body: next(replies)
    value, result = ask(ws, fake_openai)
    assert value == "ok" and not result.cached
    second = fake_openai.requests[1]["messages"]
    assert [m["role"] for m in second] == ["user", "assistant", "user"]
    assert second[1]["content"] == "nope"
    assert second[2]["content"].startswith("Your reply could not be used: not valid JSON")
    assert second[2]["content"].endswith('{"x": "..."}, nothing else.')


def test_two_bad_replies_raise_with_the_last_reply(ws: Workspace,
                                                   fake_openai: FakeOpenAI) -> None:
    fake_openai.responder = lambda body: '{"y": 1}'
    with pytest.raises(UnusableReply, match="after re-ask") as info:
        ask(ws, fake_openai)
    assert info.value.raw == '{"y": 1}'
    row = ws.query("SELECT response FROM llm_calls WHERE id = ?", [info.value.call_id])[0]
    assert row["response"] == '{"y": 1}'


def test_cached_good_reply_is_served_and_a_cached_bad_one_is_asked_again(
        ws: Workspace, fake_openai: FakeOpenAI) -> None:
    fake_openai.responder = lambda body: '{"x": "first"}'
    assert ask(ws, fake_openai)[0] == "first"
    value, result = ask(ws, fake_openai)
    assert (value, result.cached, len(fake_openai.requests)) == ("first", True, 1)

    # A reply that was unusable must not be replayed from the cache on a rerun.
    fake_openai.responder = lambda body: "broken"
    with pytest.raises(UnusableReply):
        ask_json(ws, fake_openai.model_string(), "other", parse, schema=SCHEMA,
                 max_tokens=50, stage="test")
    n = len(fake_openai.requests)
    fake_openai.responder = lambda body: '{"x": "fixed"}'
    value, _ = ask_json(ws, fake_openai.model_string(), "other", parse, schema=SCHEMA,
                        max_tokens=50, stage="test")
    assert value == "fixed" and len(fake_openai.requests) == n + 1

    # fresh skips even a usable cached reply.
    fake_openai.responder = lambda body: '{"x": "new"}'
    assert ask(ws, fake_openai, fresh=True)[0] == "new"
