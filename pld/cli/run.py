"""``run``: every stage for one task in one command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from pld.cli import options
from pld.cli.common import automatic, ctx_workspace, emit, with_context
from pld.cli.inputs import check_clustering, parse_eps
from pld.cli.root import cli
from pld.cli.stages import Progress, check_model, failed_before_note, set_aside_note


@cli.command("run")
@click.argument("task")
@options.model("teacher", "Teacher model string.")
@options.model("student", "Student model string.")
@click.option("--auto-approve-as", default=None, metavar="NAME",
              help="Approve every heuristic and proposal as NAME (benchmarks; recorded as auto). "
                   "Without it the run stops after consolidation for people to review.")
@click.option("--limit", type=int, default=None, help="At most N training examples to extract.")
@click.option("--contrastive/--no-contrastive", default=True, show_default=True,
              help="Extract each rule from a training example and its nearest example of "
                   "another label: what makes this one X where the similar one is Y.")
@click.option("--failing-first/--no-failing-first", default=True, show_default=True,
              help="Extract from the training examples the calibrated zero-shot student gets "
                   "wrong (the student answers them first).")
@click.option("--verify-rules/--no-verify-rules", default=True, show_default=True,
              help="Before clustering, try each rule alone in the student's prompt on its "
                   "examples and near ones; consolidation leaves out rules that hurt and "
                   "clusters of restatements.")
@options.concurrency("Calls")
@options.clustering(eps_default="auto")
@click.option("--iterations", type=int, default=2, show_default=True,
              help="Conflict-resolution iterations (0 to skip).")
@click.option("--val-limit", type=int, default=None,
              help="At most N validation examples (conflict loop and calibration).")
@click.option("--test-limit", type=int, default=None,
              help="At most N test examples for the final evaluations.")
@click.option("--few-shot", type=int, default=None, metavar="K",
              help="Also evaluate a K-shot baseline.")
@click.option("--nearest-few-shot", type=int, default=None, metavar="K",
              help="Also evaluate nearest-neighbour K-shot: each item's K most similar "
                   "training examples (eval --few-shot K --nearest).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Export the final prompt here (default: data/exports/TASK).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seeds loading, clustering and evaluation, so a rerun gives the same run.")
@click.option("--retry-failed", is_flag=True,
              help="Ask failed extract examples, consolidate clusters and conflict-loop "
                   "teacher calls again.")
@options.merge
@options.json_output
@with_context
def run_cmd(ctx: click.Context, task: str, teacher: str, student: str,
            auto_approve_as: str | None, limit: int | None, contrastive: bool,
            failing_first: bool, verify_rules: bool, concurrency: int | None,
            method: str, eps: str, min_samples: int, k: int | None, cover_labels: bool,
            iterations: int,
            val_limit: int | None, test_limit: int | None, few_shot: int | None,
            nearest_few_shot: int | None, out_dir: Path | None, seed: int, retry_failed: bool,
            merge: str, as_json: bool) -> None:
    """All stages for TASK: extract, cluster, consolidate, (approve, resolve, eval, export).

    \b
    Examples:
      python -m pld run demo --teacher local/default --student local/default
      python -m pld run demo --teacher local/default --student local/default --limit 40 \\
        --auto-approve-as bench --iterations 1 --out exported/
      python -m pld run demo --teacher local/default --student local/default \\
        --no-contrastive --no-failing-first --no-verify-rules --method dbscan
    """
    from dataclasses import asdict

    from pld.pipeline.chain import ChainOptions, run_chain

    check_model(teacher)
    check_model(student)
    check_clustering(ctx, method)
    chain = ChainOptions(
        teacher=teacher, student=student, auto_approve_as=automatic(auto_approve_as), limit=limit,
        contrastive=contrastive, failing_first=failing_first, verify_rules=verify_rules,
        concurrency=concurrency, method=method, eps=parse_eps(eps), min_samples=min_samples, k=k,
        cover_labels=cover_labels, iterations=iterations, val_limit=val_limit,
        test_limit=test_limit, few_shot=few_shot, nearest_few_shot=nearest_few_shot,
        out_dir=out_dir or Path("data") / "exports" / task, seed=seed, retry_failed=retry_failed,
        merge=merge)
    s = run_chain(ctx_workspace(ctx), task, chain, on_progress=Progress(task))

    def text(d: dict[str, Any]) -> str:
        st = d["stages"]
        lines = [f"run {d['task']}: {d['stopped']}"]
        if "extract" in st:
            e = st["extract"]
            lines.append(f"  extract: {e['done']}/{e['total']} rules ({e['failed']} failed)"
                         + failed_before_note(e)
                         + (f"; {e['contrasted']} from a contrasting pair"
                            if e.get("contrasted") else "")
                         + (f"; {e['screen_note']}" if e.get("screen_note") else ""))
        if st.get("student_scores"):
            lines.append(f"  {st['student_scores']}")
        if "verify" in st:
            v = st["verify"]
            lines.append(f"  verify: {v['with_evidence']} rules tried on the student, "
                         f"{v['helping']} help, {v['hurting']} hurt, {v['no_effect']} no "
                         f"effect; {v['restatements']} restatement(s)")
        if "cluster" in st:
            c = st["cluster"]
            lines.append(f"  cluster: {c['n_clusters']} clusters, noise "
                         f"{100 * (c['noise_share'] or 0):.0f}%, largest "
                         f"{100 * (c.get('largest_share') or 0):.0f}%"
                         + (f", auto kept {c['chosen']}" if c.get("chosen") else "")
                         + (f" ({c['fallback']})" if c.get("fallback") else ""))
        if "consolidate" in st:
            c = st["consolidate"]
            lines.append(f"  consolidate: {c['created']} heuristics created, {c['skipped']} "
                         f"already there, {c['failed']} failed" + failed_before_note(c)
                         + set_aside_note(c))
        for name, ev in st.get("eval", {}).items():
            cal = ev.get("calibrated_macro_f1")
            lines.append(f"  eval {name}: macro-F1 {ev['macro_f1']:.3f} "
                         f"[{ev['ci'][0]:.3f}, {ev['ci'][1]:.3f}] accuracy {ev['accuracy']:.3f} "
                         f"(n={ev['n']}; top answer {ev['top_answer_share']:.0%})"
                         + (f"; calibrated {cal:.3f}" if cal is not None else ""))
        if "export" in st:
            lines.append(f"  export: {st['export']['prompt']}")
        if d.get("statement"):
            lines.append(f"  {d['statement']}")
        if d["stopped"] == "awaiting-review":
            lines.append(f"  next: review the heuristics (python -m pld review list {d['task']})")
        return "\n".join(lines)

    emit(asdict(s), as_json, text)
