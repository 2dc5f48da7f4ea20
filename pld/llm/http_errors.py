"""HTTP error handling shared by the provider backends.

Both provider SDKs are generated from the same template and fail the same way: an HTTP status,
headers with an optional retry hint, and a JSON body whose ``error.message`` is the human part.
These helpers turn that into :class:`~pld.llm.base.LLMError` without ever letting a key through.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from pld.llm.base import LLMError

# Statuses worth retrying: the same set the SDKs retry themselves (408 request timeout,
# 409 lock conflict, 429 rate limit, 5xx including Anthropic's 529 "overloaded").
TRANSIENT_STATUSES = frozenset({408, 409, 429})


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """The server's retry hint in seconds, from ``retry-after-ms`` or ``retry-after``.

    ``retry-after`` may be a number of seconds or an HTTP date; a date in the past gives 0.
    Returns None when there is no usable hint.
    """
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(float(ms) / 1000.0, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def redact(text: str, secret: str | None) -> str:
    """``text`` with every occurrence of ``secret`` replaced, so keys never reach logs."""
    if secret and len(secret) >= 4:
        return text.replace(secret, "[redacted]")
    return text


def server_message(body: object) -> str:
    """The human part of an error body (OpenAI and Anthropic both use ``error.message``)."""
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping) and isinstance(inner.get("message"), str):
            return str(inner["message"])
        if isinstance(body.get("message"), str):
            return str(body["message"])
    if body is None:
        return ""
    return str(body)[:300]


def status_error(
    status: int, headers: Mapping[str, str] | None, body: object, secret: str | None
) -> LLMError:
    """An :class:`LLMError` for an HTTP error status; 408/409/429/5xx are transient."""
    msg = server_message(body)
    text = f"HTTP {status}" + (f": {msg}" if msg else "")
    return LLMError(
        redact(text, secret),
        transient=status in TRANSIENT_STATUSES or status >= 500,
        retry_after=retry_after_seconds(headers),
        status=status,
    )
