"""Token counts with the embedded model's own tokenizer (Qwen2.5), or an estimate without it."""

from __future__ import annotations

from functools import lru_cache
from typing import Any


@lru_cache(maxsize=4)
def _backend(name: str) -> Any:
    from pld.llm.local_backend import LocalBackend

    return LocalBackend(name, role="bench-tokens")


def count_tokens(text: str, local_name: str = "default") -> tuple[int, str]:
    """Tokens of ``text`` and how they were counted.

    The embedded model's own tokenizer (Qwen2.5) when its weights are available, else
    ``len(text) / 4`` — an estimate, said so in the second element.
    """
    try:
        return _backend(local_name).count_tokens(text), \
            f"qwen2.5 tokenizer (local/{local_name} GGUF)"
    except Exception:  # no runtime or no weights: estimate instead
        return round(len(text) / 4), "estimate: characters / 4"
