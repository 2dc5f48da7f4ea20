"""Stage 1 ``extract``, and ``rules list/show`` to browse the micro-instructions."""

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
@options.spend
@options.json_output
@with_context
def extract_cmd(ctx: click.Context, task: str, teacher: str, limit: int | None,
                concurrency: int | None, retry_failed: bool, use_batch: bool,
                estimate_only: bool, max_cost: float | None, as_json: bool) -> None:
    """Stage 1: one micro-instruction per training example of TASK.

    \b
    Examples:
      python -m pld extract demo --teacher local/default
      python -m pld extract demo --teacher anthropic/claude-sonnet-4-5 --estimate-only
      python -m pld extract demo --teacher anthropic/claude-sonnet-4-5 --max-cost 5
      python -m pld extract demo --teacher anthropic/claude-sonnet-4-5 --batch --max-cost 5
    """
    from dataclasses import asdict

    from pld.pipeline.extract.stage import extract, planned_calls

    check_model(teacher)
    ws = ctx_workspace(ctx)
    if estimate_only:
        show_estimate(ws, planned_calls(ws, task, teacher, limit=limit,
                                        retry_failed=retry_failed), f"extract {task}", as_json)
        return
    with spending(max_cost, (teacher,), use_batch, (teacher,)):
        s = extract(ws, task, teacher, limit=limit, concurrency=concurrency,
                    retry_failed=retry_failed, started_by=acting(ctx, None),
                    on_progress=Progress("extract"))
    emit(asdict(s), as_json, lambda d: (
        f"extract run {d['run_id']}: {d['done']}/{d['total']} rules, {d['skipped']} already "
        f"done, {d['failed']} failed, {d['flagged']} flagged" + failed_before_note(d)))


@cli.group("rules")
def rules_group() -> None:
    """Browse the extracted micro-instructions (the Micro-instructions page's table).

    \b
    Examples:
      python -m pld rules list demo --flag any
      python -m pld rules show 41
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
            "example_id", "ext_id", "split", "example_text")
    data = {"task": task, "total": count_rules(ws, task, **filters), "offset": offset,
            "limit": limit, "rules": [{k: r.get(k) for k in keep} for r in rows]}

    def text(d: dict[str, Any]) -> str:
        lines = [f"rules {d['offset'] + 1}-{d['offset'] + len(d['rules'])} of {d['total']} "
                 f"matching" if d["rules"] else f"no rule of {d['task']} matches"]
        for r in d["rules"]:
            body = r["rule"] if r["status"] == "ok" else f"(failed) {r['error'] or ''}"
            flags = f" [{', '.join(r['flags'])}]" if r["flags"] else ""
            lines.append(f"#{r['id']:<5} {str(r['label'])[:12]:<12} {body}{flags}")
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
        lines += [f"flag {f}: {FLAGS.get(f, '')}" for f in d["flags"]]
        if d["call"]:
            lines.append(f"teacher call: llm_calls row {d['call']['id']} "
                         f"(python -m pld calls --limit N lists calls)")
        return "\n".join(lines)

    emit(r, as_json, text)
