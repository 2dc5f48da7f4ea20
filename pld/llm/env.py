"""Numbers from the environment (timeouts, retries, threads), parsed in one place.

A typo such as ``PLD_LLM_TIMEOUT=abc`` is a configuration error naming the variable, so the CLI
answers exit 2 with a one-line reason instead of a traceback from deep inside a call.
"""

from __future__ import annotations

import math
import os

from pld.llm.base import ConfigError


def env_float(var: str, default: float, *, minimum: float = 0.0) -> float:
    """``$var`` as a finite number of at least ``minimum``; ``default`` when unset or empty.

    Raises :class:`ConfigError` naming the variable when the value is not such a number.
    """
    raw = os.environ.get(var, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < minimum:
        raise ConfigError(f"{var}={raw!r}: expected a number of at least {minimum:g}")
    return value


def env_int(var: str, default: int, *, minimum: int = 1) -> int:
    """``$var`` as a whole number of at least ``minimum``; ``default`` when unset or empty.

    Raises :class:`ConfigError` naming the variable when the value is not such a number.
    """
    raw = os.environ.get(var, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{var}={raw!r}: expected a whole number of at least {minimum}") from None
    if value < minimum:
        raise ConfigError(f"{var}={raw!r}: expected a whole number of at least {minimum}")
    return value
