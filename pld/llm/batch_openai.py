"""The OpenAI Batch API (and ``openai-compatible`` servers with ``/v1/files`` + ``/v1/batches``),
for :mod:`pld.llm.batch`.

The requests are uploaded as a JSONL file (``purpose="batch"``), one
``{"custom_id", "method", "url", "body"}`` line each, with the same body a single chat
completion sends (:meth:`OpenAIBackend.request_params`); the batch is created on it with our
tag in ``metadata``, which is how a batch whose id was never stored is found again. Answers
come back in the output file, failures (errors, ``batch_expired``, ``batch_cancelled``) in the
error file. Limits: 50,000 requests or 200 MB per input file.

vLLM reads the same JSONL for its offline batch runner (``python -m vllm.entrypoints.openai.
run_batch -i requests.jsonl -o results.jsonl``), for a self-hosted student at scale.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import openai
from openai.types.chat import ChatCompletion

from pld.llm.base import LLMError, Message
from pld.llm.batch_provider import Progress, Result
from pld.llm.openai_backend import OpenAIBackend

ENDPOINT = "/v1/chat/completions"
ENDED = ("completed", "expired", "cancelled", "failed")


class OpenAIBatches:
    """The Batch API through the backend's SDK client (same key, base URL and timeout)."""

    max_requests = 50_000
    max_bytes = 200 * 1024 * 1024

    def __init__(self, backend: OpenAIBackend) -> None:
        self.backend = backend
        self.client = backend.client

    def _call(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except openai.OpenAIError as err:
            raise self.backend.map_error(err) from None

    def request_line(self, custom_id: str, system: str | None, messages: list[Message],
                     params: dict[str, Any]) -> dict[str, Any]:
        """One input line, with the body a single call would send."""
        body = self.backend.request_params(
            messages, system, params["max_tokens"], params.get("temperature", 0.0),
            params.get("json_schema"), params.get("choices"))
        return {"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": body}

    def submit(self, tag: str, lines: list[dict[str, Any]],
               remember: Callable[[dict[str, Any]], None]) -> str:
        # Spooled to disk past 8 MB: the upload streams from the file, not from one big string.
        with tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024) as fh:
            for line in lines:
                fh.write(json.dumps(line, ensure_ascii=False).encode() + b"\n")
            fh.seek(0)
            uploaded = self._call(lambda: self.client.files.create(
                file=(f"pld-{tag}.jsonl", fh), purpose="batch"))
        remember({"input_file_id": uploaded.id})
        made = self._call(lambda: self.client.batches.create(
            input_file_id=uploaded.id, endpoint=ENDPOINT, completion_window="24h",
            metadata={"pld_batch": tag}))
        return str(made.id)

    def find_submitted(self, row: dict[str, Any], known: set[str]) -> str | None:
        for b in self._call(lambda: list(self.client.batches.list(limit=100))):
            if (b.metadata or {}).get("pld_batch") == row["tag"]:
                return str(b.id)
        return None

    def progress(self, provider_id: str) -> Progress:
        b = self._call(lambda: self.client.batches.retrieve(provider_id))
        c = b.request_counts
        return Progress(status=b.status, ended=b.status in ENDED,
                        total=c.total if c else 0, succeeded=c.completed if c else 0,
                        failed=c.failed if c else 0)

    def results(self, row: dict[str, Any], params: Callable[[str], dict[str, Any] | None]
                ) -> Iterator[Result | None]:
        """Each line of the output file, then of the error file, streamed."""
        b = self._call(lambda: self.client.batches.retrieve(row["provider_batch_id"]))
        for file_id in (b.output_file_id, b.error_file_id):
            if not file_id:
                continue
            try:
                with self.client.files.with_streaming_response.content(file_id) as resp:
                    for line in resp.iter_lines():
                        if line.strip():
                            yield self._result(line, params)
            except openai.OpenAIError as err:
                raise self.backend.map_error(err) from None

    def _result(self, line: str, params: Callable[[str], dict[str, Any] | None]
                ) -> Result | None:
        try:
            item = json.loads(line)
            custom_id = item["custom_id"]
            response, error = item.get("response"), item.get("error")
        except (ValueError, KeyError, TypeError):
            return None
        if error:
            return Result(custom_id, error=f"{error.get('code', 'error')}: "
                                           f"{str(error.get('message', ''))[:300]}")
        if not isinstance(response, dict):
            return Result(custom_id, error="no response in the result line")
        body = response.get("body") or {}
        if response.get("status_code") != 200:
            message = (body.get("error") or {}).get("message", "") if isinstance(body, dict) \
                else ""
            return Result(custom_id, error=f"HTTP {response.get('status_code')}: "
                                           f"{str(message)[:300]}")
        try:
            reply = self.backend.reply_from(ChatCompletion.model_validate(body),
                                            labels=(params(custom_id) or {}).get("choices"))
        except LLMError as err:
            return Result(custom_id, error=str(err))
        except (ValueError, TypeError) as err:
            return Result(custom_id, error=f"unreadable completion: {err}")
        return Result(custom_id, reply=reply)

    def cancel(self, provider_id: str) -> None:
        self._call(lambda: self.client.batches.cancel(provider_id))
