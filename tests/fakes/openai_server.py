"""A fake of the OpenAI Chat Completions API (``POST /v1/chat/completions``)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from email.parser import BytesParser
from email.policy import default
from typing import Any

from tests.fakes.batches import BatchBook, FakeBatch
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
    # text -> tokens, for usage figures like a real tokenizer's (default: whitespace words).
    token_counter: Callable[[str], int] | None = None

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
        count = self.token_counter
        prompt = (sum(count(str(m.get("content", ""))) for m in body.get("messages", []))
                  if count else _prompt_tokens(body))
        completion = count(text) if count else len(text.split())
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


def _json(code: int, payload: dict[str, Any]) -> tuple[int, bytes, str]:
    return code, json.dumps(payload).encode(), "application/json"


def _multipart(content_type: str, raw: bytes) -> dict[str, bytes]:
    """The fields of a ``multipart/form-data`` body, by name."""
    msg = BytesParser(policy=default).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw)
    return {part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
            for part in msg.iter_parts()}


class FakeOpenAIBatches(FakeOpenAI):
    """:class:`FakeOpenAI` with the Batch API as the SDK calls it: the input file upload
    (``POST /v1/files``, multipart), batch create, retrieve, list and cancel, and the output
    and error files (``GET /v1/files/{id}/content``). Each request line is answered as
    ``/v1/chat/completions`` would answer it; ``book`` holds the batches and their faults.
    ``files`` keeps every uploaded and written file."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.book = BatchBook()
        self.files: dict[str, bytes] = {}

    def _file(self, data: bytes) -> str:
        file_id = f"file-{next(_ids)}"
        self.files[file_id] = data
        return file_id

    def _batch(self, batch: FakeBatch) -> dict[str, Any]:
        counts = self.book.counts(batch)
        status = {"in_progress": "in_progress", "canceling": "cancelling"}.get(batch.state)
        out = err = None
        if status is None:
            status = {"ended": "completed", "expired": "expired",
                      "canceled": "cancelled"}[batch.ending]
            out, err = self._output_files(batch)
        return {
            "id": batch.id, "object": "batch", "endpoint": "/v1/chat/completions",
            "errors": None, "input_file_id": batch.input_file_id, "completion_window": "24h",
            "status": status, "output_file_id": out, "error_file_id": err,
            "created_at": batch.created_at, "metadata": batch.metadata,
            "request_counts": {"total": len(batch.requests),
                               "completed": counts["succeeded"],
                               "failed": counts["errored"] + counts["expired"]
                               + counts["canceled"]},
        }

    def _output_files(self, batch: FakeBatch) -> tuple[str | None, str | None]:
        if batch.files is not None:  # written once, at the first retrieve after the end
            return batch.files
        ok, bad = [], []
        for n, (cid, outcome) in enumerate(batch.outcomes.items()):
            line: dict[str, Any] = {"id": f"batch_req_{next(_ids)}", "custom_id": cid,
                                    "response": None, "error": None}
            if outcome[0] in ("succeeded", "errored"):
                line["response"] = {"status_code": outcome[1], "request_id": f"req_{n}",
                                    "body": outcome[2] if outcome[0] == "succeeded"
                                    else {"error": {"message": outcome[2].get(
                                        "message", "fake error"), "type": "server_error"}}}
            else:
                line["error"] = {"code": f"batch_{outcome[0]}",
                                 "message": f"This request was {outcome[0]} before it ran."}
            text = json.dumps(line)
            if cid == self.book.garbled(batch):
                text = text[: len(text) // 2]
            (ok if outcome[0] == "succeeded" else bad).append(text)
        out = self._file(("\n".join(ok) + "\n").encode()) if ok else None
        err = self._file(("\n".join(bad) + "\n").encode()) if bad else None
        batch.files = (out, err)
        return batch.files

    def handle_route(self, method: str, path: str, raw: bytes
                     ) -> tuple[int, bytes, str] | None:
        route = path.split("?")[0].rstrip("/")
        if method == "POST" and route == "/v1/files":
            fields = _multipart(self.current_headers().get("content-type", ""), raw)
            if fields.get("purpose") != b"batch" or "file" not in fields:
                return _json(400, {"error": {"message": "file and purpose=batch required",
                                             "type": "invalid_request_error"}})
            file_id = self._file(fields["file"])
            return _json(200, {"id": file_id, "object": "file", "bytes": len(fields["file"]),
                               "created_at": 0, "filename": "batch.jsonl", "purpose": "batch",
                               "status": "processed"})
        if method == "GET" and route.startswith("/v1/files/") and route.endswith("/content"):
            data = self.files.get(route.split("/")[3])
            return (200, data, "application/octet-stream") if data is not None else _json(
                404, {"error": {"message": "no such file", "type": "not_found"}})
        if not route.startswith("/v1/batches"):
            return None
        parts = route.split("/")[3:]
        if method == "POST" and not parts:
            body = json.loads(raw or b"{}")
            data = self.files.get(body.get("input_file_id", ""))
            if data is None or body.get("endpoint") != "/v1/chat/completions":
                return _json(400, {"error": {"message": "bad input_file_id or endpoint",
                                             "type": "invalid_request_error"}})
            lines = [json.loads(line) for line in data.decode().splitlines() if line.strip()]
            requests = [(r["custom_id"], r["body"]) for r in lines]
            made = self.book.create("batch_", requests, metadata=body.get("metadata"),
                                    input_file_id=body["input_file_id"])
            if isinstance(made, int):
                return _json(made, self.error_body(made))
            return _json(200, self._batch(made))
        if method == "GET" and not parts:
            data = sorted(self.book.batches.values(), key=lambda b: b.id, reverse=True)
            return _json(200, {"object": "list", "data": [self._batch(b) for b in data],
                               "has_more": False,
                               "first_id": data[0].id if data else None,
                               "last_id": data[-1].id if data else None})
        batch = self.book.find(parts[0])
        if batch is None:
            return _json(404, {"error": {"message": f"no batch {parts[0]}", "type": "not_found"}})
        if method == "GET" and len(parts) == 1:
            self.book.poll(batch.id, lambda body: self.handle_json("/v1/chat/completions", body))
            return _json(200, self._batch(batch))
        if method == "POST" and parts[1:] == ["cancel"]:
            self.book.cancel(batch.id)
            return _json(200, self._batch(batch))
        return _json(404, {"error": {"message": f"no route {path}", "type": "not_found"}})
