"""AnthropicBackend driven through the real ``anthropic`` SDK against a fake Messages API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from pld.llm import registry
from pld.llm.anthropic_backend import AnthropicBackend
from pld.llm.base import ConfigError, LLMError
from pld.llm.calls import CallFailed, CallResult, complete, match_choice
from pld.llm.pricing import estimate_cost
from pld.workspace import Workspace
from tests.fakes.anthropic_server import FakeAnthropic, api_key, error_payload

KEY = "sk-ant-test-123-secret"
MODEL = "anthropic/claude-sonnet-4-6"
EMAIL = "My invoice shows a double charge."
SYSTEM = "You sort customer emails into billing, shipping or other."
CHOICES = ["billing", "shipping", "other"]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAnthropic]:
    with FakeAnthropic(responder=lambda body: "billing") as f:
        monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", f.base_url)
        monkeypatch.delenv("ANTHROPIC_CUSTOM_HEADERS", raising=False)
        yield f


@pytest.fixture
def backend(fake: FakeAnthropic) -> AnthropicBackend:
    return AnthropicBackend(MODEL, "claude-sonnet-4-6", timeout=5)


def ask(ws: Workspace, backend: AnthropicBackend, text: str = EMAIL, **kw: Any) -> CallResult:
    return complete(ws, MODEL, [{"role": "user", "content": text}], system=SYSTEM,
                    backend=backend, **kw)


def rows(ws: Workspace) -> list[dict[str, Any]]:
    return ws.query("SELECT * FROM llm_calls ORDER BY id")


def test_success_returns_text_usage_and_logs_row(
    ws: Workspace, fake: FakeAnthropic, backend: AnthropicBackend
) -> None:
    res = ask(ws, backend)
    assert res.text == "billing" and not res.cached
    prompt_words = len(SYSTEM.split()) + len(EMAIL.split())
    assert (res.reply.input_tokens, res.reply.output_tokens) == (prompt_words, 1)
    assert res.reply.model == MODEL and res.reply.latency_s > 0

    [row] = rows(ws)
    assert row["id"] == res.call_id
    assert row["error"] is None and row["cache_hit"] == 0 and row["attempt"] == 1
    assert row["response"] == "billing" and row["model"] == MODEL
    assert (row["input_tokens"], row["output_tokens"], row["cached_tokens"]) == (prompt_words, 1, 0)
    assert row["latency_s"] > 0 and row["cost_usd"] > 0

    [body] = fake.requests
    assert body["model"] == "claude-sonnet-4-6"
    assert body["system"] == [{"type": "text", "text": SYSTEM,
                               "cache_control": {"type": "ephemeral"}}]
    assert body["messages"] == [{"role": "user", "content": EMAIL}]
    # API version 2026-10-21 refuses sampling parameters; the fake would answer 400.
    assert body["max_tokens"] == 512 and "temperature" not in body
    assert "tools" not in body
    assert api_key(fake.headers[0]) == KEY


def test_cache_read_and_write_tokens_count_as_input(
    ws: Workspace, fake: FakeAnthropic, backend: AnthropicBackend
) -> None:
    fake.cache_read, fake.cache_creation = 1500, 300
    res = ask(ws, backend)
    prompt_words = len(SYSTEM.split()) + len(EMAIL.split())
    assert res.reply.input_tokens == prompt_words + 1500 + 300
    assert res.reply.cached_tokens == 1500
    [row] = rows(ws)
    assert row["cached_tokens"] == 1500
    # The cached share is billed at a discount.
    assert 0 < row["cost_usd"] < estimate_cost(MODEL, row["input_tokens"], 1, 0)


def test_no_system_prompt_sends_no_system_block(
    ws: Workspace, fake: FakeAnthropic, backend: AnthropicBackend
) -> None:
    complete(ws, MODEL, [{"role": "user", "content": "hi"}], backend=backend)
    assert "system" not in fake.requests[0]


def test_json_schema_is_a_forced_tool_call(
    ws: Workspace, fake: FakeAnthropic, backend: AnthropicBackend
) -> None:
    schema = {"type": "object", "properties": {"reasoning": {"type": "string"},
                                               "rule": {"type": "string"}},
              "required": ["reasoning", "rule"]}
    answer = {"reasoning": "a double charge is about money", "rule": "Charges mean billing."}
    fake.responder = lambda body: json.dumps(answer)
    res = ask(ws, backend, json_schema=schema)
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


def test_identical_call_is_served_from_cache(
    ws: Workspace, fake: FakeAnthropic, backend: AnthropicBackend
) -> None:
    first = ask(ws, backend)
    second = ask(ws, backend)
    assert len(fake.requests) == 1
    assert second.cached and second.text == first.text
    hit = rows(ws)[-1]
    assert hit["cache_hit"] == 1 and hit["error"] is None and hit["cost_usd"] == 0
    ask(ws, backend, max_tokens=64)
    assert len(fake.requests) == 2
    assert rows(ws)[-1]["cache_hit"] == 0


def test_rate_limit_is_retried_after_the_servers_hint(
    ws: Workspace, fake: FakeAnthropic, backend: AnthropicBackend
) -> None:
    fake.add_fault("status", 429, {"retry-after": "3"})
    with pytest.raises(LLMError) as info:
        backend.complete([{"role": "user", "content": "x"}])
    assert info.value.transient and info.value.status == 429 and info.value.retry_after == 3.0
    assert "HTTP 429" in str(info.value)

    fake.add_fault("status", 429, {"retry-after": "3"})
    res = ask(ws, backend)
    assert res.text == "billing"
    err, ok = rows(ws)
    assert err["attempt"] == 1 and "429" in err["error"] and err["response"] is None
    assert ok["attempt"] == 2 and ok["error"] is None and ok["id"] == res.call_id
    assert err["created_at"] <= ok["created_at"]


@pytest.mark.parametrize("status", [500, 503, 529])
def test_server_errors_are_retried(
    ws: Workspace, fake: FakeAnthropic, backend: AnthropicBackend, status: int
) -> None:
    fake.add_fault("status", status)
    res = ask(ws, backend)
    assert res.text == "billing"
    err, ok = rows(ws)
    assert f"HTTP {status}" in err["error"] and ok["error"] is None
    assert len(fake.requests) == 2


def test_hung_connection_times_out_and_is_retried(ws: Workspace, fake: FakeAnthropic) -> None:
    backend = AnthropicBackend(MODEL, "claude-sonnet-4-6", timeout=0.5)
    fake.add_fault("hang", 3)
    res = ask(ws, backend)
    assert res.text == "billing"
    err, ok = rows(ws)
    assert "timed out" in err["error"] and ok["error"] is None


def test_malformed_body_is_retried(
    ws: Workspace, fake: FakeAnthropic, backend: AnthropicBackend
) -> None:
    fake.add_fault("malformed")
    res = ask(ws, backend)
    assert res.text == "billing"
    err, ok = rows(ws)
    assert "malformed" in err["error"] and ok["error"] is None


def test_empty_content_is_retried(
    ws: Workspace, fake: FakeAnthropic, backend: AnthropicBackend
) -> None:
    fake.add_fault("empty")
    res = ask(ws, backend)
    assert res.text == "billing"
    err, ok = rows(ws)
    assert "empty reply" in err["error"] and ok["error"] is None


def test_refusal_is_not_retried(
    ws: Workspace, fake: FakeAnthropic, backend: AnthropicBackend
) -> None:
    refusal = {"id": "msg_r", "type": "message", "role": "assistant", "content": [],
               "model": "claude-sonnet-4-6", "stop_reason": "refusal", "stop_sequence": None,
               "usage": {"input_tokens": 5, "output_tokens": 0}}
    fake.add_fault("status", 200, {}, refusal)
    with pytest.raises(CallFailed, match="refused"):
        ask(ws, backend)
    assert len(fake.requests) == 1 and len(rows(ws)) == 1


def test_unauthorised_is_not_retried_and_the_key_is_redacted(
    ws: Workspace, fake: FakeAnthropic, backend: AnthropicBackend
) -> None:
    # A server that echoes the key back must not get it into the log.
    fake.add_fault("status", 401, {}, error_payload(401, f"invalid x-api-key: {KEY}"))
    with pytest.raises(CallFailed) as info:
        ask(ws, backend)
    assert KEY not in str(info.value) and "401" in str(info.value)
    assert KEY not in str(info.value.__cause__)
    [row] = rows(ws)
    assert row["id"] == info.value.call_id
    assert "HTTP 401" in row["error"]
    assert "[redacted]" in row["error"] and KEY not in row["error"]
    assert len(fake.requests) == 1


def test_bad_request_is_permanent(fake: FakeAnthropic, backend: AnthropicBackend) -> None:
    fake.add_fault("status", 400)
    with pytest.raises(LLMError) as info:
        backend.complete([{"role": "user", "content": "x"}])
    assert not info.value.transient and info.value.status == 400


def test_retries_stop_at_max_attempts(
    ws: Workspace, fake: FakeAnthropic, backend: AnthropicBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLD_MAX_ATTEMPTS", "3")
    for _ in range(5):
        fake.add_fault("status", 503)
    with pytest.raises(CallFailed):
        ask(ws, backend)
    logged = rows(ws)
    assert [r["attempt"] for r in logged] == [1, 2, 3]
    assert all("HTTP 503" in r["error"] for r in logged)
    assert len(fake.requests) == 3 and len(fake.faults) == 2


def test_choice_answer_is_normalised(
    ws: Workspace, fake: FakeAnthropic, backend: AnthropicBackend
) -> None:
    fake.responder = lambda body: "Billing."
    res = ask(ws, backend, choices=CHOICES)
    assert match_choice(res.text, CHOICES) == "billing"
    assert len(fake.requests) == 1 and rows(ws)[0]["error"] is None


def test_answer_outside_choices_is_reasked_once(
    ws: Workspace, fake: FakeAnthropic, backend: AnthropicBackend
) -> None:
    answers = iter(["Hard to say, it could be several things.", "shipping"])
    fake.responder = lambda body: next(answers)
    res = ask(ws, backend, choices=CHOICES)
    assert res.text == "shipping"
    assert len(fake.requests) == 2
    reask = fake.requests[1]["messages"]
    assert reask[-2] == {"role": "assistant", "content": "Hard to say, it could be several things."}
    assert reask[-1]["role"] == "user" and "billing, shipping, other" in reask[-1]["content"]
    first, second = rows(ws)
    assert "not in choices" in first["error"] and second["error"] is None


def test_api_key_is_sent_but_never_stored(
    ws: Workspace, fake: FakeAnthropic, backend: AnthropicBackend
) -> None:
    ask(ws, backend)
    ask(ws, backend)  # cache hit
    fake.add_fault("status", 401, {}, error_payload(401, f"bad key {KEY}"))
    with pytest.raises(CallFailed):
        ask(ws, backend, text="another email")
    assert [api_key(h) for h in fake.headers] == [KEY, KEY]
    assert_secret_absent(ws, KEY)


def assert_secret_absent(ws: Workspace, secret: str) -> None:
    """Every text column of every table of the workspace is free of ``secret``."""
    tables = [r["name"] for r in ws.query("SELECT name FROM sqlite_master WHERE type='table'")]
    checked = 0
    for table in tables:
        for col in ws.query(f"PRAGMA table_info([{table}])"):
            if col["type"].upper() in ("TEXT", ""):
                sql = f"SELECT count(*) AS n FROM [{table}] WHERE instr([{col['name']}], ?)"
                assert ws.query(sql, [secret])[0]["n"] == 0, f"{table}.{col['name']} holds the key"
                checked += 1
    assert checked > 10


def test_missing_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY") as info:
        AnthropicBackend(MODEL, "claude-sonnet-4-6", timeout=5)
    assert "\n" not in str(info.value)
    monkeypatch.setattr(registry, "_instances", {})
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
        registry.get_backend(MODEL)


def test_fake_refuses_sampling_parameters_like_the_api(fake: FakeAnthropic) -> None:
    """Guards the fake itself: a request with temperature must fail, as the real API fails it."""
    client = anthropic.Anthropic(api_key=KEY, max_retries=0, timeout=5)
    with pytest.raises(anthropic.BadRequestError, match="temperature"):
        client.messages.create(model="claude-sonnet-4-6", max_tokens=5,
                               messages=[{"role": "user", "content": "x"}],
                               extra_body={"temperature": 0})
