"""The one cache and call log that every LLM call goes through.

:func:`complete` looks the call up by its cache key (sha256 of model, system prompt, messages and
parameters) and serves a previous successful answer from the workspace without touching the
network. Otherwise it calls the backend, retrying transient failures (429, 5xx, timeouts) with
exponential backoff and jitter, honouring ``retry-after``. Every attempt outcome — cache hit,
success or error — is one row in ``llm_calls``. API keys never pass through here.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from dataclasses import dataclass, replace
from typing import Any

from pld.llm import budget
from pld.llm.base import Backend, ConfigError, LLMError, Message, Reply, Request, RuntimeCrashed
from pld.llm.env import env_float, env_int
from pld.llm.pricing import estimate_cost
from pld.llm.registry import get_backend
from pld.workspace import Workspace, dumps, loads, now, where_equal


class CallFailed(Exception):
    """The call failed for good (retries exhausted or a permanent error). Its rows are logged."""

    def __init__(self, message: str, call_id: int) -> None:
        super().__init__(message)
        self.call_id = call_id


@dataclass(frozen=True)
class CallResult:
    """The answer of one logical call, and the ``llm_calls`` row that holds it."""

    reply: Reply
    call_id: int
    cached: bool

    @property
    def text(self) -> str:
        return self.reply.text


def cache_key(
    model: str, system: str | None, messages: list[Message], params: dict[str, Any]
) -> str:
    """sha256 over everything that determines the answer."""
    blob = json.dumps(
        {"model": model, "system": system, "messages": messages, "params": params},
        sort_keys=True, ensure_ascii=False,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def call_params(*, max_tokens: int, temperature: float = 0.0,
                choices: list[str] | None = None,
                json_schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """The parameters of a call as its cache key and log row hold them."""
    params: dict[str, Any] = {"max_tokens": max_tokens, "temperature": temperature}
    if choices is not None:
        params["choices"] = list(choices)
        # Answers to choices carry label scores now; a cached answer from before would not.
        params["label_scores"] = "first-token"
    if json_schema is not None:
        params["json_schema"] = json_schema
    return params


def answered_by(ws: Workspace, key: str) -> dict[str, Any] | None:
    """The call-log row whose answer a cache hit with this key is served: its ``id``,
    ``created_at`` and ``batch_id`` (set when a provider batch answered it)."""
    hit = _cached(ws, key)
    return None if hit is None else {k: hit[k] for k in ("id", "created_at", "batch_id")}


def is_cached(ws: Workspace, key: str) -> bool:
    """True when a call with this cache key would be answered from the cache (free)."""
    return _cached(ws, key) is not None


def store_text(ws: Workspace, text: str | None) -> str | None:
    """Keep ``text`` once in ``texts`` (system prompts repeat across thousands of calls);
    return its sha256."""
    if text is None:
        return None
    sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    with ws.write() as db:
        db["texts"].insert({"sha256": sha, "text": text}, ignore=True)
    return sha


def _log(ws: Workspace, **row: Any) -> int:
    row.setdefault("created_at", now())
    with ws.write() as db:
        return int(db["llm_calls"].insert(row).last_pk)


# The final answer of a re-asked call that still named no choice is logged with this error
# prefix and *is* served from the cache: at temperature 0 asking again gives the same, and a
# stored evaluation must be reproducible item for item.
FINAL_OFF_CHOICE = "answer not in choices after re-ask"


def _cached(ws: Workspace, key: str) -> dict[str, Any] | None:
    rows = ws.query(
        "SELECT id, response, model, input_tokens, output_tokens, cached_tokens, label_logprobs, "
        "batch_id, created_at FROM llm_calls "
        "WHERE cache_key = ? AND cache_hit = 0 AND response IS NOT NULL "
        "AND (error IS NULL OR error LIKE ?) ORDER BY id LIMIT 1",
        [key, FINAL_OFF_CHOICE + "%"],
    )
    return rows[0] if rows else None


_QUOTES = "\"'`"


def _unwrap(text: str) -> str:
    """``text`` without surrounding whitespace, matching quotes/backticks and one final period."""
    s = text.strip()
    period = s.endswith(".")
    if period:  # "billing". or billing.
        s = s[:-1].rstrip()
    while len(s) >= 2 and s[0] == s[-1] and s[0] in _QUOTES:
        s = s[1:-1].strip()
    if not period and s.endswith("."):  # "billing."
        s = s[:-1].rstrip()
    return s


def match_choice(text: str, choices: list[str]) -> str | None:
    """The choice a student's answer is, parsed strictly; None when it is not exactly one.

    The answer must be a choice, compared case-insensitively once surrounding whitespace,
    quotes or backticks and one trailing period are removed. Anything else ("The answer is
    billing", "billing or shipping") is unparseable: counted wrong, never guessed at.
    """
    for candidate in (text.strip(), _unwrap(text)):
        if candidate in choices:
            return candidate
        folded = [c for c in choices if c.casefold() == candidate.casefold()]
        if len(folded) == 1:
            return folded[0]
    return None


@dataclass(frozen=True)
class _RetryPolicy:
    """How often and how patiently to retry, from ``$PLD_MAX_ATTEMPTS`` and ``$PLD_RETRY_*``."""

    attempts: int
    base: float
    cap: float

    @classmethod
    def from_env(cls, max_attempts: int | None) -> _RetryPolicy:
        return cls(
            attempts=max_attempts or env_int("PLD_MAX_ATTEMPTS", 5),
            base=env_float("PLD_RETRY_BASE_S", 1.0),
            cap=env_float("PLD_RETRY_MAX_S", 60.0),
        )


def _sleep_for(attempt: int, err: LLMError, policy: _RetryPolicy) -> float:
    base, cap = policy.base, policy.cap
    if err.retry_after is not None:
        return min(max(err.retry_after, 0.0), cap)
    # Full jitter: spreads concurrent workers that hit the same rate limit.
    return random.uniform(0, min(cap, base * 2 ** (attempt - 1)))


def retry_delay(attempt: int, err: LLMError) -> float | None:
    """Seconds to wait before attempt ``attempt + 1`` after ``err``; None when it should not
    be retried (a permanent error, or ``$PLD_MAX_ATTEMPTS`` used up). For requests that are
    not single calls (batch creates and polls)."""
    policy = _RetryPolicy.from_env(None)
    if not err.transient or attempt >= policy.attempts:
        return None
    return _sleep_for(attempt, err, policy)


def complete(
    ws: Workspace,
    model: str,
    messages: list[Message],
    *,
    stage: str = "ask",
    run_id: int | None = None,
    role: str = "default",
    use_cache: bool = True,
    max_attempts: int | None = None,
    backend: Backend | None = None,
    **options: Any,
) -> CallResult:
    """Answer ``messages`` with ``model``, through the cache and the call log.

    ``options`` are the other fields of :class:`~pld.llm.base.Request` (``system``,
    ``max_tokens``, ``temperature``, ``choices``, ``json_schema``), by keyword.

    Raises :class:`CallFailed` when every attempt failed; the attempts are in ``llm_calls``.
    Raises :class:`ConfigError` (after logging a row) when the model cannot be used as set up
    (missing API key or model files, a bad ``$PLD_*`` number): that is no per-call failure.
    ``choices`` asks for one of a fixed set of answers: the local backend constrains decoding,
    remote backends are validated here and re-asked once when the answer names no choice.
    """
    request = Request(messages, **options)
    system, max_tokens, choices = request.system, request.max_tokens, request.choices
    params = call_params(max_tokens=max_tokens, temperature=request.temperature,
                         choices=choices, json_schema=request.json_schema)
    key = cache_key(model, system, messages, params)
    base_row: dict[str, Any] = {
        "model": model, "stage": stage, "run_id": run_id, "cache_key": key,
        "system_sha256": store_text(ws, system), "messages": dumps(messages),
        "params": dumps(params),
    }

    if use_cache:
        t0 = time.perf_counter()
        hit = _cached(ws, key)
        if hit is not None:
            latency = time.perf_counter() - t0
            call_id = _log(
                ws, **base_row, response=hit["response"], input_tokens=0, output_tokens=0,
                cached_tokens=0, latency_s=latency, cost_usd=0.0, cache_hit=1, attempt=0,
                error=None, label_logprobs=hit["label_logprobs"],
            )
            reply = Reply(hit["response"], 0, 0, 0, latency, hit["model"],
                          label_logprobs=loads(hit["label_logprobs"]))
            return CallResult(reply, call_id, cached=True)

    t0 = time.perf_counter()
    try:
        policy = _RetryPolicy.from_env(max_attempts)
        if backend is None:
            backend = get_backend(model, role)
    except ConfigError as err:
        # No attempt can succeed until the user fixes the setup; the row says why.
        _log(ws, **base_row, latency_s=time.perf_counter() - t0, cache_hit=0, attempt=1,
             error=f"{type(err).__name__}: {err}")
        raise
    attempts = policy.attempts
    asked = replace(request, messages=list(messages))
    reasked = False
    attempt = 0
    spend = budget.active()
    while True:
        attempt += 1
        if spend is not None:
            spend.admit(model, _expected_cost(ws, model, stage, system, asked.messages,
                                              max_tokens))
        t0 = time.perf_counter()
        try:
            reply = backend.attempt(asked)
        except (ConfigError, RuntimeCrashed) as err:
            # A setup problem found on first use (model files, the runtime missing) or a dead
            # model process: no item can succeed until someone acts, so it is no failed example
            # and propagates after its row.
            _log(ws, **{**base_row, "messages": dumps(asked.messages)},
                 latency_s=time.perf_counter() - t0, cache_hit=0, attempt=attempt,
                 error=f"{type(err).__name__}: {err}")
            raise
        except LLMError as err:
            call_id = _log(
                ws, **{**base_row, "messages": dumps(asked.messages)},
                latency_s=time.perf_counter() - t0, cache_hit=0,
                attempt=attempt, error=f"{type(err).__name__}: {err}",
            )
            if err.transient and attempt < attempts:
                time.sleep(_sleep_for(attempt, err, policy))
                continue
            raise CallFailed(f"{model}: {err}", call_id) from err
        except Exception as err:  # a bug or an SDK surprise must still leave a row
            call_id = _log(
                ws, **base_row, latency_s=time.perf_counter() - t0, cache_hit=0,
                attempt=attempt, error=f"{type(err).__name__}: {err}",
            )
            raise CallFailed(f"{model}: {type(err).__name__}: {err}", call_id) from err

        error = None
        if choices and not backend.constrains_choices and match_choice(reply.text, choices) is None:
            final = reasked or attempt >= attempts
            error = (f"{FINAL_OFF_CHOICE if final else 'answer not in choices'}: "
                     f"{reply.text[:200]!r}")
        row = dict(
            base_row, messages=dumps(asked.messages), response=reply.text,
            input_tokens=reply.input_tokens, output_tokens=reply.output_tokens,
            cached_tokens=reply.cached_tokens,
            latency_s=reply.latency_s, cache_hit=0, attempt=attempt, error=error,
            cost_usd=estimate_cost(model, reply.input_tokens, reply.output_tokens,
                                   reply.cached_tokens),
            label_logprobs=(dumps(reply.label_logprobs) if reply.label_logprobs is not None
                            else None),
        )
        call_id = _log(ws, **row)
        if spend is not None:
            spend.charge(row["cost_usd"])
        if error and not reasked and attempt < attempts:
            # Re-ask once with the allowed answers spelled out; the first answer stays logged.
            reasked = True
            asked = replace(request, messages=[
                *messages, {"role": "assistant", "content": reply.text},
                {"role": "user", "content": "Answer with exactly one of: "
                 + ", ".join(choices or []) + ". Reply with the answer only."}])
            continue
        return CallResult(reply, call_id, cached=False)


def measured_output_tokens(ws: Workspace, model: str, stage: str) -> float | None:
    """The mean reply length of ``model``'s answered, uncached ``stage`` calls in the log."""
    row = ws.query(
        "SELECT avg(output_tokens) AS n FROM llm_calls WHERE model = ? AND stage = ? "
        "AND cache_hit = 0 AND error IS NULL AND output_tokens > 0", [model, stage])[0]
    return row["n"]


def _expected_cost(ws: Workspace, model: str, stage: str, system: str | None,
                   messages: list[Message], max_tokens: int) -> float:
    """What a call about to be made will cost, for the budget: its text's tokens, and the
    measured reply length of its stage (``max_tokens`` until one is measured)."""
    out = measured_output_tokens(ws, model, stage)
    return estimate_cost(model, budget.text_tokens(system, list(messages)),
                         round(out) if out is not None else max_tokens)


def summarize_calls(ws: Workspace) -> dict[str, Any]:
    """Totals of the call log: calls, cache hits, uncached calls (``uncached``, errors included;
    ``uncached_ok`` without them), errors, tokens, latency and cost, overall and per (model,
    stage), and the spend of each run (``by_run``, newest first: its task, kind and status)."""
    cols = (
        "count(*) AS calls, coalesce(sum(cache_hit), 0) AS cache_hits, "
        "coalesce(sum(CASE WHEN cache_hit = 0 AND error IS NULL THEN 1 ELSE 0 END), 0) "
        "AS uncached_ok, "
        # Every call that was not served from the cache, errors included: what "a rerun makes
        # no uncached call" is checked against.
        "coalesce(sum(CASE WHEN cache_hit = 0 THEN 1 ELSE 0 END), 0) AS uncached, "
        "coalesce(sum(CASE WHEN error IS NOT NULL THEN 1 ELSE 0 END), 0) AS errors, "
        "coalesce(sum(input_tokens), 0) AS input_tokens, "
        "coalesce(sum(output_tokens), 0) AS output_tokens, "
        "coalesce(sum(cached_tokens), 0) AS cached_tokens, "
        "round(coalesce(sum(latency_s), 0), 3) AS latency_s, "
        "round(coalesce(sum(cost_usd), 0), 6) AS cost_usd"
    )
    total = ws.query(f"SELECT {cols} FROM llm_calls")[0]
    groups = ws.query(
        f"SELECT model, stage, {cols} FROM llm_calls GROUP BY model, stage ORDER BY model, stage"
    )
    runs = ws.query(
        "SELECT c.run_id, r.task, r.kind, r.status, r.started_at, count(*) AS calls, "
        "coalesce(sum(c.cache_hit), 0) AS cache_hits, "
        "coalesce(sum(c.input_tokens), 0) AS input_tokens, "
        "coalesce(sum(c.output_tokens), 0) AS output_tokens, "
        "round(coalesce(sum(c.cost_usd), 0), 6) AS cost_usd "
        "FROM llm_calls c LEFT JOIN runs r ON r.id = c.run_id "
        "WHERE c.run_id IS NOT NULL GROUP BY c.run_id ORDER BY c.run_id DESC")
    return {"total": total, "by_model_stage": groups, "by_run": runs}


def _call_filter(model: str | None, stage: str | None, errors_only: bool,
                 cache_hit: bool | None) -> tuple[str, list[Any]]:
    """The WHERE clause (with its arguments) that list_calls and count_calls share."""
    return where_equal({"c.model": model or None, "c.stage": stage or None,
                        "c.cache_hit": None if cache_hit is None else int(cache_hit)},
                       ["c.error IS NOT NULL"] if errors_only else [])


def list_calls(
    ws: Workspace,
    *,
    model: str | None = None,
    stage: str | None = None,
    errors_only: bool = False,
    cache_hit: bool | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Call-log rows, newest first, with the system prompt text joined in.

    ``cache_hit``: True = only calls answered from the cache, False = only real model calls.
    """
    where, args = _call_filter(model, stage, errors_only, cache_hit)
    sql = ("SELECT c.*, t.text AS system FROM llm_calls c "
           "LEFT JOIN texts t ON t.sha256 = c.system_sha256" + where
           + " ORDER BY c.id DESC LIMIT ? OFFSET ?")
    return ws.query(sql, [*args, limit, offset])


def count_calls(ws: Workspace, *, model: str | None = None, stage: str | None = None,
                errors_only: bool = False, cache_hit: bool | None = None) -> int:
    """How many call-log rows :func:`list_calls` pages through with the same filters."""
    where, args = _call_filter(model, stage, errors_only, cache_hit)
    return ws.query("SELECT count(*) AS n FROM llm_calls c" + where, args)[0]["n"]
