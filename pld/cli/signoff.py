"""Sign-off beyond single heuristics: ``review preamble ...`` (the student prompt's fixed text,
reviewed like a heuristic), ``review require-oidc`` (whether a task accepts only logged-in
sign-offs) and ``review queue`` (what waits for one reviewer)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from pld.cli import options
from pld.cli.common import F, ctx_workspace, emit, history_lines, signed_by, with_context
from pld.cli.heuristics import review_group
from pld.cli.inputs import one_text


@review_group.group("preamble")
def preamble_group() -> None:
    """Show, edit, approve or reject TASK's preamble: the description, the line before the
    rules, the label list and the output instruction. Its {rules} line is where the
    heuristics go. No prompt is exported until the preamble is approved.

    \b
    Examples:
      python -m pld review preamble show demo
      python -m pld review preamble approve demo --base-version 1 --as bob
    """


@preamble_group.command("show")
@click.argument("task")
@options.json_output
@with_context
def preamble_show(ctx: click.Context, task: str, as_json: bool) -> None:
    """TASK's preamble (drafted from the template when the task has none yet) and its history.

    \b
    Examples:
      python -m pld review preamble show demo
      python -m pld review preamble show demo --json
    """
    from pld.preamble import ensure_preamble, preamble_history

    ws = ctx_workspace(ctx)
    data = {**ensure_preamble(ws, task), "history": preamble_history(ws, task)}

    def text(d: dict[str, Any]) -> str:
        lines = [f"preamble of {task} v{d['version']} [{d['status']}]"
                 + (f", approved by {d['approved_by']}" if d["approved_by"] else ""), "",
                 d["text"], "", *history_lines(d["history"])]
        return "\n".join(lines)

    emit(data, as_json, text)


def _signs_preamble(base_version_required: bool) -> Callable[[F], F]:
    """What review preamble edit / approve / reject take: TASK, the version read, a note and
    the signer's name."""
    return options.stacked(
        click.argument("task"),
        click.option("--base-version", type=int, required=base_version_required, default=None,
                     help="The version you read (see review preamble show); refused if it "
                          "changed since."),
        options.comment, options.signer, with_context)


@preamble_group.command("edit")
@options.text_or_file("the new text")
@_signs_preamble(base_version_required=True)
def preamble_edit(ctx: click.Context, task: str, new_text: str | None, file: Path | None,
                  base_version: int, comment: str | None, who: str) -> None:
    """Rewrite TASK's preamble, keeping its {rules} line; it becomes a draft someone else must
    approve.

    \b
    Example:
      python -m pld review preamble edit demo --file preamble.txt --base-version 1 --as alice
    """
    from pld.preamble import edit_preamble

    text = one_text("review preamble edit", new_text, file)
    row = edit_preamble(ctx_workspace(ctx), task, text, signed_by(ctx, who),
                        base_version=base_version, comment=comment)
    click.echo(f"preamble of {task} is now v{row['version']} ({row['status']})")


@preamble_group.command("approve")
@_signs_preamble(base_version_required=True)
def preamble_approve(ctx: click.Context, task: str, base_version: int, comment: str | None,
                     who: str) -> None:
    """Approve TASK's preamble at the version you read (four-eyes: nobody who wrote it or
    loaded the description it holds).

    \b
    Example:
      python -m pld review preamble approve demo --base-version 2 --as bob
    """
    from pld.preamble import approve_preamble

    row = approve_preamble(ctx_workspace(ctx), task, signed_by(ctx, who),
                           base_version=base_version, comment=comment)
    click.echo(f"preamble of {task} v{row['version']} approved by {row['approved_by']}")


@preamble_group.command("reject")
@_signs_preamble(base_version_required=False)
def preamble_reject(ctx: click.Context, task: str, base_version: int | None,
                    comment: str | None, who: str) -> None:
    """Reject TASK's preamble: nothing is exported until it is rewritten and approved.

    \b
    Example:
      python -m pld review preamble reject demo --comment "Names the wrong labels." --as bob
    """
    from pld.preamble import reject_preamble

    row = reject_preamble(ctx_workspace(ctx), task, signed_by(ctx, who),
                          base_version=base_version, comment=comment)
    click.echo(f"preamble of {task} v{row['version']} rejected by {who}")


@review_group.command("require-oidc")
@click.argument("task")
@click.option("--on/--off", "required", default=True,
              help="Accept only OIDC-identified approvals (--on), or any kind (--off).")
@options.signer
@with_context
def require_oidc(ctx: click.Context, task: str, required: bool, who: str) -> None:
    """Make TASK accept only approvals by reviewers logged in through OIDC (the app's
    [auth] login); export then refuses self-declared and automatic sign-offs.

    \b
    Examples:
      python -m pld review require-oidc demo --on --as alice
      python -m pld review require-oidc demo --off --as alice
    """
    from pld import signoff

    signoff.set_require_oidc(ctx_workspace(ctx), task, required, signed_by(ctx, who))
    click.echo(f"task {task}: OIDC sign-offs {'required' if required else 'not required'}")


@review_group.command("queue")
@options.signer
@options.json_output
@with_context
def review_queue(ctx: click.Context, who: str, as_json: bool) -> None:
    """What waits for NAME: drafts to approve, pending proposals, NAME's own drafts that someone
    else must sign, failed jobs and blocked exports, each with the command that resolves it.

    \b
    Examples:
      python -m pld review queue --as alice
      python -m pld review queue --as alice --json
    """
    from pld.review_queue import reviewer_queue

    data = reviewer_queue(ctx_workspace(ctx), signed_by(ctx, who))

    def text(d: dict[str, Any]) -> str:
        if not d["items"]:
            return f"nothing waits for {d['who']}"
        lines = [f"{len(d['items'])} item(s) for {d['who']}:"]
        lines += [f"  [{i['kind']}] {i['task']}: {i['summary']}\n      {i['command']}"
                  for i in d["items"]]
        return "\n".join(lines)

    emit(data, as_json, text)
