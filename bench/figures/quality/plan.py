"""What a task's benchmark run covers and about how long it takes: the tasks, their subset sizes
(default, ``--quick`` and the command line's) and the time estimate printed before a run."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

TASKS = ("stereoset", "contract-nli", "logiqa", "demo")


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


def sizes_for(task: str, args: argparse.Namespace) -> Sizes:
    """The task's default sizes, overridden by the command-line flags."""
    d = (QUICK if args.quick else DEFAULTS)[task]
    ctx = args.context_tokens if args.context_tokens is not None else d.context_tokens
    return Sizes(train=args.train or d.train, val=args.val or d.val, test=args.test or d.test,
                 iterations=args.iterations if args.iterations is not None else d.iterations,
                 context_tokens=ctx if task == "contract-nli" else None)


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


# Student items each rule is tried on when it is verified (its source examples and 3 neighbours).
VERIFY_ITEMS = 5


def estimate(sizes: Sizes, tokens: dict[str, float], teacher: str, student: str,
             few_shot: int, *, nearest_few_shot: int = 0, contrastive: bool = False,
             failing_first: bool = False,
             verify_rules: bool = False) -> dict[str, float | None]:
    """Seconds per stage on a quiet 2-core CPU; None for the parts a remote model does (they
    depend on the API's latency and rate limits).

    ``tokens``: mean input tokens per split (``train``, ``val``, ``test``) and ``template``, the
    extraction prompt's own tokens (the same for every example, so the model's prefix cache
    skips all but the first ~20 after the first call). Clusters are guessed as sqrt(n_train / 2)
    (the k-means fallback's k) and each heuristic as ~80 tokens; the teacher's conflict prompts
    hold the rules plus up to 16 clipped examples; a rule reply is ~70 tokens plus 0.3 per input
    token (measured: 77 on StereoSet, 125 on LogiQA). ``contrastive`` extraction shows two
    examples per call (twice the input); ``failing_first`` has the student answer every training
    example first; ``verify_rules`` tries each rule (at most one per training example) on
    :data:`VERIFY_ITEMS` items under its own short prompt; nearest k-shot's prompt differs per
    item, so no prefix is cached: every test and validation item pays its k demonstrations.
    Cached calls cost nothing, so a resumed run is faster than this.
    """
    t, s = SPEEDS.get(teacher), SPEEDS.get(student)
    x_tr, x_va, x_te = tokens["train"], tokens["val"], tokens["test"]
    k = max(2, round(math.sqrt(sizes.train / 2)))
    p_tokens = 120 + 80 * k
    out: dict[str, float | None] = {"extract": None, "cluster": 60.0, "consolidate": None,
                                    "resolve (teacher)": None, "resolve (student)": None,
                                    "eval": None}
    if failing_first:
        out["failing-first (student)"] = None
    if verify_rules:
        out["verify (student)"] = None
    if t is not None:
        x_ex = 2 * x_tr if contrastive else x_tr
        out["extract"] = (tokens.get("template", 400) / t.prompt_tps
                          + sizes.train * _call_s(t, x_ex + 20, 70 + 0.3 * x_tr))
        out["consolidate"] = k * _call_s(t, 400 + 45 * sizes.train / k, 150)
        out["resolve (teacher)"] = sizes.iterations * k * _call_s(
            t, p_tokens + 600 + 12 * min(x_va, 375), 150)
    if s is not None:
        if failing_first:
            out["failing-first (student)"] = sizes.train * _call_s(s, x_tr + 12, 1)
        if verify_rules:
            out["verify (student)"] = sizes.train * (
                100 / s.prompt_tps + VERIFY_ITEMS * _call_s(s, x_tr + 12, 1))
        out["resolve (student)"] = (sizes.iterations + 1) * (
            p_tokens / s.prompt_tps + sizes.val * _call_s(s, x_va + 12, 1))
        prompts = [60, 100 + few_shot * (x_tr + 15), p_tokens, p_tokens]
        out["eval"] = (sum(p / s.prompt_tps for p in prompts)
                       + len(prompts) * sizes.test * _call_s(s, x_te + 12, 1))
        if nearest_few_shot:
            demos = 100 + nearest_few_shot * (x_tr + 15)
            out["eval"] += (sizes.test * _call_s(s, demos + x_te + 12, 1)
                            + sizes.val * _call_s(s, demos + x_va + 12, 1))
    return out
