"""Fixtures of the provider backends' tests: each hosted API (Anthropic, OpenAI) as a
:class:`Provider`, its fake server and a backend pointed at it.

``provider`` runs a test once per provider; a provider's own test module overrides it with that
one provider (``def provider() -> Provider: return ANTHROPIC``), so ``fake`` and ``backend``
there are that provider's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from pld.llm.anthropic_backend import AnthropicBackend
from pld.llm.base import Backend
from pld.llm.calls import CallResult, complete
from pld.llm.openai_backend import OpenAIBackend
from pld.workspace import Workspace
from tests.fakes.anthropic_server import FakeAnthropic, api_key, error_payload
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.server import FakeServer

SYSTEM = "You sort customer emails into billing, shipping or other."
CHOICES = ["billing", "shipping", "other"]
Ask = Callable[..., CallResult]  # the ``ask`` fixture


def _bearer(headers: dict[str, str]) -> str | None:
    auth = headers.get("authorization", "")
    return auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None


def _openai_error(code: int, message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "code": str(code)}}


@dataclass(frozen=True)
class Provider:
    """One hosted API as its tests see it: model strings, key, fake server and wire details."""

    name: str
    model: str  # pld's model string
    api_model: str  # the name the API is sent
    key: str
    key_env: str
    fake_class: type[FakeServer]
    backend_class: type[AnthropicBackend] | type[OpenAIBackend]
    answer: str  # what the fake answers by default
    email: str
    empty_reply_error: str  # words of the error logged for a reply without content
    retry_hint: tuple[dict[str, str], float]  # a 429's headers and the wait read from them
    sent_key: Callable[[dict[str, str]], str | None]  # the key a request's headers carry
    error_body: Callable[[int, str], dict[str, Any]]  # an error in the API's own format

    def backend(self, timeout: float = 5) -> Backend:
        """A backend of this provider's model, reaching the fake through the environment."""
        return self.backend_class(self.model, self.api_model, timeout=timeout)


ANTHROPIC = Provider(
    name="anthropic", model="anthropic/claude-sonnet-4-6", api_model="claude-sonnet-4-6",
    key="sk-ant-test-123-secret", key_env="ANTHROPIC_API_KEY", fake_class=FakeAnthropic,
    backend_class=AnthropicBackend,
    answer="billing", email="My invoice shows a double charge.",
    empty_reply_error="empty reply", retry_hint=({"retry-after": "3"}, 3.0),
    sent_key=api_key, error_body=error_payload,
)
OPENAI = Provider(
    name="openai", model="openai/gpt-4o-mini", api_model="gpt-4o-mini",
    key="sk-test-123-secret", key_env="OPENAI_API_KEY", fake_class=FakeOpenAI,
    backend_class=OpenAIBackend,
    answer="shipping", email="Where is my parcel? It was due on Monday.",
    empty_reply_error="no choices", retry_hint=({"retry-after-ms": "1500"}, 1.5),
    sent_key=_bearer, error_body=_openai_error,
)
PROVIDERS = {p.name: p for p in (ANTHROPIC, OPENAI)}


@pytest.fixture(params=list(PROVIDERS))
def provider(request: pytest.FixtureRequest) -> Provider:
    """Each hosted API in turn (``indirect`` parametrisation passes a provider's name)."""
    return PROVIDERS[request.param]


@pytest.fixture
def fake(provider: Provider, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The provider's fake API, reached through its environment variables as the real one is."""
    prefix = provider.key_env.removesuffix("_API_KEY")
    with provider.fake_class(responder=lambda body: provider.answer) as f:
        monkeypatch.setenv(provider.key_env, provider.key)
        monkeypatch.setenv(f"{prefix}_BASE_URL", f.base_url)
        monkeypatch.delenv(f"{prefix}_CUSTOM_HEADERS", raising=False)
        monkeypatch.delenv("OPENAI_COMPATIBLE_API_KEY", raising=False)
        yield f


@pytest.fixture
def backend(provider: Provider, fake: FakeServer) -> Backend:
    """The provider's backend, talking to ``fake``."""
    return provider.backend()


@pytest.fixture
def ask(ws: Workspace, provider: Provider, backend: Backend) -> Ask:
    """``ask(text=provider.email, **options)``: one logged call through
    ``pld.llm.calls.complete``, on ``backend`` unless the options name another."""

    def _ask(text: str | None = None, **kw: Any) -> CallResult:
        kw.setdefault("backend", backend)
        return complete(ws, provider.model, [{"role": "user", "content": text or provider.email}],
                        system=SYSTEM, **kw)

    return _ask


def rows(ws: Workspace) -> list[dict[str, Any]]:
    """The workspace's call log, oldest first."""
    return ws.query("SELECT * FROM llm_calls ORDER BY id")
