"""The one check of a stage's model string and concurrency."""

from __future__ import annotations

import pytest

from pld.errors import BadInput
from pld.pipeline.concurrency import concurrency_for


def test_default_is_the_models_own() -> None:
    assert concurrency_for("local/default", None) == 1
    assert concurrency_for("openai/gpt-x", None) == 8
    assert concurrency_for("openai/gpt-x", 3) == 3


@pytest.mark.parametrize(("model", "concurrency", "message"), [
    ("nope", None, "expected PROVIDER/NAME"),
    ("nope", 2, "expected PROVIDER/NAME"),  # checked even when the concurrency is given
    ("openai/gpt-x", 0, "concurrency must be at least 1, got 0"),
])
def test_bad_model_or_concurrency_is_bad_input(model: str, concurrency: int | None,
                                               message: str) -> None:
    with pytest.raises(BadInput, match=message):
        concurrency_for(model, concurrency)
