"""What a provider's batch API looks like to batch mode: the :class:`Provider` protocol and the
two values it reports, :class:`Progress` of a batch and one request's :class:`Result`.

They sit below both :mod:`pld.llm.batch` (which drives batches) and the provider modules
(:mod:`pld.llm.batch_anthropic`, :mod:`pld.llm.batch_openai`), so neither imports the other's
module to share them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from pld.llm.base import Message, Reply


@dataclass(frozen=True)
class Progress:
    """A batch as its provider reports it."""

    status: str
    ended: bool
    total: int
    succeeded: int
    failed: int


@dataclass(frozen=True)
class Result:
    """One request's outcome from a results file: a reply, or why there is none."""

    custom_id: str
    reply: Reply | None = None
    error: str | None = None


class Provider(Protocol):
    """One provider's batch API. Methods raise :class:`~pld.llm.base.LLMError` (transient
    ones are retried here)."""

    max_requests: int
    max_bytes: int

    def request_line(self, custom_id: str, system: str | None, messages: list[Message],
                     params: dict[str, Any]) -> dict[str, Any]:
        """The request as one line of the provider's batch input."""
        ...

    def submit(self, tag: str, lines: list[dict[str, Any]],
               remember: Callable[[dict[str, Any]], None]) -> str:
        """Create the batch; return its provider id. ``remember`` stores ids of what was made
        on the way (OpenAI's input file) in the batch's row."""
        ...

    def find_submitted(self, row: dict[str, Any], known: set[str]) -> str | None:
        """The provider id of a batch created for ``row`` whose id was never stored, if any."""
        ...

    def progress(self, provider_id: str) -> Progress:
        ...

    def results(self, row: dict[str, Any], params: Callable[[str], dict[str, Any] | None]
                ) -> Iterator[Result | None]:
        """Each result line of an ended batch (None for a line that is not readable).
        ``params`` gives a request's call parameters by custom id."""
        ...

    def cancel(self, provider_id: str) -> None:
        ...
