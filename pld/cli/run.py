"""``run``: every stage for one task in one command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from pld.cli.common import (
    Progress,
    check_model,
    ctx_workspace,
    emit,
    failed_before_note,
    handles_errors,
    merge_option,
    model_option,
)
from pld.cli.root import cli
from pld.errors import BadInput


@cli.command("run")
@click.argument("task")
@model_option("teacher", "Teacher model string.")
@model_option("student", "Student model string.")
@click.option("--auto-approve-as", default=None, metavar="NAME",
              help="Approve every heuristic and proposal as NAME (benchmarks; recorded as auto). "
                   "Without it the run stops after consolidation for people to review.")
@click.option("--limit", type=int, default=None, help="At most N training examples to extract.")
@click.option("--concurrency", type=click.IntRange(min=1), default=None,
              help="Calls in flight (default: remote 8, local 1; the local model decodes up "
                   "to $PLD_LOCAL_PARALLEL, 4, together).")
@click.option("--method", type=click.Choice(["dbscan", "hdbscan", "kmeans"]), default="dbscan",
              show_default=True)
@click.option("--eps", default="auto", show_default=True)
@click.option("--min-samples", type=int, default=6, show_default=True)
@click.option("--k", type=int, default=None)
@click.option("--cover-labels", is_flag=True,
              help="Give each label whose rules all fall into noise one cluster of them, so it "
                   "still gets a heuristic.")
@click.option("--iterations", type=int, default=2, show_default=True,
              help="Conflict-resolution iterations (0 to skip).")
@click.option("--val-limit", type=int, default=None)
@click.option("--test-limit", type=int, default=None)
@click.option("--few-shot", type=int, default=None, metavar="K",
              help="Also evaluate a K-shot baseline.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Export the final prompt here (default: data/exports/TASK).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--retry-failed", is_flag=True,
              help="Ask failed extract examples, consolidate clusters and conflict-loop "
                   "teacher calls again.")
@merge_option
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def run_cmd(ctx: click.Context, task: str, teacher: str, student: str,
            auto_approve_as: str | None, limit: int | None, concurrency: int | None,
            method: str, eps: str, min_samples: int, k: int | None, cover_labels: bool,
            iterations: int,
            val_limit: int | None, test_limit: int | None, few_shot: int | None,
            out_dir: Path | None, seed: int, retry_failed: bool, merge: str,
            as_json: bool) -> None:
    """All stages for one task: extract, cluster, consolidate, (approve, resolve, eval, export)."""
    from dataclasses import asdict

    from pld.pipeline.chain import ChainOptions, run_chain

    check_model(teacher)
    check_model(student)
    eps_value: float | str = eps
    if eps != "auto":
        try:
            eps_value = float(eps)
        except ValueError:
            raise BadInput(f"--eps: expected a number or 'auto', got {eps!r}") from None
    options = ChainOptions(
        teacher=teacher, student=student, auto_approve_as=auto_approve_as, limit=limit,
        concurrency=concurrency, method=method, eps=eps_value, min_samples=min_samples, k=k,
        cover_labels=cover_labels, iterations=iterations, val_limit=val_limit,
        test_limit=test_limit, few_shot=few_shot,
        out_dir=out_dir or Path("data") / "exports" / task, seed=seed, retry_failed=retry_failed,
        merge=merge)
    s = run_chain(ctx_workspace(ctx), task, options, on_progress=Progress(task))

    def text(d: dict[str, Any]) -> str:
        st = d["stages"]
        lines = [f"run {d['task']}: {d['stopped']}"]
        if "extract" in st:
            e = st["extract"]
            lines.append(f"  extract: {e['done']}/{e['total']} rules ({e['failed']} failed)"
                         + failed_before_note(e))
        if "cluster" in st:
            c = st["cluster"]
            lines.append(f"  cluster: {c['n_clusters']} clusters, noise "
                         f"{100 * (c['noise_share'] or 0):.0f}%"
                         + (f" ({c['fallback']})" if c.get("fallback") else ""))
        if "consolidate" in st:
            c = st["consolidate"]
            lines.append(f"  consolidate: {c['created']} heuristics created, {c['skipped']} "
                         f"already there, {c['failed']} failed" + failed_before_note(c))
        for name, ev in st.get("eval", {}).items():
            cal = ev.get("calibrated_macro_f1")
            lines.append(f"  eval {name}: macro-F1 {ev['macro_f1']:.3f} "
                         f"[{ev['ci'][0]:.3f}, {ev['ci'][1]:.3f}] accuracy {ev['accuracy']:.3f} "
                         f"(n={ev['n']}; top answer {ev['top_answer_share']:.0%})"
                         + (f"; calibrated {cal:.3f}" if cal is not None else ""))
        if "export" in st:
            lines.append(f"  export: {st['export']['prompt']}")
        if d["stopped"] == "awaiting-review":
            lines.append(f"  next: review the heuristics (python -m pld review list {d['task']})")
        return "\n".join(lines)

    emit(asdict(s), as_json, text)
