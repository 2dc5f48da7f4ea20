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


PAID_PROVIDERS = ("anthropic", "openai")
# Both vendors' batch APIs bill half the list price, input and output.
BATCH_DISCOUNT = 0.5


def _price(model: str) -> tuple[float, float] | None:
    provider, _, name = model.partition("/")
    if provider not in PAID_PROVIDERS:
        return 0.0, 0.0  # local models and self-hosted servers: no per-token bill
    for prefix, p_in, p_out in PRICES:
        if name.startswith(prefix):
            return p_in, p_out
    return None


def is_priced(model: str) -> bool:
    """True when a cost can be estimated for ``model``: a listed paid model, or a free one
    (local, self-hosted). An unlisted paid model is estimated at 0 and is not priced."""
    return _price(model) is not None


def estimate_cost(
    model: str, input_tokens: int, output_tokens: int, cached_tokens: int = 0,
    *, batch: bool = False,
) -> float:
    """Estimated USD for one call. Cached input tokens are billed at a tenth, as both vendors
    do; ``batch`` calls at :data:`BATCH_DISCOUNT` of the price."""
    price = _price(model)
    if price is None:
        return 0.0
    p_in, p_out = price
    fresh = max(input_tokens - cached_tokens, 0)
    usd = (fresh * p_in + cached_tokens * p_in * 0.1 + output_tokens * p_out) / 1e6
    return usd * BATCH_DISCOUNT if batch else usd
