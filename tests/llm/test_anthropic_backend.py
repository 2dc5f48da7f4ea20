"""AnthropicBackend driven through the real ``anthropic`` SDK against a fake Messages API: the
Anthropic wire format. What every hosted API does alike is in ``test_remote_backends.py``."""

from __future__ import annotations

import json

import anthropic
import pytest

from pld.llm.anthropic_backend import AnthropicBackend
from pld.llm.calls import CallFailed, complete
from pld.llm.pricing import estimate_cost
from pld.workspace import Workspace
from tests.fakes.anthropic_server import FakeAnthropic
from tests.llm.conftest import ANTHROPIC, SYSTEM, Ask, Provider, rows


@pytest.fixture
def provider() -> Provider:
    """This module's tests are Anthropic's alone."""
    return ANTHROPIC


def test_request_carries_a_cached_system_block_and_no_sampling(
    fake: FakeAnthropic, ask: Ask
) -> None:
    ask()
    [body] = fake.requests
    assert body["system"] == [{"type": "text", "text": SYSTEM,
                               "cache_control": {"type": "ephemeral"}}]
    assert body["messages"] == [{"role": "user", "content": ANTHROPIC.email}]
    # API version 2026-10-21 refuses sampling parameters; the fake would answer 400.
    assert body["max_tokens"] == 512 and "temperature" not in body
    assert "tools" not in body


def test_cache_read_and_write_tokens_count_as_input(
    ws: Workspace, fake: FakeAnthropic, ask: Ask
) -> None:
    fake.cache_read, fake.cache_creation = 1500, 300
    res = ask()
    prompt_words = len(SYSTEM.split()) + len(ANTHROPIC.email.split())
    assert res.reply.input_tokens == prompt_words + 1500 + 300
    assert res.reply.cached_tokens == 1500
    [row] = rows(ws)
    assert row["cached_tokens"] == 1500
    # The cached share is billed at a discount.
    assert 0 < row["cost_usd"] < estimate_cost(ANTHROPIC.model, row["input_tokens"], 1, 0)


def test_no_system_prompt_sends_no_system_block(
    ws: Workspace, fake: FakeAnthropic, backend: AnthropicBackend
) -> None:
    complete(ws, ANTHROPIC.model, [{"role": "user", "content": "hi"}], backend=backend)
    assert "system" not in fake.requests[0]


def test_json_schema_is_a_forced_tool_call(fake: FakeAnthropic, ask: Ask) -> None:
    schema = {"type": "object", "properties": {"reasoning": {"type": "string"},
                                               "rule": {"type": "string"}},
              "required": ["reasoning", "rule"]}
    answer = {"reasoning": "a double charge is about money", "rule": "Charges mean billing."}
    fake.responder = lambda body: json.dumps(answer)
    res = ask(json_schema=schema)
    assert json.loads(res.text) == answer
    body = fake.requests[0]
    assert body["tools"][0]["input_schema"] == schema
    assert body["tool_choice"] == {"type": "tool", "name": body["tools"][0]["name"]}
    assert body["system"][0]["cache_control"] == {"type": "ephemeral"}


def test_non_object_schema_is_asked_for_in_the_system_prompt(
    fake: FakeAnthropic, backend: AnthropicBackend
) -> None:
    fake.responder = lambda body: '["a", "b"]'
    reply = backend.complete([{"role": "user", "content": "two letters"}], system=SYSTEM,
                             json_schema={"type": "array", "items": {"type": "string"}})
    assert reply.text == '["a", "b"]'
    body = fake.requests[0]
    assert "tools" not in body
    system = body["system"][0]["text"]
    assert system.startswith(SYSTEM) and "JSON" in system and '"array"' in system


def test_refusal_is_not_retried(ws: Workspace, fake: FakeAnthropic, ask: Ask) -> None:
    refusal = {"id": "msg_r", "type": "message", "role": "assistant", "content": [],
               "model": "claude-sonnet-4-6", "stop_reason": "refusal", "stop_sequence": None,
               "usage": {"input_tokens": 5, "output_tokens": 0}}
    fake.add_fault("status", 200, {}, refusal)
    with pytest.raises(CallFailed, match="refused"):
        ask()
    assert len(fake.requests) == 1 and len(rows(ws)) == 1


def test_fake_refuses_sampling_parameters_like_the_api(fake: FakeAnthropic) -> None:
    """Guards the fake itself: a request with temperature must fail, as the real API fails it."""
    client = anthropic.Anthropic(api_key=ANTHROPIC.key, max_retries=0, timeout=5)
    with pytest.raises(anthropic.BadRequestError, match="temperature"):
        client.messages.create(model="claude-sonnet-4-6", max_tokens=5,
                               messages=[{"role": "user", "content": "x"}],
                               extra_body={"temperature": 0})
