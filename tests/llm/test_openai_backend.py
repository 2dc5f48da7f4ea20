"""OpenAIBackend driven through the real ``openai`` SDK against a fake Chat Completions API: the
OpenAI wire format, OpenAI-compatible servers and the retry-hint helpers. What every hosted API
does alike is in ``test_remote_backends.py``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from pld.llm.base import LLMError
from pld.llm.calls import CallFailed, complete
from pld.llm.http_errors import redact, retry_after_seconds
from pld.llm.openai_backend import OpenAIBackend
from pld.llm.pricing import estimate_cost
from pld.workspace import Workspace
from tests.fakes.openai_server import FakeOpenAI
from tests.llm.conftest import OPENAI, SYSTEM, Ask, Provider, rows


@pytest.fixture
def provider() -> Provider:
    """This module's tests are OpenAI's alone."""
    return OPENAI


def compatible(fake: FakeOpenAI, name: str = "fake-model") -> OpenAIBackend:
    """A backend of an OpenAI-compatible server (the fake, under its own model string)."""
    return OpenAIBackend(fake.model_string(name), name, base_url=fake.base_url, timeout=5)


# -- helpers ------------------------------------------------------------------------------

def test_retry_after_seconds_reads_every_form() -> None:
    assert retry_after_seconds({"retry-after": "7"}) == 7.0
    assert retry_after_seconds({"retry-after": "1.5"}) == 1.5
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    assert 100 < (retry_after_seconds({"retry-after": later}) or 0) <= 120
    earlier = format_datetime(datetime.now(UTC) - timedelta(seconds=120), usegmt=True)
    assert retry_after_seconds({"retry-after": earlier}) == 0.0
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None and retry_after_seconds(None) is None


def test_redact_hides_the_secret() -> None:
    assert redact(f"bad key {OPENAI.key}!", OPENAI.key) == "bad key [redacted]!"
    assert redact("nothing here", OPENAI.key) == "nothing here"


# -- request shape ----------------------------------------------------------------------------

def test_request_carries_the_system_message_and_sampling(fake: FakeOpenAI, ask: Ask) -> None:
    ask()
    [body] = fake.requests
    assert body["messages"] == [{"role": "system", "content": SYSTEM},
                                {"role": "user", "content": OPENAI.email}]
    assert body["max_completion_tokens"] == 512 and "max_tokens" not in body
    assert body["temperature"] == 0 and "response_format" not in body


def test_cached_prompt_tokens_are_reported(ws: Workspace, fake: FakeOpenAI, ask: Ask) -> None:
    fake.cached_tokens = 8
    res = ask()
    assert res.reply.cached_tokens == 8
    [row] = rows(ws)
    assert row["cached_tokens"] == 8
    assert 0 < row["cost_usd"] < estimate_cost(OPENAI.model, row["input_tokens"], 1, 0)


def test_reasoning_models_get_no_temperature(fake: FakeOpenAI) -> None:
    OpenAIBackend("openai/o4-mini", "o4-mini", timeout=5).complete(
        [{"role": "user", "content": "x"}], max_tokens=2000)
    body = fake.requests[0]
    assert "temperature" not in body and body["max_completion_tokens"] == 2000


def test_compatible_server_gets_max_tokens_and_temperature(fake: FakeOpenAI) -> None:
    compatible(fake, "o3-local").complete([{"role": "user", "content": "x"}], max_tokens=64,
                                          temperature=0.2)
    body = fake.requests[0]
    assert body["max_tokens"] == 64 and "max_completion_tokens" not in body
    assert body["temperature"] == 0.2


def test_temperature_is_part_of_the_cache_key(fake: FakeOpenAI, ask: Ask) -> None:
    ask()
    ask(temperature=0.7)
    assert len(fake.requests) == 2 and fake.requests[1]["temperature"] == 0.7


# -- JSON -------------------------------------------------------------------------------------

def test_json_schema_is_sent_as_response_format(fake: FakeOpenAI, ask: Ask) -> None:
    schema = {"type": "object", "properties": {"rule": {"type": "string"}}, "required": ["rule"]}
    fake.responder = lambda body: '{"rule": "Late parcels mean shipping."}'
    res = ask(json_schema=schema)
    assert json.loads(res.text) == {"rule": "Late parcels mean shipping."}
    assert fake.requests[0]["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "reply", "schema": schema}}


def test_compatible_server_without_json_schema_falls_back_to_json_object(
    ws: Workspace, fake: FakeOpenAI
) -> None:
    b = compatible(fake)
    fake.reject_json_schema = True
    fake.responder = lambda body: '{"rule": "r"}'
    schema = {"type": "object", "properties": {"rule": {"type": "string"}}}
    res = complete(ws, b.model, [{"role": "user", "content": "a"}], json_schema=schema, backend=b)
    assert res.text == '{"rule": "r"}'
    first, second = fake.requests
    assert first["response_format"]["type"] == "json_schema"
    assert second["response_format"] == {"type": "json_object"}
    assert '"rule"' in second["messages"][0]["content"]  # the schema is spelled out instead
    [row] = rows(ws)
    assert row["error"] is None

    # Remembered: the next call goes straight to json_object.
    complete(ws, b.model, [{"role": "user", "content": "b"}], json_schema=schema, backend=b)
    assert len(fake.requests) == 3
    assert fake.requests[2]["response_format"] == {"type": "json_object"}


def test_an_unrelated_bad_request_does_not_switch_off_json_schema(fake: FakeOpenAI) -> None:
    b = compatible(fake)
    schema = {"type": "object"}
    fake.add_fault("status", 400)
    fake.add_fault("status", 400)
    with pytest.raises(LLMError) as info:
        b.complete([{"role": "user", "content": "a"}], json_schema=schema)
    assert info.value.status == 400 and not info.value.transient
    b.complete([{"role": "user", "content": "a"}], json_schema=schema)
    assert fake.requests[-1]["response_format"]["type"] == "json_schema"


# -- replies without content ------------------------------------------------------------------

def _completion(content: str | None, finish: str) -> dict[str, Any]:
    return {"id": "chatcmpl-x", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "finish_reason": finish,
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 0, "total_tokens": 3}}


def test_missing_content_without_a_reason_is_retried(
    ws: Workspace, fake: FakeOpenAI, ask: Ask
) -> None:
    fake.add_fault("status", 200, {}, _completion(None, "stop"))
    assert ask().text == OPENAI.answer
    err, ok = rows(ws)
    assert "empty reply" in err["error"] and ok["error"] is None


@pytest.mark.parametrize(("finish", "words"), [("length", "max_tokens"),
                                              ("content_filter", "content filter")])
def test_empty_answer_the_model_meant_is_not_retried(
    ws: Workspace, fake: FakeOpenAI, ask: Ask, finish: str, words: str
) -> None:
    fake.add_fault("status", 200, {}, _completion(None, finish))
    with pytest.raises(CallFailed, match=words):
        ask()
    assert len(fake.requests) == 1 and len(rows(ws)) == 1


# -- keys of compatible servers ---------------------------------------------------------------

@pytest.mark.parametrize(("env", "sent"), [
    ({"OPENAI_COMPATIBLE_API_KEY": "sk-compat", "OPENAI_API_KEY": "sk-openai"}, "sk-compat"),
    # A real OpenAI key is never sent to an arbitrary compatible host.
    ({"OPENAI_API_KEY": "sk-openai"}, "not-needed"),
    ({}, "not-needed"),
])
def test_compatible_server_key_choice(
    fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], sent: str
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_COMPATIBLE_API_KEY", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    compatible(fake).complete([{"role": "user", "content": "x"}])
    assert fake.headers[0]["authorization"] == f"Bearer {sent}"
