"""The local runtime (llama.cpp's server in a model process of its own) on real extraction
calls (``extract.md`` prompts of the demo task):

* ``local_concurrency.speedup_4`` — extraction of 24 examples at concurrency 1 ÷ concurrency 4,
  wall time; a fresh model process per arm (concurrency 2 is reported beside it).
* ``local_json.vs_free`` — the same extraction calls with the JSON schema ÷ without any
  constraint, time per call, the order of the two arms alternating per example.
* ``local_teacher.vs_floor`` — mean extraction call time ÷ the floor from the same run's measured
  prompt-processing and generation rates (uncached prompt tokens ÷ prompt rate + output tokens ÷
  generation rate).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from bench.figures.speed.report import entry
from bench.figures.workspaces import fresh_ws, load_demo


def _local_model(args: argparse.Namespace) -> str:
    from pld.llm.registry import parse_model

    if parse_model(args.model).provider != "local":
        raise SystemExit(f"--model must be a local model, not {args.model}")
    return args.model


def _extraction_messages(n: int, skip: int = 0) -> list[list[dict[str, str]]]:
    """The teacher's real extraction prompts (``extract.md``) for ``n`` demo training examples."""
    from pld.pipeline.extract.stage import build_prompt
    from pld.tasks.store import task_info

    ws = fresh_ws("local-prompts.db")
    load_demo(ws)
    info = task_info(ws, "demo")
    rows = ws.query("SELECT id, text, label FROM examples WHERE task = 'demo' AND split = 'train' "
                    "ORDER BY id LIMIT ? OFFSET ?", [n, skip])
    ws.close()
    if len(rows) < n:
        raise SystemExit(f"the demo task has only {len(rows)} training examples past {skip}")
    return [[{"role": "user", "content": build_prompt(info, r)}] for r in rows]


def _fresh_process(model: str) -> Any:
    """A newly started model process for ``model`` (earlier ones stopped: no warm slots)."""
    from pld.llm.local_backend import LocalBackend
    from pld.llm.local_process import stop_all

    stop_all()
    backend = LocalBackend(model.split("/", 1)[1], role="bench")
    backend.process()
    return backend


def _timed_call(backend: Any, messages: list[dict[str, str]],
                **kwargs: Any) -> tuple[float, Any]:
    """Seconds and reply of one call; the reply is None when the call failed (a JSON answer
    cut off at max_tokens, say: the small teacher sometimes loops until the limit)."""
    from pld.llm.base import LLMError

    t0 = time.perf_counter()
    try:
        reply = backend.complete(messages, **kwargs)
    except LLMError as err:
        print(f"  (failed call, left out of the figure: {str(err)[:100]})", flush=True)
        reply = None
    return time.perf_counter() - t0, reply


def measure_local_concurrency(args: argparse.Namespace) -> dict[str, Any]:
    """Real extraction on the local model at concurrency 1, 2 and 4: wall time."""
    from pld.llm.local_process import stop_all
    from pld.pipeline.extract.stage import extract

    model = _local_model(args)
    n = args.local_examples
    levels = (1, 4, 2)  # 1 and 4 first: the figure that matters is measured before any drift
    print(f"local_concurrency: extract {n} demo examples with {model} as teacher at "
          f"concurrency {', '.join(map(str, levels))}, a fresh model process each", flush=True)
    wall: dict[int, float] = {}
    calls_made: dict[int, int] = {}
    tokens: dict[int, dict[str, int]] = {}
    for c in levels:
        _fresh_process(model)
        ws = fresh_ws(f"local-concurrency-{c}.db")
        load_demo(ws)
        # Untimed warm-up on another example: the first call pays for page faults in the weights.
        extract(ws, "demo", model, limit=1, concurrency=1)
        with ws.write() as db:
            db.execute("DELETE FROM micro_instructions")
            first = db.execute("SELECT min(id) FROM examples WHERE task = 'demo' AND "
                               "split = 'train'").fetchone()[0]
            # The warm-up example leaves the training split, so the timed items are n others.
            db.execute("UPDATE examples SET split = 'warmup' WHERE id = ?", [first])
        mark = ws.query("SELECT coalesce(max(id), 0) AS n FROM llm_calls")[0]["n"]
        t0 = time.perf_counter()
        s = extract(ws, "demo", model, limit=n, concurrency=c)
        wall[c] = time.perf_counter() - t0
        row = ws.query("SELECT count(*) AS calls, sum(input_tokens) AS prompt, "
                       "sum(cached_tokens) AS cached, sum(output_tokens) AS output "
                       "FROM llm_calls WHERE id > ? AND cache_hit = 0", [mark])[0]
        calls_made[c] = int(row["calls"])
        tokens[c] = {k: int(row[k] or 0) for k in ("prompt", "cached", "output")}
        ws.close()
        print(f"  concurrency {c}: {wall[c]:.1f} s for {s.done} rules ({s.failed} failed), "
              f"{calls_made[c]} calls", flush=True)
    stop_all()
    return {"speedup_4": entry("local_concurrency", "speedup_4", round(wall[1] / wall[4], 2), {
        "model": model, "examples": n,
        "wall_s": {str(c): round(wall[c], 1) for c in sorted(wall)},
        "speedup_2": round(wall[1] / wall[2], 2),
        "calls": {str(c): calls_made[c] for c in sorted(calls_made)},
        "tokens": {str(c): tokens[c] for c in sorted(tokens)},
        "how": "pld.pipeline.extract on the demo task, real extract.md prompts and JSON schema; "
               "one untimed warm-up call per arm; a fresh model process per arm"})}


def measure_local_json(args: argparse.Namespace) -> dict[str, Any]:
    """The same extraction calls with and without the JSON schema, alternating per example."""
    from pld.llm.local_process import stop_all
    from pld.pipeline.extract.stage import MAX_TOKENS, SCHEMA

    model = _local_model(args)
    n = args.local_examples // 2
    msgs = _extraction_messages(n + 1)
    backend = _fresh_process(model)
    backend.complete(msgs[-1], max_tokens=MAX_TOKENS)  # untimed warm-up
    print(f"local_json: {n} extraction calls on {model}, each asked with the JSON schema and "
          "without, the order alternating", flush=True)
    arms: dict[str, dict[str, list[float]]] = {
        a: {"s": [], "out": [], "uncached": []} for a in ("json", "free")}
    left_out = 0
    for i, m in enumerate(msgs[:n]):
        # Both arms of an example share its whole prompt, so the second one asked finds it
        # cached; alternating which goes first gives each arm that advantage equally often.
        order = ("json", "free") if i % 2 == 0 else ("free", "json")
        got = {arm: _timed_call(backend, m, max_tokens=MAX_TOKENS,
                                json_schema=SCHEMA if arm == "json" else None)
               for arm in order}
        if any(r is None for _, r in got.values()):
            left_out += 1  # an example counts only when both arms answered it
            continue
        for arm, (dt, r) in got.items():
            arms[arm]["s"].append(dt)
            arms[arm]["out"].append(r.output_tokens)
            arms[arm]["uncached"].append(r.input_tokens - r.cached_tokens)
    n = len(arms["json"]["s"])
    if n == 0:
        raise SystemExit("local_json: every example had a failed call")
    stop_all()
    tot = {a: sum(v["s"]) for a, v in arms.items()}
    out = {a: sum(v["out"]) for a, v in arms.items()}
    ratio = tot["json"] / tot["free"]
    return {"vs_free": entry("local_json", "vs_free", round(ratio, 3), {
        "model": model, "calls_each": n, "examples_left_out_failed_call": left_out,
        "mean_s": {a: round(t / n, 3) for a, t in tot.items()},
        "output_tokens": out,
        "s_per_output_token": {a: round(tot[a] / max(1, out[a]), 4) for a in arms},
        "per_token_ratio": round((tot["json"] / max(1, out["json"]))
                                 / (tot["free"] / max(1, out["free"])), 3),
        "how": "extract.md prompts of the demo task, max_tokens 400, concurrency 1, one model "
               "process; json = response_format json_schema (grammar), free = no constraint"})}


def _rates(backend: Any) -> tuple[float, float]:
    """Prompt-processing and generation rates (tokens/s) of the model process, each the mean of
    two measurements: a long, never-seen prompt answered with one token; a short prompt and a
    long free answer, its prompt time removed."""
    filler = " ".join(f"item{i} costs {i * 7 % 101} dollars;" for i in range(260))
    pp_rates, tg_rates = [], []
    for k in range(2):
        before = time.perf_counter()
        r = backend.complete([{"role": "user", "content": f"Run {k}. {filler} Reply OK."}],
                             max_tokens=1)
        pp_rates.append((r.input_tokens - r.cached_tokens) / (time.perf_counter() - before))
        before = time.perf_counter()
        r = backend.complete([{"role": "user", "content": f"Count from {k} to 400 in words."}],
                             max_tokens=160)  # free text: running into the limit is fine
        t_gen = time.perf_counter() - before - (r.input_tokens - r.cached_tokens) / pp_rates[-1]
        tg_rates.append(r.output_tokens / t_gen)
    return statistics.mean(pp_rates), statistics.mean(tg_rates)


def measure_local_teacher(args: argparse.Namespace) -> dict[str, Any]:
    """Mean extraction call time against the floor of the runtime's own measured rates."""
    from pld.llm.local_process import stop_all
    from pld.pipeline.extract.stage import MAX_TOKENS, SCHEMA

    model = _local_model(args)
    n = args.local_examples // 2
    msgs = _extraction_messages(n + 2, skip=args.local_examples)
    backend = _fresh_process(model)
    backend.complete(msgs[-1], max_tokens=8)  # untimed warm-up
    print(f"local_teacher: prompt and generation rates of {model}, then {n} extraction calls",
          flush=True)
    pp, tg = _rates(backend)
    times, floors, uncached, outputs = [], [], [], []
    left_out = 0
    for m in msgs[:n]:
        dt, r = _timed_call(backend, m, max_tokens=MAX_TOKENS, json_schema=SCHEMA)
        if r is None:
            left_out += 1
            continue
        fresh = r.input_tokens - r.cached_tokens
        times.append(dt)
        floors.append(fresh / pp + r.output_tokens / tg)
        uncached.append(fresh)
        outputs.append(r.output_tokens)
    stop_all()
    ratio = statistics.mean(times) / statistics.mean(floors)
    return {"vs_floor": entry("local_teacher", "vs_floor", round(ratio, 3), {
        "model": model, "calls": len(times), "calls_left_out_failed": left_out,
        "mean_call_s": round(statistics.mean(times), 3),
        "mean_floor_s": round(statistics.mean(floors), 3),
        "prompt_tok_per_s": round(pp, 1), "gen_tok_per_s": round(tg, 1),
        "mean_uncached_prompt_tokens": round(statistics.mean(uncached), 1),
        "mean_output_tokens": round(statistics.mean(outputs), 1),
        "how": "rates measured in the same run and process, client-side wall time: prompt = "
               "uncached tokens / time of a ~2,500-token prompt answered with 1 token; "
               "generation = 160 free tokens after a short prompt, its prompt time removed; "
               "floor per call = uncached prompt tokens / prompt rate + output tokens / "
               "generation rate; calls = extract.md with the JSON schema, concurrency 1"})}
