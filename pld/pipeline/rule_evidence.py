"""Student-verified rules: each rule tried alone in the student's prompt, on the examples it
came from and a few of their nearest training examples (Hypotheses-to-Theories, Zhu et al.
2023: keep the rules that were verified on examples).

A rule's prompt is the task's preamble with that one rule in its rules slot
(:func:`~pld.pipeline.student.prompt_text`), fixed per rule, so the local model reuses its
prefix across the rule's few items. The items are the rule's source example, its contrast
example, and ``neighbours`` nearest training examples of the source, taken alternately from its
label and the others so that a rule which only pushes every answer toward its label gains as
much as it loses. Each item's gold-label probability under the rule is compared with the same
item's under the zero-shot prompt, both read through the zero-shot calibration fitted on
validation (:mod:`~pld.pipeline.extract.student_scores`).

``effect``: the mean change of the gold label's calibrated probability (positive: toward the
gold label), the source label's items and the other labels' items weighted alike; ``helped`` and
``hurt``: items whose gold probability rose or fell by at least :data:`MOVED`. One
``rule_evidence`` row per (rule, student), written as each rule is done: verifying again skips
the rules that have one, and every student call is cached, so a killed run resumes.
"""

from __future__ import annotations

from statistics import fmean
from typing import Any

from pld.errors import BadInput
from pld.identity import Identity
from pld.llm.fan_out import fan_out
from pld.pipeline.calibrate import Calibration
from pld.pipeline.concurrency import concurrency_for
from pld.pipeline.extract.flags import NO_EFFECT, RESTATES_TASK
from pld.pipeline.extract.restatements import mark_restatements
from pld.pipeline.extract.student_scores import Scored, scored, zero_shot_calibration
from pld.pipeline.nearest_shots import NearestShots
from pld.pipeline.runs import ProgressCallback, stage_run
from pld.pipeline.student import prompt_text, sha256_text
from pld.tasks.store import TaskInfo, task_info
from pld.workspace import Workspace, dumps, loads, now

STAGE = "verify"
DEFAULT_NEIGHBOURS = 3
MOVED = 0.05  # a change of an item's gold probability that counts it as helped or hurt
VERIFIED, UNAVAILABLE = "verified", "unavailable"

Item = tuple[int, str]  # (example id, its role: source, contrast or neighbour)


def verify_rules(ws: Workspace, task: str, student: str, *,
                 neighbours: int = DEFAULT_NEIGHBOURS, concurrency: int | None = None,
                 val_limit: int | None = None, started_by: Identity | None = None,
                 on_progress: ProgressCallback | None = None) -> dict[str, Any]:
    """Try every ok rule of ``task`` that has no evidence for ``student`` yet, store what it
    did, flag the restatements again with the effects, and return a summary.

    ``neighbours``: nearest training examples tried besides the rule's source and contrast.
    ``concurrency``: rules in flight (default: 1 for a local student, 8 for a remote one).
    ``val_limit``: the validation items the zero-shot calibration is fitted on (that of the
    evaluations of the same limit). :class:`BadInput` for a student without label scores.
    """
    info = task_info(ws, task)
    if neighbours < 0:
        raise BadInput(f"neighbours must be at least 0, got {neighbours}")
    workers = concurrency_for(student, concurrency)
    rules = ws.query(
        "SELECT m.* FROM micro_instructions m WHERE m.task = ? AND m.status = 'ok' AND NOT "
        "EXISTS (SELECT 1 FROM rule_evidence r WHERE r.rule_id = m.id AND r.student = ?) "
        "ORDER BY m.id", [task, student])
    n_ok = int(ws.query("SELECT count(*) AS n FROM micro_instructions WHERE task = ? AND "
                        "status = 'ok'", [task])[0]["n"])
    params = {"student": student, "neighbours": neighbours, "val_limit": val_limit,
              "concurrency": workers, "todo": len(rules)}
    cal = None
    with stage_run(ws, task, STAGE, params, on_progress, started_by=started_by) as run:
        run.set_total(n_ok, n_ok - len(rules))
        if rules:
            cal = zero_shot_calibration(ws, task, student, val_limit=val_limit,
                                        concurrency=workers)
            plans = _plans(ws, info, rules, neighbours)
            union = sorted({ex for items in plans.values() for ex, _ in items})
            base = scored(ws, task, student, prompt_text(ws, task, []), union, cal,
                          kind="verify-zero-shot", concurrency=workers)
            prompts = {r["id"]: prompt_text(ws, task, [r["rule"]]) for r in rules}

            def work(rule: dict[str, Any]) -> dict[str, Any]:
                ids = [ex for ex, _ in plans[rule["id"]]]
                got = scored(ws, task, student, prompts[rule["id"]], ids, cal,
                             kind="verify-rule", params={"rule_id": rule["id"]}, concurrency=1)
                return _evidence(info, rule, plans[rule["id"]], base, got)

            for rule, row in fan_out(work, rules, workers=workers, name="verify"):
                _save(ws, {**row, "rule_id": rule["id"], "student": student, "task": task,
                           "prompt_sha256": sha256_text(prompts[rule["id"]]),
                           "calibration_id": cal.id if cal is not None else None})
                run.advance()
        effects = rule_effects(ws, task, student)
        restatements = mark_restatements(ws, task, effects)
    return _summary(task, student, run.id, n_ok, len(rules), neighbours, cal, effects,
                    restatements)


def _plans(ws: Workspace, info: TaskInfo, rules: list[dict[str, Any]],
           neighbours: int) -> dict[int, list[Item]]:
    """Each rule's items: its source, its contrast, then ``neighbours`` nearest training
    examples of the source, drawn from the smaller side (the source's label, or the others)."""
    shots = NearestShots(ws, info.name, 1)
    plans: dict[int, list[Item]] = {}
    for rule in rules:
        sources = loads(rule["source_examples"], {}) or {}
        items: list[Item] = [(int(sources.get("source", rule["example_id"])), "source")]
        items += [(int(c), "contrast") for c in sources.get("contrast", [])]
        text = ws.query("SELECT text FROM examples WHERE id = ?", [items[0][0]])[0]["text"]
        taken = {ex for ex, _ in items}
        ranked = [r for r in shots.ranked(text) if r["id"] not in taken]
        if info.shape == "multiple-choice":  # letters are no sides: the nearest, whatever
            items += [(int(r["id"]), "neighbour") for r in ranked[:neighbours]]
        else:
            items += _balanced(ranked, rule["label"], neighbours,
                               same=1, other=len(items) - 1)
        plans[int(rule["id"])] = items
    return plans


def _balanced(ranked: list[dict[str, Any]], label: str, n: int, *, same: int,
              other: int) -> list[Item]:
    """``n`` of ``ranked`` in order of similarity within each side, each taken from the side
    (``label``'s examples or the others) that has fewer items so far."""
    sides = {True: iter([r for r in ranked if r["label"] == label]),
             False: iter([r for r in ranked if r["label"] != label])}
    counts = {True: same, False: other}
    out: list[Item] = []
    while len(out) < n:
        want = counts[True] <= counts[False]
        pick = next(sides[want], None)
        if pick is None:
            want = not want
            pick = next(sides[want], None)
            if pick is None:
                break
        counts[want] += 1
        out.append((int(pick["id"]), "neighbour"))
    return out


def _evidence(info: TaskInfo, rule: dict[str, Any], items: list[Item], base: Scored,
              got: Scored) -> dict[str, Any]:
    """What the rule did to its items, as a ``rule_evidence`` row (without its keys)."""
    rows, same, other = [], [], []
    for ex, role in items:
        gold = got.gold[ex]
        before, after = base.probs.get(ex), got.probs.get(ex)
        if before is None or after is None:
            continue
        delta = after[gold] - before[gold]
        (same if gold == rule["label"] else other).append(delta)
        rows.append({"example_id": ex, "role": role, "gold": gold,
                     "zero_shot": round(before[gold], 4), "with_rule": round(after[gold], 4),
                     "answer_zero_shot": base.answers.get(ex), "answer_with_rule": got.answers[ex]})
    row = {"run_id": got.run_id, "n": len(rows), "items": dumps(rows)}
    if not rows:
        return {**row, "status": UNAVAILABLE, "effect": None, "helped": 0, "hurt": 0,
                "reason": "the student gave no label scores on these items"}
    deltas = same + other
    sides = [fmean(same), fmean(other)] if same and other and info.shape != "multiple-choice" \
        else [fmean(deltas)]
    return {**row, "status": VERIFIED, "effect": round(fmean(sides), 4), "reason": None,
            "helped": sum(d >= MOVED for d in deltas), "hurt": sum(d <= -MOVED for d in deltas)}


def _save(ws: Workspace, row: dict[str, Any]) -> None:
    with ws.write() as db:
        db["rule_evidence"].insert({**row, "created_at": now()}, replace=True)


def _summary(task: str, student: str, run_id: int, n_ok: int, n_new: int, neighbours: int,
             cal: Calibration | None, effects: dict[int, float],
             restatements: int) -> dict[str, Any]:
    values = list(effects.values())
    return {
        "task": task, "student": student, "run_id": run_id, "rules": n_ok,
        "verified": n_new, "skipped": n_ok - n_new, "neighbours": neighbours,
        "calibration": cal.summary() if cal is not None else None,
        "with_evidence": len(values),
        "mean_effect": round(fmean(values), 4) if values else None,
        "helping": sum(v >= NO_EFFECT for v in values),
        "hurting": sum(v <= -NO_EFFECT for v in values),
        "no_effect": sum(abs(v) < NO_EFFECT for v in values),
        "restatements": restatements,
        "effects": {str(k): v for k, v in sorted(effects.items())},
    }


def rule_effects(ws: Workspace, task: str, student: str | None = None) -> dict[int, float]:
    """Each verified rule's stored effect for ``student`` (rule id -> effect); for None, the
    student whose evidence was stored last (effects of two students do not mix)."""
    if student is None:
        last = ws.query("SELECT student FROM rule_evidence WHERE task = ? "
                        "ORDER BY created_at DESC, rowid DESC LIMIT 1", [task])
        if not last:
            return {}
        student = last[0]["student"]
    return {int(r["rule_id"]): float(r["effect"]) for r in ws.query(
        "SELECT rule_id, effect FROM rule_evidence WHERE task = ? AND student = ? AND "
        "status = ? ORDER BY rule_id", [task, student, VERIFIED])}


def restatement_ids(ws: Workspace, task: str) -> set[int]:
    """The ok rules of ``task`` flagged ``restates_task``: they say nothing the prompt does
    not, so none should become a heuristic on its own."""
    return {int(r["id"]) for r in ws.query(
        "SELECT m.id FROM micro_instructions m WHERE m.task = ? AND m.status = 'ok' AND EXISTS "
        "(SELECT 1 FROM json_each(m.flags) WHERE json_each.value = ?)", [task, RESTATES_TASK])}
