"""Data commands: ``tasks``, ``load`` and ``download``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from pld.cli import options
from pld.cli.common import acting, ctx_workspace, emit, handles_errors, with_context
from pld.cli.root import cli
from pld.cli.stages import check_model
from pld.errors import BadInput


@cli.command("tasks")
@options.json_output
@with_context
def tasks_cmd(ctx: click.Context, as_json: bool) -> None:
    """Built-in tasks, whether their data was found, and split sizes.

    \b
    Examples:
      python -m pld tasks
      python -m pld --workspace team.db tasks --json
    """
    from pld.tasks import data_dir, task_statuses
    from pld.tasks.store import loaded_tasks

    ws = ctx_workspace(ctx)
    loaded = {}
    for t in loaded_tasks(ws):
        counts = {r["split"]: r["n"] for r in ws.query(
            "SELECT split, count(*) AS n FROM examples WHERE task = ? GROUP BY split", [t.name])}
        loaded[t.name] = {"kind": t.kind, "labels": t.labels, "splits": counts}
    data = {"data_dir": str(data_dir()), "workspace": str(ws.path),
            "tasks": task_statuses(), "loaded": loaded}

    def text(d: dict[str, Any]) -> str:
        lines = [f"data: {d['data_dir']}", f"workspace: {d['workspace']}", ""]
        for t in d["tasks"]:
            mark = "ok " if t.get("available") else "-- "
            sizes = " / ".join(f"{k} {v}" for k, v in (t.get("split_sizes") or {}).items())
            lines.append(f"{mark}{t['name']:<22} {len(t.get('labels') or []):>2} labels  "
                         + (f"load gives {sizes}" if sizes else ""))
            if t.get("notes"):
                lines.append(f"     {t['notes']}")
        if d["loaded"]:
            lines.append("")
            lines.append("loaded in this workspace:")
            for name, info in d["loaded"].items():
                sizes = ", ".join(f"{k} {v}" for k, v in info["splits"].items())
                lines.append(f"  {name:<22} {sizes}")
        return "\n".join(lines)

    emit(data, as_json, text)


@cli.command("load")
@click.argument("task")
@click.option("--file", "file", type=click.Path(path_type=Path), help="custom: CSV or JSONL file.")
@click.option("--name", help="custom: name of the task in the workspace (default: file stem).")
@click.option("--text-column", default=None,
              help="custom: the column that holds each input's text (default: the column of "
                   "long free text).")
@click.option("--label-column", default=None,
              help="custom: the column that holds each input's gold label (default: a column "
                   "of a few repeated values).")
@click.option("--id-column", default=None,
              help="custom: optional column of unique ids (default: a column of unique short "
                   "values, if any).")
@click.option("--description", default=None,
              help="custom: what the task decides and what an input is made of (goes into "
                   "every prompt). Without it, draft one: python -m pld describe TASK.")
@click.option("--shape", type=click.Choice(["single", "pair", "multiple-choice"]),
              default="single", show_default=True,
              help="custom: an input is one text, two parts whose relation decides the label "
                   "(question + clause, claim + document), or a question with lettered "
                   "options; it picks the form of the teacher's rules.")
@click.option("--train", "n_train", type=int, default=None, help="Training examples (0 = all).")
@click.option("--val", "n_val", type=int, default=None, help="Validation examples (0 = all).")
@click.option("--test", "n_test", type=int, default=None, help="Test examples (0 = all).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seeds the split, so loading again gives the same examples.")
@click.option("--context-tokens", type=int, default=None,
              help="contract-nli: input budget per example in tokens (default 1500); a longer "
                   "NDA keeps its passages most relevant to the hypothesis, and says so.")
@click.option("--as", "who", default=None, metavar="NAME",
              help="Who loads it: the author of a custom file's description (so cannot "
                   "approve the preamble it makes); without it nobody may approve that preamble "
                   "until a named person saves it. Needed to reload a task that has approvers.")
@options.json_output
@with_context
def load_cmd(ctx: click.Context, task: str, file: Path | None, name: str | None,
             text_column: str | None, label_column: str | None, id_column: str | None,
             description: str | None, shape: str, n_train: int | None, n_val: int | None,
             n_test: int | None, seed: int, context_tokens: int | None, who: str | None,
             as_json: bool) -> None:
    """Load TASK's splits into the workspace (deterministic for a seed); TASK is a built-in
    task (see tasks) or custom with --file. For a custom file, the columns not given are
    guessed from its content, and the choice is printed with its reasons.

    \b
    Examples:
      python -m pld load demo
      python -m pld load stereoset --train 200 --val 100 --test 300 --seed 1
      python -m pld load custom --file tickets.csv
      python -m pld load custom --file tickets.csv --name tickets --label-column category \\
        --description "Route each support ticket to the team that handles it." --as ana
    """
    from pld.tasks import load_custom, load_task
    from pld.tasks.custom import guess_file_columns, task_name_for

    ws = ctx_workspace(ctx)
    me = acting(ctx, who)
    extra: dict[str, Any] = {}
    if task == "custom":
        if file is None:
            raise BadInput("load custom: --file PATH is required (a CSV or JSONL file)")
        choice = guess_file_columns(file, text_column=text_column, label_column=label_column,
                                    id_column=id_column)
        # Before loading, so that an error about the file's labels follows the mapping it
        # was read with.
        click.echo(f"columns of {file.name} (set with --text-column, --label-column, "
                   "--id-column):\n" + "\n".join(f"  {r}" for r in choice.reasons), err=True)
        counts = load_custom(ws, file, name=name, text_column=choice.text_column,
                             label_column=choice.label_column, id_column=choice.id_column,
                             n_train=n_train, n_val=n_val, n_test=n_test, seed=seed, shape=shape,
                             description=(description or "").strip() or None, who=me)
        task = name or task_name_for(file)
        extra["columns"] = choice.as_dict()
        if not (description or "").strip():
            # Not an error (the file loaded), but the models would work blind: say so.
            click.echo(f"note: {task} has no description, so teacher and student only see its "
                       f"file name and labels; write one (load again with --description) or "
                       f"draft one: python -m pld describe {task} --teacher MODEL", err=True)
    else:
        if file is not None or description is not None or shape != "single":
            # A built-in task brings its own description; silently dropping one would mislead.
            raise BadInput(f"load {task}: --file, --description and --shape are only for custom "
                           "tasks")
        if context_tokens is not None and task != "contract-nli":
            raise BadInput(f"load {task}: --context-tokens is only for contract-nli")
        task_options = {"context_tokens": context_tokens} if context_tokens is not None else None
        counts = load_task(ws, task, n_train=n_train, n_val=n_val, n_test=n_test, seed=seed,
                           options=task_options, who=me)
    emit({"task": task, "splits": counts, **extra}, as_json,
          lambda d: f"loaded {d['task']}: " + ", ".join(f"{k} {v}" for k, v in d["splits"].items()))


@cli.command("download")
@click.argument("task")
@handles_errors
def download_cmd(task: str) -> None:
    """Fetch TASK's upstream files into data/ (needs internet).

    \b
    Examples:
      python -m pld download stereoset
      python -m pld download contract-nli
    """
    from pld.tasks import download_dir
    from pld.tasks.download import NOTICES, download

    if task in NOTICES:
        click.echo(NOTICES[task], err=True)
    for path in download(task, download_dir()):
        click.echo(f"wrote {path}")


@cli.command("describe")
@click.argument("task")
@click.option("--teacher", default=None, metavar="MODEL",
              help="Teacher model string that drafts the description.")
@click.option("--text", "text", default=None,
              help="Keep this description (an edited draft) instead of drafting one.")
@click.option("--keep", is_flag=True, help="Keep the teacher's draft as the description.")
@click.option("--as", "who", default=None, metavar="NAME",
              help="Who keeps the description (with --keep or --text).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seeds the sample of labelled examples the teacher reads.")
@options.json_output
@with_context
def describe_cmd(ctx: click.Context, task: str, teacher: str | None, text: str | None,
                 keep: bool, who: str | None, seed: int, as_json: bool) -> None:
    """Draft a description of TASK from labelled examples, for a person to edit and keep.

    The description is the first thing teacher and student read. Drafting prints the draft and
    stores nothing; --keep (or --text with an edited version) makes it the task's description,
    recorded in the audit trail under --as.

    \b
    Examples:
      python -m pld describe demo --teacher local/default
      python -m pld describe demo --teacher local/default --keep --as ana
      python -m pld describe demo --text "Each input is a message to a bank's help desk." --as ana
    """
    from pld.pipeline.describe import draft_description
    from pld.preamble import set_description
    from pld.tasks.store import task_info

    ws = ctx_workspace(ctx)
    before = task_info(ws, task).description
    given = text is not None
    if given and (keep or teacher):
        raise BadInput("describe: give --text to keep your own, or --teacher to draft one")
    me = acting(ctx, who) if keep or given else None
    if (keep or given) and me is None:
        raise BadInput("describe: --as NAME is required to keep a description")
    if text is None:
        if not teacher:
            raise BadInput("describe: --teacher MODEL is required to draft a description")
        check_model(teacher)
        text = draft_description(ws, task, teacher, seed=seed)
    if me is not None:
        set_description(ws, task, text, me, base=before)
    data = {"task": task, "description": " ".join(text.split()), "previous": before,
            "kept": keep or given}

    def show(d: dict[str, Any]) -> str:
        lines = [d["description"], ""]
        if d["kept"]:
            lines.append(f"kept as the description of {d['task']}")
        else:
            lines.append(f"draft only; keep it with: python -m pld describe {d['task']} "
                         f"--text \"...\" --as NAME (edit it first), or --keep --as NAME")
        return "\n".join(lines)

    emit(data, as_json, show)
