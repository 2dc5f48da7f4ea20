"""The backend protocol: messages in; text, usage and latency out.

A backend wraps one provider SDK or runtime. It does one attempt per :meth:`Backend.attempt`
call; retries, caching and logging live in :mod:`pld.llm.calls` so they are the same for all.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

Message = dict[str, str]  # {"role": "user"|"assistant", "content": str}


@dataclass(frozen=True)
class Request:
    """What one call asks, and the one place its options and their defaults are spelled out.

    ``choices`` asks for exactly one of a fixed set of answers; ``json_schema`` for a JSON reply
    matching that schema.
    """

    messages: list[Message]
    system: str | None = None
    max_tokens: int = 512
    temperature: float = 0.0
    choices: list[str] | None = None
    json_schema: dict[str, Any] | None = None


@dataclass(frozen=True)
class Reply:
    """One model answer with its usage and timing.

    ``label_logprobs`` holds, for a call with ``choices``, each choice's log-probability at the
    first answer token (see :mod:`pld.llm.label_scores`); None where the backend exposes none
    (Anthropic) or the call had no choices.
    """

    text: str
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    latency_s: float = 0.0
    model: str = ""
    label_logprobs: dict[str, float] | None = None


class LLMError(Exception):
    """A failed attempt. ``transient`` errors (429, 5xx, timeouts, connection drops) are retried.

    ``retry_after`` carries the server's ``retry-after`` hint in seconds when it sent one.
    ``status`` is the HTTP status when there was one.
    """

    def __init__(
        self,
        message: str,
        *,
        transient: bool = False,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.transient = transient
        self.retry_after = retry_after
        self.status = status


class RuntimeCrashed(LLMError):
    """The embedded model's process died (a native crash, or killed) while loading or answering.

    Not a failed example: no call on that runtime can be trusted to succeed, so stages stop
    with this one-line reason instead of marking item after item failed.
    """


class ConfigError(LLMError):
    """The model string or the environment is wrong (unknown provider, missing API key...)."""


class Backend(ABC):
    """What every backend offers. ``model`` is the full model string, e.g. ``anthropic/claude-x``.

    ``constrains_choices`` is True when the backend can force the answer into ``choices`` itself
    (grammar on the local model); otherwise :mod:`pld.llm.calls` validates and re-asks.
    ``scores_choices`` is True when a reply to a call with ``choices`` carries
    ``label_logprobs``.
    """

    model: str
    constrains_choices: bool
    scores_choices: bool

    def complete(self, messages: list[Message], **options: Any) -> Reply:
        """One attempt at answering ``messages``; ``options`` are the other fields of
        :class:`Request` (``system``, ``max_tokens``, ``temperature``, ``choices``,
        ``json_schema``), by keyword."""
        return self.attempt(Request(messages, **options))

    @abstractmethod
    def attempt(self, request: Request) -> Reply:
        """Make one attempt. Raise :class:`LLMError` on failure; never retry internally."""
