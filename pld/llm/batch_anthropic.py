"""The Anthropic Message Batches API, for :mod:`pld.llm.batch`.

A request is ``{"custom_id", "params"}`` with the same Messages API parameters a single call
sends (:meth:`AnthropicBackend.request_params`); each result line holds a message, an error,
or ``expired`` / ``canceled``. Limits: 100,000 requests or 256 MB per batch.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import anthropic
from anthropic.types import Message as AnthropicMessage

from pld.llm.anthropic_backend import AnthropicBackend
from pld.llm.base import LLMError, Message
from pld.llm.batch_provider import Progress, Result

# Batches carry no metadata: one created this long after our row was written, with as many
# requests, is taken as ours when the process died before storing its id.
FIND_WINDOW = timedelta(minutes=10)


class AnthropicBatches:
    """Message Batches through the backend's SDK client (same key, base URL and timeout)."""

    max_requests = 100_000
    max_bytes = 256 * 1024 * 1024

    def __init__(self, backend: AnthropicBackend) -> None:
        self.backend = backend
        self.batches = backend.client.messages.batches

    def _call(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except anthropic.AnthropicError as err:
            raise self.backend.map_error(err) from None

    def request_line(self, custom_id: str, system: str | None, messages: list[Message],
                     params: dict[str, Any]) -> dict[str, Any]:
        """``{"custom_id", "params"}`` with the parameters a single call would send."""
        return {"custom_id": custom_id, "params": self.backend.request_params(
            messages, system, params["max_tokens"], params.get("json_schema"))}

    def submit(self, tag: str, lines: list[dict[str, Any]],
               remember: Callable[[dict[str, Any]], None]) -> str:
        return str(self._call(lambda: self.batches.create(requests=lines)).id)

    def find_submitted(self, row: dict[str, Any], known: set[str]) -> str | None:
        since = datetime.fromisoformat(row["created_at"])
        found = []
        for b in self._call(lambda: list(self.batches.list(limit=100))):
            counts = b.request_counts
            n = (counts.processing + counts.succeeded + counts.errored + counts.expired
                 + counts.canceled)
            if (b.id not in known and n == row["n_requests"]
                    and since - timedelta(seconds=5) <= b.created_at <= since + FIND_WINDOW):
                found.append(b.id)
        return found[0] if len(found) == 1 else None

    def progress(self, provider_id: str) -> Progress:
        b = self._call(lambda: self.batches.retrieve(provider_id))
        c = b.request_counts
        total = c.processing + c.succeeded + c.errored + c.expired + c.canceled
        return Progress(status=b.processing_status, ended=b.processing_status == "ended",
                        total=total, succeeded=c.succeeded,
                        failed=c.errored + c.expired + c.canceled)

    def results(self, row: dict[str, Any], params: Callable[[str], dict[str, Any] | None]
                ) -> Iterator[Result | None]:
        """Each line of the results file, streamed (never all in memory)."""
        try:
            with self.batches.with_streaming_response.results(row["provider_batch_id"]) as resp:
                for line in resp.iter_lines():
                    if line.strip():
                        yield self._result(line, params)
        except anthropic.AnthropicError as err:
            raise self.backend.map_error(err) from None

    def _result(self, line: str, params: Callable[[str], dict[str, Any] | None]
                ) -> Result | None:
        try:
            item = json.loads(line)
            custom_id, result = item["custom_id"], item["result"]
            kind = result["type"]
        except (ValueError, KeyError, TypeError):
            return None
        if kind == "succeeded":
            p = params(custom_id) or {}
            schema = p.get("json_schema")
            try:
                msg = AnthropicMessage.model_validate(result["message"])
                reply = self.backend.reply_from(
                    msg, tool=isinstance(schema, dict) and schema.get("type") == "object")
            except LLMError as err:
                return Result(custom_id, error=str(err))
            except (ValueError, KeyError, TypeError) as err:
                return Result(custom_id, error=f"unreadable message: {err}")
            return Result(custom_id, reply=reply)
        if kind == "errored":
            err = (result.get("error") or {}).get("error") or {}
            return Result(custom_id, error=f"errored: {err.get('type', 'error')}: "
                                           f"{str(err.get('message', ''))[:300]}")
        return Result(custom_id, error=f"{kind} inside the batch before it ran")

    def cancel(self, provider_id: str) -> None:
        self._call(lambda: self.batches.cancel(provider_id))
