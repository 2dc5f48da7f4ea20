"""Anthropic Messages API backend, for ``anthropic/<model>``.

One :meth:`AnthropicBackend.complete` is one HTTP request; the SDK's own retries are off
(``max_retries=0``) because :mod:`pld.llm.calls` retries uniformly for every backend. The key
comes from ``$ANTHROPIC_API_KEY`` only; the SDK reads ``$ANTHROPIC_BASE_URL`` itself (and, from
SDK 2.x on, sends the key as ``Authorization: Bearer``).

Decisions worth knowing:

* The system prompt is sent as one text block marked ``cache_control: ephemeral``: the student's
  system prompt (the heuristics) is the same for thousands of calls, and cached prefix tokens cost
  a tenth. Prompts under the model's minimum cacheable length are simply not cached.
* ``temperature`` is not sent. SDK 2.x speaks API version ``2026-10-21``, which rejects every
  sampling parameter (even the default) and no longer offers them; it stays part of the cache
  key in :mod:`pld.llm.calls`, where it is harmless.
* ``json_schema`` is answered with a forced tool call (``tool_choice`` naming one tool whose
  ``input_schema`` is the schema), and the tool input is returned as JSON text. The API
  always returns tool input as a parsed JSON object, so the reply is valid JSON by
  construction, where "reply with JSON only" in the prompt still yields markdown fences or
  prose now and then. Tool schemas must be objects; any other schema falls back to the prompt
  instruction. (``output_config.format`` structured outputs would also enforce the schema, but
  only newer models accept it; a forced tool call works on every Claude model.)
* A reply with no content is *transient* (the API occasionally ends a turn with no blocks; a
  retry usually answers, and :mod:`pld.llm.calls` bounds the retries), unless the model
  refused (``stop_reason == "refusal"``), which asking again will not change. A body that is
  not JSON is transient too: it is a truncated transfer or a proxy, not the request.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import anthropic
from anthropic.types import Message as AnthropicMessage

from pld.llm.base import ConfigError, LLMError, Message, Reply, Request
from pld.llm.sdk_backend import SDKBackend

TOOL_NAME = "reply"


class AnthropicBackend(SDKBackend):
    """Claude through the official ``anthropic`` SDK.

    ``model`` is the full model string (``anthropic/claude-sonnet-4-5``), ``name`` the provider's
    model id (``claude-sonnet-4-5``). Raises :class:`ConfigError` when no key is set.
    """

    sdk = anthropic
    constrains_choices = False
    # The Messages API returns no token log-probabilities: answers stay raw (uncalibrated).
    scores_choices = False

    def __init__(self, model: str, name: str, *, timeout: float) -> None:
        key = os.environ.get("ANTHROPIC_API_KEY")
        if not key:
            raise ConfigError(f"ANTHROPIC_API_KEY is not set; export it to use {model}")
        super().__init__(model, name, timeout=timeout, secret=key, client=anthropic.Anthropic(
            api_key=key, timeout=timeout, max_retries=0))

    def request_params(self, messages: list[Message], system: str | None, max_tokens: int,
                       json_schema: dict[str, Any] | None) -> dict[str, Any]:
        """The Messages API parameters of one call (also one batch request's ``params``)."""
        use_tool = json_schema is not None and json_schema.get("type") == "object"
        if json_schema is not None and not use_tool:
            hint = ("Reply with a JSON object only, no other text, matching this JSON schema: "
                    + json.dumps(json_schema, ensure_ascii=False))
            system = f"{system}\n\n{hint}" if system else hint
        kwargs: dict[str, Any] = {
            "model": self.name,
            "max_tokens": max_tokens,
            "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
        }
        if system:  # the API rejects an empty text block
            kwargs["system"] = [{"type": "text", "text": system,
                                 "cache_control": {"type": "ephemeral"}}]
        if use_tool:
            kwargs["tools"] = [{
                "name": TOOL_NAME,
                "description": "Give the reply as a JSON object matching the input schema.",
                "input_schema": json_schema,
            }]
            kwargs["tool_choice"] = {"type": "tool", "name": TOOL_NAME}
        return kwargs

    def attempt(self, request: Request) -> Reply:
        """One Messages API call. ``choices`` is not enforced here; :mod:`pld.llm.calls` checks.

        ``temperature`` is accepted for the protocol but not sent (see the module notes).
        """
        kwargs = self.request_params(request.messages, request.system, request.max_tokens,
                                     request.json_schema)
        t0 = time.perf_counter()
        try:
            resp = self._client.messages.create(**kwargs)
        except anthropic.AnthropicError as err:
            raise self.map_error(err) from None
        except json.JSONDecodeError as err:  # a 200 whose body is not JSON
            raise LLMError(f"malformed response body: {err}", transient=True) from None
        latency = time.perf_counter() - t0
        if not isinstance(resp, AnthropicMessage):
            # The SDK hands back the raw text when the content-type is not JSON.
            raise LLMError("malformed response: not a message", transient=True)
        return self.reply_from(resp, tool="tools" in kwargs, latency=latency)

    def reply_from(self, resp: AnthropicMessage, *, tool: bool, latency: float = 0.0) -> Reply:
        """The :class:`Reply` in a message (a call's response, or a batch result's)."""
        text = self._text(resp, tool=tool)
        usage = getattr(resp, "usage", None)
        fresh = int(getattr(usage, "input_tokens", 0) or 0)
        read = int(getattr(usage, "cache_read_input_tokens", 0) or 0)
        written = int(getattr(usage, "cache_creation_input_tokens", 0) or 0)
        return Reply(
            text=text,
            # Anthropic reports cache reads and writes apart from input_tokens; all three are
            # prompt tokens, and pricing discounts the cached share.
            input_tokens=fresh + read + written,
            output_tokens=int(getattr(usage, "output_tokens", 0) or 0),
            cached_tokens=read,
            latency_s=latency,
            model=self.model,
        )

    @staticmethod
    def _text(resp: AnthropicMessage, *, tool: bool) -> str:
        blocks = getattr(resp, "content", None) or []
        stop = getattr(resp, "stop_reason", None)
        if tool:
            for block in blocks:
                if getattr(block, "type", None) == "tool_use":
                    if stop == "max_tokens":
                        raise LLMError("JSON reply cut off at max_tokens; raise max_tokens")
                    return json.dumps(block.input, ensure_ascii=False)
        text = "".join(getattr(b, "text", "") or "" for b in blocks
                       if getattr(b, "type", None) == "text")
        if text:
            return text
        if stop == "refusal":
            raise LLMError("model refused to answer")
        if tool:
            raise LLMError(f"no tool call in reply (stop_reason={stop})", transient=True)
        raise LLMError(f"empty reply (stop_reason={stop})", transient=True)
