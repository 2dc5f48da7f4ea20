"""What every hosted API's backend must do alike, run once per provider (Anthropic, OpenAI)
through its real SDK against its fake server: usage and the call log, the call cache, retries,
permanent errors, choices and keys. Each provider's own wire format is tested in its module.
"""

from __future__ import annotations

import pytest

from pld.llm import registry
from pld.llm.base import Backend, ConfigError, LLMError
from pld.llm.calls import CallFailed, match_choice
from pld.workspace import Workspace
from tests.fakes.server import FakeServer
from tests.llm.conftest import CHOICES, SYSTEM, Ask, Provider, rows


def test_success_returns_text_usage_and_logs_row(
    ws: Workspace, provider: Provider, fake: FakeServer, ask: Ask
) -> None:
    res = ask()
    assert res.text == provider.answer and not res.cached
    prompt_words = len(SYSTEM.split()) + len(provider.email.split())
    assert (res.reply.input_tokens, res.reply.output_tokens) == (prompt_words, 1)
    assert res.reply.model == provider.model and res.reply.latency_s > 0

    [row] = rows(ws)
    assert row["id"] == res.call_id and row["model"] == provider.model
    assert row["error"] is None and row["cache_hit"] == 0 and row["attempt"] == 1
    assert row["response"] == provider.answer
    assert (row["input_tokens"], row["output_tokens"], row["cached_tokens"]) == (prompt_words, 1, 0)
    assert row["latency_s"] > 0 and row["cost_usd"] > 0
    [body] = fake.requests
    assert body["model"] == provider.api_model
    assert provider.sent_key(fake.headers[0]) == provider.key


def test_identical_call_is_served_from_cache(ws: Workspace, fake: FakeServer, ask: Ask) -> None:
    first = ask()
    second = ask()
    assert len(fake.requests) == 1
    assert second.cached and second.text == first.text
    hit = rows(ws)[-1]
    assert hit["cache_hit"] == 1 and hit["error"] is None and hit["cost_usd"] == 0
    ask(max_tokens=64)  # another parameter is another call
    assert len(fake.requests) == 2 and rows(ws)[-1]["cache_hit"] == 0


def test_rate_limit_is_retried_after_the_servers_hint(
    ws: Workspace, provider: Provider, fake: FakeServer, backend: Backend, ask: Ask
) -> None:
    headers, wait_s = provider.retry_hint
    fake.add_fault("status", 429, headers)
    with pytest.raises(LLMError) as info:
        backend.complete([{"role": "user", "content": "x"}])
    assert info.value.transient and info.value.status == 429 and info.value.retry_after == wait_s
    assert "HTTP 429" in str(info.value)

    fake.add_fault("status", 429, headers)
    res = ask()
    assert res.text == provider.answer
    err, ok = rows(ws)
    assert err["attempt"] == 1 and "HTTP 429" in err["error"] and err["response"] is None
    assert ok["attempt"] == 2 and ok["error"] is None and ok["id"] == res.call_id
    assert err["created_at"] <= ok["created_at"]


@pytest.mark.parametrize(("provider", "status"), [
    ("anthropic", 500), ("anthropic", 503), ("anthropic", 529),  # 529: Anthropic is overloaded
    ("openai", 500), ("openai", 502), ("openai", 503),
], indirect=["provider"])
def test_server_errors_are_retried(
    ws: Workspace, provider: Provider, fake: FakeServer, ask: Ask, status: int
) -> None:
    fake.add_fault("status", status)
    assert ask().text == provider.answer
    err, ok = rows(ws)
    assert f"HTTP {status}" in err["error"] and ok["error"] is None
    assert len(fake.requests) == 2


def test_hung_connection_times_out_and_is_retried(
    ws: Workspace, provider: Provider, fake: FakeServer, ask: Ask
) -> None:
    fake.add_fault("hang", 3)
    assert ask(backend=provider.backend(timeout=0.5)).text == provider.answer
    err, ok = rows(ws)
    assert "timed out" in err["error"] and ok["error"] is None


@pytest.mark.parametrize("fault", ["malformed", "empty"])
def test_unusable_reply_is_retried(
    ws: Workspace, provider: Provider, fake: FakeServer, ask: Ask, fault: str
) -> None:
    fake.add_fault(fault)
    assert ask().text == provider.answer
    err, ok = rows(ws)
    words = {"malformed": "malformed", "empty": provider.empty_reply_error}[fault]
    assert words in err["error"] and ok["error"] is None


def test_unauthorised_is_not_retried_and_the_key_is_redacted(
    ws: Workspace, provider: Provider, fake: FakeServer, ask: Ask
) -> None:
    # A server that echoes the key back must not get it into the log.
    fake.add_fault("status", 401, {}, provider.error_body(401, f"invalid key: {provider.key}"))
    with pytest.raises(CallFailed) as info:
        ask()
    assert provider.key not in str(info.value) and "401" in str(info.value)
    assert provider.key not in str(info.value.__cause__)
    [row] = rows(ws)
    assert row["id"] == info.value.call_id and "HTTP 401" in row["error"]
    assert "[redacted]" in row["error"] and provider.key not in row["error"]
    assert len(fake.requests) == 1


@pytest.mark.parametrize("status", [400, 403, 404])
def test_other_client_errors_are_permanent(
    fake: FakeServer, backend: Backend, status: int
) -> None:
    fake.add_fault("status", status)
    with pytest.raises(LLMError) as info:
        backend.complete([{"role": "user", "content": "x"}])
    assert not info.value.transient and info.value.status == status


def test_retries_stop_at_max_attempts(
    ws: Workspace, fake: FakeServer, ask: Ask, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLD_MAX_ATTEMPTS", "3")
    for _ in range(5):
        fake.add_fault("status", 503)
    with pytest.raises(CallFailed):
        ask()
    logged = rows(ws)
    assert [r["attempt"] for r in logged] == [1, 2, 3]
    assert all("HTTP 503" in r["error"] for r in logged)
    assert len(fake.requests) == 3 and len(fake.faults) == 2


def test_choice_answer_is_normalised(ws: Workspace, fake: FakeServer, ask: Ask) -> None:
    fake.responder = lambda body: "Billing."
    res = ask(choices=CHOICES)
    assert match_choice(res.text, CHOICES) == "billing"
    assert len(fake.requests) == 1 and rows(ws)[0]["error"] is None
    assert "grammar" not in fake.requests[0]  # llama.cpp's constraint is for the local model


def test_answer_outside_choices_is_reasked_once(ws: Workspace, fake: FakeServer, ask: Ask) -> None:
    answers = iter(["Hard to say, it could be several things.", "shipping"])
    fake.responder = lambda body: next(answers)
    res = ask(choices=CHOICES)
    assert res.text == "shipping" and len(fake.requests) == 2
    reask = fake.requests[1]["messages"]
    assert reask[-2] == {"role": "assistant", "content": "Hard to say, it could be several things."}
    assert reask[-1]["role"] == "user" and "billing, shipping, other" in reask[-1]["content"]
    first, second = rows(ws)
    assert "not in choices" in first["error"] and second["error"] is None


def test_api_key_is_sent_but_never_stored(
    ws: Workspace, provider: Provider, fake: FakeServer, ask: Ask
) -> None:
    ask()
    ask()  # cache hit
    fake.add_fault("status", 401, {}, provider.error_body(401, f"bad key {provider.key}"))
    with pytest.raises(CallFailed):
        ask("another email")
    assert [provider.sent_key(h) for h in fake.headers] == [provider.key, provider.key]
    tables = [r["name"] for r in ws.query("SELECT name FROM sqlite_master WHERE type='table'")]
    checked = 0
    for table in tables:
        for col in ws.query(f"PRAGMA table_info([{table}])"):
            if col["type"].upper() in ("TEXT", ""):
                sql = f"SELECT count(*) AS n FROM [{table}] WHERE instr([{col['name']}], ?)"
                assert ws.query(sql, [provider.key])[0]["n"] == 0, \
                    f"{table}.{col['name']} holds the key"
                checked += 1
    assert checked > 10


def test_missing_key_names_the_variable(
    provider: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(provider.key_env, raising=False)
    with pytest.raises(ConfigError, match=provider.key_env) as info:
        provider.backend()
    assert "\n" not in str(info.value)
    monkeypatch.setattr(registry, "_instances", {})
    with pytest.raises(ConfigError, match=provider.key_env):
        registry.get_backend(provider.model)
