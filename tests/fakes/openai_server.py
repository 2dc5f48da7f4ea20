"""A fake of the OpenAI Chat Completions API (``POST /v1/chat/completions``)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from tests.fakes.server import FakeServer

_ids = itertools.count(1)


def _prompt_tokens(body: dict[str, Any]) -> int:
    return sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))


_ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error",
                403: "permission_denied", 404: "not_found", 429: "rate_limit_exceeded"}


class FakeOpenAI(FakeServer):
    """Answers every chat completion with ``responder(body)``; counts words as tokens.

    ``cached_tokens`` is reported as ``usage.prompt_tokens_details.cached_tokens``. With
    ``reject_json_schema`` set, a request with ``response_format`` of type ``json_schema`` gets the
    400 that servers without structured outputs send (``json_object`` is still accepted); with
    ``reject_logprobs``, a request asking for ``logprobs`` gets a 400.
    """

    cached_tokens: int = 0
    reject_json_schema: bool = False
    reject_logprobs: bool = False
    # body -> [(token, logprob), ...]: the first answer token's alternatives, sent back as
    # ``logprobs.content[0].top_logprobs`` when a request asks for logprobs.
    first_token_logprobs: Callable[[dict[str, Any]], list[tuple[str, float]]] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def model_string(self, name: str = "fake-model") -> str:
        """An ``openai-compatible/...`` model string pointing at this server."""
        return f"openai-compatible/{name}@{self.base_url}"

    def handle_json(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if not path.endswith("/chat/completions"):
            return 404, {"error": {"message": f"no route {path}", "type": "not_found"}}
        fmt = body.get("response_format") or {}
        if self.reject_json_schema and fmt.get("type") == "json_schema":
            return 400, {"error": {"message": "response_format type 'json_schema' is not supported",
                                   "type": "invalid_request_error", "param": "response_format",
                                   "code": None}}
        if self.reject_logprobs and body.get("logprobs"):
            return 400, {"error": {"message": "logprobs is not supported", "param": "logprobs",
                                   "type": "invalid_request_error", "code": None}}
        text = self.responder(body)
        prompt = _prompt_tokens(body)
        completion = len(text.split())
        choice: dict[str, Any] = {"index": 0, "finish_reason": "stop",
                                  "message": {"role": "assistant", "content": text}}
        if body.get("logprobs") and self.first_token_logprobs is not None:
            top = self.first_token_logprobs(body)[: int(body.get("top_logprobs") or 0)]
            entries = [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in top]
            first = dict(entries[0]) if entries else {"token": text, "logprob": 0.0, "bytes": []}
            choice["logprobs"] = {"content": [{**first, "top_logprobs": entries}]}
        return 200, {
            "id": f"chatcmpl-{next(_ids)}", "object": "chat.completion", "created": 0,
            "model": body.get("model", "fake"),
            "choices": [choice],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                      "total_tokens": prompt + completion,
                      "prompt_tokens_details": {"cached_tokens": self.cached_tokens}},
        }

    def error_body(self, code: int) -> dict[str, Any]:
        kind = _ERROR_TYPES.get(code, "server_error")
        return {"error": {"message": f"fake {kind} ({code})", "type": kind, "param": None,
                          "code": None}}

    def empty_reply(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"id": f"chatcmpl-{next(_ids)}", "object": "chat.completion", "created": 0,
                "model": body.get("model", "fake"), "choices": [],
                "usage": {"prompt_tokens": 1, "completion_tokens": 0, "total_tokens": 1}}
