"""Reading a finished benchmark workspace: each method's scores, the paired differences between
methods on the same test items, the conflict loop's history and impact report, the tokens spent
and the time each stage took."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from pld.errors import BadInput
from pld.metrics import paired_delta
from pld.pipeline.eval_errors import CALIBRATED, RAW, wrong_items
from pld.pipeline.resolve.evidence import N_BOOT, verdict
from pld.tasks.store import task_info
from pld.workspace import Workspace, loads

TEACHER_STAGES = ("extract", "consolidate", "resolve")
STUDENT_STAGES = ("eval", "resolve-predict", "calibrate", "impact")
# quality.json's key of each method, and the chain's name of its evaluation.
METHODS = (("zero_shot", "zero-shot"), ("few_shot", "few-shot"),
           ("nearest_few_shot", "few-shot-nearest"),
           ("pld_clustered", "pld-consolidated"), ("pld_post_conflict", "pld"),
           ("pld_worked", "pld-worked"))
# quality.json's key of each paired difference: PLD after the conflict loop minus a baseline.
PAIRED = (("pld_minus_zero_shot", "zero_shot"), ("pld_minus_nearest_few_shot", "nearest_few_shot"),
          ("pld_minus_few_shot", "few_shot"))


def _rounded(xs: list[float]) -> list[float] | None:
    return [round(v, 4) for v in xs] or None


def method_block(ws: Workspace, evaluation_id: int,
                 count: Callable[[str], tuple[int, str]]) -> dict[str, Any]:
    """One method's scores (raw and calibrated, with their CIs and most frequent answer), its
    prompt's length in tokens and the evaluation it comes from."""
    row = ws.query("SELECT * FROM evaluations WHERE id = ?", [evaluation_id])[0]
    m = loads(row["metrics"], {})
    ci = m.get("ci") or {}
    text = ws.query("SELECT text FROM texts WHERE sha256 = ?", [row["prompt_sha256"]])
    n_tokens, _ = count(text[0]["text"]) if text else (None, "")
    cal, how = m.get("calibrated"), m.get("calibration") or {}
    cal_ci = (cal or {}).get("ci") or {}
    return {
        "macro_f1": round(m["macro_f1"], 4),
        "ci": _rounded(ci.get("macro_f1", [])),
        "accuracy": round(m["accuracy"], 4),
        "accuracy_ci": _rounded(ci.get("accuracy", [])),
        "top_answer": m.get("top_answer"),
        "top_answer_share": m.get("top_answer_share"),
        "calibrated": None if cal is None else {
            "macro_f1": round(cal["macro_f1"], 4),
            "ci": _rounded(cal_ci.get("macro_f1", [])),
            "accuracy": round(cal["accuracy"], 4),
            "accuracy_ci": _rounded(cal_ci.get("accuracy", [])),
            "top_answer": cal.get("top_answer"), "top_answer_share": cal.get("top_answer_share"),
            "method": how.get("method"), "bias": how.get("bias"), "n_val": how.get("n_val")},
        "calibration_status": how.get("status"),
        "n": m["n"],
        "n_unparseable": m.get("n_unparseable", 0),
        "prompt_tokens": n_tokens,
        "prompt_version": row["prompt_version"],
        "evaluation_id": evaluation_id,
    }


def _answers(ws: Workspace, evaluation_id: int,
             judged_by: str) -> tuple[dict[int, str], dict[int, str | None]]:
    """Gold and judged answer per example id of one evaluation: an item is answered gold unless
    it is among the evaluation's wrong items (judged as :func:`wrong_items` judges them)."""
    gold = {r["example_id"]: r["label"] for r in ws.query(
        "SELECT p.example_id, x.label FROM evaluations v JOIN predictions p "
        "ON p.run_id = v.run_id JOIN examples x ON x.id = p.example_id WHERE v.id = ?",
        [evaluation_id])}
    answers: dict[int, str | None] = dict(gold)
    for item in wrong_items(ws, evaluation_id, judged_by=judged_by).errors:
        answers[item["example_id"]] = item["answer"]
    return gold, answers


def paired_block(ws: Workspace, task: str, eval_a: int, eval_b: int,
                 seed: int = 0) -> dict[str, Any]:
    """Macro-F1 of evaluation ``eval_a`` minus that of ``eval_b`` on the test items both
    scored, with the paired-bootstrap 95% CI (:func:`~pld.metrics.paired_delta`) and its
    verdict; calibrated answers when both evaluations have them, else raw (``judged_by``)."""
    try:
        (gold, a), (_, b) = (_answers(ws, e, CALIBRATED) for e in (eval_a, eval_b))
        judged_by = CALIBRATED
    except BadInput:  # one of them has no calibration: compare like with like
        (gold, a), (_, b) = (_answers(ws, e, RAW) for e in (eval_a, eval_b))
        judged_by = RAW
    common = sorted(a.keys() & b.keys())
    if not common:
        return {"delta": None, "ci": None, "n": 0, "judged_by": judged_by,
                "verdict": verdict(None)}
    d = paired_delta([gold[i] for i in common], [a[i] for i in common],
                     [b[i] for i in common], task_info(ws, task).labels, n_boot=N_BOOT,
                     seed=seed)
    return {"delta": round(d["delta"], 4), "ci": _rounded(d["ci"] or []), "n": len(common),
            "judged_by": judged_by, "verdict": verdict(d["ci"])}


def paired_blocks(ws: Workspace, task: str, methods: dict[str, Any],
                  seed: int = 0) -> dict[str, Any]:
    """PLD after the conflict loop minus each baseline that was evaluated (:data:`PAIRED`)."""
    pld = methods.get("pld_post_conflict")
    return {key: paired_block(ws, task, pld["evaluation_id"], methods[base]["evaluation_id"],
                              seed)
            for key, base in PAIRED if pld and methods.get(base)}


def impact_block(ws: Workspace, task: str) -> dict[str, Any] | None:
    """The last leave-one-out report of the conflict loop: each heuristic's effect on
    validation, and the prompt without any heuristic beside the full one."""
    from pld.pipeline.resolve.impact import latest_impact

    r = latest_impact(ws, task)
    if r is None:
        return None
    return {"metric": r["metric"], "n_val": r["n_val"], "full": r["full"],
            "no_rules": r["no_rules"],
            "heuristics": [{"id": h["heuristic_id"], "effect": round(h["effect"], 4),
                            "ci": h["ci"], "fixes": len(h["fixes"]), "breaks": len(h["breaks"])}
                           for h in r["heuristics"]]}


def tokens_spent(ws: Workspace, model: str, stages: tuple[str, ...],
                 after_id: int = 0) -> dict[str, Any]:
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


def stage_seconds(ws: Workspace, task: str, first_run_id: int) -> dict[str, float]:
    """Seconds each stage ran in the runs after ``first_run_id`` (this invocation's)."""
    rows = ws.query(
        "SELECT kind, started_at, finished_at FROM runs WHERE task = ? AND id > ? "
        "AND finished_at IS NOT NULL", [task, first_run_id])
    out: dict[str, float] = {}
    for r in rows:
        s = (datetime.fromisoformat(r["finished_at"]) - datetime.fromisoformat(r["started_at"]))
        out[r["kind"]] = round(out.get(r["kind"], 0.0) + s.total_seconds(), 1)
    return out


def _loop_records(ws: Workspace, task: str, student: str) -> list[dict[str, Any]]:
    rows = ws.query("SELECT method, prompt_version, n, metrics FROM evaluations WHERE task = ? "
                    "AND split = 'val' AND student = ? AND method LIKE 'resolve-iter-%' "
                    "ORDER BY id", [task, student])
    return [{**r, "metrics": loads(r["metrics"], {})} for r in rows]


def stop_reason(ws: Workspace, task: str, student: str) -> str | None:
    """Why the conflict loop stopped, from its last iteration's record."""
    recs = _loop_records(ws, task, student)
    if not recs:
        return None
    return recs[-1]["metrics"].get("resolve", {}).get("stop") or "max-iterations"


def val_history(ws: Workspace, task: str, student: str) -> list[dict[str, Any]]:
    """Validation macro-F1 of each prompt version the conflict loop evaluated, in order: raw,
    and calibrated (what adoption compared) when the student could be calibrated."""
    return [{"iteration": r["method"].removeprefix("resolve-iter-"),
             "version": r["prompt_version"], "n": r["n"],
             "macro_f1": round(r["metrics"]["macro_f1"], 4),
             "calibrated_macro_f1": (round(r["metrics"]["calibrated"]["macro_f1"], 4)
                                     if r["metrics"].get("calibrated") else None),
             "adopted": r["metrics"].get("resolve", {}).get("adopted")}
            for r in _loop_records(ws, task, student)]
