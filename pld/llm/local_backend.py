"""The embedded model: Qwen2.5-Coder GGUF weights run in-process by llama-cpp-python.

One ``llama_cpp.Llama`` per (model file, role) per process, created on first use and shared by
every :class:`LocalBackend` of that key. ``Llama`` is not thread-safe, so each instance sits
behind its own lock. Roles exist for the prompt cache: a ``Llama`` reuses the longest token
prefix it shares with its previous call, so the student's long system prompt stays evaluated
only if teacher calls do not run on the same instance in between. Weights are mmapped, so a
second instance costs little more than its KV cache. Nothing here ever calls ``reset()``.
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from pld.llm.base import ConfigError, LLMError, Message, Reply
from pld.llm.env import env_int
from pld.llm.json_reply import strip_fences
from pld.llm.model_files import get_model_file, model_path
from pld.workspace import now

DEFAULT_N_CTX = 8192
# Qwen adds "You are Qwen, created by Alibaba Cloud..." when no system message is sent.
NEUTRAL_SYSTEM = "You are a helpful assistant."

_OVERFLOW = re.compile(r"Requested tokens \((\d+)\) exceed context window of (\d+)")


def n_ctx() -> int:
    """Context window for new instances: ``$PLD_LOCAL_N_CTX``, default 8192."""
    return env_int("PLD_LOCAL_N_CTX", DEFAULT_N_CTX)


def n_threads() -> int:
    """CPU threads for new instances: ``$PLD_LOCAL_THREADS``, default all cores."""
    return env_int("PLD_LOCAL_THREADS", os.cpu_count() or 1)


@dataclass
class _Slot:
    """One shared ``Llama`` and what the status page shows about it."""

    name: str
    role: str
    path: Path | None = None
    llm: Any = None
    load_s: float = 0.0
    loaded_at: str = ""
    n_ctx: int = 0
    n_threads: int = 0
    calls: int = 0

    def __post_init__(self) -> None:
        self.lock = threading.Lock()


_slots: dict[tuple[str, str], _Slot] = {}
_slots_lock = threading.Lock()


def _slot(name: str, role: str) -> _Slot:
    # Keyed by the model file (the table's filename), not by backend object.
    key = (get_model_file(name).filename, role)
    with _slots_lock:
        slot = _slots.get(key)
        if slot is None:
            slot = _slots[key] = _Slot(name, role)
        return slot


def loaded_models() -> list[dict[str, Any]]:
    """The instances loaded in this process: model, role, file, load time, settings, calls."""
    with _slots_lock:
        slots = list(_slots.values())
    return [
        {
            "model": f"local/{s.name}", "role": s.role, "path": str(s.path),
            "load_s": s.load_s, "loaded_at": s.loaded_at, "n_ctx": s.n_ctx,
            "n_threads": s.n_threads, "calls": s.calls,
        }
        for s in slots
        if s.llm is not None
    ]


def _gbnf_literal(text: str) -> str:
    escaped = (
        text.replace("\\", "\\\\").replace('"', '\\"')
        .replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    )
    return f'"{escaped}"'


def choice_grammar_text(choices: tuple[str, ...]) -> str:
    """GBNF that accepts exactly one of ``choices``."""
    return "root ::= " + " | ".join(_gbnf_literal(c) for c in choices)


@lru_cache(maxsize=256)
def _choice_grammar(choices: tuple[str, ...]) -> Any:
    from llama_cpp import LlamaGrammar

    return LlamaGrammar.from_string(choice_grammar_text(choices), verbose=False)


def _common_prefix(a: Any, b: Any) -> int:
    n = min(len(a), len(b))
    if n == 0:
        return 0
    import numpy as np

    diff = np.nonzero(np.asarray(a[:n]) != np.asarray(b[:n]))[0]
    return int(diff[0]) if len(diff) else n


class LocalBackend:
    """Backend for ``local/<name>``; ``role`` picks the shared instance (and its prompt cache)."""

    constrains_choices = True

    def __init__(self, name: str, role: str = "default") -> None:
        get_model_file(name)  # fail early on an unknown name
        self.name = name
        self.role = role
        self.model = f"local/{name}"

    def llama(self) -> Any:
        """The shared ``llama_cpp.Llama`` of this model and role, loading it on first use."""
        slot = _slot(self.name, self.role)
        with slot.lock:
            return self._loaded(slot)

    def _loaded(self, slot: _Slot) -> Any:
        """Load ``slot`` if needed; the caller holds ``slot.lock``."""
        if slot.llm is not None:
            return slot.llm
        # The wheel's OpenMP threads spin while waiting by default; on a small, busy CPU a
        # spinning thread starves the one it waits for (a 16-token answer went from ~4 s to
        # 15-25 s). libgomp reads this once, when llama_cpp first loads it.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        try:
            from llama_cpp import Llama
        except ImportError as err:
            raise ConfigError(
                f"{self.model}: llama-cpp-python is not installed "
                f"(pip install llama-cpp-python==0.3.36): {err}"
            ) from err
        path = model_path(self.name)
        ctx, threads = n_ctx(), n_threads()
        t0 = time.perf_counter()
        try:
            llm = Llama(
                model_path=str(path), n_ctx=ctx, n_threads=threads, n_threads_batch=threads,
                verbose=False,
            )
        except Exception as err:
            raise LLMError(f"{self.model}: cannot load {path}: {err}") from err
        slot.load_s = time.perf_counter() - t0
        slot.loaded_at = now()
        slot.path, slot.n_ctx, slot.n_threads = path, ctx, threads
        slot.llm = llm
        return llm

    def complete(
        self,
        messages: list[Message],
        *,
        system: str | None = None,
        max_tokens: int = 512,
        temperature: float = 0.0,
        choices: list[str] | None = None,
        json_schema: dict[str, Any] | None = None,
    ) -> Reply:
        """One chat completion on the shared instance.

        ``choices`` constrains decoding to exactly one of the labels (a GBNF grammar);
        ``json_schema`` constrains it to JSON matching the schema. A JSON answer cut off by
        ``max_tokens`` is an error, since it cannot parse. All failures are permanent
        :class:`LLMError`: retrying the same prompt on the same weights gives the same result.
        """
        chat = [{"role": "system", "content": system or NEUTRAL_SYSTEM}, *messages]
        kwargs: dict[str, Any] = {"temperature": temperature, "max_tokens": max_tokens}
        if choices is not None:
            labels = tuple(choices)
            if not labels or any(not c for c in labels):
                raise LLMError(f"{self.model}: choices must be non-empty strings: {choices!r}")
            kwargs["grammar"] = _choice_grammar(labels)
            # Every token carries at least one byte, so this always fits the longest label;
            # the grammar ends generation right after the label anyway.
            kwargs["max_tokens"] = max(len(c.encode("utf-8")) for c in labels) + 1
        elif json_schema is not None:
            kwargs["response_format"] = {"type": "json_object", "schema": json_schema}

        slot = _slot(self.name, self.role)
        with slot.lock:
            llm = self._loaded(slot)
            before = getattr(llm, "_input_ids", None)
            before = before.copy() if before is not None else None
            t0 = time.perf_counter()
            try:
                resp = llm.create_chat_completion(messages=chat, **kwargs)
            except Exception as err:
                raise self._error(err) from err
            latency = time.perf_counter() - t0
            slot.calls += 1
            usage = resp.get("usage") or {}
            prompt_tokens = int(usage.get("prompt_tokens", 0))
            cached = self._cached_tokens(before, getattr(llm, "_input_ids", None), prompt_tokens)

        choice = resp["choices"][0]
        text = choice["message"].get("content") or ""
        if choices is not None:
            if text not in choices and text.strip() in choices:
                text = text.strip()
            if text not in choices:
                raise LLMError(f"{self.model}: constrained answer {text!r} is not one of {choices}")
        elif json_schema is not None:
            text = strip_fences(text)
            if choice.get("finish_reason") == "length":
                raise LLMError(
                    f"{self.model}: JSON answer cut off at max_tokens={max_tokens} "
                    f"({text[:80]!r}...)"
                )
        return Reply(
            text=text, input_tokens=prompt_tokens,
            output_tokens=int(usage.get("completion_tokens", 0)), cached_tokens=cached,
            latency_s=latency, model=self.model,
        )

    @staticmethod
    def _cached_tokens(before: Any, after: Any, prompt_tokens: int) -> int:
        """Prompt tokens whose KV entries were reused from the previous call.

        After a call the instance's token history starts with this call's prompt, so its common
        prefix with the history before the call is what llama-cpp-python kept. When the whole
        prompt matched, it still re-evaluates the last token to get fresh logits.
        """
        if before is None or after is None or prompt_tokens <= 0:
            return 0
        shared = _common_prefix(before, after[:prompt_tokens])
        return min(shared, prompt_tokens - 1)

    def _error(self, err: Exception) -> LLMError:
        m = _OVERFLOW.search(str(err))
        if m:
            return LLMError(
                f"{self.model}: prompt is {m.group(1)} tokens but the context window is "
                f"{m.group(2)} (raise PLD_LOCAL_N_CTX, up to "
                f"{get_model_file(self.name).context_length}, or shorten the input)"
            )
        return LLMError(f"{self.model}: llama.cpp failed: {type(err).__name__}: {err}")


