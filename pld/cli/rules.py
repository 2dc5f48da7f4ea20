"""Stage 1 ``extract``, ``rules list/show`` to browse the micro-instructions, and ``rules
verify`` to try each one alone in the student's prompt."""

from __future__ import annotations

from typing import Any

import click

from pld.cli import options
from pld.cli.common import acting, ctx_workspace, emit, task_workspace, with_context
from pld.cli.inputs import parse_cluster_ref
from pld.cli.root import cli
from pld.cli.stages import Progress, check_model, failed_before_note, show_estimate, spending
from pld.errors import BadInput


@cli.command("extract")
@click.argument("task")
@options.model("teacher", "Teacher model string, e.g. local/default or anthropic/claude-...")
@click.option("--limit", type=int, default=None, help="At most N training examples.")
@options.concurrency("Teacher calls")
@click.option("--retry-failed", is_flag=True,
              help="Ask again, with a fresh call, the examples that failed before.")
@click.option("--contrastive/--no-contrastive", default=True, show_default=True,
              help="Show each example beside its most similar training example of another "
                   "label and ask for the rule that separates them (off: the example alone).")
@click.option("--student", default=None, metavar="MODEL",
              help="Leave out the examples this student already answers right under the "
                   "zero-shot prompt (calibrated on validation): start where it fails.")
@click.option("--val-limit", type=click.IntRange(min=1), default=None, metavar="N",
              help="With --student: fit its zero-shot calibration on the first N validation "
                   "items (default: all).")
@options.spend
@options.json_output
@with_context
def extract_cmd(ctx: click.Context, task: str, teacher: str, limit: int | None,
                concurrency: int | None, retry_failed: bool, contrastive: bool,
                student: str | None, val_limit: int | None, use_batch: bool,
                estimate_only: bool, max_cost: float | None, as_json: bool) -> None:
    """Stage 1: one micro-instruction per training example of TASK.

    \b
    Examples:
      python -m pld extract demo --teacher local/default
      python -m pld extract demo --teacher local/default --student local/default
      python -m pld extract demo --teacher local/default --no-contrastive
      python -m pld extract demo --teacher anthropic/claude-sonnet-4-5 --estimate-only
      python -m pld extract demo --teacher anthropic/claude-sonnet-4-5 --max-cost 5
      python -m pld extract demo --teacher anthropic/claude-sonnet-4-5 --batch --max-cost 5
    """
    from dataclasses import asdict

    from pld.pipeline.extract.stage import extract, planned_calls

    check_model(teacher)
    if student is not None:
        check_model(student)
    ws = ctx_workspace(ctx)
    if estimate_only:
        show_estimate(ws, planned_calls(ws, task, teacher, limit=limit,
                                        retry_failed=retry_failed, contrastive=contrastive),
                      f"extract {task}", as_json)
        return
    models = (teacher,) if student is None else (teacher, student)
    with spending(max_cost, models, use_batch, (teacher,)):
        s = extract(ws, task, teacher, limit=limit, concurrency=concurrency,
                    retry_failed=retry_failed, started_by=acting(ctx, None),
                    on_progress=Progress("extract"), contrastive=contrastive,
                    student=student, val_limit=val_limit)
    emit(asdict(s), as_json, _extract_text)


def _extract_text(d: dict[str, Any]) -> str:
    lines = [f"extract run {d['run_id']}: {d['done']}/{d['total']} rules ({d['contrasted']} "
             f"from a contrasting pair), {d['skipped']} already done, {d['failed']} failed, "
             f"{d['flagged']} flagged" + failed_before_note(d),
             f"{d['restatements']} rules of the task restate it (flag restates_task)"]
    lines += [note for note in (d["contrast_note"], d["screen_note"]) if note]
    return "\n".join(lines)


@cli.group("rules")
def rules_group() -> None:
    """Browse the extracted micro-instructions (the Micro-instructions page's table) and
    verify them with the student.

    \b
    Examples:
      python -m pld rules list demo --flag any
      python -m pld rules show 41
      python -m pld rules verify demo --student local/default
    """


@rules_group.command("list")
@click.argument("task")
@click.option("--status", type=click.Choice(["ok", "failed"]), default=None,
              help="Only the rules written (ok) or the examples whose call failed.")
@click.option("--label", default=None, help="Only rules of examples with this gold label.")
@click.option("--flag", "flag", default=None, metavar="any|none|NAME",
              help="Flagged rules: any flag, none, or one flag (see rules show).")
@click.option("--search", default=None, help="Substring of the rule, reasoning or error.")
@click.option("--clustering", "clustering_id", type=int, default=None,
              help="With --cluster: the clustering the cluster belongs to.")
@click.option("--cluster", "cluster_ref", default=None, metavar="ID|noise",
              help="Only the rules of this cluster (or the noise) of --clustering.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True,
              help="Rules on the page.")
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True,
              help="Matching rules to skip before the page.")
@options.json_output
@with_context
def rules_list(ctx: click.Context, task: str, status: str | None, label: str | None,
               flag: str | None, search: str | None, clustering_id: int | None,
               cluster_ref: str | None, limit: int, offset: int, as_json: bool) -> None:
    """One page of TASK's rules, by rule id, with the number that match.

    \b
    Examples:
      python -m pld rules list demo
      python -m pld rules list demo --label complaint --flag no_label --limit 20
      python -m pld rules list demo --clustering 3 --cluster noise --json
    """
    from pld.pipeline.extract.browse import count_rules, list_rules
    from pld.pipeline.extract.flags import FLAGS
    from pld.pipeline.rule_evidence import rule_effects

    flagged: bool | str | None = {None: None, "any": True, "none": False}.get(flag, flag)
    if isinstance(flagged, str) and flagged not in FLAGS:
        raise BadInput(f"--flag {flag!r}: use any, none or one of {', '.join(FLAGS)}")
    if (clustering_id is None) != (cluster_ref is None):
        raise BadInput("rules list: --cluster and --clustering go together")
    cluster = None if clustering_id is None else (
        clustering_id, parse_cluster_ref(cluster_ref or "", "--cluster"))
    ws = task_workspace(ctx, task)
    filters: dict[str, Any] = {"status": status, "label": label, "flagged": flagged,
                               "search": search, "cluster": cluster}
    rows = list_rules(ws, task, **filters, limit=limit, offset=offset)
    keep = ("id", "status", "label", "flags", "rule", "reasoning", "error", "teacher",
            "example_id", "ext_id", "split", "example_text", "source_examples")
    effects = rule_effects(ws, task)
    data = {"task": task, "total": count_rules(ws, task, **filters), "offset": offset,
            "limit": limit, "rules": [{**{k: r.get(k) for k in keep},
                                       "effect": effects.get(r["id"])} for r in rows]}

    def text(d: dict[str, Any]) -> str:
        lines = [f"rules {d['offset'] + 1}-{d['offset'] + len(d['rules'])} of {d['total']} "
                 f"matching (effect: verified with the student, - when not)"
                 if d["rules"] else f"no rule of {d['task']} matches"]
        for r in d["rules"]:
            body = r["rule"] if r["status"] == "ok" else f"(failed) {r['error'] or ''}"
            flags = f" [{', '.join(r['flags'])}]" if r["flags"] else ""
            effect = f"{r['effect']:+.3f}" if r["effect"] is not None else "-"
            lines.append(f"#{r['id']:<5} {str(r['label'])[:12]:<12} {effect:>6} {body}{flags}")
        return "\n".join(lines)

    emit(data, as_json, text)


@rules_group.command("show")
@click.argument("rule_id", type=int)
@options.json_output
@with_context
def rules_show(ctx: click.Context, rule_id: int, as_json: bool) -> None:
    """Rule RULE_ID with its reasoning, its example and the teacher call that wrote it.

    \b
    Examples:
      python -m pld rules show 41
      python -m pld rules show 41 --json
    """
    from pld.pipeline.extract.browse import get_rule
    from pld.pipeline.extract.flags import FLAGS

    r = get_rule(ctx_workspace(ctx), rule_id)

    def text(d: dict[str, Any]) -> str:
        ex = d["example"]
        lines = [f"rule #{d['id']} [{d['status']}] by {d['teacher']}",
                 f"rule: {d['rule'] or ''}" if d["status"] == "ok" else f"error: {d['error']}",
                 f"reasoning: {d['reasoning'] or ''}",
                 f"example {ex['ext_id']} ({ex['split']}, gold {ex['label']}): {ex['text']}"]
        lines += [f"contrast {c['ext_id']} ({c['split']}, gold {c['label']}): {c['text']}"
                  for c in d["contrast"]]
        lines += [f"flag {f}: {FLAGS.get(f, '')}" for f in d["flags"]]
        if d["restatement"]:
            lines.append(f"restatement: {d['restatement']}")
        lines += [evidence_line(e) for e in d["evidence"]]
        if d["call"]:
            lines.append(f"teacher call: llm_calls row {d['call']['id']} "
                         f"(python -m pld calls --limit N lists calls)")
        return "\n".join(lines)

    emit(r, as_json, text)


def evidence_line(e: dict[str, Any]) -> str:
    """One ``rule_evidence`` row in words."""
    if e["effect"] is None:
        return f"evidence ({e['student']}): none, {e['reason']}"
    return (f"evidence ({e['student']}): effect {e['effect']:+.3f} on {e['n']} items "
            f"({e['helped']} helped, {e['hurt']} hurt)")


@rules_group.command("verify")
@click.argument("task")
@options.model("student", "Student model string, e.g. local/default.")
@click.option("--neighbours", type=click.IntRange(min=0), default=3, show_default=True,
              help="Nearest training examples tried besides the rule's source and contrast.")
@click.option("--val-limit", type=click.IntRange(min=1), default=None, metavar="N",
              help="Fit the zero-shot calibration on the first N validation items "
                   "(default: all).")
@options.concurrency("Rules")
@options.json_output
@with_context
def rules_verify(ctx: click.Context, task: str, student: str, neighbours: int,
                 val_limit: int | None, concurrency: int | None, as_json: bool) -> None:
    """Try each rule of TASK alone in the student's prompt and store what it did.

    Each rule's prompt is the preamble with that one rule; the student answers the rule's
    source and contrast examples and its nearest training examples. The effect is how much
    the rule moved the gold label's calibrated probability from the zero-shot prompt's; rules
    already verified with this student are skipped.

    \b
    Examples:
      python -m pld rules verify demo --student local/default
      python -m pld rules verify demo --student local/default --neighbours 5 --json
    """
    from pld.pipeline.rule_evidence import verify_rules

    check_model(student)
    ws = task_workspace(ctx, task)
    d = verify_rules(ws, task, student, neighbours=neighbours, concurrency=concurrency,
                     val_limit=val_limit, started_by=acting(ctx, None),
                     on_progress=Progress("verify"))
    emit(d, as_json, lambda d: (
        f"verify run {d['run_id']}: {d['verified']} rules verified now, {d['skipped']} before; "
        f"{d['with_evidence']} with evidence: {d['helping']} help, {d['hurting']} hurt, "
        f"{d['no_effect']} move nothing (mean effect "
        + (f"{d['mean_effect']:+.3f}" if d["mean_effect"] is not None else "-")
        + f"); {d['restatements']} restate the task"))
