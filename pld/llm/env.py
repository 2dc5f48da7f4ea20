"""Numbers from the environment (timeouts, retries, threads), parsed in one place.

A typo such as ``PLD_LLM_TIMEOUT=abc`` is a configuration error naming the variable, so the CLI
answers exit 2 with a one-line reason instead of a traceback from deep inside a call.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import TypeVar

from pld.llm.base import ConfigError

Number = TypeVar("Number", int, float)


def env_float(var: str, default: float, *, minimum: float = 0.0) -> float:
    """``$var`` as a finite number of at least ``minimum``; ``default`` when unset or empty.

    Raises :class:`ConfigError` naming the variable when the value is not such a number.
    """
    return _env_number(var, default, float, minimum, f"a number of at least {minimum:g}")


def env_int(var: str, default: int, *, minimum: int = 1) -> int:
    """``$var`` as a whole number of at least ``minimum``; ``default`` when unset or empty.

    Raises :class:`ConfigError` naming the variable when the value is not such a number.
    """
    return _env_number(var, default, int, minimum, f"a whole number of at least {minimum}")


def _env_number(var: str, default: Number, parse: Callable[[str], Number], minimum: Number,
                expected: str) -> Number:
    raw = os.environ.get(var, "").strip()
    if not raw:
        return default
    try:
        value = parse(raw)
    except ValueError:
        raise ConfigError(f"{var}={raw!r}: expected {expected}") from None
    # math.isfinite would overflow on a whole number too long for a float.
    if (isinstance(value, float) and not math.isfinite(value)) or value < minimum:
        raise ConfigError(f"{var}={raw!r}: expected {expected}")
    return value
