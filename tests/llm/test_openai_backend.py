"""OpenAIBackend driven through the real ``openai`` SDK against a fake Chat Completions API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from pld.llm import registry
from pld.llm.base import ConfigError, LLMError
from pld.llm.calls import CallFailed, CallResult, complete, match_choice
from pld.llm.http_errors import redact, retry_after_seconds
from pld.llm.openai_backend import OpenAIBackend
from pld.llm.pricing import estimate_cost
from pld.workspace import Workspace
from tests.fakes.openai_server import FakeOpenAI

KEY = "sk-test-123-secret"
MODEL = "openai/gpt-4o-mini"
SYSTEM = "You sort customer emails into billing, shipping or other."
CHOICES = ["billing", "shipping", "other"]
EMAIL = "Where is my parcel? It was due on Monday."


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    """The fake stands in for api.openai.com: ``openai/...`` models reach it via OPENAI_BASE_URL."""
    with FakeOpenAI(responder=lambda body: "shipping") as f:
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        monkeypatch.setenv("OPENAI_BASE_URL", f.base_url)
        monkeypatch.delenv("OPENAI_COMPATIBLE_API_KEY", raising=False)
        monkeypatch.delenv("OPENAI_CUSTOM_HEADERS", raising=False)
        yield f


@pytest.fixture
def backend(fake: FakeOpenAI) -> OpenAIBackend:
    return OpenAIBackend(MODEL, "gpt-4o-mini", timeout=5)


def ask(ws: Workspace, backend: OpenAIBackend, text: str = EMAIL, **kw: Any) -> CallResult:
    return complete(ws, backend.model, [{"role": "user", "content": text}], system=SYSTEM,
                    backend=backend, **kw)


def rows(ws: Workspace) -> list[dict[str, Any]]:
    return ws.query("SELECT * FROM llm_calls ORDER BY id")


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
    assert redact(f"bad key {KEY}!", KEY) == "bad key [redacted]!"
    assert redact("nothing here", KEY) == "nothing here"


# -- success, usage, request shape ------------------------------------------------------------

def test_success_returns_text_usage_and_logs_row(
    ws: Workspace, fake: FakeOpenAI, backend: OpenAIBackend
) -> None:
    res = ask(ws, backend)
    assert res.text == "shipping" and not res.cached
    prompt_words = len(SYSTEM.split()) + len(EMAIL.split())
    assert (res.reply.input_tokens, res.reply.output_tokens) == (prompt_words, 1)
    assert res.reply.model == MODEL and res.reply.latency_s > 0

    [row] = rows(ws)
    assert row["id"] == res.call_id and row["model"] == MODEL
    assert row["error"] is None and row["cache_hit"] == 0 and row["attempt"] == 1
    assert row["response"] == "shipping"
    assert (row["input_tokens"], row["output_tokens"], row["cached_tokens"]) == (prompt_words, 1, 0)
    assert row["latency_s"] > 0 and row["cost_usd"] > 0

    [body] = fake.requests
    assert body["model"] == "gpt-4o-mini"
    assert body["messages"] == [{"role": "system", "content": SYSTEM},
                                {"role": "user", "content": EMAIL}]
    assert body["max_completion_tokens"] == 512 and "max_tokens" not in body
    assert body["temperature"] == 0 and "response_format" not in body
    assert fake.headers[0]["authorization"] == f"Bearer {KEY}"


def test_cached_prompt_tokens_are_reported(
    ws: Workspace, fake: FakeOpenAI, backend: OpenAIBackend
) -> None:
    fake.cached_tokens = 8
    res = ask(ws, backend)
    assert res.reply.cached_tokens == 8
    [row] = rows(ws)
    assert row["cached_tokens"] == 8
    assert 0 < row["cost_usd"] < estimate_cost(MODEL, row["input_tokens"], 1, 0)


def test_reasoning_models_get_no_temperature(fake: FakeOpenAI) -> None:
    OpenAIBackend("openai/o4-mini", "o4-mini", timeout=5).complete(
        [{"role": "user", "content": "x"}], max_tokens=2000)
    body = fake.requests[0]
    assert "temperature" not in body and body["max_completion_tokens"] == 2000


def test_compatible_server_gets_max_tokens_and_temperature(fake: FakeOpenAI) -> None:
    b = OpenAIBackend(fake.model_string("o3-local"), "o3-local", base_url=fake.base_url, timeout=5)
    b.complete([{"role": "user", "content": "x"}], max_tokens=64, temperature=0.2)
    body = fake.requests[0]
    assert body["max_tokens"] == 64 and "max_completion_tokens" not in body
    assert body["temperature"] == 0.2


def test_json_schema_is_sent_as_response_format(
    ws: Workspace, fake: FakeOpenAI, backend: OpenAIBackend
) -> None:
    schema = {"type": "object", "properties": {"rule": {"type": "string"}}, "required": ["rule"]}
    fake.responder = lambda body: '{"rule": "Late parcels mean shipping."}'
    res = ask(ws, backend, json_schema=schema)
    assert json.loads(res.text) == {"rule": "Late parcels mean shipping."}
    assert fake.requests[0]["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "reply", "schema": schema}}


def test_compatible_server_without_json_schema_falls_back_to_json_object(
    ws: Workspace, fake: FakeOpenAI
) -> None:
    b = OpenAIBackend(fake.model_string(), "fake-model", base_url=fake.base_url, timeout=5)
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
    b = OpenAIBackend(fake.model_string(), "fake-model", base_url=fake.base_url, timeout=5)
    schema = {"type": "object"}
    fake.add_fault("status", 400)
    fake.add_fault("status", 400)
    with pytest.raises(LLMError) as info:
        b.complete([{"role": "user", "content": "a"}], json_schema=schema)
    assert info.value.status == 400 and not info.value.transient
    b.complete([{"role": "user", "content": "a"}], json_schema=schema)
    assert fake.requests[-1]["response_format"]["type"] == "json_schema"


# -- cache ------------------------------------------------------------------------------------

def test_identical_call_is_served_from_cache(
    ws: Workspace, fake: FakeOpenAI, backend: OpenAIBackend
) -> None:
    first = ask(ws, backend)
    second = ask(ws, backend)
    assert len(fake.requests) == 1
    assert second.cached and second.text == first.text
    hit = rows(ws)[-1]
    assert hit["cache_hit"] == 1 and hit["error"] is None and hit["cost_usd"] == 0
    ask(ws, backend, temperature=0.7)
    assert len(fake.requests) == 2 and rows(ws)[-1]["cache_hit"] == 0


# -- faults -----------------------------------------------------------------------------------

def test_rate_limit_is_retried_after_the_servers_hint(
    ws: Workspace, fake: FakeOpenAI, backend: OpenAIBackend
) -> None:
    fake.add_fault("status", 429, {"retry-after-ms": "1500"})
    with pytest.raises(LLMError) as info:
        backend.complete([{"role": "user", "content": "x"}])
    assert info.value.transient and info.value.status == 429 and info.value.retry_after == 1.5

    fake.add_fault("status", 429, {"retry-after": "2"})
    res = ask(ws, backend)
    assert res.text == "shipping"
    err, ok = rows(ws)
    assert err["attempt"] == 1 and "HTTP 429" in err["error"] and err["response"] is None
    assert ok["attempt"] == 2 and ok["error"] is None and ok["id"] == res.call_id
    assert err["created_at"] <= ok["created_at"]


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_retried(
    ws: Workspace, fake: FakeOpenAI, backend: OpenAIBackend, status: int
) -> None:
    fake.add_fault("status", status)
    assert ask(ws, backend).text == "shipping"
    err, ok = rows(ws)
    assert f"HTTP {status}" in err["error"] and ok["error"] is None


def test_hung_connection_times_out_and_is_retried(ws: Workspace, fake: FakeOpenAI) -> None:
    backend = OpenAIBackend(MODEL, "gpt-4o-mini", timeout=0.5)
    fake.add_fault("hang", 3)
    assert ask(ws, backend).text == "shipping"
    err, ok = rows(ws)
    assert "timed out" in err["error"] and ok["error"] is None


def test_malformed_body_is_retried(ws: Workspace, fake: FakeOpenAI, backend: OpenAIBackend) -> None:
    fake.add_fault("malformed")
    assert ask(ws, backend).text == "shipping"
    err, ok = rows(ws)
    assert "malformed" in err["error"] and ok["error"] is None


def test_empty_choices_are_retried(ws: Workspace, fake: FakeOpenAI, backend: OpenAIBackend) -> None:
    fake.add_fault("empty")
    assert ask(ws, backend).text == "shipping"
    err, ok = rows(ws)
    assert "no choices" in err["error"] and ok["error"] is None


def _completion(content: str | None, finish: str) -> dict[str, Any]:
    return {"id": "chatcmpl-x", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "finish_reason": finish,
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 0, "total_tokens": 3}}


def test_missing_content_without_a_reason_is_retried(
    ws: Workspace, fake: FakeOpenAI, backend: OpenAIBackend
) -> None:
    fake.add_fault("status", 200, {}, _completion(None, "stop"))
    assert ask(ws, backend).text == "shipping"
    err, ok = rows(ws)
    assert "empty reply" in err["error"] and ok["error"] is None


@pytest.mark.parametrize(("finish", "words"), [("length", "max_tokens"),
                                              ("content_filter", "content filter")])
def test_empty_answer_the_model_meant_is_not_retried(
    ws: Workspace, fake: FakeOpenAI, backend: OpenAIBackend, finish: str, words: str
) -> None:
    fake.add_fault("status", 200, {}, _completion(None, finish))
    with pytest.raises(CallFailed, match=words):
        ask(ws, backend)
    assert len(fake.requests) == 1 and len(rows(ws)) == 1


def test_unauthorised_is_not_retried_and_the_key_is_redacted(
    ws: Workspace, fake: FakeOpenAI, backend: OpenAIBackend
) -> None:
    fake.add_fault("status", 401, {}, {"error": {"message": f"Incorrect API key provided: {KEY}",
                                                 "type": "invalid_request_error",
                                                 "code": "invalid_api_key"}})
    with pytest.raises(CallFailed) as info:
        ask(ws, backend)
    assert KEY not in str(info.value) and "401" in str(info.value)
    [row] = rows(ws)
    assert row["id"] == info.value.call_id and "HTTP 401" in row["error"]
    assert "[redacted]" in row["error"] and KEY not in row["error"]
    assert len(fake.requests) == 1


@pytest.mark.parametrize("status", [400, 403, 404])
def test_other_client_errors_are_permanent(
    fake: FakeOpenAI, backend: OpenAIBackend, status: int
) -> None:
    fake.add_fault("status", status)
    with pytest.raises(LLMError) as info:
        backend.complete([{"role": "user", "content": "x"}])
    assert not info.value.transient and info.value.status == status


def test_retries_stop_at_max_attempts(
    ws: Workspace, fake: FakeOpenAI, backend: OpenAIBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLD_MAX_ATTEMPTS", "3")
    for _ in range(5):
        fake.add_fault("status", 503)
    with pytest.raises(CallFailed):
        ask(ws, backend)
    assert [r["attempt"] for r in rows(ws)] == [1, 2, 3]
    assert all("HTTP 503" in r["error"] for r in rows(ws))
    assert len(fake.requests) == 3 and len(fake.faults) == 2


# -- choices ----------------------------------------------------------------------------------

def test_choice_answer_is_normalised(
    ws: Workspace, fake: FakeOpenAI, backend: OpenAIBackend
) -> None:
    fake.responder = lambda body: "Billing."
    res = ask(ws, backend, choices=CHOICES)
    assert match_choice(res.text, CHOICES) == "billing"
    assert len(fake.requests) == 1 and rows(ws)[0]["error"] is None
    assert "grammar" not in fake.requests[0]


def test_answer_outside_choices_is_reasked_once(
    ws: Workspace, fake: FakeOpenAI, backend: OpenAIBackend
) -> None:
    answers = iter(["I cannot tell.", "other"])
    fake.responder = lambda body: next(answers)
    res = ask(ws, backend, choices=CHOICES)
    assert res.text == "other" and len(fake.requests) == 2
    reask = fake.requests[1]["messages"]
    assert reask[-2] == {"role": "assistant", "content": "I cannot tell."}
    assert reask[-1]["role"] == "user" and "billing, shipping, other" in reask[-1]["content"]
    first, second = rows(ws)
    assert "not in choices" in first["error"] and second["error"] is None


# -- keys -------------------------------------------------------------------------------------

def test_api_key_is_sent_but_never_stored(
    ws: Workspace, fake: FakeOpenAI, backend: OpenAIBackend
) -> None:
    ask(ws, backend)
    ask(ws, backend)  # cache hit
    fake.add_fault("status", 401, {}, {"error": {"message": f"bad key {KEY}"}})
    with pytest.raises(CallFailed):
        ask(ws, backend, text="another email")
    assert all(h["authorization"] == f"Bearer {KEY}" for h in fake.headers)
    tables = [r["name"] for r in ws.query("SELECT name FROM sqlite_master WHERE type='table'")]
    checked = 0
    for table in tables:
        for col in ws.query(f"PRAGMA table_info([{table}])"):
            if col["type"].upper() in ("TEXT", ""):
                sql = f"SELECT count(*) AS n FROM [{table}] WHERE instr([{col['name']}], ?)"
                assert ws.query(sql, [KEY])[0]["n"] == 0, f"{table}.{col['name']} holds the key"
                checked += 1
    assert checked > 10


def test_missing_openai_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY") as info:
        OpenAIBackend(MODEL, "gpt-4o-mini", timeout=5)
    assert "\n" not in str(info.value)
    monkeypatch.setattr(registry, "_instances", {})
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        registry.get_backend(MODEL)


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
    b = OpenAIBackend(fake.model_string(), "fake-model", base_url=fake.base_url, timeout=5)
    b.complete([{"role": "user", "content": "x"}])
    assert fake.headers[0]["authorization"] == f"Bearer {sent}"
