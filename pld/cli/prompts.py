"""Prompt versions: ``prompts build/list/show``, and ``export`` to write one out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from pld.cli import options
from pld.cli.common import acting, ctx_workspace, emit, task_workspace, with_context
from pld.cli.root import cli
from pld.errors import BadInput
from pld.workspace import Workspace


@cli.group("prompts")
def prompts_group() -> None:
    """Build, list and show the prompt versions of a task (what eval --version and export use).

    \b
    Examples:
      python -m pld prompts build demo --as alice
      python -m pld prompts list demo
      python -m pld prompts show demo --version 3
    """


def _prompt_row(ws: Workspace, p: Any) -> dict[str, Any]:
    """One prompt version as the Export page's table shows it, with why it may not be exported."""
    from pld.pipeline.export import refusal

    why = refusal(ws, p)
    return {"version": p.version, "created_at": p.created_at, "origin": p.origin,
            "parent_version": p.parent_version, "heuristic_ids": p.heuristic_ids,
            "sha256": p.sha256, "exportable": why is None, "refused": why}


@prompts_group.command("build")
@click.argument("task")
@click.option("--as", "who", default=None, metavar="NAME",
              help="Who builds it; recorded on the version and in the trail.")
@options.json_output
@with_context
def prompts_build(ctx: click.Context, task: str, who: str | None, as_json: bool) -> None:
    """Render TASK's approved heuristics into a prompt version.

    Building the same approved set again gives back the version that already holds that text.

    \b
    Examples:
      python -m pld prompts build demo --as alice
      python -m pld prompts build demo --json
    """
    from pld.pipeline.student import build_prompt, list_prompts

    ws = ctx_workspace(ctx)
    before = {p.version for p in list_prompts(ws, task)}
    p = build_prompt(ws, task, who=acting(ctx, who))
    data = {"task": task, **_prompt_row(ws, p), "new": p.version not in before}
    emit(data, as_json, lambda d: (
        f"prompt v{d['version']} of {d['task']} holds {len(d['heuristic_ids'])} approved "
        f"heuristics ({'new' if d['new'] else 'already there'}); sha256 {d['sha256'][:12]}"))


@prompts_group.command("list")
@click.argument("task")
@options.json_output
@with_context
def prompts_list(ctx: click.Context, task: str, as_json: bool) -> None:
    """TASK's prompt versions and whether each may be exported (oldest first).

    \b
    Examples:
      python -m pld prompts list demo
      python -m pld prompts list demo --json
    """
    from pld.pipeline.student import list_prompts

    ws = task_workspace(ctx, task)
    data = {"task": task, "prompts": [_prompt_row(ws, p) for p in list_prompts(ws, task)]}

    def text(d: dict[str, Any]) -> str:
        out = []
        for p in d["prompts"]:
            parent = f" from v{p['parent_version']}" if p["parent_version"] else ""
            out.append(f"v{p['version']:<3} {p['created_at']} {p['origin']}{parent}: "
                       f"{len(p['heuristic_ids'])} heuristics, sha256 {p['sha256'][:12]}, "
                       + ("exportable" if p["exportable"] else f"refused: {p['refused']}"))
        return "\n".join(out) or (f"no prompt versions for {d['task']}; approve heuristics, then "
                                  f"python -m pld prompts build {d['task']}")

    emit(data, as_json, text)


@prompts_group.command("show")
@click.argument("task")
@click.option("--version", type=int, default=None, help="Prompt version (default: latest).")
@options.json_output
@with_context
def prompts_show(ctx: click.Context, task: str, version: int | None, as_json: bool) -> None:
    """Print the exact system prompt of one of TASK's prompt versions (export's prompt.md).

    \b
    Examples:
      python -m pld prompts show demo
      python -m pld prompts show demo --version 3
    """
    from pld.pipeline.student import get_prompt

    ws = ctx_workspace(ctx)
    p = get_prompt(ws, task, version)
    if as_json:
        emit({"task": task, **_prompt_row(ws, p), "text": p.text}, True, str)
    else:
        # The text as stored: no newline added to one that has it, so it can be diffed.
        click.echo(p.text, nl=not p.text.endswith("\n"))


@cli.command("export")
@click.argument("task")
@click.option("--version", type=int, default=None, help="Prompt version (default: latest).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write prompt.md and manifest.json into (made if missing).")
@click.option("--as", "who", default=None, metavar="NAME",
              help="Who exports; recorded in the trail (default: pld:cli).")
@click.option("--ledger", "ledger", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Ledger file to append the trail's new head to, kept where the workspace's "
                   "writers cannot rewrite it (default: ledger.jsonl in the folder above --out; "
                   "with PLD_ROOT set, PLD_ROOT/exports/ledger.jsonl).")
@options.json_output
@with_context
def export_cmd(ctx: click.Context, task: str, version: int | None, out_dir: Path,
               who: str | None, ledger: Path | None, as_json: bool) -> None:
    """Write prompt.md and manifest.json of an approved prompt version of TASK.

    The prompt is composed from the texts the approval rows of the trail recorded; refused
    unless the preamble and every heuristic in the prompt is approved with that text. The export
    is recorded in the trail and its new head appended to a ledger outside the workspace; check
    both later with python -m pld verify DIR --ledger FILE.

    \b
    Examples:
      python -m pld export demo --out exported/ --as alice
      python -m pld export demo --out exported/ --ledger /srv/audit/ledger.jsonl
    """
    from pld.pipeline.export import export

    try:
        r = export(ctx_workspace(ctx), task, out_dir, version=version, who=acting(ctx, who),
                   ledger=ledger)
    except OSError as e:  # the workspace is SQLite, so an OSError here is about --out
        raise BadInput(f"--out {out_dir}: cannot write there ({e.strerror or e})") from e
    data = {"prompt": str(r.prompt_path), "manifest": str(r.manifest_path),
            "ledger": str(r.ledger_path), "sha256": r.manifest.get("prompt_sha256"),
            "version": r.manifest.get("version")}
    emit(data, as_json, lambda d: f"wrote {d['prompt']} and {d['manifest']}; the trail's head "
                                  f"is in {d['ledger']}")


@cli.command("verify")
@click.argument("export_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--workspace", "ws_path", default=None,
              type=click.Path(dir_okay=False, path_type=Path),
              help="The workspace the export came from (default: the global --workspace).")
@click.option("--ledger", "ledger", default=None,
              type=click.Path(dir_okay=False, path_type=Path),
              help="Ledger file exports appended to: every chain head it witnessed for this "
                   "workspace must still be in the trail (catches deleted newest rows).")
@options.json_output
@with_context
def verify_cmd(ctx: click.Context, export_dir: Path, ws_path: Path | None,
               ledger: Path | None, as_json: bool) -> None:
    """Prove that the export in EXPORT_DIR is what the people its manifest names approved.

    Checks prompt.md against its sha256, the workspace's hash-chained trail, with --ledger that
    no trail row a ledger entry witnessed was deleted or rewritten since, that the manifest is
    the one the export wrote, and that the preamble and every heuristic was approved, by
    nobody the trail records as its writer, starter or acceptor, for exactly the text in the
    prompt. Exit 0 when all
    hold, 1 naming the first broken link.

    \b
    Examples:
      python -m pld verify exported/ --workspace team.db
      python -m pld verify exported/ --workspace team.db --ledger ledger.jsonl
    """
    from pld.pipeline.verify import verify

    root = ctx.find_root().obj
    if ws_path is not None:
        root["path"] = ws_path
    if not Path(root["path"]).is_file():
        raise BadInput(f"--workspace {root['path']}: no such workspace file")
    result = verify(ctx_workspace(ctx), export_dir, ledger)
    data = {"export_dir": result.export_dir, "ok": result.ok, "checks": result.checks,
            "broken": result.broken}

    def text(d: dict[str, Any]) -> str:
        lines = [f"ok: {c}" for c in d["checks"]]
        if d["broken"]:
            lines.append(f"BROKEN: {d['broken']}")
        else:
            lines.append(f"verified: {d['export_dir']}")
        return "\n".join(lines)

    emit(data, as_json, text)
    if not result.ok:
        ctx.exit(1)
