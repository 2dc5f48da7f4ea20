"""The embedded model: Qwen2.5-Coder GGUF weights on llama.cpp's server, in a process of its own.

:mod:`pld.llm.local_process` runs one model process per model file and settings, shared by every
:class:`LocalBackend` of this process. The server keeps ``$PLD_LOCAL_PARALLEL`` sequences (slots)
and decodes them together, so callers may have that many calls in flight. A slot keeps the
tokens of its last prompt and a new request goes to the slot sharing the longest prefix with it,
so the student's long system prompt is evaluated once, not per example; teacher calls sent in
between land in other slots.
"""

from __future__ import annotations

import os
import time
from typing import Any

from pld.llm.base import Backend, ConfigError, LLMError, Reply, Request
from pld.llm.env import env_float, env_int
from pld.llm.json_reply import strip_fences
from pld.llm.label_scores import TOP_LOGPROBS_LOCAL, scores_from_top
from pld.llm.local_process import (
    ModelProcess,
    ProcessSettings,
    model_process,
    running_processes,
)
from pld.llm.model_files import get_model_file, model_path

DEFAULT_N_CTX = 8192
DEFAULT_PARALLEL = 4
# Prompt states of slots that were reused for something else, kept in RAM to be restored.
DEFAULT_CACHE_RAM_MIB = 2048
# Qwen adds "You are Qwen, created by Alibaba Cloud..." when no system message is sent.
NEUTRAL_SYSTEM = "You are a helpful assistant."


def n_ctx() -> int:
    """Context window of each sequence: ``$PLD_LOCAL_N_CTX``, default 8192."""
    return env_int("PLD_LOCAL_N_CTX", DEFAULT_N_CTX)


def n_threads() -> int:
    """CPU threads of the model process: ``$PLD_LOCAL_THREADS``, default all cores."""
    return env_int("PLD_LOCAL_THREADS", os.cpu_count() or 1)


def n_parallel() -> int:
    """Sequences the model process decodes together: ``$PLD_LOCAL_PARALLEL``, default 4."""
    return env_int("PLD_LOCAL_PARALLEL", DEFAULT_PARALLEL)


def settings_for(name: str) -> ProcessSettings:
    """The model process settings for ``local/<name>`` from the environment (joins the weights
    on first use, see :func:`~pld.llm.model_files.model_path`)."""
    return ProcessSettings(
        name=name, model_path=model_path(name), n_ctx=n_ctx(), parallel=n_parallel(),
        threads=n_threads(),
        cache_ram_mib=env_int("PLD_LOCAL_CACHE_RAM_MIB", DEFAULT_CACHE_RAM_MIB, minimum=0),
    )


def loaded_models() -> list[dict[str, Any]]:
    """The model processes this process runs: model, pid, file, load time, settings, calls."""
    return [
        {
            "model": mp.model, "pid": mp.proc.pid if mp.proc else None,
            "path": str(mp.settings.model_path), "load_s": round(mp.load_s, 2),
            "loaded_at": mp.loaded_at, "n_ctx": mp.settings.n_ctx,
            "parallel": mp.settings.parallel, "n_threads": mp.settings.threads,
            "calls": mp.calls,
        }
        for mp in running_processes()
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


def _label_logprobs(choice: dict[str, Any], choices: list[str] | None) -> dict[str, float] | None:
    """Per-label scores from the first answer token's ``top_logprobs``.

    llama.cpp reports the model's own distribution there, before the grammar restricts it, so
    the scores are what the student leaned to, not what the grammar let through.
    """
    if not choices:
        return None
    content = (choice.get("logprobs") or {}).get("content") or []
    if not content:
        return None
    first = content[0]
    top = [(t.get("token", ""), t.get("logprob")) for t in first.get("top_logprobs") or []]
    top.append((first.get("token", ""), first.get("logprob")))
    return scores_from_top([(t, lp) for t, lp in top if lp is not None], choices)


class LocalBackend(Backend):
    """Backend for ``local/<name>``: calls into this process's model process for that model.

    ``role`` is kept for the registry (teacher and student backends stay apart), but all roles
    share one model process: its slots keep each prompt prefix cached. ``reuse_prefix=False``
    makes the server evaluate every prompt from scratch (the benchmark's no-cache arm).
    """

    constrains_choices = True
    scores_choices = True

    def __init__(self, name: str, role: str = "default", *, reuse_prefix: bool = True) -> None:
        get_model_file(name)  # fail early on an unknown name
        self.name = name
        self.role = role
        self.model = f"local/{name}"
        self.reuse_prefix = reuse_prefix

    def process(self) -> ModelProcess:
        """The model process serving this backend, started (weights loaded) on first use."""
        mp = model_process(settings_for(self.name))
        mp.ensure_started()
        return mp

    def attempt(self, request: Request) -> Reply:
        """One chat completion on the model process; safe to call from many threads at once.

        ``choices`` constrains decoding to exactly one of the labels (a GBNF grammar);
        ``json_schema`` constrains it to JSON matching the schema. A JSON answer cut off by
        ``max_tokens`` is an error, since it cannot parse. Failures are permanent
        :class:`LLMError`: the same prompt on the same weights gives the same result.
        :class:`~pld.llm.base.RuntimeCrashed` means the model process died.
        """
        choices, json_schema, max_tokens = request.choices, request.json_schema, request.max_tokens
        body: dict[str, Any] = {
            "messages": [{"role": "system", "content": request.system or NEUTRAL_SYSTEM},
                         *request.messages],
            "temperature": request.temperature, "max_tokens": max_tokens, "seed": 0,
            "cache_prompt": self.reuse_prefix,
        }
        if choices is not None:
            labels = tuple(choices)
            if not labels or any(not c for c in labels):
                raise LLMError(f"{self.model}: choices must be non-empty strings: {choices!r}")
            body["grammar"] = choice_grammar_text(labels)
            # The first token's alternatives give every label a score (calibration).
            body["logprobs"] = True
            body["top_logprobs"] = TOP_LOGPROBS_LOCAL
            # Every token carries at least one byte, so this always fits the longest label;
            # the grammar ends generation right after the label anyway.
            body["max_tokens"] = max(len(c.encode("utf-8")) for c in labels) + 1
        elif json_schema is not None:
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "reply", "schema": json_schema}}

        timeout = env_float("PLD_LOCAL_TIMEOUT", 1800.0, minimum=1.0)
        mp = self.process()
        # Wall time as the caller sees it, waiting for a free slot included, like remote calls.
        t0 = time.perf_counter()
        status, data = mp.request("/v1/chat/completions", body, timeout=timeout)
        latency = time.perf_counter() - t0
        if status != 200:
            raise self._error(status, data)
        choice = data["choices"][0]
        text = (choice.get("message") or {}).get("content") or ""
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
        usage, timings = data.get("usage") or {}, data.get("timings") or {}
        return Reply(
            text=text, input_tokens=int(usage.get("prompt_tokens", 0)),
            output_tokens=int(usage.get("completion_tokens", 0)),
            cached_tokens=int(timings.get("cache_n", 0)),
            latency_s=latency, model=self.model,
            label_logprobs=_label_logprobs(choice, choices),
        )

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` under this model's tokenizer (no special tokens added)."""
        status, data = self.process().request(
            "/tokenize", {"content": text, "add_special": False}, timeout=60)
        if status != 200:
            raise self._error(status, data)
        return len(data["tokens"])

    def first_token_ids(self, labels: list[str]) -> dict[str, int]:
        """Each label's first token id under this model's tokenizer: the keys of a
        ``logit_bias`` that applies a calibration in production."""
        out = {}
        for label in labels:
            status, data = self.process().request(
                "/tokenize", {"content": label, "add_special": False}, timeout=60)
            if status != 200:
                raise self._error(status, data)
            out[label] = int(data["tokens"][0])
        return out

    def _error(self, status: int, data: Any) -> LLMError:
        err = data.get("error") if isinstance(data, dict) else None
        err = err if isinstance(err, dict) else {"message": str(data)[:300]}
        if err.get("type") == "exceed_context_size_error":
            return LLMError(
                f"{self.model}: prompt is {err.get('n_prompt_tokens')} tokens but the context "
                f"window is {err.get('n_ctx')} (raise PLD_LOCAL_N_CTX, up to "
                f"{get_model_file(self.name).context_length}, or shorten the input)"
            )
        if status == 401:
            # Only our own key is ever sent; a refusal means another program holds the port.
            return ConfigError(f"{self.model}: the model process refused our key (HTTP 401)")
        return LLMError(f"{self.model}: llama.cpp answered HTTP {status}: {err.get('message')}")
