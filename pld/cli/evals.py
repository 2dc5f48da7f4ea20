"""``eval`` scores a prompt or a baseline; ``evals list|compare|errors`` reads what it stored."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from pld.cli import options
from pld.cli.common import acting, ctx_workspace, emit, task_workspace, with_context
from pld.cli.inputs import calibration_method
from pld.cli.root import cli
from pld.cli.stages import Progress, check_model, show_estimate, spending
from pld.errors import BadInput
from pld.number_format import delta_text, score_text


def _score_line(name: str, m: dict[str, Any]) -> str:
    ci = (m.get("ci") or {}).get("macro_f1")
    interval = f" [{score_text(ci[0])}, {score_text(ci[1])}]" if ci else ""
    share = m.get("top_answer_share")
    top = (f"; most frequent answer {m.get('top_answer')!r} {share:.0%}"
           if share is not None else "")
    return (f"{name}: macro-F1 {score_text(m['macro_f1'])}{interval}, "
            f"accuracy {score_text(m['accuracy'])}"
            + (f", {m['n_unparseable']} unparseable" if m.get("n_unparseable") else "") + top)


def _calibration_text(m: dict[str, Any]) -> list[str]:
    cal = m.get("calibration")
    if not cal:
        return ["  calibrated: not asked for (--calibration none)"]
    if cal.get("status") != "fitted":
        return [f"  calibrated: unavailable: {cal.get('reason')}"]
    bias = ", ".join(f"{label} {delta_text(v)}" for label, v in (cal.get("bias") or {}).items())
    where = (f"from {cal['source']}" if cal.get("source")
             else f"{cal.get('method')} on {cal.get('n_val')} validation items")
    lines = ["  " + _score_line("calibrated", m["calibrated"]),
             f"  bias ({where}): {bias}"]
    if cal.get("in_sample"):
        lines.append("  note: the bias was fitted on this split, so the calibrated score is "
                     "optimistic")
    return lines


def _metrics_text(d: dict[str, Any]) -> str:
    m = d["metrics"]
    lines = [f"{d['method']} on {d['split']} (n={m['n']})",
             "  " + _score_line("raw", m), *_calibration_text(m)]
    lines.append(f"  {'label':<24} {'P':>6} {'R':>6} {'F1':>6} {'n':>5}   (raw answers)")
    for label, v in m["per_label"].items():
        p, r, f1 = (score_text(v[k]) for k in ("precision", "recall", "f1"))
        lines.append(f"  {label[:24]:<24} {p:>6} {r:>6} {f1:>6} {v['support']:>5}")
    return "\n".join(lines)


@cli.command("eval")
@click.argument("task")
@options.model("student", "Student model string.")
@click.option("--prompt", "prompt_file", type=click.Path(path_type=Path), default=None,
              help="An exported prompt.md, or the export directory (its manifest's calibration "
                   "is then applied).")
@click.option("--version", type=int, default=None, help="A prompt version of the workspace.")
@click.option("--zero-shot", is_flag=True, help="Baseline: labels and task description only.")
@click.option("--few-shot", type=int, default=None, metavar="K",
              help="Baseline: K training examples as demonstrations.")
@click.option("--nearest", is_flag=True,
              help="With --few-shot K: for each item the K training examples most similar to "
                   "it (sentence embeddings) instead of K random ones; calibrated like the "
                   "others.")
@click.option("--worked-examples", is_flag=True,
              help="With --version: each heuristic followed by its most typical source "
                   "example and label (a measured variant, never exported).")
@click.option("--split", default="test", show_default=True,
              type=click.Choice(["train", "val", "test"]), help="The split to score.")
@click.option("--limit", type=int, default=None, help="First N items of the split.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seeds the --few-shot demonstrations and the bootstrap CI.")
@options.concurrency("Student calls")
@options.calibration("Per-label bias on the student's label scores, fitted on validation only "
                    "and reported beside the raw scores. An export's manifest brings its own.")
@click.option("--val-limit", type=click.IntRange(min=1), default=None, metavar="N",
              help="Fit the calibration on the first N validation items (default: all).")
@options.spend
@options.json_output
@with_context
def eval_cmd(ctx: click.Context, task: str, student: str, prompt_file: Path | None,
             version: int | None, zero_shot: bool, few_shot: int | None, nearest: bool,
             worked_examples: bool, split: str,
             limit: int | None, seed: int, concurrency: int | None, calibration: str,
             val_limit: int | None, use_batch: bool, estimate_only: bool,
             max_cost: float | None, as_json: bool) -> None:
    """Score a prompt (or a baseline) for TASK on a split: macro-F1 with CI, per-label,
    confusion, raw and calibrated.

    \b
    Examples:
      python -m pld eval demo --student local/default --zero-shot
      python -m pld eval demo --student local/default --few-shot 5 --nearest
      python -m pld eval demo --student local/default --version 3 --limit 200
      python -m pld eval demo --student local/default --prompt exported/
      python -m pld eval demo --student openai/gpt-4.1-mini --zero-shot --estimate-only
      python -m pld eval demo --student openai/gpt-4.1-mini --version 3 --batch
    """
    from pld.pipeline.evaluate import evaluate, planned_calls

    if nearest and few_shot is None:
        raise BadInput("eval: --nearest goes with --few-shot K")
    chosen = sum(x is not None and x is not False for x in (prompt_file, version, few_shot)) + int(
        zero_shot)
    if chosen != 1:
        raise BadInput("eval: give exactly one of --prompt FILE, --version V, --zero-shot, "
                       "--few-shot K")
    check_model(student)
    ws = ctx_workspace(ctx)
    scoring: dict[str, Any] = {
        "version": version, "prompt_file": prompt_file, "zero_shot": zero_shot,
        "few_shot": few_shot, "nearest": nearest, "worked_examples": worked_examples,
        "split": split, "limit": limit, "seed": seed, "val_limit": val_limit,
        "calibration": calibration_method(calibration)}
    if estimate_only:
        show_estimate(ws, planned_calls(ws, task, student, **scoring), f"eval {task}",
                      as_json)
        return
    with spending(max_cost, (student,), use_batch, (student,)):
        r = evaluate(ws, task, student, concurrency=concurrency, started_by=acting(ctx, None),
                     on_progress=Progress("eval"), **scoring)
    data = {"task": task, "student": student, "split": split, "method": r.method,
            "evaluation_id": r.evaluation_id, "prompt_sha256": r.prompt_sha256,
            "run_id": r.run_id, "metrics": r.metrics}
    emit(data, as_json, _metrics_text)


@cli.group("evals")
def evals_group() -> None:
    """List and compare the evaluations that `eval` stored, and list the items one got wrong
    (the Evaluate page's tables).

    \b
    Examples:
      python -m pld evals list demo
      python -m pld evals compare 3 5
      python -m pld evals errors 5 --gold pos
    """


def _eval_name(e: dict[str, Any]) -> str:
    version = f" v{e['prompt_version']}" if e.get("prompt_version") is not None else ""
    return f"#{e['id']} {e['method']}{version} {e['student']} on {e['split']} (n={e['n']})"


@evals_group.command("list")
@click.argument("task")
@options.json_output
@with_context
def evals_list(ctx: click.Context, task: str, as_json: bool) -> None:
    """TASK's evaluations, oldest first: method, prompt version, student, split, scores.

    \b
    Examples:
      python -m pld evals list demo
      python -m pld evals list demo --json
    """
    from pld.pipeline.evaluate import list_evaluations

    data = {"task": task, "evaluations": list_evaluations(task_workspace(ctx, task), task)}

    def text(d: dict[str, Any]) -> str:
        out = []
        for e in d["evaluations"]:
            m = e["metrics"]
            lo, hi = (m.get("ci") or {}).get("macro_f1") or (None, None)
            ci = f" [{score_text(lo)}, {score_text(hi)}]" if lo is not None else ""
            cal = m.get("calibrated")
            calibrated = f"; calibrated {score_text(cal['macro_f1'])}" if cal else ""
            share = m.get("top_answer_share")
            top = f"; top answer {share:.0%}" if share is not None else ""
            out.append(f"{_eval_name(e)}: macro-F1 {score_text(m.get('macro_f1', 0))}{ci}, "
                       f"accuracy {score_text(m.get('accuracy', 0))}{top}{calibrated}")
        return "\n".join(out) or f"no evaluations of {d['task']}; run python -m pld eval"

    emit(data, as_json, text)


@evals_group.command("compare")
@click.argument("eval_a", type=int, required=False)
@click.argument("eval_b", type=int, required=False)
@click.option("--task", default=None, metavar="TASK",
              help="Without EVAL_A and EVAL_B: compare TASK's latest two evaluations that "
                   "scored the same split and the same items.")
@options.json_output
@with_context
def evals_compare(ctx: click.Context, eval_a: int | None, eval_b: int | None,
                  task: str | None, as_json: bool) -> None:
    """Evaluations EVAL_A and EVAL_B side by side: score deltas, items that flipped, the
    prompt diff (A → B). With --task instead of the two ids: the task's latest two
    comparable evaluations (same split, same items).

    \b
    Examples:
      python -m pld evals compare 3 5
      python -m pld evals compare 3 5 --json
      python -m pld evals compare --task demo
    """
    from pld.pipeline.evaluate import compare, latest_comparable

    if eval_a is None and task is not None:
        pair = latest_comparable(task_workspace(ctx, task), task)
        if pair is None:
            raise BadInput(f"evals compare: no two evaluations of {task} scored the same split "
                           "and the same items; give EVAL_A EVAL_B")
        eval_a, eval_b = pair
    elif eval_a is None or eval_b is None or task is not None:
        raise BadInput("evals compare: give EVAL_A EVAL_B, or --task TASK alone")
    if eval_a == eval_b:
        raise BadInput("evals compare: give two different evaluation ids")
    data = compare(ctx_workspace(ctx), eval_a, eval_b)

    def text(d: dict[str, Any]) -> str:
        a, b = d["a"], d["b"]
        lines = [f"A {_eval_name(a)}", f"B {_eval_name(b)}"]
        if not d["common"]:
            lines.append("no items both scored: A and B share no items, so their scores "
                         "have no difference to give")
        else:
            if not d["comparable"]:
                lines.append(f"note: A and B scored different splits or items ({d['common']} "
                             "in common), so their scores do not compare directly")
            if a["student"] != b["student"]:
                lines.append("note: different students")
            lines.append(f"B - A: macro-F1 {delta_text(d['delta_macro_f1'])}, accuracy "
                         f"{delta_text(d['delta_accuracy'])} ({d['common']} items both "
                         "scored)")
        p = d.get("paired") or {}
        if p.get("ci"):
            lines.append(f"paired on {p['n']} items: macro-F1 {delta_text(p['delta'])}, 95% CI "
                         f"{delta_text(p['ci'][0])} to {delta_text(p['ci'][1])} "
                         "(paired bootstrap): "
                         + ("more than noise" if p["beyond_noise"] else "within noise"))
        lines.append(f"fixed by B (wrong -> right): {d['wrong_to_right'] or 'none'}")
        lines.append(f"broken by B (right -> wrong): {d['right_to_wrong'] or 'none'}")
        lines.append(d["diff"].rstrip("\n") if d["diff"] else "the two prompts are identical")
        return "\n".join(lines)

    emit(data, as_json, text)


def _errors_text(d: dict[str, Any]) -> str:
    from pld.metrics import UNPARSEABLE

    shown = [f"gold {d['gold']}"] * (d["gold"] is not None) + [
        f"answer {d['answer']}"] * (d["answer"] is not None)
    lines = [f"evaluation #{d['evaluation']} {d['method']} on {d['split']}: "
             f"{len(d['errors'])} wrong of {d['n']} items"
             + (f" with {' and '.join(shown)}" if shown else "")
             + f" (judged by the {d['judged_by']} answers)"]
    for e in d["errors"]:
        text = " ".join(e["text"].split())
        cal = f"  calibrated {e['calibrated']}" if d["calibrated"] else ""
        lines.append(f"#{e['example_id']} {e['item']}  gold {e['gold']}  raw "
                     f"{e['raw'] or UNPARSEABLE}{cal}  {text[:70]}"
                     + ("…" if len(text) > 70 else ""))
        if e["scores"]:
            lines.append("    scores: " + ", ".join(f"{label} {v:.2f}"
                                                    for label, v in e["scores"].items()))
    return "\n".join(lines)


@evals_group.command("errors")
@click.argument("eval_id", type=int)
@click.option("--gold", default=None, metavar="LABEL",
              help="Only the items whose gold label is LABEL.")
@click.option("--answer", default=None, metavar="LABEL",
              help="Only the items answered LABEL: the calibrated answer when the evaluation "
                   "has calibration, else the raw one; '(unparseable)' for replies naming no "
                   "label.")
@options.json_output
@with_context
def evals_errors(ctx: click.Context, eval_id: int, gold: str | None, answer: str | None,
                 as_json: bool) -> None:
    """The items evaluation EVAL_ID got wrong, by example id: the task's item id, text, gold,
    raw and calibrated answer, and each label's score. An item is wrong when its calibrated
    answer (raw, without calibration) is not its gold label.

    \b
    Examples:
      python -m pld evals errors 5
      python -m pld evals errors 5 --gold pos --answer neutral
      python -m pld evals errors 5 --json
    """
    from pld.pipeline.eval_errors import wrong_items

    found = wrong_items(ctx_workspace(ctx), eval_id, gold=gold, answer=answer)
    emit(asdict(found), as_json, _errors_text)
