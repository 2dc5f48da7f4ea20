"""Rough list prices, for the cost estimate in the call log (USD per million tokens).

Prices change; these are estimates for budgeting, matched by model-name prefix. Unknown remote
models are estimated at 0 and flagged by ``known=False``; local models cost nothing.
"""

from __future__ import annotations

# (prefix of the provider's model name, input $/Mtok, output $/Mtok)
PRICES: list[tuple[str, float, float]] = [
    ("claude-opus-4-5", 5.0, 25.0),
    ("claude-opus-4-6", 5.0, 25.0),
    ("claude-opus-4", 15.0, 75.0),
    ("claude-opus-5", 5.0, 25.0),
    ("claude-sonnet-5", 3.0, 15.0),
    ("claude-haiku-5", 1.0, 5.0),
    ("claude-sonnet-4", 3.0, 15.0),
    ("claude-3-7-sonnet", 3.0, 15.0),
    ("claude-3-5-sonnet", 3.0, 15.0),
    ("claude-haiku-4", 1.0, 5.0),
    ("claude-3-5-haiku", 0.8, 4.0),
    ("claude-3-haiku", 0.25, 1.25),
    ("gpt-4.1-nano", 0.1, 0.4),
    ("gpt-4.1-mini", 0.4, 1.6),
    ("gpt-4.1", 2.0, 8.0),
    ("gpt-4o-mini", 0.15, 0.6),
    ("gpt-4o", 2.5, 10.0),
    ("gpt-5-nano", 0.05, 0.4),
    ("gpt-5-mini", 0.25, 2.0),
    ("gpt-5", 1.25, 10.0),
    ("o4-mini", 1.1, 4.4),
    ("o3", 2.0, 8.0),
]


def estimate_cost(
    model: str, input_tokens: int, output_tokens: int, cached_tokens: int = 0
) -> float:
    """Estimated USD for one call. Cached input tokens are billed at a tenth, as both vendors do."""
    provider, _, name = model.partition("/")
    if provider not in ("anthropic", "openai"):
        return 0.0
    for prefix, p_in, p_out in PRICES:
        if name.startswith(prefix):
            fresh = max(input_tokens - cached_tokens, 0)
            return (fresh * p_in + cached_tokens * p_in * 0.1 + output_tokens * p_out) / 1e6
    return 0.0
