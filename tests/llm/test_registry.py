"""Model strings: parsing, validation messages, and which backend a string builds."""

from __future__ import annotations

import pytest

from pld.llm import registry
from pld.llm.anthropic_backend import AnthropicBackend
from pld.llm.base import ConfigError
from pld.llm.openai_backend import OpenAIBackend
from pld.llm.registry import ModelSpec, get_backend, parse_model


@pytest.fixture(autouse=True)
def _fresh_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_instances", {})


@pytest.mark.parametrize(("model", "spec"), [
    ("anthropic/claude-sonnet-4-5",
     ModelSpec("anthropic/claude-sonnet-4-5", "anthropic", "claude-sonnet-4-5")),
    ("openai/gpt-4o-mini", ModelSpec("openai/gpt-4o-mini", "openai", "gpt-4o-mini")),
    ("openai-compatible/qwen2.5@http://127.0.0.1:8080/v1",
     ModelSpec("openai-compatible/qwen2.5@http://127.0.0.1:8080/v1", "openai-compatible",
               "qwen2.5", "http://127.0.0.1:8080/v1")),
    ("openai-compatible/meta/llama-3@https://vllm.example.org/v1",
     ModelSpec("openai-compatible/meta/llama-3@https://vllm.example.org/v1", "openai-compatible",
               "meta/llama-3", "https://vllm.example.org/v1")),
    ("local/default", ModelSpec("local/default", "local", "default")),
    ("local/small", ModelSpec("local/small", "local", "small")),
])
def test_parse_good_model_strings(model: str, spec: ModelSpec) -> None:
    assert parse_model(model) == spec


@pytest.mark.parametrize(("model", "message"), [
    ("gemini/gemini-2.5-pro", "unknown provider 'gemini'"),
    ("claude-sonnet-4-5", "expected PROVIDER/NAME"),
    ("anthropic/", "expected PROVIDER/NAME"),
    ("", "expected PROVIDER/NAME"),
    ("openai-compatible/qwen2.5", "expected openai-compatible/<model>@<http(s)://"),
    ("openai-compatible/qwen2.5@127.0.0.1:8080/v1", "expected openai-compatible/<model>@"),
    ("openai-compatible/@http://127.0.0.1:8080/v1", "expected openai-compatible/<model>@"),
    ("local/huge", "unknown local model"),
])
def test_parse_bad_model_strings(model: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_model(model)
    assert message in str(info.value) and "\n" not in str(info.value)
    # An openai-compatible string is quoted only up to its host: what follows may hold a key.
    shown = model.split("@")[0] if "@" in model else repr(model)
    assert shown in str(info.value)


def test_backends_are_built_once_per_model_string(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("PLD_LLM_TIMEOUT", "7")
    claude = get_backend("anthropic/claude-sonnet-4-5")
    assert isinstance(claude, AnthropicBackend)
    assert (claude.model, claude.name, claude.timeout) == (
        "anthropic/claude-sonnet-4-5", "claude-sonnet-4-5", 7.0)
    assert get_backend("anthropic/claude-sonnet-4-5", role="student") is claude

    gpt = get_backend("openai/gpt-4o-mini")
    assert isinstance(gpt, OpenAIBackend) and gpt.base_url is None and gpt.name == "gpt-4o-mini"
    assert gpt is not get_backend("openai/gpt-4o")

    local = get_backend("openai-compatible/qwen@http://127.0.0.1:9/v1")
    assert isinstance(local, OpenAIBackend)
    assert (local.name, local.base_url) == ("qwen", "http://127.0.0.1:9/v1")
    assert not claude.constrains_choices and not local.constrains_choices


def test_a_failed_build_is_not_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
        get_backend("anthropic/claude-haiku-4-5")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    assert isinstance(get_backend("anthropic/claude-haiku-4-5"), AnthropicBackend)


def test_default_concurrency_by_backend() -> None:
    assert registry.default_concurrency("local/default") == 1
    assert registry.default_concurrency("local/small") == 1
    assert registry.default_concurrency("openai-compatible/m@http://127.0.0.1:1/v1") == 8
    assert registry.default_concurrency("anthropic/claude-x") == 8


@pytest.mark.parametrize("model", [
    "openai-compatible/m@https://user:s3cret-pass@host.example/v1",
    "openai-compatible/m@http://:s3cret-pass@127.0.0.1:8000/v1",
    "openai-compatible/m@HTTP://u:s3cret-pass@host.example/v1",
    "openai-compatible/m@https://host.example/v1?api_key=s3cret-pass",
    "openai-compatible/m@https://host.example/v1?x=1&token=s3cret-pass",
    "openai-compatible/m@https://host.example/v1#api_key=s3cret-pass",
    "openai-compatible/m@https://host.example/v1?x-api-key=s3cret-pass",
    "openai-compatible/m@https://host.example/v1?subscription-key=s3cret-pass",
    "openai-compatible/m@https://host.example/v1?api_token=s3cret-pass",
    "openai-compatible/m@https://host.example/v1?a=1;api_key=s3cret-pass",
    "openai-compatible/m@https://host.example/v1;api_key=s3cret-pass",
    "openai-compatible/m@https://host.example/v1/key=s3cret-pass",
])
def test_credentials_in_a_model_string_are_refused_without_repeating_them(model: str) -> None:
    # Before: the string, key included, went into llm_calls, runs, manifests, job argv and UI;
    # an upper-case scheme was refused with a message that quoted the key.
    with pytest.raises(ConfigError, match="could hold a credential") as err:
        parse_model(model)
    assert "s3cret-pass" not in str(err.value)
    assert "/v1" not in str(err.value)  # nothing after the host is repeated
    assert "OPENAI_API_KEY" in str(err.value)


@pytest.mark.parametrize("model", [
    "openai-compatible/m@ftp://host.example/v1?api_key=s3cret-pass",
    "openai-compatible/m@https://host.example:99999/s3cret-pass",
    "openai-compatible/m@s3cret-pass",
])
def test_a_malformed_base_url_is_refused_without_repeating_it(model: str) -> None:
    with pytest.raises(ConfigError, match="expected openai-compatible") as err:
        parse_model(model)
    assert "s3cret-pass" not in str(err.value)


def test_the_scheme_is_stored_in_one_spelling() -> None:
    spec = parse_model("openai-compatible/m@HTTP://127.0.0.1:8000/v1")
    assert spec.base_url == "http://127.0.0.1:8000/v1"
    assert spec.model == "openai-compatible/m@http://127.0.0.1:8000/v1"


@pytest.mark.parametrize("model", [
    "anthropic/claude?key=s3cret-pass", "openai/gpt 4o", "openai/gpt-4o#s3cret-pass",
    "openai/gpt-4o;api_key=s3cret-pass", "anthropic/x@s3cret-pass", "local/default=s3cret-pass",
    "openai-compatible/m?k=s3cret-pass@http://127.0.0.1:1/v1",
])
def test_a_model_name_with_characters_that_could_carry_a_key_is_refused_unquoted(
        model: str) -> None:
    with pytest.raises(ConfigError, match="may hold only") as err:
        parse_model(model)
    assert "s3cret-pass" not in str(err.value)


@pytest.mark.parametrize("model", [
    "openai-compatible/m@https://host.example/v1 s3cret-pass",
    "openai-compatible/m@https://host.example/v1\ts3cret-pass",
    "openai-compatible/m@https://host.example/v1\n?api_key=s3cret-pass",
    "openai-compatible/m@https://host.example/v1%3Fapi_key%3Ds3cret-pass",
    "openai-compatible/m@https://host.example/v1%3Bkey%3Ds3cret-pass",
    "openai-compatible/m@https://u%3As3cret-pass%40host.example/v1",
])
def test_a_credential_hidden_by_blanks_or_percent_escapes_is_refused(model: str) -> None:
    # Before: a blank, a tab (which the URL parser drops) or %-escaped "?", "=", ";" or "@"
    # let a key through into the stored model string; a %-escaped user:password@ became part
    # of the host, which the refusal repeats.
    with pytest.raises(ConfigError) as err:
        parse_model(model)
    assert "s3cret-pass" not in str(err.value)
    assert "example/v1" not in str(err.value)  # nothing after the host is repeated
