"""Quality benchmark: zero-shot, 5-shot, PLD after consolidation and PLD after the conflict loop,
on the same fixed test items, for StereoSet, Contract-NLI and LogiQA.

It drives the real pipeline (:func:`pld.pipeline.chain.run_chain`, the same code as
``python -m pld run``) on one workspace per task and configuration under ``bench/.work/``. Every
heuristic and proposal is auto-approved as ``bench`` (identity kind ``auto`` in the audit trail),
which is what makes an unattended run possible; the JSON says so. Rerunning the same command
resumes: the stages skip what the workspace holds and every finished LLM call is answered from the
workspace's call cache. Results of separate ``--task`` runs merge into one JSON file.

Default subset sizes are chosen so that one task takes about an hour with ``local/default`` as
teacher and student on a quiet 2-core CPU machine; the script prints its estimate before it
starts. ``--train/--val/--test`` scale them up for a GPU server
(``--teacher openai-compatible/<model>@http://host:port/v1``) or an API (``--teacher
anthropic/<model>``, key in ``ANTHROPIC_API_KEY``).

    python bench/quality.py --task stereoset
    python bench/quality.py --task all --teacher anthropic/claude-sonnet-4-5 --train 600 --test 500
    python bench/quality.py --quick --task all          # tiny smoke run on local/small
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    REPO,
    RESULTS,
    WORK,
    count_tokens,
    machine_info,
    merge_json,
    print_table,
    replace_block,
)

from pld.errors import BadInput, NotReady
from pld.llm.base import ConfigError
from pld.llm.registry import parse_model

TASKS = ("stereoset", "contract-nli", "logiqa", "demo")
APPROVER = "bench"
TEACHER_STAGES = ("extract", "consolidate", "resolve")
STUDENT_STAGES = ("eval", "resolve-predict", "calibrate", "impact")


@dataclass(frozen=True)
class Sizes:
    """Subset sizes and the few options that depend on the task."""

    train: int
    val: int
    test: int
    iterations: int
    context_tokens: int | None = None  # contract-nli only: input budget per example


# About one hour per task with local/default on a quiet 2-core CPU (see estimate()): StereoSet
# inputs are ~60 tokens, LogiQA ~250, Contract-NLI is cut to a 500-token budget (its own default,
# 1,500, costs ~25 s per student call at ~60 prompt tokens/s on this CPU).
DEFAULTS: dict[str, Sizes] = {
    "stereoset": Sizes(train=120, val=60, test=200, iterations=2),
    "logiqa": Sizes(train=80, val=40, test=100, iterations=1),
    "contract-nli": Sizes(train=48, val=24, test=48, iterations=1, context_tokens=500),
    # The in-house demo has 100 messages in all.
    "demo": Sizes(train=40, val=25, test=35, iterations=2),
}
QUICK: dict[str, Sizes] = {
    "stereoset": Sizes(train=8, val=4, test=4, iterations=1),
    "logiqa": Sizes(train=8, val=4, test=4, iterations=1),
    "contract-nli": Sizes(train=8, val=4, test=4, iterations=1, context_tokens=200),
    "demo": Sizes(train=8, val=4, test=4, iterations=1),
}

PAPER = {  # arXiv 2602.21103, Gemma-3 4B student: baseline -> PLD (their test sets)
    "stereoset": ("macro-F1", 0.57, 0.90),
    "contract-nli": ("macro-F1", 0.67, 0.83),
    "logiqa": ("accuracy", 0.67, 0.70),
    "demo": None,  # our own task: no published number
}
READMES = (REPO / "README.md", REPO / "bench" / "README.md")


# -- estimate -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Speed:
    """Throughput of an embedded model on the 2-core project CPU, as the pipeline sees it."""

    prompt_tps: float  # new (uncached) prompt tokens per second
    gen_tps: float  # generated tokens per second, JSON-schema decoding included
    overhead_s: float


# local/default is fitted to the call log of the StereoSet and LogiQA runs (bench/.work, median
# latency per stage): extraction 12.7 s (63 new + 77 generated tokens) and 20.2 s (207 + 125),
# consolidation 40 s, student calls 1.4 s and 4.5 s all fall within 10% of these figures.
# shared/RUNTIME.md's 80 / 23 tok/s were a short free-text probe; long JSON replies under a
# schema and a busy page cache run slower. local/small is RUNTIME.md's probe scaled the same way.
SPEEDS = {"local/default": Speed(60, 7, 0.3), "local/small": Speed(135, 13, 0.2)}


def _call_s(speed: Speed, new_prompt_tokens: float, gen_tokens: float) -> float:
    return speed.overhead_s + new_prompt_tokens / speed.prompt_tps + gen_tokens / speed.gen_tps


def estimate(sizes: Sizes, tokens: dict[str, float], teacher: str, student: str,
             few_shot: int) -> dict[str, float | None]:
    """Seconds per stage on a quiet 2-core CPU; None for the parts a remote model does (they
    depend on the API's latency and rate limits).

    ``tokens``: mean input tokens per split (``train``, ``val``, ``test``) and ``template``, the
    extraction prompt's own tokens (the same for every example, so the model's prefix cache
    skips all but the first ~20 after the first call). Clusters are guessed as sqrt(n_train / 2)
    (the k-means fallback's k) and each heuristic as ~80 tokens; the teacher's conflict prompts
    hold the rules plus up to 16 clipped examples; a rule reply is ~70 tokens plus 0.3 per input
    token (measured: 77 on StereoSet, 125 on LogiQA). Cached calls cost nothing, so a resumed
    run is faster than this.
    """
    t, s = SPEEDS.get(teacher), SPEEDS.get(student)
    x_tr, x_va, x_te = tokens["train"], tokens["val"], tokens["test"]
    k = max(2, round(math.sqrt(sizes.train / 2)))
    p_tokens = 120 + 80 * k
    out: dict[str, float | None] = {"extract": None, "cluster": 60.0, "consolidate": None,
                                    "resolve (teacher)": None, "resolve (student)": None,
                                    "eval": None}
    if t is not None:
        out["extract"] = (tokens.get("template", 400) / t.prompt_tps
                          + sizes.train * _call_s(t, x_tr + 20, 70 + 0.3 * x_tr))
        out["consolidate"] = k * _call_s(t, 400 + 45 * sizes.train / k, 150)
        out["resolve (teacher)"] = sizes.iterations * k * _call_s(
            t, p_tokens + 600 + 12 * min(x_va, 375), 150)
    if s is not None:
        out["resolve (student)"] = (sizes.iterations + 1) * (
            p_tokens / s.prompt_tps + sizes.val * _call_s(s, x_va + 12, 1))
        prompts = [60, 100 + few_shot * (x_tr + 15), p_tokens, p_tokens]
        out["eval"] = (sum(p / s.prompt_tps for p in prompts)
                       + len(prompts) * sizes.test * _call_s(s, x_te + 12, 1))
    return out


# -- workspace ------------------------------------------------------------------------------------

def _slug(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", model).strip("-")[:60]


def workspace_path(work: Path, task: str, sizes: Sizes, seed: int, teacher: str,
                   student: str, variant: str = "") -> Path:
    """One workspace per task, sizes, seed, models and method variant: results of different
    settings never mix (a task's splits cannot change inside a workspace anyway)."""
    ctx = f"-ctx{sizes.context_tokens}" if sizes.context_tokens else ""
    name = (f"{task}-tr{sizes.train}-va{sizes.val}-te{sizes.test}{ctx}-s{seed}"
            f"--{_slug(teacher)}--{_slug(student)}{f'--{variant}' if variant else ''}.db")
    return work / name


# The base configuration; any other clustering or merge option makes a variant of the method.
BASE_METHOD = {"method": "dbscan", "eps": "auto", "min_samples": 6, "k": None,
               "cover_labels": False, "merge": "all"}


def variant_flags(args: argparse.Namespace) -> list[tuple[str, Any]]:
    """The method options of this run that differ from the base configuration, in flag order."""
    base = {**BASE_METHOD, **getattr(args, "base_method", {})}
    return [(name, getattr(args, name)) for name, default in base.items()
            if getattr(args, name) != default]


def _flag(name: str, value: Any) -> str:
    return f"--{name.replace('_', '-')}" + ("" if value is True else f" {value}")


def variant_name(args: argparse.Namespace) -> str:
    """The variant's key in ``quality.json`` and its workspace suffix; "" for the base run.

    ``--merge medoid`` gives ``merge-medoid``; ``--method kmeans --k 8`` gives ``kmeans-k8``;
    ``--cover-labels --merge medoid`` gives ``cover+merge-medoid``.
    """
    parts = []
    flags = dict(variant_flags(args))
    if any(name in flags for name in ("method", "eps", "min_samples", "k")):
        parts.append(args.method + "".join(f"-{short}{flags[name]}" for name, short in
                                           (("eps", "eps"), ("min_samples", "ms"), ("k", "k"))
                                           if name in flags))
    if "cover_labels" in flags:
        parts.append("cover")
    if "merge" in flags:
        parts.append(f"merge-{args.merge}")
    return "+".join(parts)


def seed_call_cache(ws: Any, source: Path) -> int:
    """Copy the LLM call log of the workspace at ``source`` into the new, empty ``ws``.

    A method variant (``--merge medoid``, ``--method kmeans --k 8``) starts from the base run's
    workspace cache, so every call it shares with the base run (all of extraction, the
    baselines) is answered from the cache instead of being paid for again. Returns the highest
    copied call id: rows up to it were made by the base run and are left out of this run's token
    counts.
    """
    # ATTACH and DETACH cannot run inside a transaction: only the copy is one.
    ws.db.execute("ATTACH DATABASE ? AS src", [str(source)])
    try:
        with ws.write() as db:
            cols = ", ".join(c.name for c in db["llm_calls"].columns)
            db.execute(f"INSERT INTO llm_calls ({cols}) SELECT {cols} FROM src.llm_calls")
            db.execute("INSERT OR IGNORE INTO texts (sha256, text) "
                       "SELECT sha256, text FROM src.texts")
    finally:
        ws.db.execute("DETACH DATABASE src")
    return int(ws.query("SELECT coalesce(max(id), 0) AS n FROM llm_calls")[0]["n"])


def _needed_ctx(prompt_tokens: int, longest_input: int) -> int:
    """A context window that fits the longest student call, rounded up to 4,096."""
    need = int((prompt_tokens + longest_input) * 1.15) + 64
    return min(32768, max(8192, 4096 * math.ceil(need / 4096)))


class Progress:
    """Prints ``[elapsed] stage done/total`` about every 10% (and at least every minute)."""

    def __init__(self, ws: Any, task: str) -> None:
        self.ws, self.task = ws, task
        self.t0 = time.monotonic()
        self.last: tuple[str, int] = ("", -1)
        self.last_t = 0.0

    def __call__(self, done: int, total: int) -> None:
        if not total:
            return
        rows = self.ws.query("SELECT kind FROM runs WHERE task = ? AND status = 'running' "
                             "ORDER BY id DESC LIMIT 1", [self.task])
        stage = rows[0]["kind"] if rows else "?"
        decile = 10 * done // total
        t = time.monotonic()
        if (stage, decile) != self.last or done >= total or t - self.last_t > 60:
            self.last, self.last_t = (stage, decile), t
            m, sec = divmod(int(t - self.t0), 60)
            print(f"  [{m:3d}:{sec:02d}] {self.task} {stage} {done}/{total}", flush=True)


# -- results --------------------------------------------------------------------------------------

def _method(ws: Any, evaluation_id: int, count: Any) -> dict[str, Any]:
    row = ws.query("SELECT * FROM evaluations WHERE id = ?", [evaluation_id])[0]
    from pld.workspace import loads

    m = loads(row["metrics"], {})
    ci = m.get("ci") or {}
    text = ws.query("SELECT text FROM texts WHERE sha256 = ?", [row["prompt_sha256"]])
    n_tokens, _ = count(text[0]["text"]) if text else (None, "")
    cal, how = m.get("calibrated"), m.get("calibration") or {}
    cal_ci = (cal or {}).get("ci") or {}
    return {
        "macro_f1": round(m["macro_f1"], 4),
        "ci": [round(v, 4) for v in ci.get("macro_f1", [])] or None,
        "accuracy": round(m["accuracy"], 4),
        "accuracy_ci": [round(v, 4) for v in ci.get("accuracy", [])] or None,
        "top_answer": m.get("top_answer"),
        "top_answer_share": m.get("top_answer_share"),
        "calibrated": None if cal is None else {
            "macro_f1": round(cal["macro_f1"], 4),
            "ci": [round(v, 4) for v in cal_ci.get("macro_f1", [])] or None,
            "accuracy": round(cal["accuracy"], 4),
            "accuracy_ci": [round(v, 4) for v in cal_ci.get("accuracy", [])] or None,
            "top_answer": cal.get("top_answer"), "top_answer_share": cal.get("top_answer_share"),
            "method": how.get("method"), "bias": how.get("bias"), "n_val": how.get("n_val")},
        "calibration_status": how.get("status"),
        "n": m["n"],
        "n_unparseable": m.get("n_unparseable", 0),
        "prompt_tokens": n_tokens,
        "prompt_version": row["prompt_version"],
        "evaluation_id": evaluation_id,
    }


def _impact_block(ws: Any, task: str) -> dict[str, Any] | None:
    """The last leave-one-out report of the conflict loop: each heuristic's effect on
    validation, and the prompt without any heuristic beside the full one."""
    from pld.pipeline.impact import latest_impact

    r = latest_impact(ws, task)
    if r is None:
        return None
    return {"metric": r["metric"], "n_val": r["n_val"], "full": r["full"],
            "no_rules": r["no_rules"],
            "heuristics": [{"id": h["heuristic_id"], "effect": round(h["effect"], 4),
                            "ci": h["ci"], "fixes": len(h["fixes"]), "breaks": len(h["breaks"])}
                           for h in r["heuristics"]]}


def _tokens(ws: Any, model: str, stages: tuple[str, ...], after_id: int = 0) -> dict[str, Any]:
    """Tokens actually spent (cache hits log zero tokens, so resumed runs are not counted twice;
    calls up to ``after_id`` were copied from another workspace and are not counted at all)."""
    marks = ",".join("?" * len(stages))
    rows = ws.query(
        "SELECT stage, count(*) AS calls, coalesce(sum(cache_hit), 0) AS cache_hits, "
        "coalesce(sum(input_tokens), 0) AS input_tokens, "
        "coalesce(sum(output_tokens), 0) AS output_tokens, "
        "coalesce(sum(cached_tokens), 0) AS cached_input_tokens, "
        "round(coalesce(sum(latency_s), 0), 1) AS latency_s, "
        "round(coalesce(sum(cost_usd), 0), 4) AS cost_usd "
        f"FROM llm_calls WHERE model = ? AND stage IN ({marks}) AND id > ? "
        "GROUP BY stage ORDER BY stage",
        [model, *stages, after_id])
    total = {k: 0 for k in ("calls", "cache_hits", "input_tokens", "output_tokens",
                            "cached_input_tokens", "latency_s", "cost_usd")}
    for r in rows:
        for key in total:
            total[key] += r[key]
    total["latency_s"] = round(total["latency_s"], 1)
    total["cost_usd"] = round(total["cost_usd"], 4)
    return {**total, "by_stage": {r.pop("stage"): r for r in rows}}


def _stage_seconds(ws: Any, task: str, first_run_id: int) -> dict[str, float]:
    rows = ws.query(
        "SELECT kind, started_at, finished_at FROM runs WHERE task = ? AND id > ? "
        "AND finished_at IS NOT NULL", [task, first_run_id])
    from datetime import datetime

    out: dict[str, float] = {}
    for r in rows:
        s = (datetime.fromisoformat(r["finished_at"]) - datetime.fromisoformat(r["started_at"]))
        out[r["kind"]] = round(out.get(r["kind"], 0.0) + s.total_seconds(), 1)
    return out


def run_task(task: str, args: argparse.Namespace, sizes: Sizes) -> dict[str, Any]:
    """Run (or resume) the chain for one task and return its results block."""
    from pld.pipeline.chain import ChainOptions, run_chain
    from pld.pipeline.evaluate import few_shot_examples, few_shot_prompt
    from pld.pipeline.extract import build_prompt
    from pld.pipeline.student import get_prompt
    from pld.tasks import load_task
    from pld.tasks.store import loaded_tasks, task_info
    from pld.workspace import open_workspace

    variant = variant_name(args)
    path = workspace_path(Path(args.work), task, sizes, args.seed, args.teacher, args.student,
                          variant)
    seed_file = path.with_suffix(".seed.json")
    ws = open_workspace(path)
    base = workspace_path(Path(args.work), task, sizes, args.seed, args.teacher, args.student)
    unused = not ws.query("SELECT 1 FROM llm_calls LIMIT 1")
    if variant and unused and base.exists():
        seed_file.write_text(json.dumps({"source": base.name,
                                         "max_call_id": seed_call_cache(ws, base)}))
        print(f"   call cache seeded from {base.name}")
    seeded = json.loads(seed_file.read_text()) if seed_file.exists() else None
    after_id = seeded["max_call_id"] if seeded else 0
    if task not in {t.name for t in loaded_tasks(ws)}:
        options = {"context_tokens": sizes.context_tokens} if sizes.context_tokens else None
        load_task(ws, task, n_train=sizes.train, n_val=sizes.val, n_test=sizes.test,
                  seed=args.seed, options=options)
    info = task_info(ws, task)
    counts = {r["split"]: r["n"] for r in ws.query(
        "SELECT split, count(*) AS n FROM examples WHERE task = ? GROUP BY split", [task])}
    local_name = next((parse_model(m).name for m in (args.student, args.teacher)
                       if parse_model(m).provider == "local"), "default")

    def count(text: str) -> tuple[int, str]:
        return count_tokens(text, local_name)

    toks: dict[str, float] = {}
    longest = 0
    for split in ("train", "val", "test"):
        texts = [r["text"] for r in ws.query(
            "SELECT text FROM examples WHERE task = ? AND split = ?", [task, split])]
        n = [count(t)[0] for t in texts]
        toks[split] = sum(n) / max(len(n), 1)
        longest = max([longest, *n])
    first = ws.query("SELECT * FROM examples WHERE task = ? AND split = 'train' LIMIT 1", [task])
    if first:
        toks["template"] = count(build_prompt(info, first[0]))[0] - count(first[0]["text"])[0]
    few_tokens = 0
    if args.few_shot:
        few_tokens = count(few_shot_prompt(info, few_shot_examples(
            ws, task, args.few_shot, seed=args.seed)))[0]
    if any(parse_model(m).provider == "local" for m in (args.teacher, args.student)) \
            and not os.environ.get("PLD_LOCAL_N_CTX"):
        # The k-shot prompt of long-input tasks can outgrow the default 8,192-token window.
        ctx = _needed_ctx(few_tokens, longest)
        if ctx > 8192:
            os.environ["PLD_LOCAL_N_CTX"] = str(ctx)
            print(f"  PLD_LOCAL_N_CTX={ctx} (the {args.few_shot}-shot prompt is {few_tokens} "
                  f"tokens, the longest input {longest})")

    est = estimate(sizes, toks, args.teacher, args.student, args.few_shot)
    print(f"\n== {task}: train {counts.get('train')} / val {counts.get('val')} / test "
          f"{counts.get('test')}, mean input tokens "
          + ", ".join(f"{k} {toks[k]:.0f}" for k in ("train", "val", "test"))
          + f" (extraction template {toks.get('template', 0):.0f})\n   workspace {path}")
    known = sum(v for v in est.values() if v is not None)
    remote = [k for k, v in est.items() if v is None]
    print("   estimated time on a quiet 2-core CPU (cached parts are free): "
          + ", ".join(f"{k} {'remote' if v is None else f'{v / 60:.0f} min'}"
                      for k, v in est.items())
          + f"; total ~{known / 60:.0f} min" + (" + the remote calls" if remote else ""))
    n_student = (sizes.iterations + 1) * counts.get("val", 0) + 4 * counts.get("test", 0)
    print(f"   calls: student {n_student}, teacher "
          f"~{counts.get('train', 0) + 10 + 8 * sizes.iterations}")
    if args.estimate_only:
        ws.close()
        return {}

    first_run = ws.query("SELECT coalesce(max(id), 0) AS n FROM runs")[0]["n"]
    t0 = time.monotonic()
    options = ChainOptions(
        teacher=args.teacher, student=args.student, auto_approve_as=APPROVER,
        concurrency=args.concurrency, method=args.method, eps=args.eps,
        min_samples=args.min_samples, k=args.k, cover_labels=args.cover_labels,
        iterations=sizes.iterations,
        few_shot=args.few_shot or None, seed=args.seed, merge=args.merge,
        worked_examples=args.worked_examples)
    # A rerun resumes: the chain recognises its finished stages, the conflict loop included.
    summary = run_chain(ws, task, options, on_progress=Progress(ws, task))
    st = summary.stages
    evals = st["eval"]
    methods = {key: _method(ws, evals[name]["evaluation_id"], count) if name in evals else None
               for key, name in (("zero_shot", "zero-shot"), ("few_shot", "few-shot"),
                                 ("pld_clustered", "pld-consolidated"),
                                 ("pld_post_conflict", "pld"), ("pld_worked", "pld-worked"))}
    v_first = st["prompt"]["version"]
    v_best = methods["pld_post_conflict"]["prompt_version"]
    wall = time.monotonic() - t0
    first, best = get_prompt(ws, task, v_first), get_prompt(ws, task, v_best)
    prompt_tokens, how = count(best.text)
    n_rules, n_failed = (ws.query(
        "SELECT count(*) AS n FROM micro_instructions WHERE task = ? AND status = ?",
        [task, status])[0]["n"] for status in ("ok", "failed"))
    auto = ws.query("SELECT count(*) AS n FROM reviews WHERE who = ? AND identity_kind = 'auto' "
                    "AND action = 'approve'", [APPROVER])[0]["n"]
    block = {
        "n_train": counts.get("train"), "n_val": counts.get("val"), "n_test": counts.get("test"),
        "seed": args.seed,
        "context_tokens": sizes.context_tokens,
        **methods,
        "rules": n_rules,
        "rules_failed": n_failed,
        "clusters": st["cluster"]["n_clusters"],
        "cluster_noise_share": st["cluster"]["noise_share"],
        "cluster_fallback": st["cluster"]["fallback"],
        "heuristics_clustered": len(first.heuristic_ids),
        "heuristics": len(best.heuristic_ids),
        "prompt_tokens": prompt_tokens,
        "prompt_tokens_counted_with": how,
        "prompt_version": best.version,
        "prompt_sha256": best.sha256,
        "impact": _impact_block(ws, task),
        "conflict_loop": {"iterations": sizes.iterations,
                          "stop_reason": _stop_reason(ws, task, args.student),
                          "val_history": _val_history(ws, task, args.student)},
        "approval": f"auto-approved as {APPROVER!r}: {auto} approvals recorded with identity "
                    "kind 'auto' in the audit trail (no human review)",
        "consolidation_merge": args.merge,
        "variant_flags": " ".join(_flag(n, v) for n, v in variant_flags(args)),
        "call_cache_seeded_from": seeded["source"] if seeded else None,
        "tokens": {"teacher": _tokens(ws, args.teacher, TEACHER_STAGES, after_id),
                   "student": _tokens(ws, args.student, STUDENT_STAGES, after_id)},
        "models": {"teacher": args.teacher, "student": args.student},
        "wall_s_this_invocation": round(wall, 1),
        "stage_s_this_invocation": _stage_seconds(ws, task, first_run),
        "estimate_s": {k: None if v is None else round(v) for k, v in est.items()},
        "workspace": str(path.relative_to(REPO) if path.is_relative_to(REPO) else path),
    }
    ws.close()
    return block


def _loop_records(ws: Any, task: str, student: str) -> list[dict[str, Any]]:
    from pld.workspace import loads

    rows = ws.query("SELECT method, prompt_version, n, metrics FROM evaluations WHERE task = ? "
                    "AND split = 'val' AND student = ? AND method LIKE 'resolve-iter-%' "
                    "ORDER BY id", [task, student])
    return [{**r, "metrics": loads(r["metrics"], {})} for r in rows]


def _stop_reason(ws: Any, task: str, student: str) -> str | None:
    """Why the conflict loop stopped, from its last iteration's record."""
    recs = _loop_records(ws, task, student)
    if not recs:
        return None
    return recs[-1]["metrics"].get("resolve", {}).get("stop") or "max-iterations"


def _val_history(ws: Any, task: str, student: str) -> list[dict[str, Any]]:
    """Validation macro-F1 of each prompt version the conflict loop evaluated, in order: raw,
    and calibrated (what adoption compared) when the student could be calibrated."""
    return [{"iteration": r["method"].removeprefix("resolve-iter-"),
             "version": r["prompt_version"], "n": r["n"],
             "macro_f1": round(r["metrics"]["macro_f1"], 4),
             "calibrated_macro_f1": (round(r["metrics"]["calibrated"]["macro_f1"], 4)
                                     if r["metrics"].get("calibrated") else None),
             "adopted": r["metrics"].get("resolve", {}).get("adopted")}
            for r in _loop_records(ws, task, student)]


# -- output ---------------------------------------------------------------------------------------

def _fmt(block: dict[str, Any] | None, key: str = "macro_f1") -> str:
    if not block:
        return "-"
    ci = block.get("ci" if key == "macro_f1" else "accuracy_ci") or ["?", "?"]
    return f"{block[key]:.3f} [{ci[0]:.2f}, {ci[1]:.2f}]" if ci[0] != "?" else f"{block[key]:.3f}"


def _share(block: dict[str, Any] | None) -> str:
    share = (block or {}).get("top_answer_share")
    return "-" if share is None else f"{share:.0%}"


def _cell(block: dict[str, Any] | None, key: str) -> str:
    """Raw score → calibrated score, each with its most frequent answer's share."""
    if not block:
        return "-"
    raw = f"{_fmt(block, key)} ({_share(block)})"
    if "calibrated" not in block:  # measured before calibration existed
        return raw + " → not measured"
    cal = block["calibrated"]
    return raw + (f" → {_fmt(cal, key)} ({_share(cal)})" if cal else " → n/a")


def _items(t: dict[str, Any]) -> str:
    return f"{t['n_test']} ({str(t.get('measured_at') or '?')[:10]})"


METHOD_KEYS = (("zero_shot", "zero-shot"), ("few_shot", "5-shot"),
               ("pld_clustered", "PLD clustered"), ("pld_post_conflict", "PLD after conflicts"),
               ("pld_worked", "PLD + worked examples"))


def _metric_of(name: str) -> tuple[str, str]:
    paper = PAPER.get(name)
    metric = paper[0] if paper else "macro-F1"
    return metric, "accuracy" if metric == "accuracy" else "macro_f1"


def print_results(tasks: dict[str, Any]) -> None:
    """The comparison table of every task in the results file: raw → calibrated."""
    rows = []
    for name, t in tasks.items():
        if not t or "zero_shot" not in t:
            continue
        for key, label in (("macro_f1", "macro-F1"), ("accuracy", "accuracy")):
            rows.append([name, label, *(_cell(t.get(k), key) for k, _ in METHOD_KEYS),
                         t["clusters"], t["heuristics"], t["prompt_tokens"],
                         f"{t['n_train']}/{t['n_val']}/{t['n_test']}"])
    print_table(["task", "metric", *(label for _, label in METHOD_KEYS), "clusters",
                 "heuristics", "prompt tok", "train/val/test"], rows)


def markdown_table(data: dict[str, Any]) -> str:
    """The README table: each method raw → calibrated, the share of the most frequent answer in
    brackets, and the paper's published numbers beside ours."""
    lines = [
        "| task | metric | paper: Gemma-3 4B baseline → PLD | ours: zero-shot | ours: 5-shot | "
        "ours: PLD clustered | ours: PLD after conflicts | ours: PLD + worked examples | "
        "ours: test items (measured) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    tasks = data.get("tasks", {})
    for name in TASKS:
        metric, key = _metric_of(name)
        paper = PAPER.get(name)
        published = f"{paper[1]:.2f} → {paper[2]:.2f}" if paper else "(our own task)"
        t = tasks.get(name) or {}
        if "zero_shot" in t:
            ours = [*(_cell(t.get(k), key) for k, _ in METHOD_KEYS), _items(t)]
        else:
            ours = ["not run yet"] + ["-"] * len(METHOD_KEYS)
        lines.append(f"| {name} | {metric} | {published} | " + " | ".join(ours) + " |")
        for variant, blocks in data.get("variants", {}).items():
            v = blocks.get(name)
            if v and "zero_shot" in v:
                flags = v.get("variant_flags") or f"--{variant.replace('-', ' ', 1)}"
                lines.append(f"| {name}, {flags} | {metric} | | "
                             + " | ".join(_cell(v.get(k), key) for k, _ in METHOD_KEYS)
                             + f" | {_items(v)} |")
    blocks = [*tasks.values(), *(b for v in data.get("variants", {}).values()
                                  for b in v.values())]
    models = sorted({f"{t['models']['teacher']} → {t['models']['student']}"
                     for t in blocks if t and "models" in t})
    if models:
        lines.append("")
        machines = sorted({(str(t.get("measured_at") or "?")[:10], t.get("machine_cpu") or "?")
                           for t in blocks if t and "models" in t})
        lines.append(f"Ours: teacher → student {', '.join(models)}; machines: "
                     + "; ".join(f"{cpu} (rows measured {day})" for day, cpu in machines)
                     + ". Each cell: raw score → "
                     "calibrated score (per-label bias fitted on validation only); brackets: "
                     "bootstrap 95% CI, then the share of the most frequent answer. n/a: the "
                     "student gave no label scores; not measured: a run from before "
                     "calibration existed (older templates too).")
    return "\n".join(lines)


def update_readme(data: dict[str, Any]) -> None:
    """Put the current results into the READMEs' quality tables."""
    for readme in READMES:
        replace_block(readme, "quality-table", markdown_table(data))


# -- main -----------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see ``--help``)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="all", choices=[*TASKS, "all"])
    p.add_argument("--teacher", default="local/default", help="Teacher model string.")
    p.add_argument("--student", default="local/default", help="Student model string.")
    p.add_argument("--train", type=int, default=None, help="Training examples (extraction).")
    p.add_argument("--val", type=int, default=None, help="Validation examples (conflict loop).")
    p.add_argument("--test", type=int, default=None, help="Test items (all four methods).")
    p.add_argument("--iterations", type=int, default=None,
                   help="Conflict-loop iterations after the first evaluation.")
    p.add_argument("--context-tokens", type=int, default=None,
                   help="contract-nli: input budget per example (default 500 here; the task's "
                        "own default is 1500).")
    p.add_argument("--few-shot", type=int, default=5, help="k of the k-shot baseline (0: skip).")
    p.add_argument("--worked-examples", action="store_true",
                   help="Also evaluate the adopted prompt with each heuristic followed by its "
                        "most typical source example (eval --worked-examples).")
    p.add_argument("--method", default="dbscan", choices=["dbscan", "hdbscan", "kmeans"])
    p.add_argument("--eps", default="auto")
    p.add_argument("--min-samples", type=int, default=6)
    p.add_argument("--k", type=int, default=None, help="k-means: number of clusters.")
    p.add_argument("--cover-labels", action="store_true",
                   help="A cluster for each label whose rules all fall into noise "
                        "(cluster --cover-labels).")
    p.add_argument("--concurrency", type=int, default=None,
                   help="Parallel teacher calls (default: 1 local, 8 remote).")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--merge", default="all", choices=["all", "by-label", "medoid"],
                   help="How consolidate turns a cluster into a heuristic (consolidate --merge). "
                        "This or any clustering option other than the default makes a variant: "
                        "its results go to variants.NAME.TASK (NAME e.g. merge-medoid, "
                        "kmeans-k8) and its new workspace's call cache is seeded from the base "
                        "run's, so shared calls are not paid again.")
    p.add_argument("--work", default=str(WORK), help="Folder of the benchmark workspaces.")
    p.add_argument("--out", default=None, help="Results file (default bench/results/quality.json"
                                               ", quality.quick.json with --quick).")
    p.add_argument("--quick", action="store_true",
                   help="Tiny smoke run: 8/4/4 items, local/small, k-means k=2, 2-shot.")
    p.add_argument("--estimate-only", action="store_true",
                   help="Load the data, print the time estimate and stop.")
    args = p.parse_args(argv)
    if args.quick:
        if args.teacher == "local/default":
            args.teacher = "local/small"
        if args.student == "local/default":
            args.student = "local/small"
        if args.method == "dbscan":
            args.method, args.k = "kmeans", args.k or 2
            args.base_method = {"method": "kmeans", "k": args.k}  # not a variant: the smoke run
        args.few_shot = min(args.few_shot, 2)
    if args.eps != "auto":
        args.eps = float(args.eps)
    for m in (args.teacher, args.student):
        try:
            parse_model(m)
        except ConfigError as e:
            p.error(str(e))
    out = args.out or RESULTS / ("quality.quick.json" if args.quick else "quality.json")
    args.out = Path(out)
    return args


def sizes_for(task: str, args: argparse.Namespace) -> Sizes:
    """The task's default sizes, overridden by the command-line flags."""
    d = (QUICK if args.quick else DEFAULTS)[task]
    ctx = args.context_tokens if args.context_tokens is not None else d.context_tokens
    return Sizes(train=args.train or d.train, val=args.val or d.val, test=args.test or d.test,
                 iterations=args.iterations if args.iterations is not None else d.iterations,
                 context_tokens=ctx if task == "contract-nli" else None)


def main(argv: list[str] | None = None) -> int:
    """Run the chosen tasks, merge their results into the JSON file, print the table."""
    args = parse_args(argv)
    tasks = TASKS if args.task == "all" else (args.task,)
    failed = False
    for task in tasks:
        sizes = sizes_for(task, args)
        try:
            block = run_task(task, args, sizes)
        except (BadInput, NotReady, ConfigError) as e:
            print(f"{task}: {e}", file=sys.stderr)
            failed = True
            continue
        if not block:
            continue
        block["quick"] = args.quick

        machine = machine_info({"teacher": args.teacher, "student": args.student})
        block.update(measured_at=machine["date"], machine_cpu=machine["cpu_model"],
                     load_average_1_5_15=machine["load_average_1_5_15"])

        def update(data: dict[str, Any], task: str = task, block: dict[str, Any] = block,
                   machine: dict[str, Any] = machine) -> None:
            data["machine"] = machine
            if variant_name(args):  # a variant of the method: kept beside the base run
                data.setdefault("variants", {}).setdefault(variant_name(args), {})[task] = block
            else:
                data.setdefault("tasks", {})[task] = block
            data["paper"] = {k: {"metric": v[0], "baseline": v[1], "pld": v[2],
                                 "model": "Gemma-3 4B"} for k, v in PAPER.items() if v}
            data["notes"] = ("Each task block comes from its own run (see its models, sizes "
                             "and workspace); 'machine' describes the latest run. Our models "
                             "and subsets differ from the paper's.")

        data = merge_json(args.out, update)
        print(f"\nwrote {args.out}")
        print_results(data.get("tasks", {}))
        if data.get("variants"):
            print("\nvariants:")
            print_results({f"{t} ({v})": b for v, blocks in data["variants"].items()
                           for t, b in blocks.items()})
        if not args.quick and args.out.resolve() == (RESULTS / "quality.json").resolve():
            update_readme(data)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
