"""Speed benchmark: every figure is a ratio (or a count) measured within one run, so that a noisy,
shared machine still gives comparable numbers.

* ``prefix_cache.speedup`` — the student classifies the same N examples under a ~4,000-token rule
  prompt on the local model, re-processing the prompt for every example ÷ reusing its KV state.
  Three arms share one model process and run interleaved, example by example, so machine noise
  hits all alike: *reuse* lets the server keep the prompt's KV state in its slot (what the
  student stage does), *re-process* asks with ``cache_prompt: false`` (the whole prompt is
  evaluated again), *floor* gets no rule prompt at all (the backend's one-line neutral system
  message). Each arm makes one untimed warm-up call first, so the figures are per example in
  steady state; the one-time cost of evaluating the prompt on the reuse arm is reported as
  ``first_call_s``.
* ``local_concurrency.speedup_4`` — real extraction (``extract.md``, JSON schema) of 24 demo
  examples on the local model at concurrency 1 ÷ concurrency 4, wall time; a fresh model process
  per arm (concurrency 2 is reported beside it).
* ``local_json.vs_free`` — the same extraction calls with the JSON schema ÷ without any
  constraint, time per call, the order of the two arms alternating per example.
* ``local_teacher.vs_floor`` — mean extraction call time ÷ the floor from the same run's measured
  prompt-processing and generation rates (uncached prompt tokens ÷ prompt rate + output tokens ÷
  generation rate).
* ``prefix_cache.vs_limit`` — reuse ÷ floor, per example.
* ``rerun.uncached_calls`` — ``llm_calls`` rows that missed the cache (``cache_hit = 0``,
  no error) added by repeating a finished ``run`` of the demo task: against the fake
  OpenAI-compatible server (every stage, with a conflict loop that really changes the prompt),
  and with ``--local-rerun`` also on the local model (a small slice of the demo task).
* ``resume.repeated_calls`` — an ``extract`` subprocess (the real CLI, 8 parallel calls against
  the fake server) is killed with SIGKILL once half the rules are written, then run again:
  completed calls that were made a second time.
* ``concurrency.speedup_8`` — extraction of 64 examples against the fake server answering after
  a fixed 200 ms: concurrency 1 ÷ concurrency 8, wall time.
* ``pages.ratio_10k_vs_100`` — median time to render the micro-instructions page
  (``pages/extract.py`` in ``AppTest``) for a task with 10,000 rules ÷ one with 100;
  ``scale.page_100k_vs_100`` the same at 100,000 rules.
* ``scale.rss_100k_vs_10k``, ``batch.resubmitted_after_kill``, ``estimate.error`` — see
  ``bench/speed_batch.py``.

    python bench/speed.py                        # everything, local/default, N=50 (~50 min)
    python bench/speed.py --only prefix_cache --model local/small
    python bench/speed.py --quick                # tiny smoke run of every measurement
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import speed_batch
from _common import (
    DEMO_HEURISTICS,
    REPO,
    RESULTS,
    WORK,
    count_rows,
    count_tokens,
    machine_info,
    median,
    merge_json,
    print_table,
    replace_block,
    scripted_reply,
)

from pld.workspace import Workspace, open_workspace

SECTIONS = ("prefix_cache", "local_concurrency", "local_json", "local_teacher", "rerun", "resume",
            "concurrency", "pages", "scale", "batch", "estimate")
DEMO_LABELS = ["escalate-fraud", "data-privacy-request", "complaint", "routine"]
TARGETS = {
    ("prefix_cache", "speedup"): (">=", 5),
    ("prefix_cache", "vs_limit"): ("<=", 1.5),
    ("local_concurrency", "speedup_4"): (">=", 1.8),
    ("local_json", "vs_free"): ("<=", 1.1),
    ("local_teacher", "vs_floor"): ("<=", 1.3),
    ("rerun", "uncached_calls"): ("==", 0),
    ("resume", "repeated_calls"): ("==", 0),
    ("concurrency", "speedup_8"): (">=", 6),
    ("pages", "ratio_10k_vs_100"): ("<=", 3),
    ("scale", "page_100k_vs_100"): ("<=", 3),
    ("scale", "rss_100k_vs_10k"): ("<=", 1.5),
    ("batch", "resubmitted_after_kill"): ("==", 0),
    ("estimate", "error"): ("<=", 0.25),
}


def _entry(section: str, key: str, value: float | int, detail: dict[str, Any]) -> dict[str, Any]:
    op, target = TARGETS[(section, key)]
    met = {">=": value >= target, "<=": value <= target, "==": value == target}[op]
    return {"value": value, "target": f"{op} {target}", "detail": {"met": met, **detail}}


def _fresh_ws(name: str) -> Workspace:
    """A new, empty workspace under bench/.work/speed/ (a stale one is deleted first)."""
    path = WORK / "speed" / name
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return open_workspace(path)


def _load_demo(ws: Workspace, **sizes: int) -> None:
    from pld.tasks import load_task

    load_task(ws, "demo", **sizes)


# -- prefix cache ---------------------------------------------------------------------------------

def rule_prompt(target_tokens: int, local_name: str) -> tuple[str, int]:
    """A student system prompt of at least ``target_tokens`` tokens, in the real template.

    Realistic heuristic lines are repeated (and numbered on) until the prompt is long enough.
    """
    from pld.pipeline.student import render_student_prompt
    from pld.tasks.demo import DemoTask

    description = DemoTask.description
    heuristics: list[str] = []
    while True:
        heuristics.append(DEMO_HEURISTICS[len(heuristics) % len(DEMO_HEURISTICS)])
        text = render_student_prompt(heuristics, DEMO_LABELS, description)
        if len(text) / 5 < target_tokens:  # cheap lower bound first; count exactly near the end
            continue
        n, _ = count_tokens(text, local_name)
        if n >= target_tokens:
            return text, n


def bench_prefix_cache(args: argparse.Namespace) -> dict[str, Any]:
    """Student calls with the rule prompt's KV state reused, re-processed and absent."""
    from pld.llm import calls
    from pld.llm.local_backend import LocalBackend
    from pld.llm.registry import parse_model

    spec = parse_model(args.model)
    if spec.provider != "local":
        raise SystemExit(f"--model must be a local model (local/default or local/small), "
                         f"not {args.model}")
    ws = _fresh_ws("prefix.db")
    _load_demo(ws)
    texts = [r["text"] for r in ws.query(
        "SELECT text FROM examples WHERE task = 'demo' ORDER BY id")]
    if len(texts) < args.n + 1:
        raise SystemExit(f"--n {args.n}: the demo task has only {len(texts) - 1} examples "
                         "besides the warm-up one")
    warm, items = texts[-1], texts[:args.n]
    system, prompt_tokens = rule_prompt(args.prompt_tokens, spec.name)
    arms = {
        "floor": (LocalBackend(spec.name, role="bench-floor"), None),
        "reuse": (LocalBackend(spec.name, role="bench-reuse"), system),
        # cache_prompt false: the server evaluates the whole prompt again for every call.
        "reprocess": (LocalBackend(spec.name, role="bench-reprocess", reuse_prefix=False),
                      system),
    }

    def call(arm: str, text: str) -> tuple[float, calls.CallResult]:
        backend, sys_prompt = arms[arm]
        t0 = time.perf_counter()
        res = calls.complete(ws, args.model, [{"role": "user", "content": text}],
                             system=sys_prompt, choices=DEMO_LABELS, max_tokens=16,
                             stage=f"bench-{arm}", role=f"bench-{arm}", use_cache=False,
                             backend=backend)
        return time.perf_counter() - t0, res

    print(f"prefix_cache: {args.model}, {prompt_tokens}-token rule prompt, {args.n} examples, "
          "arms interleaved per example", flush=True)
    first_call = {arm: call(arm, warm)[0] for arm in arms}
    times: dict[str, list[float]] = {arm: [] for arm in arms}
    cached: dict[str, list[int]] = {arm: [] for arm in arms}
    answers: dict[str, list[str]] = {arm: [] for arm in arms}
    t_start = time.monotonic()
    for i, text in enumerate(items, 1):
        for arm in arms:
            dt, res = call(arm, text)
            times[arm].append(dt)
            cached[arm].append(res.reply.cached_tokens)
            answers[arm].append(res.text)
        if i == 1 or i % max(1, args.n // 10) == 0 or i == args.n:
            elapsed = time.monotonic() - t_start
            print(f"  {i}/{args.n}  reuse {times['reuse'][-1]:.2f}s  reprocess "
                  f"{times['reprocess'][-1]:.2f}s  floor {times['floor'][-1]:.2f}s  "
                  f"(elapsed {elapsed / 60:.1f} min, ~{elapsed / i * (args.n - i) / 60:.1f} "
                  "min left)", flush=True)
    ws.close()

    total = {arm: sum(ts) for arm, ts in times.items()}
    arm_detail = {arm: {"mean_s": round(total[arm] / args.n, 4),
                        "median_s": round(median(times[arm]), 4),
                        "total_s": round(total[arm], 2),
                        "warmup_call_s": round(first_call[arm], 2),
                        "mean_reused_prompt_tokens": round(statistics.mean(cached[arm]), 1)}
                  for arm in arms}
    common = {"model": args.model, "n_examples": args.n, "rule_prompt_tokens": prompt_tokens,
              "arms": arm_detail,
              "how": "one model process (llama.cpp server, xllamacpp), calls interleaved per "
                     "example; reprocess = cache_prompt false on each call; floor = no rule "
                     "prompt (neutral one-line system message); each arm's warm-up call is "
                     "untimed"}
    speedup = total["reprocess"] / total["reuse"]
    vs_limit = total["reuse"] / total["floor"]
    same = sum(a == b for a, b in zip(answers["reuse"], answers["reprocess"], strict=True))
    return {
        "speedup": _entry("prefix_cache", "speedup", round(speedup, 2), {
            **common,
            "first_call_s": round(first_call["reuse"], 2),
            "speedup_including_first_call": round(
                (total["reprocess"] + first_call["reprocess"])
                / (total["reuse"] + first_call["reuse"]), 2),
            "median_ratio": round(median(times["reprocess"]) / median(times["reuse"]), 2),
            "same_answer_reuse_vs_reprocess": f"{same}/{args.n}"}),
        "vs_limit": _entry("prefix_cache", "vs_limit", round(vs_limit, 3), {
            "model": args.model, "n_examples": args.n, "rule_prompt_tokens": prompt_tokens,
            "reuse_mean_s": arm_detail["reuse"]["mean_s"],
            "floor_mean_s": arm_detail["floor"]["mean_s"],
            "median_ratio": round(median(times["reuse"]) / median(times["floor"]), 3)}),
    }


# -- rerun ----------------------------------------------------------------------------------------

def _chain_twice(ws: Workspace, teacher: str, student: str, **options: Any) -> dict[str, Any]:
    """Run the chain on the demo task, then again; what the second run added to the call log."""
    from pld.pipeline.chain import ChainOptions, run_chain

    o = ChainOptions(teacher=teacher, student=student, auto_approve_as="bench", **options)
    t0 = time.monotonic()
    first = run_chain(ws, "demo", o)
    t1 = time.monotonic()
    mark = ws.query("SELECT coalesce(max(id), 0) AS n FROM llm_calls")[0]["n"]
    second = run_chain(ws, "demo", o)
    t2 = time.monotonic()
    added = ws.query(
        "SELECT coalesce(sum(cache_hit = 0 AND error IS NULL), 0) AS uncached, "
        "coalesce(sum(cache_hit), 0) AS hits, coalesce(sum(error IS NOT NULL), 0) AS errors, "
        "count(*) AS calls FROM llm_calls WHERE id > ?", [mark])[0]
    by_stage = {r["stage"]: r["n"] for r in ws.query(
        "SELECT stage, count(*) AS n FROM llm_calls WHERE id > ? AND cache_hit = 0 "
        "GROUP BY stage", [mark])}
    first_calls = ws.query("SELECT count(*) AS n FROM llm_calls WHERE id <= ? AND cache_hit = 0",
                           [mark])[0]["n"]
    evals = second.stages.get("eval", {})
    return {"uncached_calls": int(added["uncached"]), "cache_hits": int(added["hits"]),
            "errors": int(added["errors"]), "calls_logged": int(added["calls"]),
            "uncached_by_stage": by_stage, "first_run_uncached_calls": first_calls,
            "first_run_s": round(t1 - t0, 1), "second_run_s": round(t2 - t1, 1),
            "same_scores": {k: v["macro_f1"] for k, v in evals.items()}
            == {k: v["macro_f1"] for k, v in first.stages.get("eval", {}).items()},
            "options": {k: v for k, v in options.items()}}


def bench_rerun(args: argparse.Namespace) -> dict[str, Any]:
    """Repeat a finished run: every call must come from the cache."""
    from tests.fakes.openai_server import FakeOpenAI

    print("rerun: chain on the demo task twice against the fake server", flush=True)
    with FakeOpenAI(responder=scripted_reply(DEMO_LABELS)) as fake:
        model = fake.model_string("bench-fake")
        ws = _fresh_ws("rerun-fake.db")
        fake_detail = _chain_twice(ws, model, model, method="kmeans", k=4, iterations=2,
                                   few_shot=5)
        requests_total = len(fake.requests)
        ws.close()
    fake_detail["server_requests_total"] = requests_total
    detail: dict[str, Any] = {"fake_openai_compatible": fake_detail}
    value = fake_detail["uncached_calls"]
    if args.local_rerun:
        print(f"rerun: chain on a slice of the demo task twice with {args.rerun_model}",
              flush=True)
        ws = _fresh_ws("rerun-local.db")
        sizes = (dict(limit=6, val_limit=4, test_limit=4, k=2) if args.quick
                 else dict(limit=20, val_limit=10, test_limit=10, k=3))
        local = _chain_twice(ws, args.rerun_model, args.rerun_model, method="kmeans",
                             iterations=1, few_shot=2, **sizes)
        ws.close()
        local["model"] = args.rerun_model
        detail["local"] = local
        value += local["uncached_calls"]
    else:
        detail["local"] = "not run (pass --local-rerun)"
    return {"uncached_calls": _entry("rerun", "uncached_calls", value, detail)}


# -- resume ---------------------------------------------------------------------------------------

def bench_resume(args: argparse.Namespace) -> dict[str, Any]:
    """Kill an extraction subprocess at ~50% (SIGKILL), resume it, count repeated calls."""
    from tests.fakes.openai_server import FakeOpenAI

    ws = _fresh_ws("resume.db")
    _load_demo(ws)
    n = ws.query("SELECT count(*) AS n FROM examples WHERE split = 'train'")[0]["n"]
    path = ws.path
    ws.close()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    ok_sql = "SELECT count(*) FROM micro_instructions WHERE status = 'ok'"
    print(f"resume: extract {n} examples, {args.resume_concurrency} in parallel, SIGKILL at "
          f"~50%, resume", flush=True)
    with FakeOpenAI(responder=scripted_reply(DEMO_LABELS), delay_s=args.resume_delay) as fake:
        model = fake.model_string("bench-fake")
        cmd = [sys.executable, "-m", "pld", "--workspace", str(path), "extract", "demo",
               "--teacher", model, "--concurrency", str(args.resume_concurrency)]
        log = Path(tempfile.gettempdir()) / f"pld-bench-resume-{os.getpid()}.log"
        with open(log, "w") as err:
            child = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                     stderr=err)
        deadline = time.monotonic() + 300  # a guard against a hung child, not a measurement
        try:
            while count_rows(path, ok_sql) < n // 2:
                if child.poll() is not None:
                    raise SystemExit(f"resume: the extract child exited early "
                                     f"({child.returncode}): {log.read_text()[-2000:]}")
                if time.monotonic() > deadline:
                    raise SystemExit("resume: the extract child made no progress in 300 s")
                time.sleep(0.01)
            child.send_signal(signal.SIGKILL)
        finally:
            if child.poll() is None:
                child.kill()
            child.wait()
        at_kill = count_rows(path, ok_sql)
        requests_at_kill = len(fake.requests)
        resumed = subprocess.run([*cmd, "--json"], cwd=REPO, env=env, capture_output=True,
                                 text=True, timeout=600)
        if resumed.returncode != 0:
            raise SystemExit(f"resume: the resumed extract failed: {resumed.stderr[-2000:]}")
        requests_total = len(fake.requests)
    with open_workspace(path) as ws:
        repeated = ws.query(
            "SELECT coalesce(sum(n - 1), 0) AS extra, count(*) AS keys FROM (SELECT cache_key, "
            "count(*) AS n FROM llm_calls WHERE cache_hit = 0 AND error IS NULL "
            "GROUP BY cache_key HAVING n > 1)")[0]
        per_example = ws.query(
            "SELECT count(*) AS n FROM (SELECT e.id, count(m.id) AS rows, "
            "coalesce(sum(m.status = 'ok'), 0) AS ok FROM examples e LEFT JOIN "
            "micro_instructions m ON m.example_id = e.id WHERE e.split = 'train' GROUP BY e.id "
            "HAVING rows = 1 AND ok = 1)")[0]["n"]
        runs = ws.query("SELECT status FROM runs WHERE kind = 'extract' ORDER BY id")
        completed = ws.query("SELECT count(DISTINCT cache_key) AS n FROM llm_calls "
                             "WHERE cache_hit = 0 AND error IS NULL")[0]["n"]
    return {"repeated_calls": _entry("resume", "repeated_calls", int(repeated["extra"]), {
        "examples": n, "ok_rules_at_kill": at_kill, "killed_at_share": round(at_kill / n, 2),
        "concurrency": args.resume_concurrency, "server_delay_s": args.resume_delay,
        "server_requests_before_kill": requests_at_kill,
        "server_requests_total": requests_total,
        "distinct_completed_calls": completed,
        "in_flight_at_kill_resent": requests_total - completed,
        "examples_with_exactly_one_ok_row": per_example,
        "run_statuses": [r["status"] for r in runs],
        "how": "python -m pld extract as a subprocess against the fake server; SIGKILL once "
               "half the rules are written; the same command again; repeated = completed calls "
               "(cache_hit 0, no error) logged more than once for the same cache key. Calls in "
               "flight at the kill never completed, so they are sent again: "
               "in_flight_at_kill_resent"})}


# -- concurrency ----------------------------------------------------------------------------------

def bench_concurrency(args: argparse.Namespace) -> dict[str, Any]:
    """Extraction wall time at concurrency 1 and 8 against a server with a fixed delay."""
    from pld.pipeline.extract import extract
    from tests.fakes.openai_server import FakeOpenAI

    n = args.concurrency_examples
    print(f"concurrency: extract {n} examples against a {args.delay * 1000:.0f} ms fake server, "
          "concurrency 1 and 8", flush=True)
    wall: dict[int, float] = {}
    requests: dict[int, int] = {}
    with FakeOpenAI(responder=scripted_reply(DEMO_LABELS), delay_s=args.delay) as fake:
        model = fake.model_string("bench-fake")
        # Untimed warm-up: imports, the HTTP client and its connection pool are set up once,
        # so the first timed arm does not pay for them.
        ws = _fresh_ws("concurrency-warmup.db")
        _load_demo(ws)
        extract(ws, "demo", model, limit=8, concurrency=8)
        ws.close()
        for c in (1, 8):
            ws = _fresh_ws(f"concurrency-{c}.db")
            _load_demo(ws, n_train=n, n_val=1, n_test=1)
            before = len(fake.requests)
            t0 = time.perf_counter()
            s = extract(ws, "demo", model, concurrency=c)
            wall[c] = time.perf_counter() - t0
            requests[c] = len(fake.requests) - before
            if s.done != n:
                raise SystemExit(f"concurrency: {s.done} of {n} rules extracted at "
                                 f"concurrency {c} ({s.failed} failed)")
            ws.close()
    speedup = wall[1] / wall[8]
    return {"speedup_8": _entry("concurrency", "speedup_8", round(speedup, 2), {
        "examples": n, "server_delay_s": args.delay,
        "wall_s_concurrency_1": round(wall[1], 2), "wall_s_concurrency_8": round(wall[8], 2),
        "requests": requests, "ideal_speedup": 8,
        "overhead_per_call_s_at_1": round(wall[1] / n - args.delay, 4)})}


# -- the local runtime: concurrency, JSON constraint, distance from the floor --------------------

def _local_model(args: argparse.Namespace) -> str:
    from pld.llm.registry import parse_model

    if parse_model(args.model).provider != "local":
        raise SystemExit(f"--model must be a local model, not {args.model}")
    return args.model


def _extraction_messages(n: int, skip: int = 0) -> list[list[dict[str, str]]]:
    """The teacher's real extraction prompts (``extract.md``) for ``n`` demo training examples."""
    from pld.pipeline.extract import build_prompt
    from pld.tasks.store import task_info

    ws = _fresh_ws("local-prompts.db")
    _load_demo(ws)
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


def bench_local_concurrency(args: argparse.Namespace) -> dict[str, Any]:
    """Real extraction on the local model at concurrency 1, 2 and 4: wall time."""
    from pld.llm.local_process import stop_all
    from pld.pipeline.extract import extract

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
        ws = _fresh_ws(f"local-concurrency-{c}.db")
        _load_demo(ws)
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
    return {"speedup_4": _entry("local_concurrency", "speedup_4", round(wall[1] / wall[4], 2), {
        "model": model, "examples": n,
        "wall_s": {str(c): round(wall[c], 1) for c in sorted(wall)},
        "speedup_2": round(wall[1] / wall[2], 2),
        "calls": {str(c): calls_made[c] for c in sorted(calls_made)},
        "tokens": {str(c): tokens[c] for c in sorted(tokens)},
        "how": "pld.pipeline.extract on the demo task, real extract.md prompts and JSON schema; "
               "one untimed warm-up call per arm; a fresh model process per arm"})}


def _timed_calls(backend: Any, messages: list[dict[str, str]],
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


def bench_local_json(args: argparse.Namespace) -> dict[str, Any]:
    """The same extraction calls with and without the JSON schema, alternating per example."""
    from pld.pipeline.extract import MAX_TOKENS, SCHEMA

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
        got = {arm: _timed_calls(backend, m, max_tokens=MAX_TOKENS,
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
    from pld.llm.local_process import stop_all

    stop_all()
    tot = {a: sum(v["s"]) for a, v in arms.items()}
    out = {a: sum(v["out"]) for a, v in arms.items()}
    ratio = tot["json"] / tot["free"]
    return {"vs_free": _entry("local_json", "vs_free", round(ratio, 3), {
        "model": model, "calls_each": n, "examples_left_out_failed_call": left_out,
        "mean_s": {a: round(t / n, 3) for a, t in tot.items()},
        "output_tokens": out,
        "s_per_output_token": {a: round(tot[a] / max(1, out[a]), 4) for a in arms},
        "per_token_ratio": round((tot["json"] / max(1, out["json"]))
                                 / (tot["free"] / max(1, out["free"])), 3),
        "how": "extract.md prompts of the demo task, max_tokens 400, concurrency 1, one model "
               "process; json = response_format json_schema (grammar), free = no constraint"})}


def bench_local_teacher(args: argparse.Namespace) -> dict[str, Any]:
    """Mean extraction call time against the floor of the runtime's own measured rates."""
    from pld.pipeline.extract import MAX_TOKENS, SCHEMA

    model = _local_model(args)
    n = args.local_examples // 2
    msgs = _extraction_messages(n + 2, skip=args.local_examples)
    backend = _fresh_process(model)
    backend.complete(msgs[-1], max_tokens=8)  # untimed warm-up
    print(f"local_teacher: prompt and generation rates of {model}, then {n} extraction calls",
          flush=True)
    # Prompt rate: a long, never-seen prompt answered with one token. Generation rate: a short
    # prompt and a long free answer. Each taken from the server's own timings, twice.
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
    pp, tg = statistics.mean(pp_rates), statistics.mean(tg_rates)
    times, floors, uncached, outputs = [], [], [], []
    left_out = 0
    for m in msgs[:n]:
        dt, r = _timed_calls(backend, m, max_tokens=MAX_TOKENS, json_schema=SCHEMA)
        if r is None:
            left_out += 1
            continue
        fresh = r.input_tokens - r.cached_tokens
        times.append(dt)
        floors.append(fresh / pp + r.output_tokens / tg)
        uncached.append(fresh)
        outputs.append(r.output_tokens)
    from pld.llm.local_process import stop_all

    stop_all()
    ratio = statistics.mean(times) / statistics.mean(floors)
    return {"vs_floor": _entry("local_teacher", "vs_floor", round(ratio, 3), {
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


# -- pages ----------------------------------------------------------------------------------------

def _rules_ws(name: str, n: int) -> Path:
    """A workspace with task ``big``: ``n`` training examples, each with an ok rule."""
    from pld.tasks.store import Example, save_task
    from pld.workspace import dumps, now

    ws = _fresh_ws(name)
    save_task(ws, name="big", kind="custom", labels=["no", "yes"], description="", source="",
              params={}, examples=(Example(f"e{i}", "train", f"Example message number {i}.",
                                           "yes" if i % 3 == 0 else "no", {})
                                   for i in range(n)))
    ids = [r["id"] for r in ws.query("SELECT id FROM examples ORDER BY id")]
    stamp = now()
    with ws.write() as db:
        db["micro_instructions"].insert_all((
            {"task": "big", "example_id": eid, "run_id": None, "teacher": "local/default",
             "reasoning": f"The message has feature {i % 97}.",
             "rule": f"If the message mentions feature {i % 97}, then the label is "
                     f"{'yes' if i % 3 == 0 else 'no'}.",
             "label": "yes" if i % 3 == 0 else "no", "status": "ok",
             "flags": dumps(["copies_example"] if i % 11 == 0 else []), "created_at": stamp}
            for i, eid in enumerate(ids)), batch_size=1000)
    path = ws.path
    ws.close()
    return path


def bench_pages(args: argparse.Namespace) -> dict[str, Any]:
    """Median render time of the micro-instructions page at 10,000 rules ÷ at 100."""
    small, big = args.rules_small, args.rules_big
    ratio, detail = _page_ratio(small, big, args.renders, "pages")
    return {"ratio_10k_vs_100": _entry("pages", "ratio_10k_vs_100", round(ratio, 2), detail)}


def bench_scale(args: argparse.Namespace) -> dict[str, Any]:
    """The same page at 100,000 rules ÷ at 100 (a workspace of a large extraction), and the
    peak memory of a batch extraction of 100,000 examples ÷ 10,000."""
    out = {}
    if "page" in args.scale_parts:
        ratio, detail = _page_ratio(args.rules_small, args.rules_huge, args.renders, "scale")
        out["page_100k_vs_100"] = _entry("scale", "page_100k_vs_100", round(ratio, 2), detail)
    if "rss" in args.scale_parts:
        ratio, detail = speed_batch.rss_ratio(args.extract_small, args.extract_huge)
        out["rss_100k_vs_10k"] = _entry("scale", "rss_100k_vs_10k", round(ratio, 2), detail)
    return out


def bench_batch(args: argparse.Namespace) -> dict[str, Any]:
    """Requests submitted twice when ``extract --batch`` is killed after submit."""
    return speed_batch.bench_batch(args, _entry)


def bench_estimate(args: argparse.Namespace) -> dict[str, Any]:
    """|estimated − actual| tokens ÷ actual on the demo chain."""
    return speed_batch.bench_estimate(args, _entry)


def _page_ratio(small: int, big: int, renders: int, label: str) -> tuple[float, dict[str, Any]]:
    """Median render time of pages/extract.py with ``big`` rules ÷ with ``small``."""
    import streamlit.logger
    from streamlit.testing.v1 import AppTest

    # "missing ScriptRunContext" warnings from building the workspaces outside a script run.
    streamlit.logger.set_log_level("error")
    paths = {small: _rules_ws(f"{label}-{small}.db", small),
             big: _rules_ws(f"{label}-{big}.db", big)}
    page = str(REPO / "pages" / "extract.py")
    print(f"{label}: render {page} with {small} and {big} rules, median of {renders}",
          flush=True)

    def render(n: int) -> float:
        os.environ["PLD_WORKSPACE"] = str(paths[n])
        at = AppTest.from_file(page, default_timeout=300)
        at.session_state["task"] = "big"
        t0 = time.perf_counter()
        at.run()
        dt = time.perf_counter() - t0
        if at.exception:
            raise SystemExit(f"pages: the page raised: {at.exception[0].value}")
        shown = {m.label: m.value for m in at.metric}.get("Rules")
        if shown != f"{n:,}".replace(",", "") and shown != f"{n:,}":
            raise SystemExit(f"pages: the page shows {shown!r} rules, expected {n}")
        return dt

    warm = {n: render(n) for n in (small, big)}  # imports, caches: not timed
    times: dict[int, list[float]] = {small: [], big: []}
    for _ in range(renders):
        for n in (small, big):  # interleaved, so noise hits both sizes alike
            times[n].append(render(n))
    ratio = median(times[big]) / median(times[small])
    return ratio, {
        "rules_small": small, "rules_big": big, "renders_each": renders,
        "median_s_small": round(median(times[small]), 3),
        "median_s_big": round(median(times[big]), 3),
        "all_s": {str(k): [round(t, 3) for t in v] for k, v in times.items()},
        "warmup_s": {str(k): round(v, 3) for k, v in warm.items()},
        "page": "pages/extract.py (Micro-instructions), streamlit AppTest"}


# -- main -----------------------------------------------------------------------------------------

RUNNERS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "prefix_cache": bench_prefix_cache, "local_concurrency": bench_local_concurrency,
    "local_json": bench_local_json, "local_teacher": bench_local_teacher,
    "rerun": bench_rerun, "resume": bench_resume,
    "concurrency": bench_concurrency, "pages": bench_pages, "scale": bench_scale,
    "batch": bench_batch, "estimate": bench_estimate,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see ``--help``)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default=",".join(SECTIONS),
                   help=f"Comma-separated sections to run (default all: {','.join(SECTIONS)}); "
                        "the others keep their values in the results file.")
    p.add_argument("--model", default=None,
                   help="prefix_cache: local model (default local/default; local/small "
                        "with --quick).")
    p.add_argument("--n", type=int, default=None, help="prefix_cache: examples (default 50).")
    p.add_argument("--prompt-tokens", type=int, default=None,
                   help="prefix_cache: rule prompt length in tokens (default 4000).")
    p.add_argument("--local-examples", type=int, default=None,
                   help="local_concurrency: extraction examples per arm (default 24; half that "
                        "for local_json and local_teacher).")
    p.add_argument("--local-rerun", action="store_true",
                   help="rerun: also repeat a run on the local model.")
    p.add_argument("--rerun-model", default=None,
                   help="rerun --local-rerun: model (default local/default; local/small with "
                        "--quick).")
    p.add_argument("--resume-concurrency", type=int, default=8)
    p.add_argument("--resume-delay", type=float, default=0.3,
                   help="resume: fake server delay per call, seconds.")
    p.add_argument("--concurrency-examples", type=int, default=None,
                   help="concurrency: examples (default 64).")
    p.add_argument("--delay", type=float, default=0.2,
                   help="concurrency: fake server delay per call, seconds.")
    p.add_argument("--rules-big", type=int, default=None, help="pages: default 10000.")
    p.add_argument("--rules-huge", type=int, default=None, help="scale: default 100000.")
    p.add_argument("--rules-small", type=int, default=100)
    p.add_argument("--scale-parts", default="page,rss",
                   help="scale: which figures (page: the page at 100k rules; rss: peak memory "
                        "of a 100k batch extraction); the other keeps its value.")
    p.add_argument("--extract-huge", type=int, default=None,
                   help="scale rss: examples of the big extraction (default 100000).")
    p.add_argument("--extract-small", type=int, default=None,
                   help="scale rss: examples of the small one (default 10000).")
    p.add_argument("--renders", type=int, default=None, help="pages: renders each (default 5).")
    p.add_argument("--out", default=None,
                   help="Results file (default bench/results/speed.json; speed.quick.json "
                        "with --quick).")
    p.add_argument("--quick", action="store_true",
                   help="Tiny smoke run: local/small, 3 examples, 600-token prompt, 16 "
                        "extraction examples, 1,000 vs 100 rules, 2 renders.")
    args = p.parse_args(argv)
    quick = args.quick
    args.model = args.model or ("local/small" if quick else "local/default")
    args.rerun_model = args.rerun_model or ("local/small" if quick else "local/default")
    args.n = args.n or (3 if quick else 50)
    args.local_examples = args.local_examples or (8 if quick else 24)
    args.prompt_tokens = args.prompt_tokens or (600 if quick else 4000)
    args.concurrency_examples = args.concurrency_examples or (16 if quick else 64)
    args.rules_big = args.rules_big or (1000 if quick else 10_000)
    args.rules_huge = args.rules_huge or (2000 if quick else 100_000)
    args.renders = args.renders or (2 if quick else 5)
    args.extract_huge = args.extract_huge or (2000 if quick else 100_000)
    args.extract_small = args.extract_small or (200 if quick else 10_000)
    args.out = Path(args.out or RESULTS / ("speed.quick.json" if quick else "speed.json"))
    args.sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(args.sections) - set(SECTIONS))
    if unknown:
        p.error(f"--only: unknown section(s) {', '.join(unknown)}; choose from "
                f"{', '.join(SECTIONS)}")
    if not 1 <= args.concurrency_examples <= 83:
        p.error("--concurrency-examples must be 1..83 (the demo task has 100 items)")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the chosen sections, merging each into the results file as it finishes."""
    args = parse_args(argv)
    models = {"prefix_cache": args.model, "local_runtime": args.model,
              "rerun_local": args.rerun_model if args.local_rerun else None,
              "fake": "tests/fakes FakeOpenAI (127.0.0.1)"}
    for section in args.sections:
        t0 = time.monotonic()
        result = RUNNERS[section](args)
        print(f"  {section} took {time.monotonic() - t0:.1f} s", flush=True)

        machine = machine_info(models)
        for entry in result.values():
            # Sections may come from different runs (--only): each says when and how it ran.
            entry["detail"].update(measured_at=machine["date"], quick=args.quick,
                                   cpu_model=machine["cpu_model"],
                                   load_average_1_5_15=machine["load_average_1_5_15"])

        def update(data: dict[str, Any], section: str = section,
                   result: dict[str, Any] = result, machine: dict[str, Any] = machine) -> None:
            # Entries from earlier runs keep the CPU they were measured on (the machine block
            # describes the latest run only).
            before = (data.get("machine") or {}).get("cpu_model")
            for old in SECTIONS:
                for entry in (data.get(old) or {}).values():
                    entry["detail"].setdefault("cpu_model", before)
            data["machine"] = machine
            # A section run in part (--scale-parts) keeps its other figures.
            data[section] = {**(data.get(section) or {}), **result}

        data = merge_json(args.out, update)
    rows = []
    for section in SECTIONS:
        for key, entry in (data.get(section) or {}).items():
            rows.append([f"{section}.{key}", entry["value"], entry["target"],
                         "yes" if entry["detail"].get("met") else "NO",
                         entry["detail"].get("measured_at", "")])
    print(f"\nwrote {args.out}")
    print_table(["measure", "value", "target", "met", "measured"], rows)
    if args.out.resolve() == (RESULTS / "speed.json").resolve():
        for readme in (REPO / "README.md", REPO / "bench" / "README.md"):
            replace_block(readme, "speed-table", markdown_table(data))
    return 0


def markdown_table(data: dict[str, Any]) -> str:
    """The README's speed table from a results file."""
    lines = ["| measure | value | target | met | model / scale | measured |",
             "| --- | --- | --- | --- | --- | --- |"]
    for section in SECTIONS:
        for key, entry in (data.get(section) or {}).items():
            d = entry["detail"]
            scale = {"prefix_cache": f"{d.get('model')}, {d.get('n_examples')} examples, "
                                     f"{d.get('rule_prompt_tokens')}-token prompt",
                     "rerun": "fake server" + (" + local" if isinstance(d.get("local"), dict)
                                               else ""),
                     "resume": f"{d.get('examples')} examples, concurrency "
                               f"{d.get('concurrency')}",
                     "concurrency": f"{d.get('examples')} examples, "
                                    f"{d.get('server_delay_s')} s server",
                     "local_concurrency": f"{d.get('model')}, {d.get('examples')} examples",
                     "local_json": f"{d.get('model')}, {d.get('calls_each')} calls each",
                     "local_teacher": f"{d.get('model')}, {d.get('calls')} calls",
                     "pages": f"{d.get('rules_big')} vs {d.get('rules_small')} rules",
                     "scale": (f"{d.get('rules_big')} vs {d.get('rules_small')} rules"
                               if "rules_big" in d else f"{d.get('examples_big')} vs "
                               f"{d.get('examples_small')} examples, --batch"),
                     "batch": f"{d.get('examples')} examples, fake batch API",
                     "estimate": f"demo chain, {d.get('tokens_counted_with')}"}[section]
            cpu = f", {d['cpu_model']}" if d.get("cpu_model") else ""
            lines.append(f"| `{section}.{key}` | {entry['value']} | {entry['target']} | "
                         f"{'yes' if d.get('met') else 'no'} | {scale} | "
                         f"{d.get('measured_at', '')[:10]}{cpu} |")
    m = data.get("machine", {})
    lines += ["", f"Latest run's machine: {m.get('cpu_model', '?')}, {m.get('cores', '?')} "
                  f"cores, {m.get('ram_gib', '?')} GiB, Python {m.get('python', '?')}; each row "
                  "names the CPU it was measured on."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
