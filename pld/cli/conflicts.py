"""The conflict loop (stage 6): ``resolve`` runs it; ``review proposals|decide`` is where people
settle its proposed fixes and ``review impact`` measures what each approved heuristic does."""

from __future__ import annotations

from typing import Any

import click

from pld.cli import options
from pld.cli.common import acting, automatic, ctx_workspace, emit, signed_by, with_context
from pld.cli.heuristics import review_group
from pld.cli.inputs import calibration_method
from pld.cli.root import cli
from pld.cli.stages import Progress, check_model, show_estimate, spending
from pld.number_format import delta_text, score_text


@cli.command("resolve")
@click.argument("task")
@options.model("student", "Student model string.")
@options.model("teacher", "Teacher model string.")
@click.option("--iterations", type=int, default=3, show_default=True,
              help="At most this many new prompt versions (each one student run on validation "
                   "and one round of teacher proposals).")
@click.option("--auto-accept-as", default=None, metavar="NAME",
              help="Accept proposals and approve their heuristics as NAME (benchmarks).")
@click.option("--val-limit", type=int, default=None, help="At most N validation examples.")
@options.concurrency("Calls")
@click.option("--retry-failed", is_flag=True,
              help="Ask the teacher again after an iteration where every call failed.")
@options.calibration("Score each version on calibrated answers (its own per-label bias).")
@click.option("--no-impact", "no_impact", is_flag=True,
              help="Do not measure each heuristic's leave-one-out effect (no measured "
                   "remove proposals).")
@options.spend
@options.json_output
@with_context
def resolve_cmd(ctx: click.Context, task: str, student: str, teacher: str, iterations: int,
                auto_accept_as: str | None, val_limit: int | None, concurrency: int | None,
                retry_failed: bool, calibration: str, no_impact: bool, use_batch: bool,
                estimate_only: bool, max_cost: float | None, as_json: bool) -> None:
    """Stage 6: run the student on TASK's validation split, have the teacher propose fixes.

    With --batch, each version's student runs on validation go through the batch API; the
    teacher's proposals (one call per heuristic, each depending on the run before) do not.

    \b
    Examples:
      python -m pld resolve demo --student local/default --teacher local/default
      python -m pld resolve demo --student local/default --teacher local/default --iterations 1
      python -m pld resolve demo --student openai/gpt-4.1-mini --teacher local/default --batch
    """
    from dataclasses import asdict

    from pld.pipeline.resolve.evidence import comparison_words
    from pld.pipeline.resolve.loop import planned_calls, resolve

    check_model(student)
    check_model(teacher)
    ws = ctx_workspace(ctx)
    if estimate_only:
        show_estimate(ws, planned_calls(ws, task, student, teacher, iterations=iterations,
                                        val_limit=val_limit, impact=not no_impact),
                      f"resolve {task} (at most {iterations} new versions)", as_json)
        return
    with spending(max_cost, (student, teacher), use_batch, (student,)):
        s = resolve(ws, task, student, teacher, iterations=iterations,
                    auto_accept_as=automatic(auto_accept_as), val_limit=val_limit,
                    concurrency=concurrency, retry_failed=retry_failed,
                    started_by=acting(ctx, None), on_progress=Progress("resolve"),
                    calibration=calibration_method(calibration), impact=not no_impact)

    def text(d: dict[str, Any]) -> str:
        lines = [f"resolve: {d.get('stop_reason')}; best prompt version {d.get('best_version')}"]
        for h in d.get("history") or []:
            lines.append(f"  iteration {h.get('iteration')}: v{h.get('prompt_version')} "
                         f"val macro-F1 {h.get('macro_f1')} errors {h.get('n_errors')} "
                         f"{'adopted' if h.get('adopted') else 'not adopted'}")
            if comparison_words(h):
                lines.append(f"    {comparison_words(h)}")
        for hid, error in (d.get("failed_groups") or {}).items():
            lines.append(f"  teacher call for heuristic {hid} failed: {error}")
        return "\n".join(lines)

    emit(asdict(s), as_json, text)


@review_group.command("proposals")
@click.argument("task")
@click.option("--status", default="pending", show_default=True,
              type=click.Choice(["pending", "accepted", "rejected", "all"]),
              help="Only the proposals in this state.")
@options.json_output
@with_context
def review_proposals(ctx: click.Context, task: str, status: str, as_json: bool) -> None:
    """The teacher's proposed fixes to TASK's heuristics from the conflict loop.

    \b
    Examples:
      python -m pld review proposals demo
      python -m pld review proposals demo --status all --json
    """
    from pld.pipeline.resolve.evidence import measured_words
    from pld.pipeline.resolve.view import list_proposals

    rows = list_proposals(ctx_workspace(ctx), task, status=None if status == "all" else status)
    data = {"task": task, "proposals": rows}

    def text(d: dict[str, Any]) -> str:
        out = []
        for p in d["proposals"]:
            target = f"heuristic #{p['heuristic_id']}" if p.get("heuristic_id") else "new"
            out.append(f"#{p['id']} iter {p['iteration']} {p['kind']} {target} "
                       f"[{p['status']}]: {(p.get('text') or '')[:80]}")
            out.append(f"     why: {(p.get('rationale') or '')[:100]}")
            if p.get("measured"):
                out.append(f"     {measured_words(p['measured'])}")
        return "\n".join(out) or "no proposals"

    emit(data, as_json, text)


@review_group.command("decide")
@click.argument("proposal_id", type=int)
@click.argument("decision", type=click.Choice(["accept", "reject"]))
@options.comment
@options.signer
@with_context
def review_decide(ctx: click.Context, proposal_id: int, decision: str, comment: str | None,
                  who: str) -> None:
    """Settle proposal PROPOSAL_ID of the conflict loop: DECISION is accept or reject.

    \b
    Examples:
      python -m pld review decide 7 accept --as bob
      python -m pld review decide 8 reject --comment "Too broad." --as bob
    """
    from pld.pipeline.resolve.decisions import decide_proposal

    decide_proposal(ctx_workspace(ctx), proposal_id, decision == "accept", signed_by(ctx, who),
                    comment=comment)
    click.echo(f"proposal #{proposal_id} {decision}ed by {who}")


def _impact_text(d: dict[str, Any]) -> str:
    def f1(block: dict[str, Any]) -> str:
        cal = block.get("calibrated_macro_f1")
        return score_text(block["macro_f1"]) + (
            f" (calibrated {score_text(cal)})" if cal is not None else "")

    lines = [f"{d['task']}: effect of each approved heuristic on {d['student']}, "
             f"{d['n_val']} validation items, {d['metric']} answers",
             f"  all heuristics: macro-F1 {f1(d['full'])}; no heuristics: {f1(d['no_rules'])}",
             f"  {'#':>3} {'id':>5} {'effect':>7} {'95% CI':>17} {'fixes':>5} {'breaks':>6}  text"]
    for h in d["heuristics"]:
        lo, hi = h["ci"] or (float("nan"), float("nan"))
        lines.append(f"  {h['number']:>3} {h['heuristic_id']:>5} {delta_text(h['effect']):>7} "
                     f"[{delta_text(lo)}, {delta_text(hi)}] {len(h['fixes']):>5} "
                     f"{len(h['breaks']):>6}  "
                     f"{' '.join(h['text'].split())[:60]}"
                     + ("  <- removing it raised validation macro-F1" if h["harmful"] else ""))
    return "\n".join(lines)


@review_group.command("impact")
@click.argument("task")
@click.option("--student", default="local/default", show_default=True, metavar="MODEL",
              help="Student model string.")
@click.option("--val-limit", type=click.IntRange(min=1), default=None, metavar="N",
              help="First N validation items (default: all).")
@options.calibration("Read the effect on calibrated answers (each prompt's own bias).")
@options.concurrency("Student calls")
@options.json_output
@with_context
def review_impact(ctx: click.Context, task: str, student: str, val_limit: int | None,
                  calibration: str, concurrency: int | None, as_json: bool) -> None:
    """Each of TASK's approved heuristics' measured effect on validation: macro-F1 with and
    without it (leave-one-out, paired bootstrap CI), the answers it fixes and breaks. Harmful
    ones first.

    \b
    Examples:
      python -m pld review impact demo
      python -m pld review impact demo --student openai/gpt-4o-mini --json
    """
    from pld.pipeline.resolve.impact import measure_impact

    check_model(student)
    report = measure_impact(ctx_workspace(ctx), task, student, val_limit=val_limit,
                            calibration=calibration_method(calibration),
                            concurrency=concurrency, on_progress=Progress("impact"))
    emit(report, as_json, _impact_text)
