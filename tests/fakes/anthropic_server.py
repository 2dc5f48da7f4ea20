"""A fake of the Anthropic Messages API (``POST /v1/messages``), in its wire format."""

from __future__ import annotations

import itertools
import json
from typing import Any

from tests.fakes.server import FakeServer

_ids = itertools.count(1)

SAMPLING_PARAMS = ("temperature", "top_p", "top_k")
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}


def _words(value: Any) -> int:
    """Whitespace tokens in a string or in the text blocks of a content list."""
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        return sum(_words(b.get("text", "")) for b in value if isinstance(b, dict))
    return 0


def api_key(headers: dict[str, str]) -> str | None:
    """The key a request carried, in either header the API accepts."""
    if headers.get("x-api-key"):
        return headers["x-api-key"]
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token if scheme.lower() == "bearer" and token else None


def error_payload(code: int, message: str | None = None) -> dict[str, Any]:
    """An error body as Anthropic sends it."""
    kind = _ERROR_TYPES.get(code, "api_error")
    return {"type": "error", "error": {"type": kind, "message": message or f"fake {kind}"}}


class FakeAnthropic(FakeServer):
    """Answers ``/v1/messages`` with ``responder(body)``; counts words as tokens.

    Like the real API it wants a key (``x-api-key``, or ``Authorization: Bearer`` as SDK 2.x sends
    it), ``anthropic-version`` and ``max_tokens``, and from version ``2026-10-21`` on it rejects
    sampling parameters (``temperature``, ``top_p``, ``top_k``). When the
    request forces a tool (``tool_choice`` of type ``tool``) the responder's text is parsed as
    JSON and returned as that tool's input. ``cache_read`` / ``cache_creation`` are reported as
    ``cache_read_input_tokens`` / ``cache_creation_input_tokens``.
    """

    cache_read: int = 0
    cache_creation: int = 0

    @property
    def base_url(self) -> str:
        """What ``ANTHROPIC_BASE_URL`` should be: the SDK appends ``/v1/messages``."""
        return f"http://127.0.0.1:{self.port}"

    def handle_json(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if path.split("?")[0] != "/v1/messages":
            return 404, error_payload(404, f"no route {path}")
        headers = self.current_headers()
        if not api_key(headers):
            return 401, error_payload(401, "x-api-key or authorization header is required")
        version = headers.get("anthropic-version")
        if not version:
            return 400, error_payload(400, "anthropic-version header is required")
        sampling = [k for k in SAMPLING_PARAMS if k in body]
        if sampling and version >= "2026-10-21":
            return 400, error_payload(400, f"{sampling[0]}: Extra inputs are not permitted")
        if "max_tokens" not in body or not body.get("messages"):
            return 400, error_payload(400, "max_tokens and messages are required")
        text = self.responder(body)
        choice = body.get("tool_choice") or {}
        if choice.get("type") == "tool":
            content = [{"type": "tool_use", "id": f"toolu_{next(_ids)}", "name": choice["name"],
                        "input": json.loads(text)}]
            stop = "tool_use"
        else:
            content = [{"type": "text", "text": text}]
            stop = "end_turn"
        prompt = _words(body.get("system")) + sum(_words(m.get("content"))
                                                  for m in body["messages"])
        return 200, {
            "id": f"msg_{next(_ids)}", "type": "message", "role": "assistant",
            "content": content, "model": body.get("model", "fake"), "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": prompt, "output_tokens": len(text.split()),
                      "cache_read_input_tokens": self.cache_read,
                      "cache_creation_input_tokens": self.cache_creation},
        }

    def empty_reply(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"id": f"msg_{next(_ids)}", "type": "message", "role": "assistant", "content": [],
                "model": body.get("model", "fake"), "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": 1, "output_tokens": 0,
                          "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}}

    def error_body(self, code: int) -> dict[str, Any]:
        return error_payload(code)
