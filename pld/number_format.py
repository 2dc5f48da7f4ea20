"""How numbers are shown, in the app and the CLI alike: scores to 3 decimals, seconds to 1.

Rounding is half up, done once here on the decimal value, so a score reads the same in every
table: Python's ``f"{0.5625:.3f}"`` gives 0.562 (half to even) while the browser's table
formatting gives 0.563 for the same value. Tables get values already rounded by :func:`score`,
so whatever formats them next has nothing left to round.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal

SCORE_PLACES = 3
SECONDS_PLACES = 1


def _half_up(x: float, places: int) -> float:
    if not math.isfinite(x):
        return float(x)
    # repr() is the shortest decimal that round-trips: 0.5625 stays 0.5625, not 0.56249999...
    return float(Decimal(repr(float(x))).quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP))


def score(x: float | None) -> float | None:
    """A score (F1, accuracy, a difference of those, a bias) rounded half up to 3 decimals."""
    return None if x is None else _half_up(x, SCORE_PLACES)


def seconds(x: float | None) -> float | None:
    """A duration in seconds rounded half up to 1 decimal."""
    return None if x is None else _half_up(x, SECONDS_PLACES)


def score_text(x: float | None) -> str:
    """``0.563``; ``–`` for no value."""
    return "–" if x is None or not math.isfinite(x) else f"{score(x):.3f}"


def delta_text(x: float | None) -> str:
    """A difference of scores or a bias, signed: ``+0.030``; ``–`` for no value."""
    return "–" if x is None or not math.isfinite(x) else f"{score(x):+.3f}"


def seconds_text(x: float | None) -> str:
    """``9.2 s``; ``–`` for no value."""
    return "–" if x is None else f"{seconds(x):.1f} s"
