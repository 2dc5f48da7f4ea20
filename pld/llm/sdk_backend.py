"""What the two provider-SDK backends share: the SDK client, and SDK errors as LLM errors.

Both official SDKs (``anthropic`` and ``openai``) are generated from the same template, so their
exception classes carry the same names and fail the same way; :class:`SDKBackend` maps them
once, never letting the key through.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, ClassVar

from pld.llm.base import Backend, LLMError
from pld.llm.http_errors import redact, status_error


class SDKBackend(Backend):
    """A backend that sends one HTTP request per attempt through a provider's official SDK.

    ``sdk`` is the SDK's module, ``secret`` the API key (kept only to redact it from errors),
    ``client`` the SDK client, built with the SDK's own retries off.
    """

    sdk: ClassVar[ModuleType]

    def __init__(self, model: str, name: str, *, timeout: float, secret: str,
                 client: Any) -> None:
        self.model = model
        self.name = name
        self.timeout = timeout
        self._secret = secret
        self._client = client

    @property
    def client(self) -> Any:
        """The SDK client (for the batch API, :mod:`pld.llm.batch`)."""
        return self._client

    def map_error(self, err: Exception) -> LLMError:
        """An SDK error as an :class:`LLMError`, the key redacted: a timeout or a dropped
        connection is transient, an HTTP status is judged by :func:`status_error`."""
        if isinstance(err, self.sdk.APITimeoutError):
            return LLMError(f"request timed out after {self.timeout:g} s", transient=True)
        if isinstance(err, self.sdk.APIConnectionError):
            return LLMError(redact(f"connection error: {err}", self._secret), transient=True)
        if isinstance(err, self.sdk.APIStatusError):
            return status_error(err.status_code, err.response.headers, err.body, self._secret)
        return LLMError(redact(f"{type(err).__name__}: {err}", self._secret))
