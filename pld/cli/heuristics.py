"""Stage 3 ``consolidate``, and ``review ...`` where people edit and approve heuristics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from pld.cli.common import (
    F,
    Progress,
    as_option,
    check_model,
    ctx_workspace,
    emit,
    failed_before_note,
    handles_errors,
    merge_option,
    model_option,
    show_estimate,
    spend_options,
    spending,
)
from pld.cli.root import cli
from pld.errors import BadInput
from pld.numbers import delta_text, score_text


@cli.command("consolidate")
@click.argument("task")
@model_option("teacher", "Teacher model string.")
@click.option("--clustering", "clustering_id", type=int, default=None,
              help="Clustering id (default: the accepted one, else the latest).")
@click.option("--concurrency", type=click.IntRange(min=1), default=None,
              help="Teacher calls in flight (default: remote 8, local 1; the local model "
                   "decodes up to $PLD_LOCAL_PARALLEL, 4, together).")
@click.option("--retry-failed", is_flag=True,
              help="Ask again, with a fresh call, the clusters that failed before.")
@merge_option
@click.option("--as", "who", default=None, metavar="NAME",
              help="Who starts the job: the drafts count as yours, so someone else must "
                   "approve them (recorded on the run).")
@spend_options
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def consolidate_cmd(ctx: click.Context, task: str, teacher: str, clustering_id: int | None,
                    concurrency: int | None, retry_failed: bool, merge: str, who: str | None,
                    use_batch: bool, estimate_only: bool, max_cost: float | None,
                    as_json: bool) -> None:
    """Stage 3: one heuristic per cluster, keeping minority labels and edge cases."""
    from dataclasses import asdict

    from pld.pipeline.consolidate import consolidate, planned_calls

    check_model(teacher)
    ws = ctx_workspace(ctx)
    if estimate_only:
        show_estimate(ws, planned_calls(ws, task, teacher, clustering_id=clustering_id,
                                        retry_failed=retry_failed, merge=merge),
                      f"consolidate {task}", as_json)
        return
    with spending(max_cost, (teacher,), use_batch, (teacher,)):
        s = consolidate(ws, task, teacher, clustering_id=clustering_id,
                        concurrency=concurrency, retry_failed=retry_failed, merge=merge,
                        started_by=who, on_progress=Progress("consolidate"))
    emit(asdict(s), as_json, lambda d: (
        f"consolidate run {d['run_id']}: {d['created']} heuristics created, {d['skipped']} "
        f"already there, {d['failed']} failed" + failed_before_note(d)))


@cli.group("review")
def review_group() -> None:
    """List, show, write, edit, merge, split, approve or reject heuristics as a named reviewer;
    manage who may approve."""


@review_group.command("list")
@click.argument("task")
@click.option("--status", default=None,
              type=click.Choice(["draft", "approved", "rejected", "merged", "split"]))
@click.option("--as", "who", default=None, metavar="NAME", help="Not needed to list.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def review_list(ctx: click.Context, task: str, status: str | None, who: str | None,
                as_json: bool) -> None:
    """Heuristics of TASK with status, version and who approved them."""
    from pld import review
    from pld.tasks.store import task_info

    ws = ctx_workspace(ctx)
    task_info(ws, task)
    rows = review.list_heuristics(ws, task, status=status)
    data = {"task": task, "heuristics": [
        {k: r.get(k) for k in ("id", "status", "version", "updated_by", "approved_by", "text")}
        for r in rows]}

    def text(d: dict[str, Any]) -> str:
        out = []
        for h in d["heuristics"]:
            first = (h["text"] or "").splitlines()[0][:90] if h["text"] else ""
            out.append(f"#{h['id']:<4} {h['status']:<9} v{h['version']:<3} {first}")
        return "\n".join(out) or f"no heuristics for {d['task']}"

    emit(data, as_json, text)


@review_group.command("show")
@click.argument("heuristic_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def review_show(ctx: click.Context, heuristic_id: int, as_json: bool) -> None:
    """One heuristic with its source rules and examples, and its history."""
    from pld import review

    ws = ctx_workspace(ctx)
    h = review.get_heuristic(ws, heuristic_id)
    h["history"] = review.history(ws, heuristic_id)

    def text(d: dict[str, Any]) -> str:
        lines = [f"heuristic #{d['id']} v{d['version']} [{d['status']}]", "", d["text"], "",
                 f"from {len(d.get('sources') or [])} rules:"]
        for r in d.get("sources") or []:
            lines.append(f"  - rule #{r.get('rule_id')} ({r.get('label')}): {r.get('rule')}")
        lines.append("")
        lines.append("history:")
        for ev in d["history"]:
            lines.append(f"  {ev['created_at']} {ev['who']} ({ev.get('identity_kind')}) "
                         f"{ev['action']} {ev.get('comment') or ''}")
        return "\n".join(lines)

    emit(h, as_json, text)


def _read_text(path: Path, option: str) -> str:
    """A UTF-8 text file given on the command line; :class:`BadInput` naming it otherwise."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise BadInput(f"{option} {path}: not UTF-8 text (byte {e.start}: {e.reason})") from e
    except OSError as e:
        raise BadInput(f"{option} {path}: cannot read ({e.strerror or e})") from e


@review_group.command("edit")
@click.argument("heuristic_id", type=int)
@click.option("--text", "new_text", default=None, help="The new text.")
@click.option("--file", "file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Read the new text from a file.")
@click.option("--base-version", type=int, default=None,
              help="Required: the version your edit is based on (see review show).")
@click.option("--comment", default=None)
@as_option
@click.pass_context
@handles_errors
def review_edit(ctx: click.Context, heuristic_id: int, new_text: str | None, file: Path | None,
                base_version: int | None, comment: str | None, who: str) -> None:
    """Edit a heuristic; refused if someone else saved a newer version first."""
    from pld import review

    if (new_text is None) == (file is None):
        raise BadInput("review edit: give exactly one of --text or --file")
    if base_version is None:
        # Filling in the current version would overwrite a change this reviewer never saw.
        raise BadInput(f"review edit: --base-version is required (the version you read; see "
                       f"python -m pld review show {heuristic_id})")
    text = new_text if new_text is not None else _read_text(file, "--file")  # type: ignore[arg-type]
    ws = ctx_workspace(ctx)
    h = review.edit(ws, heuristic_id, text, who=who, base_version=base_version, comment=comment)
    click.echo(f"heuristic #{heuristic_id} is now v{h['version']} ({h['status']})")


def _base_version_option(fn: F) -> F:
    return click.option(
        "--base-version", "base_versions", type=int, multiple=True,
        help="The version you reviewed (see review show); refused if it changed since. "
             "Give one per heuristic id, in the same order.")(fn)


def _with_base_versions(command: str, ids: tuple[int, ...],
                        versions: tuple[int, ...]) -> list[tuple[int, int | None]]:
    """Pair each heuristic id with the version the reviewer saw (None when not given, which
    only reject allows: an approval covers exactly the version its reviewer read)."""
    if not versions:
        if command == "approve":
            raise BadInput("review approve: --base-version is required (the version you read; "
                           "see python -m pld review show ID)")
        return [(hid, None) for hid in ids]
    if len(versions) != len(ids):
        raise BadInput(f"review {command}: give one --base-version per heuristic id "
                       f"({len(ids)} ids, {len(versions)} versions)")
    return list(zip(ids, versions, strict=True))


def _sign_each(ctx: click.Context, command: str, ids: tuple[int, ...],
               versions: tuple[int, ...], comment: str | None, who: str) -> None:
    # One at a time, in the order given: a refusal (four-eyes, stale version) stops there
    # and leaves the ones before it signed, each its own audit row.
    from pld import review

    sign, done = ((review.approve, "approved") if command == "approve"
                  else (review.reject, "rejected"))
    ws = ctx_workspace(ctx)
    for hid, base in _with_base_versions(command, ids, versions):
        sign(ws, hid, who=who, base_version=base, comment=comment)
        click.echo(f"heuristic #{hid} {done} by {who}")


@review_group.command("approve")
@click.argument("heuristic_ids", type=int, nargs=-1, required=True)
@_base_version_option
@click.option("--comment", default=None)
@as_option
@click.pass_context
@handles_errors
def review_approve(ctx: click.Context, heuristic_ids: tuple[int, ...],
                   base_versions: tuple[int, ...], comment: str | None, who: str) -> None:
    """Approve heuristics at the versions you read (four-eyes: not the last editor).

    \b
    Example:
      python -m pld review approve 12 14 --base-version 3 --base-version 1 --as bob
    """
    _sign_each(ctx, "approve", heuristic_ids, base_versions, comment, who)


@review_group.command("reject")
@click.argument("heuristic_ids", type=int, nargs=-1, required=True)
@_base_version_option
@click.option("--comment", default=None)
@as_option
@click.pass_context
@handles_errors
def review_reject(ctx: click.Context, heuristic_ids: tuple[int, ...],
                  base_versions: tuple[int, ...], comment: str | None, who: str) -> None:
    """Reject heuristics (they never enter a prompt)."""
    _sign_each(ctx, "reject", heuristic_ids, base_versions, comment, who)


def _one_text(command: str, text: str | None, file: Path | None) -> str:
    """The text of ``--text`` or ``--file`` (exactly one of them)."""
    if (text is None) == (file is None):
        raise BadInput(f"review {command}: give exactly one of --text or --file")
    return text if text is not None else _read_text(file, "--file")  # type: ignore[arg-type]


def _new_ids_text(d: dict[str, Any]) -> str:
    """One line for review new / merge / split: the new drafts and who must approve them."""
    ids = ", ".join(f"#{i}" for i in d["ids"])
    drafts = f"draft {ids}" if len(d["ids"]) == 1 else f"drafts {ids}"
    sources = ", ".join(f"#{i}" for i in d.get("from", []))
    head = {"new": f"wrote {drafts}", "merge": f"merged {sources} into {drafts}",
            "split": f"split {sources} into {drafts}"}[d["action"]]
    return (f"{head} as {d['by']}; someone else must approve "
            f"{'it' if len(d['ids']) == 1 else 'them'}")


@review_group.command("new")
@click.argument("task")
@click.option("--text", "new_text", default=None, help="The heuristic's text.")
@click.option("--file", "file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Read the text from a file.")
@click.option("--source-rule", "source_rule_ids", type=int, multiple=True, metavar="RULE_ID",
              help="A micro-instruction this heuristic comes from (repeatable).")
@click.option("--comment", default=None)
@as_option
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def review_new(ctx: click.Context, task: str, new_text: str | None, file: Path | None,
               source_rule_ids: tuple[int, ...], comment: str | None, who: str,
               as_json: bool) -> None:
    """Write a new draft heuristic by hand (you are its author, so someone else approves it)."""
    from pld import review

    text = _one_text("new", new_text, file)
    hid = review.create_heuristic(ctx_workspace(ctx), task, text, who, source_rule_ids,
                                  comment=comment)
    emit({"action": "new", "ids": [hid], "by": who}, as_json, _new_ids_text)


@review_group.command("merge")
@click.argument("heuristic_ids", type=int, nargs=-1, required=True)
@click.option("--text", "new_text", default=None, help="The merged heuristic's text.")
@click.option("--file", "file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Read the merged text from a file.")
@_base_version_option
@click.option("--comment", default=None)
@as_option
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def review_merge(ctx: click.Context, heuristic_ids: tuple[int, ...], new_text: str | None,
                 file: Path | None, base_versions: tuple[int, ...], comment: str | None,
                 who: str, as_json: bool) -> None:
    """Replace several heuristics by one new draft; the old ones become merged.

    --base-version is required, one per id: the merged text is written from the versions
    you read, so one that changed since is refused rather than silently dropped.
    """
    from pld import review

    text = _one_text("merge", new_text, file)
    if not base_versions:
        raise BadInput("review merge: --base-version is required, one per heuristic id "
                       "(the versions you read; see python -m pld review show ID)")
    pairs = _with_base_versions("merge", heuristic_ids, base_versions)
    new = review.merge_heuristics(ctx_workspace(ctx), heuristic_ids, text, who,
                                  base_versions=dict(pairs),  # type: ignore[arg-type]
                                  comment=comment)
    emit({"action": "merge", "from": sorted(set(heuristic_ids)), "ids": [new], "by": who},
          as_json, _new_ids_text)


@review_group.command("split")
@click.argument("heuristic_id", type=int)
@click.option("--text", "texts", multiple=True,
              help="The text of one part (repeat: at least two).")
@click.option("--file", "files", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              multiple=True, help="Read one part from a file (repeat: at least two).")
@click.option("--base-version", type=int, default=None,
              help="Required: the version you split (see review show).")
@click.option("--comment", default=None)
@as_option
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def review_split(ctx: click.Context, heuristic_id: int, texts: tuple[str, ...],
                 files: tuple[Path, ...], base_version: int | None, comment: str | None,
                 who: str, as_json: bool) -> None:
    """Replace one heuristic by several drafts (each keeps all its sources)."""
    from pld import review

    if texts and files:
        # Click cannot tell how --text and --file were interleaved, so the order would be a guess.
        raise BadInput("review split: give the parts either all as --text or all as --file")
    if base_version is None:
        raise BadInput(f"review split: --base-version is required (the version you read; see "
                       f"python -m pld review show {heuristic_id})")
    parts = list(texts) or [_read_text(f, "--file") for f in files]
    new = review.split_heuristic(ctx_workspace(ctx), heuristic_id, parts, who,
                                 base_version=base_version, comment=comment)
    emit({"action": "split", "from": [heuristic_id], "ids": new, "by": who}, as_json,
          _new_ids_text)


@review_group.command("approvers")
@click.argument("task")
@click.option("--add", "add_name", default=None, metavar="NAME", help="Put NAME on the list.")
@click.option("--remove", "remove_name", default=None, metavar="NAME",
              help="Take NAME off the list (the last one off lets anyone approve again).")
@click.option("--as", "who", default=None, metavar="NAME",
              help="Your name; required with --add or --remove (recorded in the audit trail).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def review_approvers(ctx: click.Context, task: str, add_name: str | None,
                     remove_name: str | None, who: str | None, as_json: bool) -> None:
    """List who may approve TASK's heuristics, or change that list (--add, --remove).

    An empty list means anyone (but a heuristic's last editor) may approve. Once it has names,
    only the people on it may approve, reject, or change the list.
    """
    from pld import review
    from pld.tasks.store import task_info

    if add_name is not None and remove_name is not None:
        raise BadInput("review approvers: give --add or --remove, not both")
    ws = ctx_workspace(ctx)
    task_info(ws, task)
    data: dict[str, Any] = {"task": task}
    if add_name is not None or remove_name is not None:
        if who is None:
            raise BadInput("review approvers: --as NAME is required to change the list")
        if add_name is not None:
            changed = review.add_approver(ws, task, add_name, who)
            data.update(action="add", name=add_name.strip(), changed=changed)
        else:
            changed = review.remove_approver(ws, task, remove_name or "", who)
            data.update(action="remove", name=(remove_name or "").strip(), changed=changed)
    data["approvers"] = review.list_approvers(ws, task)

    def text(d: dict[str, Any]) -> str:
        lines = []
        if d.get("action") == "add":
            lines.append(f"{d['name']} {'is now' if d['changed'] else 'was already'} an "
                         f"approver of {d['task']}")
        elif d.get("action") == "remove":
            lines.append(f"{d['name']} {'is no longer' if d['changed'] else 'was not'} an "
                         f"approver of {d['task']}")
        lines.append(f"approvers of {d['task']}: " + ", ".join(d["approvers"]) if d["approvers"]
                     else f"{d['task']} has no approver list: anyone but a heuristic's last "
                          "editor may approve")
        return "\n".join(lines)

    emit(data, as_json, text)


@review_group.command("proposals")
@click.argument("task")
@click.option("--status", default="pending", show_default=True,
              type=click.Choice(["pending", "accepted", "rejected", "all"]))
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def review_proposals(ctx: click.Context, task: str, status: str, as_json: bool) -> None:
    """The teacher's proposed fixes from the conflict loop."""
    from pld.pipeline.resolve_view import list_proposals

    rows = list_proposals(ctx_workspace(ctx), task, status=None if status == "all" else status)
    data = {"task": task, "proposals": rows}

    def text(d: dict[str, Any]) -> str:
        out = []
        for p in d["proposals"]:
            target = f"heuristic #{p['heuristic_id']}" if p.get("heuristic_id") else "new"
            out.append(f"#{p['id']} iter {p['iteration']} {p['kind']} {target} "
                       f"[{p['status']}]: {(p.get('text') or '')[:80]}")
            out.append(f"     why: {(p.get('rationale') or '')[:100]}")
        return "\n".join(out) or "no proposals"

    emit(data, as_json, text)


@review_group.command("decide")
@click.argument("proposal_id", type=int)
@click.argument("decision", type=click.Choice(["accept", "reject"]))
@click.option("--comment", default=None)
@as_option
@click.pass_context
@handles_errors
def review_decide(ctx: click.Context, proposal_id: int, decision: str, comment: str | None,
                  who: str) -> None:
    """Accept or reject one proposal of the conflict loop."""
    from pld.pipeline.decisions import decide_proposal

    decide_proposal(ctx_workspace(ctx), proposal_id, decision == "accept", who, comment=comment)
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
@click.option("--calibration", type=click.Choice(["max-f1", "content-free", "none"]),
              default="max-f1", show_default=True,
              help="Read the effect on calibrated answers (each prompt's own bias).")
@click.option("--concurrency", type=click.IntRange(min=1), default=None,
              help="Student calls in flight (default: remote 8, local 1).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def review_impact(ctx: click.Context, task: str, student: str, val_limit: int | None,
                  calibration: str, concurrency: int | None, as_json: bool) -> None:
    """Each approved heuristic's measured effect on validation: macro-F1 with and without it
    (leave-one-out, paired bootstrap CI), the answers it fixes and breaks. Harmful ones first.

    \b
    Examples:
      python -m pld review impact demo
      python -m pld review impact demo --student openai/gpt-4o-mini --json
    """
    from pld.pipeline.impact import measure_impact

    check_model(student)
    report = measure_impact(ctx_workspace(ctx), task, student, val_limit=val_limit,
                            calibration=None if calibration == "none" else calibration,
                            concurrency=concurrency, on_progress=Progress("impact"))
    emit(report, as_json, _impact_text)
