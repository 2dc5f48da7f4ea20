"""Batch mode (``--batch``): a stage's uncached calls go through the provider's batch API.

The Anthropic Message Batches API and the OpenAI Batch API (and ``openai-compatible`` servers
that implement ``/v1/files`` + ``/v1/batches``) take thousands of requests at once and bill
them at half the list price, answering within 24 hours. A stage that runs under :func:`mode`
hands the calls it is about to make to :func:`prefetch` first: calls already answered in the
cache are skipped, the rest are submitted in batches, polled until they end, and their answers
land in ``llm_calls`` as ordinary uncached rows (tokens, cost at the batch price, and the
``batch_id`` they came from). Then the stage runs as it always does and each of its calls is
answered from the cache, so what a stage writes is the same with or without ``--batch``.

Nothing is submitted twice. A batch's requests are written to ``batches`` and
``batch_requests`` *before* it is created at the provider, and its provider id right after.
A process killed at any point resumes, when the same command is run again, by polling the
batches it left open (a request pending in an open batch is never put in a new one). Killed in
the instant between the provider's create and storing its id, the batch is found again at the
provider: by the ``pld_batch`` tag in its metadata (OpenAI), or as the one batch of that size
created then (Anthropic, whose batches carry no metadata; its results are checked against the
request ids before anything lands).

A request that errored, expired or was canceled inside a batch, or whose result line could not
be read, is logged as an error row with its batch id and is **retried synchronously** by the
stage right after (it is not in the cache). Calls that depend on replies not made yet (a
re-ask after an unusable reply, the merge of partial heuristics of a large cluster, the
conflict loop's teacher) are synchronous too.

Ctrl-C, or cancelling the job in the app, cancels the provider batches this command is
waiting for; whatever they finished still lands the next time the command runs.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pld.errors import BadInput
from pld.llm import budget, calls
from pld.llm.base import LLMError
from pld.llm.batch_provider import Provider, Result
from pld.llm.batch_store import (
    ABANDONED,
    ANSWERED,
    CANCELING,
    ENDED,
    FAILED,
    LANDED,
    OPEN,
    PENDING,
    SUBMITTING,
    UNSENT,
    WAITING,
    batch_rows,
)
from pld.llm.env import env_float, env_int
from pld.llm.pricing import estimate_cost
from pld.llm.registry import get_backend, parse_model
from pld.processes import pid_alive, process_start
from pld.workspace import Workspace, dumps, loads, now

BATCHABLE = ("anthropic", "openai", "openai-compatible")

# Requests per batch by default: far below both providers' limits (100,000 / 50,000), so that
# one batch's requests are a bounded amount of memory and the first results come back sooner.
DEFAULT_MAX_REQUESTS = 10_000
LAND_ROWS_PER_TRANSACTION = 200


def batchable(model: str) -> bool:
    """True when ``model``'s provider has a batch API (``--batch`` can be used with it)."""
    try:
        return parse_model(model).provider in BATCHABLE
    except LLMError:
        return False


def _refuse_unbatchable(model: str) -> None:
    """Raise :class:`BadInput` with the reason when ``model`` has no batch API."""
    if parse_model(model).provider not in BATCHABLE:
        raise BadInput(f"--batch: {model} has no batch API (use anthropic/…, openai/… or an "
                       "openai-compatible server with /v1/batches); local models run here")


def provider_for(model: str) -> Provider:
    """The batch API of ``model``'s provider, using its backend's key and request format."""
    _refuse_unbatchable(model)
    backend = get_backend(model)
    if parse_model(model).provider == "anthropic":
        from pld.llm.batch_anthropic import AnthropicBatches

        return AnthropicBatches(backend)  # type: ignore[arg-type]
    from pld.llm.batch_openai import OpenAIBatches

    return OpenAIBatches(backend)  # type: ignore[arg-type]


@dataclass
class Settings:
    """How this command batches: poll interval, batch size, where progress is told."""

    poll_s: float
    max_requests: int
    say: Callable[[str], None]


_active: Settings | None = None


def active() -> Settings | None:
    """The batch settings of the command running in this process, if it runs with --batch."""
    return _active


@contextmanager
def mode(enabled: bool, models: Iterable[str] = (),
         say: Callable[[str], None] | None = None) -> Iterator[Settings | None]:
    """Run the body in batch mode when ``enabled``. ``models`` (those whose calls will be
    batched) are checked first: each must have a batch API. ``say`` hears progress lines.
    ``$PLD_BATCH_POLL_S`` (default 30) and ``$PLD_BATCH_MAX_REQUESTS`` tune polling and size."""
    global _active
    if not enabled:
        yield None
        return
    for model in models:
        _refuse_unbatchable(model)
    previous, _active = _active, Settings(
        poll_s=env_float("PLD_BATCH_POLL_S", 30.0, minimum=0.0),
        max_requests=env_int("PLD_BATCH_MAX_REQUESTS", DEFAULT_MAX_REQUESTS),
        say=say or (lambda line: None))
    try:
        yield _active
    finally:
        _active = previous


@dataclass
class _Chunk:
    """Requests of one model gathered for the next batch."""

    model: str
    provider: Provider
    lines: list[dict[str, Any]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)
    size: int = 0
    est_cost: float = 0.0

    def fits(self, size: int, max_requests: int) -> bool:
        return (len(self.lines) < min(max_requests, self.provider.max_requests)
                and self.size + size <= self.provider.max_bytes)


def prefetch(ws: Workspace, planned: Iterable[Any], *, run_id: int | None) -> None:
    """Answer the ``planned`` calls (:class:`~pld.pipeline.estimate.Planned`) through batch
    APIs, when this command runs with ``--batch``; otherwise do nothing.

    Calls that are cached, asked ``fresh`` (a retry past the cache), or whose text is not known
    yet are left to the stage. Returns when every batch it submitted or found waiting has ended
    and its results have landed. With ``--max-cost``, requests are admitted at their estimated
    batch price; when the limit is reached, what was admitted is submitted and landed, and then
    :class:`~pld.llm.budget.BudgetReached` is raised.
    """
    settings = _active
    if settings is None:
        return
    _recover_unsubmitted(ws, settings)
    waiting: set[int] = set()
    reserved: dict[int, float] = {}
    chunks: dict[str, _Chunk] = {}
    spend = budget.active()
    stopped: budget.BudgetReached | None = None
    # Measured reply length per (model, stage), read once: the log may hold 100,000 rows.
    reply_tokens = _ReplyTokens(ws)

    def submit(chunk: _Chunk) -> None:
        local_id = _submit(ws, chunk, run_id, settings)
        waiting.add(local_id)
        reserved[local_id] = chunk.est_cost
        chunks.pop(chunk.model)

    try:
        try:
            for p in planned:
                if p.fresh or p.input_tokens is not None or not batchable(p.model):
                    continue
                key = calls.cache_key(p.model, p.system, p.messages, p.params)
                if calls.is_cached(ws, key):
                    continue
                pending = _pending_in(ws, key)
                if pending is not None:
                    waiting.add(pending)
                    continue
                chunk = chunks.get(p.model)
                if chunk is None:
                    chunk = chunks[p.model] = _Chunk(p.model, provider_for(p.model))
                if key in chunk.keys:
                    continue
                line = chunk.provider.request_line(key, p.system, p.messages, p.params)
                size = len(json.dumps(line, ensure_ascii=False).encode()) + 1
                if chunk.lines and not chunk.fits(size, settings.max_requests):
                    submit(chunk)
                    chunk = chunks[p.model] = _Chunk(p.model, chunk.provider)
                if spend is not None:
                    est = _estimate(p, reply_tokens)
                    spend.admit(p.model, est)
                    spend.charge(est)  # reserved now; settled when the result lands
                    chunk.est_cost += est
                chunk.lines.append(line)
                chunk.keys.add(key)
                chunk.size += size
                chunk.rows.append({"custom_id": key, "cache_key": key, "model": p.model,
                                   "stage": p.stage, "system": p.system,
                                   "messages": dumps(p.messages), "params": dumps(p.params)})
        except budget.BudgetReached as e:
            stopped = e  # what was admitted is still submitted and landed below
        for chunk in list(chunks.values()):
            if chunk.lines:
                submit(chunk)
        _wait(ws, waiting, settings, reserved)
    except KeyboardInterrupt:
        _cancel(ws, waiting, settings)
        raise
    if stopped is not None:
        raise stopped


@dataclass
class _ReplyTokens:
    """The call log's mean reply length per (model, stage), each read once."""

    ws: Workspace
    seen: dict[tuple[str, str], float | None] = field(default_factory=dict)

    def get(self, model: str, stage: str) -> float | None:
        if (model, stage) not in self.seen:
            self.seen[(model, stage)] = calls.measured_output_tokens(self.ws, model, stage)
        return self.seen[(model, stage)]


def _estimate(p: Any, reply_tokens: _ReplyTokens) -> float:
    """A planned request's cost at the batch price: its text's tokens, and the measured reply
    length of its stage (``max_tokens`` until one is measured), as the budget counts calls."""
    out = reply_tokens.get(p.model, p.stage)
    return estimate_cost(p.model, budget.text_tokens(p.system, p.messages),
                         round(out) if out is not None else p.params["max_tokens"], batch=True)


def _pending_in(ws: Workspace, key: str) -> int | None:
    """The local id of a batch not yet landed in which ``key`` waits for its answer."""
    rows = ws.query(
        "SELECT b.id FROM batch_requests r JOIN batches b ON b.id = r.batch_id "
        f"WHERE r.cache_key = ? AND r.status = ? AND b.status IN ({_marks(WAITING)}) LIMIT 1",
        [key, PENDING, *WAITING])
    return rows[0]["id"] if rows else None


def _marks(values: tuple[str, ...]) -> str:
    return ", ".join("?" for _ in values)


def _retrying(what: str, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``, retried on transient errors (429 on create, 5xx on a poll) with the same
    backoff as single calls."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn(*args)
        except LLMError as err:
            delay = calls.retry_delay(attempt, err)
            if not err.transient or delay is None:
                raise LLMError(f"{what}: {err}", status=err.status) from None
            time.sleep(delay)


def _submit(ws: Workspace, chunk: _Chunk, run_id: int | None, settings: Settings) -> int:
    """Write the batch and its requests, then create it at the provider and store its id."""
    tag = uuid.uuid4().hex
    with ws.write() as db:
        local_id = int(db["batches"].insert({
            "tag": tag, "model": chunk.model, "provider": parse_model(chunk.model).provider,
            "run_id": run_id, "status": SUBMITTING, "n_requests": len(chunk.lines),
            "bytes": chunk.size, "pid": os.getpid(), "pid_start": process_start(os.getpid()),
            "created_at": now(), "updated_at": now()}).last_pk)
    for start in range(0, len(chunk.rows), LAND_ROWS_PER_TRANSACTION * 5):
        part = chunk.rows[start:start + LAND_ROWS_PER_TRANSACTION * 5]
        texts = {r["system"] for r in part}
        shas = {t: calls.store_text(ws, t) for t in texts}
        with ws.write() as db:
            db["batch_requests"].insert_all(
                ({"batch_id": local_id, "custom_id": r["custom_id"], "cache_key": r["cache_key"],
                  "stage": r["stage"], "system_sha256": shas[r["system"]],
                  "messages": r["messages"], "params": r["params"], "status": PENDING}
                 for r in part), batch_size=500)

    def remember(fields: dict[str, Any]) -> None:
        with ws.write() as db:
            db["batches"].update(local_id, {**fields, "updated_at": now()})

    provider_id = _retrying(f"creating batch {local_id}", chunk.provider.submit, tag,
                            chunk.lines, remember)
    remember({"provider_batch_id": provider_id, "status": OPEN, "submitted_at": now()})
    settings.say(f"batch {local_id}: submitted {len(chunk.lines)} {chunk.model} requests "
                 f"as {provider_id}")
    return local_id


def _recover_unsubmitted(ws: Workspace, settings: Settings) -> None:
    """Settle batches left ``submitting`` by a process that died: found at the provider, they
    are open; not found, they were never created, and their requests are free to go again."""
    for row in ws.query("SELECT * FROM batches WHERE status = ?", [SUBMITTING]):
        if pid_alive(row["pid"], row["pid_start"]):
            continue  # another command is submitting it right now
        known = {r["provider_batch_id"] for r in ws.query(
            "SELECT provider_batch_id FROM batches WHERE model = ? AND provider_batch_id "
            "IS NOT NULL", [row["model"]])}
        provider = provider_for(row["model"])
        found = _retrying(f"looking for batch {row['id']}", provider.find_submitted, row, known)
        with ws.write() as db:
            if found:
                db["batches"].update(row["id"], {"provider_batch_id": found, "status": OPEN,
                                                 "updated_at": now()})
            else:
                db["batches"].update(row["id"], {"status": ABANDONED, "updated_at": now(),
                                                 "note": "never created at the provider"})
                db.execute("UPDATE batch_requests SET status = ? WHERE batch_id = ?",
                           [UNSENT, row["id"]])
        settings.say(f"batch {row['id']}: " + (f"found at the provider as {found}" if found
                                                else "was never created; its requests go again"))


def _wait(ws: Workspace, ids: set[int], settings: Settings,
          reserved: dict[int, float]) -> None:
    """Poll the batches ``ids`` until each has ended and landed."""
    said: dict[int, str] = {}
    rows = batch_rows(ws, ids)
    while True:
        for row in (r for r in rows if r["status"] in WAITING):
            provider = provider_for(row["model"])
            if row["status"] in (OPEN, CANCELING):
                prog = _retrying(f"polling batch {row['id']}", provider.progress,
                                 row["provider_batch_id"])
                fields = {"provider_status": prog.status, "succeeded": prog.succeeded,
                          "failed": prog.failed, "updated_at": now()}
                if prog.ended:
                    fields.update(status=ENDED, ended_at=now())
                with ws.write() as db:
                    db["batches"].update(row["id"], fields)
                line = (f"batch {row['id']} ({row['provider_batch_id']}): {prog.status}, "
                        f"{prog.total} requests, {prog.succeeded} done, {prog.failed} failed")
                if said.get(row["id"]) != line:
                    settings.say(line)
                    said[row["id"]] = line
                row = {**row, **fields}
            if row["status"] == ENDED:
                a, f = _land(ws, row, provider, reserved.pop(row["id"], 0.0))
                settings.say(f"batch {row['id']}: landed {a} answers, {f} failed "
                             "(retried synchronously)" if f else
                             f"batch {row['id']}: landed {a} answers")
        if any(r["status"] == SUBMITTING for r in rows):
            _recover_unsubmitted(ws, settings)
        rows = batch_rows(ws, ids)
        if not any(r["status"] in WAITING for r in rows):
            return
        time.sleep(settings.poll_s)


def _land(ws: Workspace, row: dict[str, Any], provider: Provider,
          reserved: float) -> tuple[int, int]:
    """Write every result of an ended batch to ``llm_calls``, in small transactions; each
    request lands once however often this runs. Requests the results leave out are failed."""
    spend = budget.active()
    params_cache: dict[str, dict[str, Any] | None] = {}

    def params_of(custom_id: str) -> dict[str, Any] | None:
        if custom_id not in params_cache:
            got = ws.query("SELECT params FROM batch_requests WHERE batch_id = ? AND "
                           "custom_id = ?", [row["id"], custom_id])
            params_cache.clear()  # one at a time: results of 100,000 requests stream through
            params_cache[custom_id] = loads(got[0]["params"]) if got else None
        return params_cache[custom_id]

    answered = failed = unreadable = 0
    cost = 0.0
    buf: list[Result] = []

    def flush() -> None:
        nonlocal answered, failed, cost
        a, f, c = _land_rows(ws, row, buf)
        answered, failed, cost = answered + a, failed + f, cost + c
        buf.clear()

    for result in provider.results(row, params_of):
        if result is None:
            unreadable += 1
            continue
        buf.append(result)
        if len(buf) >= LAND_ROWS_PER_TRANSACTION:
            flush()
    flush()
    reason = ("no result for it in the batch's results" + (
        f" ({unreadable} line(s) of the results file could not be read)" if unreadable else "")
              + (f"; the batch {row['provider_status']}" if row.get("provider_status") else ""))
    while True:
        left = ws.query("SELECT custom_id FROM batch_requests WHERE batch_id = ? AND status = ? "
                        "LIMIT ?", [row["id"], PENDING, LAND_ROWS_PER_TRANSACTION])
        if not left:
            break
        buf = [Result(r["custom_id"], error=reason) for r in left]
        flush()
    with ws.write() as db:
        db["batches"].update(row["id"], {"status": LANDED, "landed_at": now(),
                                         "unreadable_lines": unreadable, "updated_at": now()})
    if spend is not None:
        spend.adjust(cost - reserved)
    return answered, failed


def _land_rows(ws: Workspace, batch: dict[str, Any], results: list[Result]
               ) -> tuple[int, int, float]:
    """One transaction: each still-pending request of ``results`` becomes an ``llm_calls``
    row (an answer, or an error) and is marked answered or failed."""
    answered = failed = 0
    cost = 0.0
    with ws.write() as db:
        for res in results:
            req = list(db.query(
                "SELECT * FROM batch_requests WHERE batch_id = ? AND custom_id = ? AND "
                "status = ?", [batch["id"], res.custom_id, PENDING]))
            if not req:
                continue  # landed before (a resumed landing), or not a request of this batch
            r = req[0]
            params = loads(r["params"], {})
            error, reply = res.error, res.reply
            if reply is not None and params.get("choices") and calls.match_choice(
                    reply.text, params["choices"]) is None:
                # Not cached, so the stage asks again synchronously and re-asks as usual.
                error = f"answer not in choices: {reply.text[:200]!r}"
            usd = (estimate_cost(batch["model"], reply.input_tokens, reply.output_tokens,
                                 reply.cached_tokens, batch=True) if reply else 0.0)
            db["llm_calls"].insert({
                "created_at": now(), "model": batch["model"], "stage": r["stage"],
                "run_id": batch["run_id"], "cache_key": r["cache_key"],
                "system_sha256": r["system_sha256"], "messages": r["messages"],
                "params": r["params"], "response": reply.text if reply else None,
                "input_tokens": reply.input_tokens if reply else 0,
                "output_tokens": reply.output_tokens if reply else 0,
                "cached_tokens": reply.cached_tokens if reply else 0,
                "latency_s": None, "cost_usd": usd, "cache_hit": 0, "attempt": 1,
                "error": f"in batch {batch['id']}: {error}" if error else None,
                "label_logprobs": (dumps(reply.label_logprobs)
                                   if reply and reply.label_logprobs is not None else None),
                "batch_id": batch["id"]})
            ok = reply is not None and error is None
            db.execute("UPDATE batch_requests SET status = ? WHERE batch_id = ? AND "
                       "custom_id = ?", [ANSWERED if ok else FAILED, batch["id"], res.custom_id])
            answered, failed, cost = answered + ok, failed + (not ok), cost + usd
    return answered, failed, cost


def _cancel(ws: Workspace, ids: set[int], settings: Settings) -> None:
    """Ask the provider to cancel each of ``ids`` still running (best effort: this runs on
    the way out of an interrupted command)."""
    for row in batch_rows(ws, ids):
        if row["status"] != OPEN:
            continue
        try:
            provider_for(row["model"]).cancel(row["provider_batch_id"])
        except (LLMError, BadInput) as err:
            settings.say(f"batch {row['id']}: could not cancel ({err}); it goes on at the "
                         "provider and lands when this command runs again")
            continue
        with ws.write() as db:
            db["batches"].update(row["id"], {"status": CANCELING, "updated_at": now()})
        settings.say(f"batch {row['id']}: cancel asked of the provider; what it finished "
                     "lands when this command runs again")


def cancel(ws: Workspace, local_id: int) -> dict[str, Any]:
    """Cancel batch ``local_id`` at its provider (``python -m pld batches --cancel ID``)."""
    rows = batch_rows(ws, {local_id})
    if not rows:
        raise BadInput(f"no batch {local_id} in this workspace")
    if rows[0]["status"] != OPEN:
        raise BadInput(f"batch {local_id} is {rows[0]['status']}, not open: nothing to cancel")
    _cancel(ws, {local_id}, Settings(0.0, 0, lambda line: None))
    return batch_rows(ws, {local_id})[0]
