"""Stage 3 ``consolidate``, and ``review ...`` where people write, edit and sign heuristics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from pld.cli import options
from pld.cli.common import (
    acting,
    ctx_workspace,
    emit,
    history_lines,
    signed_by,
    task_workspace,
    with_context,
)
from pld.cli.inputs import one_text, read_text
from pld.cli.root import cli
from pld.cli.stages import (
    Progress,
    check_model,
    failed_before_note,
    set_aside_note,
    show_estimate,
    spending,
)
from pld.errors import BadInput


@cli.command("consolidate")
@click.argument("task")
@options.model("teacher", "Teacher model string.")
@click.option("--clustering", "clustering_id", type=int, default=None,
              help="Clustering id (default: the accepted one, else the latest).")
@options.concurrency("Teacher calls")
@click.option("--retry-failed", is_flag=True,
              help="Ask again, with a fresh call, the clusters that failed before.")
@options.merge
@click.option("--as", "who", default=None, metavar="NAME",
              help="Who starts the job: the drafts count as yours, so someone else must "
                   "approve them (recorded on the run).")
@options.spend
@options.json_output
@with_context
def consolidate_cmd(ctx: click.Context, task: str, teacher: str, clustering_id: int | None,
                    concurrency: int | None, retry_failed: bool, merge: str, who: str | None,
                    use_batch: bool, estimate_only: bool, max_cost: float | None,
                    as_json: bool) -> None:
    """Stage 3: one draft heuristic per cluster of TASK's rules, keeping minority labels and
    edge cases.

    \b
    Examples:
      python -m pld consolidate demo --teacher local/default
      python -m pld consolidate demo --teacher local/default --merge medoid --as alice
      python -m pld consolidate demo --teacher anthropic/claude-sonnet-4-5 --estimate-only
    """
    from dataclasses import asdict

    from pld.pipeline.consolidate.stage import consolidate, planned_calls

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
                        started_by=acting(ctx, who), on_progress=Progress("consolidate"))
    emit(asdict(s), as_json, lambda d: (
        f"consolidate run {d['run_id']}: {d['created']} heuristics created, {d['skipped']} "
        f"already there, {d['failed']} failed" + failed_before_note(d) + set_aside_note(d)))


@cli.group("review")
def review_group() -> None:
    """List, show, write, edit, merge, split, approve or reject heuristics as a named reviewer;
    manage who may approve; sign the preamble; decide the conflict loop's proposals.

    \b
    Examples:
      python -m pld review list demo --status draft
      python -m pld review show 12
      python -m pld review approve 12 --base-version 2 --as bob
    """


@review_group.command("list")
@click.argument("task")
@click.option("--status", default=None,
              type=click.Choice(["draft", "approved", "rejected", "merged", "split"]),
              help="Only the heuristics in this status (default: all).")
@click.option("--as", "who", default=None, metavar="NAME", help="Not needed to list.")
@options.json_output
@with_context
def review_list(ctx: click.Context, task: str, status: str | None, who: str | None,
                as_json: bool) -> None:
    """Heuristics of TASK with status, version and who approved them.

    \b
    Examples:
      python -m pld review list demo
      python -m pld review list demo --status draft --json
    """
    from pld import review

    rows = review.list_heuristics(task_workspace(ctx, task), task, status=status)
    data = {"task": task, "heuristics": [
        {k: r.get(k) for k in ("id", "status", "version", "written_by", "started_by",
                               "accepted_by", "approved_by", "text")}
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
@options.json_output
@with_context
def review_show(ctx: click.Context, heuristic_id: int, as_json: bool) -> None:
    """Heuristic HEURISTIC_ID with its source rules and examples, and its history.

    \b
    Example:
      python -m pld review show 12
    """
    from pld import review

    ws = ctx_workspace(ctx)
    h = review.get_heuristic(ws, heuristic_id)
    h["history"] = review.history(ws, heuristic_id)

    def text(d: dict[str, Any]) -> str:
        lines = [f"heuristic #{d['id']} v{d['version']} [{d['status']}]", "", d["text"], "",
                 f"from {len(d.get('sources') or [])} rules:"]
        for r in d.get("sources") or []:
            lines.append(f"  - rule #{r.get('rule_id')} ({r.get('label')}): {r.get('rule')}")
        return "\n".join([*lines, "", *history_lines(d["history"])])

    emit(h, as_json, text)


@review_group.command("edit")
@click.argument("heuristic_id", type=int)
@options.text_or_file("the new text")
@click.option("--base-version", type=int, default=None,
              help="Required: the version your edit is based on (see review show).")
@options.comment
@options.signer
@with_context
def review_edit(ctx: click.Context, heuristic_id: int, new_text: str | None, file: Path | None,
                base_version: int | None, comment: str | None, who: str) -> None:
    """Edit heuristic HEURISTIC_ID; refused if someone else saved a newer version first.

    \b
    Example:
      python -m pld review edit 12 --text "Cited claims are true." --base-version 2 --as alice
    """
    from pld import review

    text = one_text("review edit", new_text, file)
    if base_version is None:
        # Filling in the current version would overwrite a change this reviewer never saw.
        raise BadInput(f"review edit: --base-version is required (the version you read; see "
                       f"python -m pld review show {heuristic_id})")
    ws = ctx_workspace(ctx)
    h = review.edit(ws, heuristic_id, text, who=signed_by(ctx, who), base_version=base_version,
                    comment=comment)
    click.echo(f"heuristic #{heuristic_id} is now v{h['version']} ({h['status']})")


# The versions a reviewer read, one per heuristic id (review approve, reject and merge).
_base_versions_option = click.option(
    "--base-version", "base_versions", type=int, multiple=True,
    help="The version you reviewed (see review show); refused if it changed since. "
         "Give one per heuristic id, in the same order.")


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


# What review approve and review reject take: the ids, the versions read, a note, a name.
_signs_heuristics = options.stacked(
    click.argument("heuristic_ids", type=int, nargs=-1, required=True),
    _base_versions_option, options.comment, options.signer, with_context)


def _sign_each(ctx: click.Context, command: str, ids: tuple[int, ...],
               versions: tuple[int, ...], comment: str | None, who: str) -> None:
    # One at a time, in the order given: a refusal (four-eyes, stale version) stops there
    # and leaves the ones before it signed, each its own audit row.
    from pld import review

    sign, done = ((review.approve, "approved") if command == "approve"
                  else (review.reject, "rejected"))
    ws, me = ctx_workspace(ctx), signed_by(ctx, who)
    for hid, base in _with_base_versions(command, ids, versions):
        sign(ws, hid, who=me, base_version=base, comment=comment)
        click.echo(f"heuristic #{hid} {done} by {who}")


@review_group.command("approve")
@_signs_heuristics
def review_approve(ctx: click.Context, heuristic_ids: tuple[int, ...],
                   base_versions: tuple[int, ...], comment: str | None, who: str) -> None:
    """Approve HEURISTIC_IDS at the versions you read (four-eyes: nobody who wrote the text,
    started the job that wrote it or accepted it).

    \b
    Example:
      python -m pld review approve 12 14 --base-version 3 --base-version 1 --as bob
    """
    _sign_each(ctx, "approve", heuristic_ids, base_versions, comment, who)


@review_group.command("reject")
@_signs_heuristics
def review_reject(ctx: click.Context, heuristic_ids: tuple[int, ...],
                  base_versions: tuple[int, ...], comment: str | None, who: str) -> None:
    """Reject HEURISTIC_IDS (they never enter a prompt); --base-version is optional here.

    \b
    Example:
      python -m pld review reject 15 --comment "Restates the label list." --as bob
    """
    _sign_each(ctx, "reject", heuristic_ids, base_versions, comment, who)


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
@options.text_or_file("the heuristic's text")
@click.option("--source-rule", "source_rule_ids", type=int, multiple=True, metavar="RULE_ID",
              help="A micro-instruction this heuristic comes from (repeatable).")
@options.comment
@options.signer
@options.json_output
@with_context
def review_new(ctx: click.Context, task: str, new_text: str | None, file: Path | None,
               source_rule_ids: tuple[int, ...], comment: str | None, who: str,
               as_json: bool) -> None:
    """Write a new draft heuristic for TASK by hand (you are its author, so someone else
    approves it).

    \b
    Example:
      python -m pld review new demo --text "Cited claims are true." --source-rule 41 --as alice
    """
    from pld import review

    text = one_text("review new", new_text, file)
    hid = review.create_heuristic(ctx_workspace(ctx), task, text, signed_by(ctx, who),
                                  source_rule_ids, comment=comment)
    emit({"action": "new", "ids": [hid], "by": who}, as_json, _new_ids_text)


@review_group.command("merge")
@click.argument("heuristic_ids", type=int, nargs=-1, required=True)
@options.text_or_file("the merged heuristic's text")
@_base_versions_option
@options.comment
@options.signer
@options.json_output
@with_context
def review_merge(ctx: click.Context, heuristic_ids: tuple[int, ...], new_text: str | None,
                 file: Path | None, base_versions: tuple[int, ...], comment: str | None,
                 who: str, as_json: bool) -> None:
    """Replace HEURISTIC_IDS by one new draft; the old ones become merged.

    --base-version is required, one per id: the merged text is written from the versions
    you read, so one that changed since is refused rather than silently dropped.

    \b
    Example:
      python -m pld review merge 12 14 --text "Claims that cite a source are true." \\
        --base-version 3 --base-version 1 --as alice
    """
    from pld import review

    text = one_text("review merge", new_text, file)
    if not base_versions:
        raise BadInput("review merge: --base-version is required, one per heuristic id "
                       "(the versions you read; see python -m pld review show ID)")
    pairs = _with_base_versions("merge", heuristic_ids, base_versions)
    new = review.merge_heuristics(ctx_workspace(ctx), heuristic_ids, text, signed_by(ctx, who),
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
@options.comment
@options.signer
@options.json_output
@with_context
def review_split(ctx: click.Context, heuristic_id: int, texts: tuple[str, ...],
                 files: tuple[Path, ...], base_version: int | None, comment: str | None,
                 who: str, as_json: bool) -> None:
    """Replace HEURISTIC_ID by several drafts (each keeps all its sources).

    \b
    Example:
      python -m pld review split 12 --text "Cited claims are true." \\
        --text "Hedged claims are false." --base-version 2 --as alice
    """
    from pld import review

    if texts and files:
        # Click cannot tell how --text and --file were interleaved, so the order would be a guess.
        raise BadInput("review split: give the parts either all as --text or all as --file")
    if base_version is None:
        raise BadInput(f"review split: --base-version is required (the version you read; see "
                       f"python -m pld review show {heuristic_id})")
    parts = list(texts) or [read_text(f, "--file") for f in files]
    new = review.split_heuristic(ctx_workspace(ctx), heuristic_id, parts, signed_by(ctx, who),
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
@options.json_output
@with_context
def review_approvers(ctx: click.Context, task: str, add_name: str | None,
                     remove_name: str | None, who: str | None, as_json: bool) -> None:
    """List who may approve TASK's heuristics, or change that list (--add, --remove).

    An empty list means anyone may approve (four-eyes still applies: nobody who wrote a
    heuristic, started its job or accepted it). Once it has names, only the people on it may
    approve, reject, or change the list.

    \b
    Examples:
      python -m pld review approvers demo
      python -m pld review approvers demo --add bob --as alice
    """
    from pld import approvers, signoff

    if add_name is not None and remove_name is not None:
        raise BadInput("review approvers: give --add or --remove, not both")
    ws = task_workspace(ctx, task)
    data: dict[str, Any] = {"task": task}
    if add_name is not None or remove_name is not None:
        me = acting(ctx, who)
        if me is None:
            raise BadInput("review approvers: --as NAME is required to change the list")
        if add_name is not None:
            changed = signoff.add_approver(ws, task, add_name, me)
            data.update(action="add", name=add_name.strip(), changed=changed)
        else:
            changed = signoff.remove_approver(ws, task, remove_name or "", me)
            data.update(action="remove", name=(remove_name or "").strip(), changed=changed)
    data["approvers"] = approvers.list_approvers(ws, task)

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
