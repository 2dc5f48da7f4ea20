"""How many model calls a stage keeps in flight: the number asked for, checked, else the
model's default (1 for a local model, more for a remote one)."""

from __future__ import annotations

from pld.errors import BadInput
from pld.llm.base import ConfigError
from pld.llm.registry import default_concurrency, parse_model


def concurrency_for(model: str, concurrency: int | None) -> int:
    """``concurrency``, else ``model``'s default; :class:`BadInput` for a model string that does
    not parse or a concurrency below 1."""
    try:
        if concurrency is None:
            concurrency = default_concurrency(model)
        else:
            parse_model(model)
    except ConfigError as err:
        raise BadInput(str(err)) from err
    if concurrency < 1:
        raise BadInput(f"concurrency must be at least 1, got {concurrency}")
    return concurrency
