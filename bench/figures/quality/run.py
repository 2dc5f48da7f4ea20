"""Running (or resuming) the real chain on one task's workspace, with every approval automatic,
and turning the finished workspace into the task's block of ``quality.json``."""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from typing import Any

from bench.figures.machine import REPO
from bench.figures.quality.plan import Sizes, estimate
from bench.figures.quality.readout import (
    METHODS,
    STUDENT_STAGES,
    TEACHER_STAGES,
    impact_block,
    method_block,
    paired_blocks,
    stage_seconds,
    stop_reason,
    tokens_spent,
    val_history,
)
from bench.figures.quality.variants import (
    SWITCHES,
    flags_text,
    seed_call_cache,
    variant_name,
    workspace_path,
)
from bench.figures.tokens import count_tokens
from pld.identity import AUTO, Identity
from pld.llm.registry import parse_model
from pld.workspace import Workspace

APPROVER = "bench"
# The rule verification figures that describe the workspace's rules (a resumed run gives the
# same), not what one invocation verified.
VERIFY_KEYS = ("rules", "with_evidence", "mean_effect", "helping", "hurting", "no_effect",
               "restatements")


def _needed_ctx(prompt_tokens: int, longest_input: int) -> int:
    """A context window that fits the longest student call, rounded up to 4,096."""
    need = int((prompt_tokens + longest_input) * 1.15) + 64
    return min(32768, max(8192, 4096 * math.ceil(need / 4096)))


class Progress:
    """Prints ``[elapsed] stage done/total`` about every 10% (and at least every minute)."""

    def __init__(self, ws: Workspace, task: str) -> None:
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


def _split_counts(ws: Workspace, task: str) -> dict[str, int]:
    return {r["split"]: r["n"] for r in ws.query(
        "SELECT split, count(*) AS n FROM examples WHERE task = ? GROUP BY split", [task])}


def _open(task: str, args: argparse.Namespace, sizes: Sizes
          ) -> tuple[Path, Workspace, dict[str, Any] | None]:
    """The task's workspace for this configuration, its call cache seeded from the base run's
    for a variant, the task loaded; and where the seed came from (None: not seeded)."""
    from pld.tasks import load_task
    from pld.tasks.store import loaded_tasks
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
    if task not in {t.name for t in loaded_tasks(ws)}:
        options = {"context_tokens": sizes.context_tokens} if sizes.context_tokens else None
        load_task(ws, task, n_train=sizes.train, n_val=sizes.val, n_test=sizes.test,
                  seed=args.seed, options=options)
    return path, ws, seeded


def _plan(ws: Workspace, path: Path, task: str, args: argparse.Namespace, sizes: Sizes,
          count: Any) -> dict[str, float | None]:
    """Measure the inputs, widen the local model's window if the k-shot prompt needs it, print
    the time estimate; the estimate per stage."""
    from pld.pipeline.evaluate import few_shot_examples, few_shot_prompt
    from pld.pipeline.extract.stage import build_prompt
    from pld.tasks.store import task_info

    info = task_info(ws, task)
    counts = _split_counts(ws, task)
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
    shots = max(args.few_shot, args.nearest_few_shot)
    if shots:
        # Nearest shots are of the same length on average as random ones.
        few_tokens = count(few_shot_prompt(info, few_shot_examples(
            ws, task, shots, seed=args.seed)))[0]
    if any(parse_model(m).provider == "local" for m in (args.teacher, args.student)) \
            and not os.environ.get("PLD_LOCAL_N_CTX"):
        # The k-shot prompt of long-input tasks can outgrow the default 8,192-token window.
        ctx = _needed_ctx(few_tokens, longest)
        if ctx > 8192:
            os.environ["PLD_LOCAL_N_CTX"] = str(ctx)
            print(f"  PLD_LOCAL_N_CTX={ctx} (the {shots}-shot prompt is {few_tokens} "
                  f"tokens, the longest input {longest})")

    est = estimate(sizes, toks, args.teacher, args.student, args.few_shot,
                   nearest_few_shot=args.nearest_few_shot, contrastive=args.contrastive,
                   failing_first=args.failing_first, verify_rules=args.verify_rules)
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
    n_methods = 3 + bool(args.few_shot) + bool(args.nearest_few_shot)
    n_student = ((sizes.iterations + 1) * counts.get("val", 0)
                 + n_methods * counts.get("test", 0))
    print(f"   calls: student {n_student}, teacher "
          f"~{counts.get('train', 0) + 10 + 8 * sizes.iterations}")
    return est


def run_task(task: str, args: argparse.Namespace, sizes: Sizes) -> dict[str, Any]:
    """Run (or resume) the chain for one task and return its results block ({} with
    ``--estimate-only``)."""
    from pld.pipeline.chain import ChainOptions, run_chain
    from pld.pipeline.student import get_prompt

    path, ws, seeded = _open(task, args, sizes)
    after_id = seeded["max_call_id"] if seeded else 0
    local_name = next((parse_model(m).name for m in (args.student, args.teacher)
                       if parse_model(m).provider == "local"), "default")

    def count(text: str) -> tuple[int, str]:
        return count_tokens(text, local_name)

    est = _plan(ws, path, task, args, sizes, count)
    if args.estimate_only:
        ws.close()
        return {}

    first_run = ws.query("SELECT coalesce(max(id), 0) AS n FROM runs")[0]["n"]
    t0 = time.monotonic()
    options = ChainOptions(
        teacher=args.teacher, student=args.student, auto_approve_as=Identity(APPROVER, AUTO),
        contrastive=args.contrastive, failing_first=args.failing_first,
        verify_rules=args.verify_rules,
        concurrency=args.concurrency, method=args.method, eps=args.eps,
        min_samples=args.min_samples, k=args.k, cover_labels=args.cover_labels,
        iterations=sizes.iterations,
        few_shot=args.few_shot or None, nearest_few_shot=args.nearest_few_shot or None,
        seed=args.seed, merge=args.merge, worked_examples=args.worked_examples)
    # A rerun resumes: the chain recognises its finished stages, the conflict loop included.
    summary = run_chain(ws, task, options, on_progress=Progress(ws, task))
    st = summary.stages
    evals = st["eval"]
    methods = {key: method_block(ws, evals[name]["evaluation_id"], count)
               if name in evals else None for key, name in METHODS}
    # No prompt stage: consolidation made no heuristic (summary.statement says why), and the
    # zero-shot prompt is what PLD leaves.
    made = "prompt" in st
    clustered = st.get("cluster") or {}  # none when extraction wrote no rule
    wall = time.monotonic() - t0
    first = get_prompt(ws, task, st["prompt"]["version"]) if made else None
    best = get_prompt(ws, task, methods["pld_post_conflict"]["prompt_version"]) if made else None
    prompt_tokens, how = count(best.text) if best else (None, "")
    counts = _split_counts(ws, task)
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
        "paired": paired_blocks(ws, task, methods, args.seed),
        "rules": n_rules,
        "rules_failed": n_failed,
        # What the workspace holds (the same on a resumed run), not this invocation's counts.
        "extraction": {k: st["extract"].get(k) for k in ("contrastive", "student_right",
                                                          "restatements")},
        "student_scores": st.get("student_scores"),
        "clusters": clustered.get("n_clusters"),
        "cluster_noise_share": clustered.get("noise_share"),
        "largest_cluster_share": clustered.get("largest_share"),
        "cluster_method": clustered.get("method"),
        "cluster_chosen": clustered.get("chosen"),
        "cluster_why": clustered.get("why"),
        "cluster_fallback": clustered.get("fallback"),
        "verify": {k: v for k, v in st["verify"].items() if k in VERIFY_KEYS}
        if "verify" in st else None,
        "consolidation_set_aside": st.get("consolidate", {}).get("set_aside"),
        "consolidation_dropped_rules": st.get("consolidate", {}).get("dropped_rules"),
        "heuristics_clustered": len(first.heuristic_ids) if first else 0,
        "heuristics": len(best.heuristic_ids) if best else 0,
        "statement": summary.statement,
        "prompt_tokens": prompt_tokens,
        "prompt_tokens_counted_with": how,
        "prompt_version": best.version if best else None,
        "prompt_sha256": best.sha256 if best else None,
        "impact": impact_block(ws, task),
        "conflict_loop": {"iterations": sizes.iterations,
                          "stop_reason": stop_reason(ws, task, args.student),
                          "val_history": val_history(ws, task, args.student)},
        "approval": f"auto-approved as {APPROVER!r}: {auto} approvals recorded with identity "
                    "kind 'auto' in the audit trail (no human review)",
        "consolidation_merge": args.merge,
        "parts": {name: getattr(args, name) for name in SWITCHES},
        "variant_flags": flags_text(args),
        "call_cache_seeded_from": seeded["source"] if seeded else None,
        "tokens": {"teacher": tokens_spent(ws, args.teacher, TEACHER_STAGES, after_id),
                   "student": tokens_spent(ws, args.student, STUDENT_STAGES, after_id)},
        "models": {"teacher": args.teacher, "student": args.student},
        "wall_s_this_invocation": round(wall, 1),
        "stage_s_this_invocation": stage_seconds(ws, task, first_run),
        "estimate_s": {k: None if v is None else round(v) for k, v in est.items()},
        "workspace": str(path.relative_to(REPO) if path.is_relative_to(REPO) else path),
    }
    ws.close()
    return block
