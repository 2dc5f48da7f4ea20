"""Sign-off beyond single heuristics: ``review preamble ...`` (the student prompt's fixed text,
reviewed like a heuristic), ``review require-oidc`` (whether a task accepts only logged-in
sign-offs) and ``review queue`` (what waits for one reviewer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from pld.cli.common import as_option, ctx_workspace, emit, handles_errors
from pld.cli.heuristics import _one_text, review_group


@review_group.group("preamble")
def preamble_group() -> None:
    """Show, edit, approve or reject TASK's preamble: the description, the line before the
    rules, the label list and the output instruction. Its {rules} line is where the
    heuristics go. No prompt is exported until the preamble is approved."""


@preamble_group.command("show")
@click.argument("task")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def preamble_show(ctx: click.Context, task: str, as_json: bool) -> None:
    """The preamble (drafted from the template when the task has none yet) and its history."""
    from pld.preamble import ensure_preamble, preamble_history

    ws = ctx_workspace(ctx)
    data = {**ensure_preamble(ws, task), "history": preamble_history(ws, task)}

    def text(d: dict[str, Any]) -> str:
        lines = [f"preamble of {task} v{d['version']} [{d['status']}]"
                 + (f", approved by {d['approved_by']}" if d["approved_by"] else ""), "",
                 d["text"], "", "history:"]
        lines += [f"  {ev['created_at']} {ev['who']} ({ev.get('identity_kind')}) "
                  f"{ev['action']} {ev.get('comment') or ''}" for ev in d["history"]]
        return "\n".join(lines)

    emit(data, as_json, text)


@preamble_group.command("edit")
@click.argument("task")
@click.option("--text", "new_text", default=None, help="The new text (keep the {rules} line).")
@click.option("--file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Read the new text from a UTF-8 file.")
@click.option("--base-version", type=int, required=True,
              help="The version you read (see review preamble show).")
@click.option("--comment", default=None)
@as_option
@click.pass_context
@handles_errors
def preamble_edit(ctx: click.Context, task: str, new_text: str | None, file: Path | None,
                  base_version: int, comment: str | None, who: str) -> None:
    """Rewrite the preamble; it becomes a draft someone else must approve.

    \b
    Example:
      python -m pld review preamble edit demo --file preamble.txt --base-version 1 --as alice
    """
    from pld.preamble import edit_preamble

    row = edit_preamble(ctx_workspace(ctx), task, _one_text("preamble edit", new_text, file),
                        who, base_version=base_version, comment=comment)
    click.echo(f"preamble of {task} is now v{row['version']} ({row['status']})")


@preamble_group.command("approve")
@click.argument("task")
@click.option("--base-version", type=int, required=True,
              help="The version you read (see review preamble show).")
@click.option("--comment", default=None)
@as_option
@click.pass_context
@handles_errors
def preamble_approve(ctx: click.Context, task: str, base_version: int, comment: str | None,
                     who: str) -> None:
    """Approve the preamble at the version you read (four-eyes: not its last editor)."""
    from pld.preamble import approve_preamble

    row = approve_preamble(ctx_workspace(ctx), task, who, base_version=base_version,
                           comment=comment)
    click.echo(f"preamble of {task} v{row['version']} approved by {row['approved_by']}")


@preamble_group.command("reject")
@click.argument("task")
@click.option("--base-version", type=int, default=None, help="The version you read.")
@click.option("--comment", default=None)
@as_option
@click.pass_context
@handles_errors
def preamble_reject(ctx: click.Context, task: str, base_version: int | None,
                    comment: str | None, who: str) -> None:
    """Reject the preamble: nothing is exported until it is rewritten and approved."""
    from pld.preamble import reject_preamble

    row = reject_preamble(ctx_workspace(ctx), task, who, base_version=base_version,
                          comment=comment)
    click.echo(f"preamble of {task} v{row['version']} rejected by {who}")


@review_group.command("require-oidc")
@click.argument("task")
@click.option("--on/--off", "required", default=True,
              help="Accept only OIDC-identified approvals (--on), or any kind (--off).")
@as_option
@click.pass_context
@handles_errors
def require_oidc(ctx: click.Context, task: str, required: bool, who: str) -> None:
    """Make TASK accept only approvals by reviewers logged in through OIDC (the app's
    [auth] login); export then refuses self-declared and automatic sign-offs."""
    from pld import review

    review.set_require_oidc(ctx_workspace(ctx), task, required, who)
    click.echo(f"task {task}: OIDC sign-offs {'required' if required else 'not required'}")


@review_group.command("queue")
@as_option
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def review_queue(ctx: click.Context, who: str, as_json: bool) -> None:
    """What waits for NAME: drafts to approve, pending proposals, NAME's own drafts that someone
    else must sign, failed jobs and blocked exports, each with the command that resolves it.

    \b
    Example:
      python -m pld review queue --as alice
    """
    from pld.review_queue import reviewer_queue

    data = reviewer_queue(ctx_workspace(ctx), who)

    def text(d: dict[str, Any]) -> str:
        if not d["items"]:
            return f"nothing waits for {d['who']}"
        lines = [f"{len(d['items'])} item(s) for {d['who']}:"]
        lines += [f"  [{i['kind']}] {i['task']}: {i['summary']}\n      {i['command']}"
                  for i in d["items"]]
        return "\n".join(lines)

    emit(data, as_json, text)
