"""``python -m pld run``: every stage of the method for one task, in order.

By default the chain uses what issue 22 added where it helps: extraction contrasts each training
example with its nearest examples of another label (``contrastive``) and starts with the examples
the calibrated zero-shot student gets wrong (``failing_first``); each rule is tried alone on the
student before clustering (``verify_rules``) so consolidation can weigh rules by that evidence;
and clustering is ``auto``, which never keeps one cluster of most rules. Each is switchable off.
Failing-first and verification read the student's label scores: with a student that gives none
(an Anthropic model) both are left out and the summary says so (``student_scores``).

Each stage is idempotent, so running the chain again resumes an interrupted run and, once a run
has finished, repeats it without a single uncached LLM call: extraction and consolidation skip
what exists, the clustering with the same parameters over the same rules is reused, a finished
conflict loop is not repeated, and evaluations hit the call cache.

Without ``auto_approve_as`` the chain stops after consolidation: people review the heuristics
(app or ``python -m pld review``) and continue with ``resolve``, ``eval`` and ``export``.

When the conflict loop removed every heuristic because the zero-shot prompt scored best, no
heuristic helped: the chain still evaluates every method, says so in ``statement`` and exports
nothing (the zero-shot baseline is not a distilled prompt). The same holds when consolidation
made no heuristic at all (every cluster held only restatements or rules that hurt the student):
the baselines are evaluated and ``statement`` says why there is no PLD prompt; and when extraction
wrote no rule (failing-first left out every training example: the student already answers them
right).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pld import review
from pld.errors import BadInput, NotReady
from pld.identity import Identity
from pld.pipeline.cluster.edits import accept_clustering
from pld.pipeline.cluster.fit import AUTO
from pld.pipeline.cluster.read import ACCEPTED, get_clustering
from pld.pipeline.cluster.stage import cluster
from pld.pipeline.consolidate.stage import consolidate
from pld.pipeline.embed import DEFAULT_EMBEDDER
from pld.pipeline.evaluate import evaluate
from pld.pipeline.export import export
from pld.pipeline.extract.stage import extract
from pld.pipeline.extract.student_scores import zero_shot_calibration
from pld.pipeline.resolve.loop import resolve
from pld.pipeline.resolve.outcome import no_heuristic_helped
from pld.pipeline.resolve.state import best_version
from pld.pipeline.rule_evidence import verify_rules
from pld.pipeline.runs import ProgressCallback, list_runs, stage_run
from pld.pipeline.student import PromptVersion, build_prompt, get_prompt
from pld.preamble import auto_approve_template
from pld.tasks import BUILTIN_TASKS, load_task
from pld.tasks.store import loaded_tasks
from pld.workspace import Workspace, dumps


@dataclass
class ChainOptions:
    """Everything ``run`` can be told. Defaults suit the local CPU model on the demo task."""

    teacher: str
    student: str
    auto_approve_as: Identity | None = None  # of kind auto: signs every sign-off of the chain
    limit: int | None = None
    concurrency: int | None = None
    contrastive: bool = True  # extraction contrasts each example with a near one of another label
    failing_first: bool = True  # extract from what the calibrated zero-shot student gets wrong
    verify_rules: bool = True  # try each rule alone on the student before clustering
    method: str = AUTO
    eps: float | str = "auto"
    min_samples: int = 6
    k: int | None = None
    cover_labels: bool = False  # a cluster for each label whose rules are all noise
    embed_model: str = DEFAULT_EMBEDDER
    iterations: int = 2
    val_limit: int | None = None
    test_limit: int | None = None
    few_shot: int | None = None
    nearest_few_shot: int | None = None  # also evaluate nearest-neighbour k-shot
    out_dir: Path | None = None
    seed: int = 0
    retry_failed: bool = False  # ask failed extract rows and consolidate clusters again
    merge: str = "all"  # how consolidate turns a cluster into a heuristic: all, by-label, medoid
    worked_examples: bool = False  # also evaluate the adopted version with worked examples


@dataclass
class ChainSummary:
    """What the chain did, stage by stage."""

    task: str
    stages: dict[str, Any] = field(default_factory=dict)
    stopped: str = "done"
    # The conflict loop removed every heuristic and the zero-shot prompt scored best: an
    # outcome, said plainly in ``statement``; nothing is exported.
    no_heuristic_helped: bool = False
    statement: str | None = None


def _without_scores(ws: Workspace, task: str, o: ChainOptions) -> str | None:
    """Why the student cannot screen examples or verify rules (it gives no label scores to
    calibrate), in a sentence; None when it can. The calibration fitted here is the zero-shot
    one that extraction, verification and the zero-shot evaluation share."""
    try:
        zero_shot_calibration(ws, task, o.student, val_limit=o.val_limit,
                              concurrency=o.concurrency)
    except BadInput as e:
        return (f"{e}; so extraction takes every example (no failing-first) and rules are not "
                "verified")
    return None


def _find_clustering(ws: Workspace, task: str, params: dict[str, Any]) -> int | None:
    """A finished clustering of ``task`` with these options over exactly the current ok rules."""
    n_rules = ws.query("SELECT count(*) AS n FROM micro_instructions WHERE task = ? "
                       "AND status = 'ok'", [task])[0]["n"]
    for run in list_runs(ws, task=task, kind="chain-cluster", limit=20):
        if run["status"] != "done" or run["params"].get("options") != params:
            continue
        cid = run["params"].get("clustering_id")
        rows = ws.query("SELECT count(*) AS n FROM cluster_members WHERE clustering_id = ?",
                        [cid])
        if cid and rows[0]["n"] == n_rules:
            return int(cid)
    return None


def _cluster(ws: Workspace, task: str, o: ChainOptions) -> dict[str, Any]:
    options = {"method": o.method, "eps": o.eps, "min_samples": o.min_samples, "k": o.k,
               "embed_model": o.embed_model, "seed": o.seed}
    if o.cover_labels:  # only when set, so clusterings of earlier runs are still found
        options["cover_labels"] = True
    cid = _find_clustering(ws, task, options)
    reused = cid is not None
    fallback = None
    if cid is None:
        with stage_run(ws, task, "chain-cluster", {"options": options}) as run:
            cid = cluster(ws, task, method=o.method, eps=o.eps, min_samples=o.min_samples,
                          k=o.k, embed_model=o.embed_model, seed=o.seed,
                          cover=o.cover_labels, started_by=o.auto_approve_as)
            if get_clustering(ws, cid)["metrics"].get("n_clusters") == 0:
                # Density clustering found no dense region (small task, or an embedder whose
                # distances do not suit eps): fall back to k-means so the run can continue, and
                # say so. A reviewer would re-cluster by hand in the app instead.
                n = ws.query("SELECT count(*) AS n FROM micro_instructions WHERE task = ? "
                             "AND status = 'ok'", [task])[0]["n"]
                k = max(2, min(n - 1, round(math.sqrt(n / 2))))
                fallback = f"{o.method} found no clusters; fell back to kmeans k={k}"
                cid = cluster(ws, task, method="kmeans", k=k, embed_model=o.embed_model,
                              seed=o.seed, started_by=o.auto_approve_as)
            with ws.write() as db:
                db["runs"].update(run.id, {"params": dumps({"options": options,
                                                            "clustering_id": cid})})
    # Not "is it the current one": a task's only clustering is current while merely proposed,
    # and the run's sign-off must still be recorded.
    if o.auto_approve_as and get_clustering(ws, cid)["status"] != ACCEPTED:
        accept_clustering(ws, cid, o.auto_approve_as)
    clustering = get_clustering(ws, cid)
    metrics, params = clustering["metrics"], clustering["params"]
    auto = params.get(AUTO) or {}
    return {"clustering_id": cid, "reused": reused, "fallback": fallback,
            "method": clustering["method"], "chosen": auto.get("chosen"), "why": auto.get("why"),
            "n_clusters": metrics.get("n_clusters"), "noise_share": metrics.get("noise_share"),
            "largest_share": metrics.get("largest_share"),
            "over_max_share": params.get("over_max_share")}


def _consolidated_prompt(ws: Workspace, task: str, clustering_id: int) -> PromptVersion:
    """The prompt version built right after consolidating ``clustering_id``.

    Built once and remembered in a run row: the conflict loop later edits and approves
    heuristics, so building "the approved set" again on a rerun would give a later version and
    restart the loop (with new LLM calls) instead of recognising the finished one.
    """
    for run in list_runs(ws, task=task, kind="chain-prompt", limit=20):
        if run["status"] == "done" and run["params"].get("clustering_id") == clustering_id:
            return get_prompt(ws, task, run["params"]["version"])
    with stage_run(ws, task, "chain-prompt", {"clustering_id": clustering_id}) as run:
        prompt = build_prompt(ws, task, origin="consolidate")
        with ws.write() as db:
            db["runs"].update(run.id, {"params": dumps({"clustering_id": clustering_id,
                                                        "version": prompt.version})})
    return prompt


def _resolve_done(ws: Workspace, task: str, params: dict[str, Any]) -> bool:
    return any(r["status"] == "done" and r["params"] == params
               for r in list_runs(ws, task=task, kind="chain-resolve", limit=20))


def _no_heuristic_made(cs: dict[str, Any]) -> str:
    """The plain statement when consolidation left nothing to approve."""
    why = "; ".join(sorted(set((cs.get("set_aside") or {}).values())))
    failed = f"{cs['failed']} cluster(s) failed" if cs.get("failed") else ""
    reasons = "; ".join(x for x in (why, failed) if x) or "no cluster gave one"
    return (f"No heuristic was made: consolidation set every cluster of clustering "
            f"{cs['clustering_id']} aside ({reasons}), so the zero-shot prompt stands and there "
            "is nothing to export.")


def _evaluate(ws: Workspace, task: str, o: ChainOptions, first: int | None, best: int | None,
              on_progress: ProgressCallback | None) -> dict[str, Any]:
    """Every method on the same test items: the baselines, and PLD when a version exists."""
    evals: dict[str, Any] = {}
    pld = () if first is None else (
        ("pld-consolidated", {"version": first}), ("pld", {"version": best}),
        *((("pld-worked", {"version": best, "worked_examples": True}),)
          if o.worked_examples else ()))
    for name, kwargs in (("zero-shot", {"zero_shot": True}),
                         *((("few-shot", {"few_shot": o.few_shot}),) if o.few_shot else ()),
                         *((("few-shot-nearest", {"few_shot": o.nearest_few_shot,
                                                  "nearest": True}),)
                           if o.nearest_few_shot else ()),
                         *pld):
        if name == "pld" and best == first:
            evals[name] = evals["pld-consolidated"]
            continue
        # Calibrated on the validation items the conflict loop used, so every method's bias
        # comes from the same items.
        r = evaluate(ws, task, o.student, split="test", limit=o.test_limit, seed=o.seed,
                     val_limit=o.val_limit, on_progress=on_progress, **kwargs)
        cal = r.metrics.get("calibrated") or {}
        evals[name] = {"evaluation_id": r.evaluation_id, "macro_f1": r.metrics["macro_f1"],
                       "ci": r.metrics["ci"]["macro_f1"], "accuracy": r.metrics["accuracy"],
                       "n": r.metrics["n"], "top_answer_share": r.metrics["top_answer_share"],
                       "calibrated_macro_f1": cal.get("macro_f1"),
                       "calibrated_ci": (cal.get("ci") or {}).get("macro_f1"),
                       "calibrated_top_answer_share": cal.get("top_answer_share")}
    return evals


def _no_rule(ex: dict[str, Any]) -> str:
    """The plain statement when extraction left the task without a rule."""
    if ex["student_right"] and ex["student_right"] == ex["total"]:
        why = ("the calibrated zero-shot student already answers every training example "
               "right (failing-first), so no example needs a rule")
    else:
        why = f"{ex['failed'] + ex['failed_before']} example(s) failed"
    return (f"No rule was extracted: {why}; the zero-shot prompt stands and there is nothing "
            "to cluster, consolidate or export.")


def _rules_to_heuristics(ws: Workspace, task: str, o: ChainOptions, s: ChainSummary,
                         on_progress: ProgressCallback | None) -> bool:
    """Extract, verify, cluster and consolidate, each stage's summary into ``s``; False (and
    ``s.statement`` says why) when extraction left no rule to go on with."""
    no_scores = _without_scores(ws, task, o) if o.failing_first or o.verify_rules else None
    if no_scores:
        s.stages["student_scores"] = no_scores
    ex = extract(ws, task, o.teacher, limit=o.limit, concurrency=o.concurrency,
                 retry_failed=o.retry_failed, on_progress=on_progress,
                 contrastive=o.contrastive, val_limit=o.val_limit,
                 student=o.student if o.failing_first and not no_scores else None)
    s.stages["extract"] = {"run_id": ex.run_id, "total": ex.total, "done": ex.done,
                           "skipped": ex.skipped, "failed": ex.failed, "flagged": ex.flagged,
                           "failed_before": ex.failed_before, "contrastive": ex.contrastive,
                           "contrasted": ex.contrasted, "student_right": ex.student_right,
                           "screen_note": ex.screen_note, "restatements": ex.restatements}
    if not ws.query("SELECT 1 FROM micro_instructions WHERE task = ? AND status = 'ok' LIMIT 1",
                    [task]):
        s.statement = _no_rule(s.stages["extract"])
        return False
    if o.verify_rules and not no_scores:
        s.stages["verify"] = verify_rules(ws, task, o.student, concurrency=o.concurrency,
                                          val_limit=o.val_limit, on_progress=on_progress)
    s.stages["cluster"] = _cluster(ws, task, o)
    cs = consolidate(ws, task, o.teacher, clustering_id=s.stages["cluster"]["clustering_id"],
                     concurrency=o.concurrency, retry_failed=o.retry_failed,
                     merge=o.merge, on_progress=on_progress)
    s.stages["consolidate"] = cs.to_dict()
    return True


def run_chain(ws: Workspace, task: str, o: ChainOptions,
              on_progress: ProgressCallback | None = None) -> ChainSummary:
    """Run every stage for ``task``; see the module docstring for what is skipped on a rerun."""
    s = ChainSummary(task)
    if task not in {t.name for t in loaded_tasks(ws)}:
        if task not in BUILTIN_TASKS or task == "custom":
            raise NotReady(f"task {task!r} is not loaded; load it first (python -m pld load)")
        s.stages["load"] = load_task(ws, task, seed=o.seed)
    if not _rules_to_heuristics(ws, task, o, s, on_progress):
        s.no_heuristic_helped = True
        if o.auto_approve_as:  # a benchmark: the baselines are still measured
            s.stages["eval"] = _evaluate(ws, task, o, None, None, on_progress)
        return s
    if not o.auto_approve_as:
        s.stopped = "awaiting-review"
        return s

    cid = s.stages["cluster"]["clustering_id"]
    runs = [r["id"] for r in list_runs(ws, task=task, kind="consolidate", limit=1000)
            if r["params"].get("clustering_id") == cid]
    s.stages["approve"] = {
        "approved": review.auto_approve_all(ws, task, o.auto_approve_as, run_ids=runs),
        "preamble": auto_approve_template(ws, task, o.auto_approve_as)}
    cs = s.stages["consolidate"]
    if not cs["created"] and not cs["skipped"]:
        # Every cluster was set aside (restatements, rules that hurt) or failed: an outcome,
        # said plainly; the baselines are still measured.
        s.statement = _no_heuristic_made(cs)
        s.no_heuristic_helped = True
        s.stages["eval"] = _evaluate(ws, task, o, None, None, on_progress)
        return s
    first = _consolidated_prompt(ws, task, cid)
    s.stages["prompt"] = {"version": first.version, "sha256": first.sha256,
                          "heuristics": len(first.heuristic_ids)}

    resolve_params = {"student": o.student, "teacher": o.teacher, "iterations": o.iterations,
                      "val_limit": o.val_limit, "from_version": first.version}
    if o.iterations > 0 and (o.retry_failed or not _resolve_done(ws, task, resolve_params)):
        with stage_run(ws, task, "chain-resolve", resolve_params):
            rs = resolve(ws, task, o.student, o.teacher, iterations=o.iterations,
                         auto_accept_as=o.auto_approve_as, val_limit=o.val_limit, seed=o.seed,
                         retry_failed=o.retry_failed, on_progress=on_progress)
        s.stages["resolve"] = {"stop_reason": rs.stop_reason, "best_version": rs.best_version}
    best = best_version(ws, task, o.student) or first.version
    s.stages["eval"] = _evaluate(ws, task, o, first.version, best, on_progress)

    s.statement = no_heuristic_helped(ws, task, o.student)
    s.no_heuristic_helped = s.statement is not None
    if o.out_dir is not None and not s.no_heuristic_helped:
        ex_res = export(ws, task, o.out_dir, version=best)
        s.stages["export"] = {"prompt": str(ex_res.prompt_path),
                              "manifest": str(ex_res.manifest_path), "version": best}
    return s
