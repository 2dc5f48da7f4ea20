"""The one cache and call log, driven by model string through the registry to the fake server."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from pld.llm import registry
from pld.llm.base import ConfigError
from pld.llm.calls import CallFailed, cache_key, complete, match_choice
from pld.llm.openai_backend import OpenAIBackend
from pld.workspace import Workspace, loads
from tests.fakes.openai_server import FakeOpenAI

CHOICES = ["billing", "shipping", "other"]


@pytest.fixture(autouse=True)
def _fresh_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gets its own backends, built with the environment it sets."""
    monkeypatch.setattr(registry, "_instances", {})
    monkeypatch.delenv("OPENAI_COMPATIBLE_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_cache_key_covers_everything_that_shapes_the_answer() -> None:
    base = cache_key("openai/gpt-4o", "sys", user("hi"), {"max_tokens": 5, "temperature": 0})
    assert base == cache_key("openai/gpt-4o", "sys", user("hi"),
                             {"temperature": 0, "max_tokens": 5})
    others = {
        cache_key("openai/gpt-4o-mini", "sys", user("hi"), {"max_tokens": 5, "temperature": 0}),
        cache_key("openai/gpt-4o", None, user("hi"), {"max_tokens": 5, "temperature": 0}),
        cache_key("openai/gpt-4o", "sys", user("hi!"), {"max_tokens": 5, "temperature": 0}),
        cache_key("openai/gpt-4o", "sys", user("hi"), {"max_tokens": 6, "temperature": 0}),
    }
    assert base not in others and len(others) == 4


@pytest.mark.parametrize(("text", "expected"), [
    ("billing", "billing"),
    ("  Billing. ", "billing"),
    ('"SHIPPING"', "shipping"),
    ("`other`", "other"),
    ("'billing'.", "billing"),
    ('"Shipping."', "shipping"),
    ("\nother\n", "other"),
    # Strict: a reply that merely contains one label is unparseable, never guessed at.
    ("The answer is other.", None),
    ("other: it is about neither", None),
    ("**billing**", None),
    ("billing..", None),
    ("billing or shipping", None),
    ("no idea", None),
    ("", None),
])
def test_match_choice(text: str, expected: str | None) -> None:
    assert match_choice(text, CHOICES) == expected


def test_repeat_call_is_a_cache_hit_without_a_request(
    ws: Workspace, fake_openai: FakeOpenAI
) -> None:
    model = fake_openai.model_string()
    first = complete(ws, model, user("hello"), system="be brief")
    second = complete(ws, model, user("hello"), system="be brief")
    assert len(fake_openai.requests) == 1
    assert second.cached and second.text == first.text == "ok"
    miss, hit = ws.query("SELECT * FROM llm_calls ORDER BY id")
    assert (miss["cache_hit"], hit["cache_hit"]) == (0, 1)
    assert hit["cache_key"] == miss["cache_key"] and hit["response"] == "ok"
    assert hit["input_tokens"] == 0 and hit["cost_usd"] == 0

    complete(ws, model, user("hello"), system="be very brief")
    complete(ws, model, user("hello"), system="be brief", use_cache=False)
    assert len(fake_openai.requests) == 3


def test_row_records_stage_run_messages_and_system(ws: Workspace, fake_openai: FakeOpenAI) -> None:
    res = complete(ws, fake_openai.model_string(), user("hello"), system="be brief",
                   stage="extract", run_id=7, max_tokens=20)
    [row] = ws.query("SELECT * FROM llm_calls")
    assert row["id"] == res.call_id and (row["stage"], row["run_id"]) == ("extract", 7)
    assert loads(row["messages"]) == user("hello")
    assert loads(row["params"]) == {"max_tokens": 20, "temperature": 0.0}
    [text] = ws.query("SELECT text FROM texts WHERE sha256 = ?", [row["system_sha256"]])
    assert text["text"] == "be brief"
    assert row["cost_usd"] == 0  # a self-hosted model has no price


def test_failed_call_is_not_served_from_cache(ws: Workspace, fake_openai: FakeOpenAI) -> None:
    model = fake_openai.model_string()
    fake_openai.add_fault("status", 401)
    with pytest.raises(CallFailed):
        complete(ws, model, user("hello"))
    res = complete(ws, model, user("hello"))
    assert not res.cached and len(fake_openai.requests) == 2


def test_two_answers_outside_choices_return_the_last_which_is_then_cached(
    ws: Workspace, fake_openai: FakeOpenAI
) -> None:
    """The final off-label answer is reused, so a stored evaluation reproduces item for item."""
    answers = iter(["hmm", "still unsure"])
    fake_openai.responder = lambda body: next(answers)
    model = fake_openai.model_string()
    res = complete(ws, model, user("classify"), choices=CHOICES)
    assert res.text == "still unsure" and len(fake_openai.requests) == 2
    rows = ws.query("SELECT error, messages FROM llm_calls ORDER BY id")
    assert len(rows) == 2 and all("not in choices" in r["error"] for r in rows)
    assert "after re-ask" in rows[1]["error"] and "after re-ask" not in rows[0]["error"]
    assert "Answer with exactly one of" in rows[1]["messages"]  # the re-ask is what was logged
    again = complete(ws, model, user("classify"), choices=CHOICES)
    assert again.cached and again.text == "still unsure" and len(fake_openai.requests) == 2


def test_timeout_comes_from_the_environment(
    ws: Workspace, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLD_LLM_TIMEOUT", "0.5")
    model = fake_openai.model_string()
    backend = registry.get_backend(model)
    assert isinstance(backend, OpenAIBackend) and backend.timeout == 0.5
    fake_openai.add_fault("hang", 3)
    assert complete(ws, model, user("hello")).text == "ok"
    err, ok = ws.query("SELECT * FROM llm_calls ORDER BY id")
    assert "timed out" in err["error"] and ok["error"] is None and ok["attempt"] == 2


def test_max_attempts_argument_overrides_the_environment(
    ws: Workspace, fake_openai: FakeOpenAI
) -> None:
    fake_openai.add_fault("status", 503)
    with pytest.raises(CallFailed) as info:
        complete(ws, fake_openai.model_string(), user("hello"), max_attempts=1)
    [row] = ws.query("SELECT * FROM llm_calls")
    assert row["id"] == info.value.call_id and "HTTP 503" in row["error"]


def test_concurrent_calls_each_get_a_row(ws: Workspace, fake_openai: FakeOpenAI) -> None:
    fake_openai.responder = lambda body: body["messages"][-1]["content"].upper()
    model = fake_openai.model_string()
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda i: complete(ws, model, user(f"item {i}")), range(8)))
    assert [r.text for r in results] == [f"ITEM {i}" for i in range(8)]
    assert len({r.call_id for r in results}) == 8
    assert ws.query("SELECT count(*) AS n FROM llm_calls WHERE error IS NULL")[0]["n"] == 8


@pytest.mark.parametrize("var", ["PLD_MAX_ATTEMPTS", "PLD_RETRY_BASE_S", "PLD_RETRY_MAX_S",
                                 "PLD_LLM_TIMEOUT"])
def test_bad_number_in_the_environment_is_a_config_error_with_a_row(
    ws: Workspace, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, var: str
) -> None:
    monkeypatch.setenv(var, "abc")
    with pytest.raises(ConfigError, match=f"{var}='abc'"):
        complete(ws, fake_openai.model_string(), user("hello"))
    [row] = ws.query("SELECT * FROM llm_calls")
    assert var in row["error"] and row["cache_hit"] == 0
    assert fake_openai.requests == []


def test_missing_api_key_is_a_config_error_not_a_failed_call(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "")
    with pytest.raises(ConfigError, match="OPENAI_API_KEY is not set"):
        complete(ws, "openai/gpt-test", user("hello"))
    [row] = ws.query("SELECT * FROM llm_calls")
    assert row["model"] == "openai/gpt-test" and "OPENAI_API_KEY" in row["error"]


def test_retry_after_hint_is_the_wait_before_the_next_attempt_capped_by_the_setting(
    ws: Workspace, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # conftest caps every wait at 0.05 s; raise the cap so the server's hint is what counts.
    monkeypatch.setenv("PLD_RETRY_MAX_S", "30")
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    fake_openai.add_fault("status", 429, {"retry-after": "7"})
    fake_openai.add_fault("status", 503, {"retry-after": "120"})

    assert complete(ws, fake_openai.model_string(), user("hello")).text == "ok"

    assert slept == [7.0, 30.0]  # the hint as sent, then a longer one capped at PLD_RETRY_MAX_S
    logged = ws.query("SELECT attempt, error FROM llm_calls ORDER BY id")
    assert [r["attempt"] for r in logged] == [1, 2, 3]
    assert "HTTP 429" in logged[0]["error"] and "HTTP 503" in logged[1]["error"]
    assert logged[2]["error"] is None
