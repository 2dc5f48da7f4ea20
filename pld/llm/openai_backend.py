"""OpenAI Chat Completions backend, for ``openai/<model>`` and ``openai-compatible/<model>@<url>``.

One :meth:`OpenAIBackend.complete` is one HTTP request (two only when an OpenAI-compatible server
rejects ``json_schema`` and the call is re-sent once with ``json_object``, see below). The SDK's
own retries are off (``max_retries=0``): :mod:`pld.llm.calls` retries uniformly for every
backend, and SDK errors are mapped to :class:`~pld.llm.base.LLMError` by
:class:`~pld.llm.sdk_backend.SDKBackend`.

Decisions worth knowing:

* A 200 whose body is not JSON, or has no choices, is *transient*: that is a truncated transfer
  or a misbehaving proxy, not a property of the request, and the retry budget in
  :mod:`pld.llm.calls` bounds it. An empty answer that the model meant (``finish_reason`` of
  ``length`` or ``content_filter``, or a refusal) is *permanent*: asking again gives the same.
* Keys never leave this module: error messages are built from the status and the server's
  message field, with the key text redacted, and the SDK exception is not chained.
* Reasoning models (``o1``/``o3``/``o4``/``gpt-5`` prefixes) reject ``temperature`` other than the
  default, so it is not sent to them; OpenAI gets ``max_completion_tokens`` (the current name),
  compatible servers ``max_tokens`` (what llama.cpp and older vLLM understand).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import openai
from openai.types.chat import ChatCompletion

from pld.llm.base import ConfigError, LLMError, Message, Reply, Request
from pld.llm.label_scores import TOP_LOGPROBS_OPENAI, scores_from_top
from pld.llm.sdk_backend import SDKBackend

REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")


def _api_key(base_url: str | None, model: str) -> str:
    if base_url is None:
        key = os.environ.get("OPENAI_API_KEY")
        if not key:
            raise ConfigError(f"OPENAI_API_KEY is not set; export it to use {model}")
        return key
    # Local servers (llama.cpp, vLLM) accept any key, but the SDK insists on one. OPENAI_API_KEY
    # is deliberately not used here: it would hand a real OpenAI key to whatever host the model
    # string names.
    return os.environ.get("OPENAI_COMPATIBLE_API_KEY") or "not-needed"


class OpenAIBackend(SDKBackend):
    """Chat Completions through the official ``openai`` SDK.

    ``model`` is the full model string (``openai/gpt-4o-mini``), ``name`` the provider's model id,
    ``base_url`` the server of an ``openai-compatible`` model (None: OpenAI itself, or
    ``$OPENAI_BASE_URL`` when set).
    """

    sdk = openai
    constrains_choices = False

    def __init__(self, model: str, name: str, *, base_url: str | None = None,
                 timeout: float) -> None:
        key = _api_key(base_url, model)
        super().__init__(model, name, timeout=timeout, secret=key, client=openai.OpenAI(
            api_key=key, base_url=base_url, timeout=timeout, max_retries=0))
        self.base_url = base_url
        self._compatible = base_url is not None
        # Flipped the first time a compatible server answers json_schema (or logprobs) with 400.
        self._json_schema_ok = True
        self._logprobs_ok = True

    @property
    def scores_choices(self) -> bool:
        """Whether answers to calls with ``choices`` carry label log-probabilities: OpenAI's
        reasoning models have none, and a compatible server may turn ``logprobs`` down."""
        reasoning = not self._compatible and self.name.startswith(REASONING_PREFIXES)
        return self._logprobs_ok and not reasoning

    def request_params(self, messages: list[Message], system: str | None, max_tokens: int,
                       temperature: float, json_schema: dict[str, Any] | None,
                       choices: list[str] | None = None) -> dict[str, Any]:
        """The chat completion body of one call (also one batch request's ``body``)."""
        if json_schema is not None and not self._json_schema_ok:
            # json_object only promises *some* JSON: spell the schema out for the model.
            hint = ("Reply with a JSON object only, matching this JSON schema: "
                    + json.dumps(json_schema, ensure_ascii=False))
            system = f"{system}\n\n{hint}" if system else hint
        convo: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
        convo += [{"role": m["role"], "content": m["content"]} for m in messages]
        kwargs: dict[str, Any] = {"model": self.name, "messages": convo}
        if self._compatible:
            kwargs["max_tokens"] = max_tokens
        else:
            kwargs["max_completion_tokens"] = max_tokens
        if self._compatible or not self.name.startswith(REASONING_PREFIXES):
            kwargs["temperature"] = temperature
        if choices and self.scores_choices:
            # The first token's alternatives give every label a score (calibration).
            kwargs["logprobs"] = True
            kwargs["top_logprobs"] = TOP_LOGPROBS_OPENAI
        if json_schema is not None:
            kwargs["response_format"] = (
                {"type": "json_schema", "json_schema": {"name": "reply", "schema": json_schema}}
                if self._json_schema_ok else {"type": "json_object"}
            )
        return kwargs

    def _send(self, kwargs: dict[str, Any]) -> Any:
        try:
            return self._client.chat.completions.create(**kwargs)
        except openai.BadRequestError as err:
            # Not gated on _logprobs_ok: calls in flight when another thread learned it still
            # carry logprobs and must be resent too.
            if self._compatible and kwargs.get("logprobs") and "logprob" in str(err).lower():
                raise _LogprobsRejectedError from None
            if self._compatible and "response_format" in kwargs and self._json_schema_ok:
                raise _SchemaRejectedError from None
            raise self.map_error(err) from None
        except openai.OpenAIError as err:
            raise self.map_error(err) from None
        except json.JSONDecodeError as err:  # a 200 whose body is not JSON
            raise LLMError(f"malformed response body: {err}", transient=True) from None

    def attempt(self, request: Request) -> Reply:
        """One chat completion. ``choices`` is not enforced here: :mod:`pld.llm.calls` checks it,
        but a call with ``choices`` asks for the first token's log-probabilities, from which the
        reply's ``label_logprobs`` come."""
        t0 = time.perf_counter()

        def send() -> Any:
            return self._send(self.request_params(
                request.messages, request.system, request.max_tokens, request.temperature,
                request.json_schema, request.choices))

        try:
            resp = send()
        except _LogprobsRejectedError:
            # The answer matters more than its scores: go on without them (raw answers only).
            # Only when that works was the 400 about logprobs.
            self._logprobs_ok = False
            try:
                resp = send()
            except LLMError:
                self._logprobs_ok = True
                raise
        except _SchemaRejectedError:
            # Resend once with json_object. Only when that works was the 400 about json_schema;
            # otherwise the request itself is bad and json_schema stays on for later calls.
            self._json_schema_ok = False
            try:
                resp = send()
            except LLMError:
                self._json_schema_ok = True
                raise
        latency = time.perf_counter() - t0
        return self.reply_from(resp, latency, request.choices)

    def reply_from(self, resp: Any, latency: float = 0.0,
                   labels: list[str] | None = None) -> Reply:
        """The :class:`Reply` in a chat completion (a call's response, or a batch result's
        body); ``labels`` are the call's choices, for their scores."""
        if not isinstance(resp, ChatCompletion):
            # The SDK hands back the raw text when the content-type is not JSON.
            raise LLMError("malformed response: not a chat completion", transient=True)
        choices = getattr(resp, "choices", None) or []
        if not choices:
            raise LLMError("empty response: no choices", transient=True)
        choice = choices[0]
        message = getattr(choice, "message", None)
        text = getattr(message, "content", None)
        finish = getattr(choice, "finish_reason", None)
        if not text:
            refusal = getattr(message, "refusal", None)
            if refusal:
                raise LLMError(f"model refused: {str(refusal)[:200]}")
            if finish == "length":
                raise LLMError("empty reply: max_tokens used up before any answer "
                               "(reasoning models need a larger max_tokens)")
            if finish == "content_filter":
                raise LLMError("empty reply: blocked by the provider's content filter")
            raise LLMError(f"empty reply (finish_reason={finish})", transient=True)
        usage = getattr(resp, "usage", None)
        details = getattr(usage, "prompt_tokens_details", None)
        return Reply(
            text=text,
            input_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            output_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            cached_tokens=int(getattr(details, "cached_tokens", 0) or 0),
            latency_s=latency,
            model=self.model,
            label_logprobs=_label_logprobs(choice, labels),
        )


def _label_logprobs(choice: Any, choices: list[str] | None) -> dict[str, float] | None:
    """Per-label scores from the first answer token's ``top_logprobs``, when the reply has them."""
    if not choices:
        return None
    content = getattr(getattr(choice, "logprobs", None), "content", None) or []
    if not content:
        return None
    first = content[0]
    top = [(t.token, t.logprob) for t in (getattr(first, "top_logprobs", None) or [])]
    top.append((first.token, first.logprob))
    return scores_from_top(top, choices)


class _LogprobsRejectedError(Exception):
    """A compatible server answered 400 to ``logprobs``: resend without it."""


class _SchemaRejectedError(Exception):
    """A compatible server answered 400 to ``json_schema``: resend with ``json_object``."""
