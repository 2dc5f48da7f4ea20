"""A fake of the Anthropic Messages API (``POST /v1/messages``), in its wire format."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

from tests.fakes.batches import BatchBook, FakeBatch
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


def _iso(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


class FakeAnthropicBatches(FakeAnthropic):
    """:class:`FakeAnthropic` with the Message Batches API as the SDK calls it: create
    (``POST /v1/messages/batches``), retrieve, list, cancel and the results file (JSONL at the
    batch's ``results_url``). Each request is answered as ``/v1/messages`` would answer it;
    ``book`` holds the batches and their faults."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.book = BatchBook()

    def _batch(self, batch: FakeBatch) -> dict[str, Any]:
        ended = batch.state == "ended"
        return {
            "id": batch.id, "type": "message_batch",
            "processing_status": batch.state, "request_counts": {
                k: v for k, v in self.book.counts(batch).items()},
            "created_at": _iso(batch.created_at), "expires_at": _iso(batch.created_at + 86400),
            "ended_at": _iso(int(time.time())) if ended else None,
            "cancel_initiated_at": None, "archived_at": None,
            "results_url": (f"{self.base_url}/v1/messages/batches/{batch.id}/results"
                            if ended else None),
        }

    def _results(self, batch: FakeBatch) -> bytes:
        lines = []
        garbled = self.book.garbled(batch)
        for cid, outcome in batch.outcomes.items():
            if cid == garbled:
                lines.append('{"custom_id": "' + cid + '", "result": {"type": "succ')
                continue
            if outcome[0] == "succeeded":
                result = {"type": "succeeded", "message": outcome[2]}
            elif outcome[0] == "errored":
                result = {"type": "errored", "error": error_payload(outcome[1])}
            else:
                result = {"type": outcome[0]}
            lines.append(json.dumps({"custom_id": cid, "result": result}))
        return ("\n".join(lines) + "\n").encode()

    def handle_route(self, method: str, path: str, raw: bytes
                     ) -> tuple[int, bytes, str] | None:
        route = path.split("?")[0].rstrip("/")
        if not route.startswith("/v1/messages/batches"):
            return None
        if not api_key(self.current_headers()):
            return _json(401, error_payload(401, "x-api-key or authorization header is required"))
        parts = route.split("/")[4:]  # after /v1/messages/batches
        if method == "POST" and not parts:
            body = json.loads(raw or b"{}")
            requests = [(r["custom_id"], r["params"]) for r in body.get("requests", [])]
            if not requests or len({c for c, _ in requests}) != len(requests):
                return _json(400, error_payload(400, "requests must be non-empty, ids unique"))
            made = self.book.create("msgbatch_", requests)
            if isinstance(made, int):
                return _json(made, error_payload(made))
            return _json(200, self._batch(made))
        if method == "GET" and not parts:
            data = sorted(self.book.batches.values(), key=lambda b: b.id, reverse=True)
            return _json(200, {"data": [self._batch(b) for b in data], "has_more": False,
                               "first_id": data[0].id if data else None,
                               "last_id": data[-1].id if data else None})
        batch = self.book.find(parts[0])
        if batch is None:
            return _json(404, error_payload(404, f"no batch {parts[0]}"))
        if method == "GET" and len(parts) == 1:
            self.book.poll(batch.id, lambda body: self.handle_json("/v1/messages", body))
            return _json(200, self._batch(batch))
        if method == "GET" and parts[1:] == ["results"] and batch.state == "ended":
            return 200, self._results(batch), "application/binary"
        if method == "POST" and parts[1:] == ["cancel"]:
            self.book.cancel(batch.id)
            return _json(200, self._batch(batch))
        return _json(404, error_payload(404, f"no route {path}"))


def _json(code: int, payload: dict[str, Any]) -> tuple[int, bytes, str]:
    return code, json.dumps(payload).encode(), "application/json"
