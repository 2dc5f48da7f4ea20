"""``python -m pld``: the headless interface to everything the app does.

Exit codes: 0 ok, 2 bad input (one line naming the file, field or option), 1 other failure.
``--json`` prints exactly one JSON object on stdout.
"""

from __future__ import annotations

import functools
import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from pld.errors import BadInput
from pld.llm.base import ConfigError
from pld.workspace import Workspace, WorkspaceError, default_path, open_workspace

F = TypeVar("F", bound=Callable[..., Any])


def _fail(code: int, message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def handles_errors(fn: F) -> F:
    """Map our exceptions to the exit-code contract: bad input 2, anything else 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from pld.llm.calls import CallFailed
        from pld.tasks.download import DownloadError

        try:
            return fn(*args, **kwargs)
        except (BadInput, ConfigError, WorkspaceError) as e:
            _fail(2, str(e).splitlines()[0] if str(e) else type(e).__name__)
        except CallFailed as e:
            _fail(1, f"LLM call failed (see llm_calls row {e.call_id}): {e}")
        except DownloadError as e:
            _fail(1, str(e).splitlines()[0])
        except KeyboardInterrupt:
            _fail(1, "interrupted; run the same command again to resume")

    return wrapper  # type: ignore[return-value]


def _ws(ctx: click.Context) -> Workspace:
    obj = ctx.find_root().obj
    if obj.get("ws") is None:
        obj["ws"] = open_workspace(obj["path"])
        ctx.find_root().call_on_close(obj["ws"].close)
    return obj["ws"]


def _emit(data: dict[str, Any], as_json: bool, text: Callable[[dict[str, Any]], str]) -> None:
    click.echo(json.dumps(data, indent=2, default=str) if as_json else text(data))


class _Progress:
    """A one-line progress display on stderr, fed by the stages' ``on_progress(done, total)``."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.tty = sys.stderr.isatty()
        self.last = -1

    def __call__(self, done: int, total: int) -> None:
        if not total:
            return
        pct = int(100 * done / total)
        if self.tty:
            width = 30
            filled = int(width * done / total)
            click.echo(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}",
                       err=True, nl=done >= total)
        elif pct // 10 != self.last // 10 or done >= total:
            click.echo(f"{self.label}: {done}/{total}", err=True)
        self.last = pct


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--workspace", "workspace", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Workspace file (default: $PLD_WORKSPACE or data/workspace.db).")
@click.version_option(package_name=None, version=__import__("pld").__version__, prog_name="pld")
@click.pass_context
def cli(ctx: click.Context, workspace: Path | None) -> None:
    """PLD Studio: prompt-level distillation with people in the loop."""
    ctx.obj = {"path": workspace or default_path(), "ws": None}


# --- data -------------------------------------------------------------------------------

@cli.command("tasks")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
@handles_errors
def tasks_cmd(ctx: click.Context, as_json: bool) -> None:
    """Built-in tasks, whether their data was found, and split sizes."""
    from pld.tasks import data_dir, task_statuses
    from pld.tasks.store import loaded_tasks

    ws = _ws(ctx)
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

    _emit(data, as_json, text)


@cli.command("load")
@click.argument("task")
@click.option("--file", "file", type=click.Path(path_type=Path), help="custom: CSV or JSONL file.")
@click.option("--name", help="custom: name of the task in the workspace (default: file stem).")
@click.option("--text-column", default="text", show_default=True)
@click.option("--label-column", default="label", show_default=True)
@click.option("--id-column", default=None, help="custom: optional column of unique ids.")
@click.option("--description", default=None,
              help="custom: what the task decides, one sentence (goes into the prompts).")
@click.option("--train", "n_train", type=int, default=None, help="Training examples (0 = all).")
@click.option("--val", "n_val", type=int, default=None, help="Validation examples (0 = all).")
@click.option("--test", "n_test", type=int, default=None, help="Test examples (0 = all).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--context-tokens", type=int, default=None,
              help="contract-nli: input budget per example in tokens (default 1500); a longer "
                   "NDA keeps its passages most relevant to the hypothesis, and says so.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def load_cmd(ctx: click.Context, task: str, file: Path | None, name: str | None,
             text_column: str, label_column: str, id_column: str | None,
             description: str | None, n_train: int | None, n_val: int | None,
             n_test: int | None, seed: int, context_tokens: int | None, as_json: bool) -> None:
    """Load a task's splits into the workspace (deterministic for a seed)."""
    from pld.tasks import load_custom, load_task
    from pld.tasks.custom import task_name_for

    ws = _ws(ctx)
    if task == "custom":
        if file is None:
            raise BadInput("load custom: --file PATH is required (a CSV or JSONL file)")
        counts = load_custom(ws, file, name=name, text_column=text_column,
                             label_column=label_column, id_column=id_column, n_train=n_train,
                             n_val=n_val, n_test=n_test, seed=seed,
                             description=(description or "").strip() or None)
        task = name or task_name_for(file)
    else:
        if file is not None or description is not None:
            # A built-in task brings its own description; silently dropping one would mislead.
            raise BadInput(f"load {task}: --file and --description are only for custom tasks")
        if context_tokens is not None and task != "contract-nli":
            raise BadInput(f"load {task}: --context-tokens is only for contract-nli")
        options = {"context_tokens": context_tokens} if context_tokens is not None else None
        counts = load_task(ws, task, n_train=n_train, n_val=n_val, n_test=n_test, seed=seed,
                           options=options)
    _emit({"task": task, "splits": counts}, as_json,
          lambda d: f"loaded {d['task']}: " + ", ".join(f"{k} {v}" for k, v in d["splits"].items()))


@cli.command("download")
@click.argument("task")
@handles_errors
def download_cmd(task: str) -> None:
    """Fetch a task's upstream files into data/ (needs internet)."""
    from pld.tasks import download_dir
    from pld.tasks.download import NOTICES, download

    if task in NOTICES:
        click.echo(NOTICES[task], err=True)
    for path in download(task, download_dir()):
        click.echo(f"wrote {path}")


# --- models -----------------------------------------------------------------------------

@cli.command("ask")
@click.argument("model")
@click.argument("text")
@click.option("--system", default=None, help="System prompt.")
@click.option("--max-tokens", type=int, default=512, show_default=True)
@click.option("--no-cache", is_flag=True, help="Call the model even if the answer is cached.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def ask_cmd(ctx: click.Context, model: str, text: str, system: str | None, max_tokens: int,
            no_cache: bool, as_json: bool) -> None:
    """One call through the same cache and log (handy to check a key or a server)."""
    from pld.llm.calls import complete
    from pld.llm.registry import parse_model

    parse_model(model)
    ws = _ws(ctx)
    result = complete(ws, model, [{"role": "user", "content": text}], system=system,
                      max_tokens=max_tokens, stage="ask", use_cache=not no_cache)
    r = result.reply
    data = {"model": model, "text": r.text, "input_tokens": r.input_tokens,
            "output_tokens": r.output_tokens, "cached_tokens": r.cached_tokens,
            "latency_s": round(r.latency_s, 3), "cache_hit": result.cached,
            "call_id": result.call_id}
    _emit(data, as_json, lambda d: d["text"])


@cli.command("calls")
@click.option("--json", "as_json", is_flag=True)
@click.option("--limit", type=int, default=0, help="Also list the last N calls.")
@click.pass_context
@handles_errors
def calls_cmd(ctx: click.Context, as_json: bool, limit: int) -> None:
    """The call log: counts, tokens, cache hits, errors and cost, per model and stage."""
    from pld.llm.calls import list_calls, summarize_calls

    ws = _ws(ctx)
    data = summarize_calls(ws)
    if limit:
        data["recent"] = [
            {k: r[k] for k in ("id", "created_at", "model", "stage", "cache_hit", "attempt",
                               "input_tokens", "output_tokens", "latency_s", "error")}
            for r in list_calls(ws, limit=limit)
        ]

    def text(d: dict[str, Any]) -> str:
        t = d["total"]
        lines = [f"{t['calls']} calls, {t['cache_hits']} cache hits, {t['uncached']} uncached, "
                 f"{t['errors']} errors, "
                 f"{t['input_tokens']} in / {t['output_tokens']} out tokens, "
                 f"${t['cost_usd']:.4f} estimated", ""]
        lines.append(f"{'model':<40} {'stage':<12} {'calls':>6} {'hits':>6} {'errors':>6} "
                     f"{'in tok':>9} {'out tok':>8} {'cost $':>9}")
        for g in d["by_model_stage"]:
            lines.append(f"{g['model'][:40]:<40} {str(g['stage'])[:12]:<12} {g['calls']:>6} "
                         f"{g['cache_hits']:>6} {g['errors']:>6} {g['input_tokens']:>9} "
                         f"{g['output_tokens']:>8} {g['cost_usd']:>9.4f}")
        for r in d.get("recent", []):
            lines.append(f"#{r['id']} {r['created_at']} {r['model']} {r['stage']} "
                         f"hit={r['cache_hit']} {r['error'] or ''}")
        return "\n".join(lines)

    _emit(data, as_json, text)


# --- the method, stage by stage ------------------------------------------------------------

def _model_option(name: str, help_text: str) -> Callable[[F], F]:
    return click.option(f"--{name}", name, required=True, metavar="MODEL", help=help_text)


def _as_option(fn: F) -> F:
    return click.option("--as", "who", required=True, metavar="NAME",
                        help="Your name; recorded in the audit trail.")(fn)


def _check_model(model: str) -> None:
    from pld.llm.registry import parse_model

    parse_model(model)


@cli.command("extract")
@click.argument("task")
@_model_option("teacher", "Teacher model string, e.g. local/default or anthropic/claude-...")
@click.option("--limit", type=int, default=None, help="At most N training examples.")
@click.option("--concurrency", type=int, default=None, help="Parallel teacher calls.")
@click.option("--retry-failed", is_flag=True,
              help="Ask again, with a fresh call, the examples that failed before.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def extract_cmd(ctx: click.Context, task: str, teacher: str, limit: int | None,
                concurrency: int | None, retry_failed: bool, as_json: bool) -> None:
    """Stage 1: one micro-instruction per training example."""
    from dataclasses import asdict

    from pld.pipeline.extract import extract

    _check_model(teacher)
    s = extract(_ws(ctx), task, teacher, limit=limit, concurrency=concurrency,
                retry_failed=retry_failed, on_progress=_Progress("extract"))
    _emit(asdict(s), as_json, lambda d: (
        f"extract run {d['run_id']}: {d['done']}/{d['total']} rules, {d['skipped']} already "
        f"done, {d['failed']} failed, {d['flagged']} flagged" + _failed_before_note(d)))


@cli.group("rules")
def rules_group() -> None:
    """Browse the extracted micro-instructions (the Micro-instructions page's table)."""


@rules_group.command("list")
@click.argument("task")
@click.option("--status", type=click.Choice(["ok", "failed"]), default=None)
@click.option("--label", default=None, help="Only rules of examples with this gold label.")
@click.option("--flag", "flag", default=None, metavar="any|none|NAME",
              help="Flagged rules: any flag, none, or one flag (see rules show).")
@click.option("--search", default=None, help="Substring of the rule, reasoning or error.")
@click.option("--clustering", "clustering_id", type=int, default=None,
              help="With --cluster: the clustering the cluster belongs to.")
@click.option("--cluster", "cluster_ref", default=None, metavar="ID|noise",
              help="Only the rules of this cluster (or the noise) of --clustering.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def rules_list(ctx: click.Context, task: str, status: str | None, label: str | None,
               flag: str | None, search: str | None, clustering_id: int | None,
               cluster_ref: str | None, limit: int, offset: int, as_json: bool) -> None:
    """One page of TASK's rules, in example order, with the number that match."""
    from pld.pipeline.extract import FLAGS, count_rules, list_rules
    from pld.tasks.store import task_info

    flagged: bool | str | None = {None: None, "any": True, "none": False}.get(flag, flag)
    if isinstance(flagged, str) and flagged not in FLAGS:
        raise BadInput(f"--flag {flag!r}: use any, none or one of {', '.join(FLAGS)}")
    if (clustering_id is None) != (cluster_ref is None):
        raise BadInput("rules list: --cluster and --clustering go together")
    cluster = None if clustering_id is None else (
        clustering_id, _cluster_ref(cluster_ref or "", "--cluster"))
    ws = _ws(ctx)
    task_info(ws, task)
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

    _emit(data, as_json, text)


@rules_group.command("show")
@click.argument("rule_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def rules_show(ctx: click.Context, rule_id: int, as_json: bool) -> None:
    """One rule with its reasoning, its example and the teacher call that wrote it."""
    from pld.pipeline.extract import FLAGS, get_rule

    r = get_rule(_ws(ctx), rule_id)

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

    _emit(r, as_json, text)


def _failed_before_note(d: dict[str, Any]) -> str:
    n = d.get("failed_before") or 0
    return f"; {n} failed before, kept as failed (--retry-failed asks them again)" if n else ""


@cli.command("cluster")
@click.argument("task")
@click.option("--method", type=click.Choice(["dbscan", "hdbscan", "kmeans"]), default="dbscan",
              show_default=True)
@click.option("--eps", default="0.4", show_default=True,
              help="DBSCAN radius (cosine distance) or 'auto' (knee of the k-distance curve).")
@click.option("--min-samples", type=int, default=6, show_default=True)
@click.option("--k", type=int, default=None, help="k-means: number of clusters.")
@click.option("--embedder", default=None, help="Embedding model (default: minilm).")
@click.option("--umap", is_flag=True, help="Reduce with UMAP before clustering.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--accept-as", default=None, metavar="NAME",
              help="Accept this clustering as NAME (otherwise it stays proposed).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def cluster_cmd(ctx: click.Context, task: str, method: str, eps: str, min_samples: int,
                k: int | None, embedder: str | None, umap: bool, seed: int,
                accept_as: str | None, as_json: bool) -> None:
    """Stage 2: embed the rules and cluster them (proposed until accepted)."""
    from pld.pipeline import cluster as clustering
    from pld.pipeline.embed import DEFAULT_EMBEDDER

    eps_value: float | str
    if eps == "auto":
        eps_value = "auto"
    else:
        try:
            eps_value = float(eps)
        except ValueError:
            raise BadInput(f"--eps: expected a number or 'auto', got {eps!r}") from None
    ws = _ws(ctx)
    cid = clustering.cluster(ws, task, method=method, eps=eps_value, min_samples=min_samples,
                             k=k, embed_model=embedder or DEFAULT_EMBEDDER, umap=umap,
                             seed=seed, on_progress=_Progress("cluster"))
    if accept_as:
        clustering.accept_clustering(ws, cid, accept_as)
    row = ws.query("SELECT * FROM clusterings WHERE id = ?", [cid])[0]
    from pld.workspace import loads

    data = {"clustering_id": cid, "status": row["status"], "params": loads(row["params"]),
            "metrics": loads(row["metrics"]),
            "clusters": clustering.cluster_summary(ws, cid)}

    def text(d: dict[str, Any]) -> str:
        m = d["metrics"]
        lines = [f"clustering {d['clustering_id']} ({d['status']}): {m.get('n_clusters')} "
                 f"clusters, noise {100 * (m.get('noise_share') or 0):.0f}%, silhouette "
                 f"{m.get('silhouette')}"]
        for c in d["clusters"]:
            lines.append(f"  {c.get('id') or 'noise'!s:>5}  {c.get('size', 0):>4}  "
                         f"{c.get('name') or ''}")
        return "\n".join(lines)

    _emit(data, as_json, text)


# --- clusters: inspect, accept and edit clusterings (the Clusters page, headless) -----------

@cli.group("clusters")
def clusters_group() -> None:
    """List, show, accept and edit the clusterings that `cluster` made, as a named reviewer."""


NOISE = "noise"


def _cluster_ref(value: str, option: str) -> int | None:
    """A cluster id, or None for ``noise`` (the rules in no cluster)."""
    if value.strip().lower() == NOISE:
        return None
    try:
        return int(value)
    except ValueError:
        raise BadInput(f"{option}: expected a cluster id or '{NOISE}', got {value!r}") from None


def _noise_pct(metrics: dict[str, Any]) -> str:
    return f"{100 * (metrics.get('noise_share') or 0):.0f}%"


@clusters_group.command("list")
@click.argument("task")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def clusters_list(ctx: click.Context, task: str, as_json: bool) -> None:
    """TASK's clusterings, with cluster count and noise share.

    Newest first; * marks the one consolidate uses (the accepted one, else the latest).
    """
    from pld.pipeline import cluster as clu
    from pld.tasks.store import task_info

    ws = _ws(ctx)
    task_info(ws, task)
    current = clu.current_clustering(ws, task)
    data = {"task": task, "current": current["id"] if current else None,
            "clusterings": [{k: c[k] for k in ("id", "method", "embed_model", "status",
                                               "created_at", "accepted_by", "accepted_at",
                                               "params", "metrics")}
                            for c in clu.list_clusterings(ws, task)]}

    def text(d: dict[str, Any]) -> str:
        out = []
        for c in d["clusterings"]:
            m = c["metrics"]
            mark = "*" if c["id"] == d["current"] else " "
            out.append(f"{mark}#{c['id']:<4} {c['method']:<8} {m.get('n_clusters', 0):>3} "
                       f"clusters  noise {_noise_pct(m):>4}  {c['status']}"
                       + (f" by {c['accepted_by']}" if c["accepted_by"] else "")
                       + ("  (edited)" if m.get("edited") else ""))
        if not out:
            return f"no clusterings for {d['task']}; run python -m pld cluster {d['task']}"
        return "\n".join([*out, "* the one consolidate uses (accepted, else the latest)"])

    _emit(data, as_json, text)


@clusters_group.command("show")
@click.argument("clustering_id", type=int)
@click.option("--cluster", "cluster_ref", default=None, metavar="ID|noise",
              help="List the rules of this cluster (or the noise) instead of the summary.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def clusters_show(ctx: click.Context, clustering_id: int, cluster_ref: str | None,
                  as_json: bool) -> None:
    """A clustering's clusters, or one cluster's rules.

    Per cluster: id, size, name, c-TF-IDF keywords and the gold-label mix; the rules of one
    cluster (--cluster) give the rule ids that clusters move takes.
    """
    from pld.pipeline import cluster as clu

    ws = _ws(ctx)
    c = clu.get_clustering(ws, clustering_id)
    if cluster_ref is not None:
        cid = _cluster_ref(cluster_ref, "--cluster")
        summary = clu.cluster_summary(ws, clustering_id)
        if cid is not None and cid not in {s["id"] for s in summary}:
            raise BadInput(f"--cluster {cid}: not a cluster of clustering {clustering_id} "
                           f"(see python -m pld clusters show {clustering_id})")
        rules = [{"id": r["id"], "gold_label": r["gold_label"], "rule": r["rule"]}
                 for r in clu.members(ws, clustering_id, cid)]
        data: dict[str, Any] = {"clustering_id": clustering_id, "cluster_id": cid,
                                "rules": rules}
        _emit(data, as_json, lambda d: "\n".join(
            f"rule #{r['id']:<5} {r['gold_label']!s:<12} {r['rule']}" for r in d["rules"])
            or "no rules")
        return
    data = {**{k: c[k] for k in ("id", "task", "method", "embed_model", "status", "created_at",
                                 "accepted_by", "accepted_at", "params", "metrics")},
            "clusters": clu.cluster_summary(ws, clustering_id)}

    def text(d: dict[str, Any]) -> str:
        m = d["metrics"]
        lines = [f"clustering #{d['id']} of {d['task']} ({d['status']}"
                 + (f" by {d['accepted_by']}" if d["accepted_by"] else "") + f"): {d['method']}, "
                 f"{m.get('n_clusters', 0)} clusters, noise {_noise_pct(m)}, silhouette "
                 f"{m.get('silhouette')}" + (", edited by reviewers" if m.get("edited") else "")]
        for s in d["clusters"]:
            mix = ", ".join(f"{k} {v}" for k, v in s["labels"].items())
            lines.append(f"  {NOISE if s['noise'] else s['id']!s:>6} {s['size']:>4}  "
                         f"{s['name']}  [{mix}]")
        return "\n".join(lines)

    _emit(data, as_json, text)


@clusters_group.command("accept")
@click.argument("clustering_id", type=int)
@_as_option
@click.pass_context
@handles_errors
def clusters_accept(ctx: click.Context, clustering_id: int, who: str) -> None:
    """Accept a clustering for consolidate to use.

    A clustering accepted before becomes superseded (kept for comparison, no longer editable).
    """
    from pld.pipeline import cluster as clu

    clu.accept_clustering(_ws(ctx), clustering_id, who)
    click.echo(f"clustering #{clustering_id} accepted by {who}")


@clusters_group.command("rename")
@click.argument("cluster_id", type=int)
@click.argument("name")
@click.option("--expected-name", default=None, metavar="OLD",
              help="The name you saw (see clusters show); refused if it was renamed since.")
@_as_option
@click.pass_context
@handles_errors
def clusters_rename(ctx: click.Context, cluster_id: int, name: str, expected_name: str | None,
                    who: str) -> None:
    """Rename a cluster (a name you chose is kept when its keywords change)."""
    from pld.pipeline import cluster as clu

    clu.rename_cluster(_ws(ctx), cluster_id, name, who, expected_name=expected_name)
    click.echo(f"cluster {cluster_id} renamed to {name.strip()!r} by {who}")


@clusters_group.command("move")
@click.argument("clustering_id", type=int)
@click.argument("rule_ids", type=int, nargs=-1, required=True)
@click.option("--to", "target", required=True, metavar="ID|noise",
              help="The cluster to move the rules to, or 'noise' to send them to noise.")
@_as_option
@click.pass_context
@handles_errors
def clusters_move(ctx: click.Context, clustering_id: int, rule_ids: tuple[int, ...],
                  target: str, who: str) -> None:
    """Move rules to another cluster or to noise (or back from noise)."""
    from pld.pipeline import cluster as clu

    to = _cluster_ref(target, "--to")
    ws = _ws(ctx)
    clu.get_clustering(ws, clustering_id)
    clu.move_rules(ws, clustering_id, rule_ids, to, who)  # all or nothing
    where = NOISE if to is None else f"cluster {to}"
    click.echo(f"moved {len(set(rule_ids))} rule(s) to {where} as {who}")


@clusters_group.command("merge")
@click.argument("clustering_id", type=int)
@click.argument("cluster_id", type=int)
@click.argument("other_ids", type=int, nargs=-1, required=True)
@_as_option
@click.pass_context
@handles_errors
def clusters_merge(ctx: click.Context, clustering_id: int, cluster_id: int,
                   other_ids: tuple[int, ...], who: str) -> None:
    """Merge clusters into CLUSTER_ID.

    The OTHER_IDS clusters are removed and their rules join CLUSTER_ID, whose keywords are
    recomputed; a name you gave it is kept.
    """
    from pld.pipeline import cluster as clu

    ws = _ws(ctx)
    ids = {s["id"] for s in clu.cluster_summary(ws, clustering_id) if not s["noise"]}
    # Checked before the first merge, so a bad id leaves the clustering as it was.
    for cid in (cluster_id, *other_ids):
        if cid not in ids:
            raise BadInput(f"cluster {cid} is not in clustering {clustering_id}; nothing was "
                           "merged")
    if cluster_id in other_ids:
        raise BadInput(f"cannot merge cluster {cluster_id} with itself")
    others = list(dict.fromkeys(other_ids))
    for other in others:
        clu.merge_clusters(ws, clustering_id, cluster_id, other, who)
    click.echo(f"merged cluster(s) {', '.join(map(str, others))} into cluster {cluster_id} "
               f"as {who}")


@clusters_group.command("split")
@click.argument("clustering_id", type=int)
@click.argument("cluster_id", type=int)
@click.option("--k", type=int, default=2, show_default=True, help="Number of parts.")
@_as_option
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def clusters_split(ctx: click.Context, clustering_id: int, cluster_id: int, k: int, who: str,
                   as_json: bool) -> None:
    """Split a cluster in K parts.

    k-means on the rules' stored vectors; the largest part keeps CLUSTER_ID, the others get new
    ids and fresh keywords.
    """
    from pld.pipeline import cluster as clu

    parts = clu.split_cluster(_ws(ctx), clustering_id, cluster_id, k, who=who)
    _emit({"clustering_id": clustering_id, "cluster_id": cluster_id, "parts": parts}, as_json,
          lambda d: f"split cluster {d['cluster_id']} into clusters "
                    f"{', '.join(map(str, d['parts']))} as {who}")


@cli.command("consolidate")
@click.argument("task")
@_model_option("teacher", "Teacher model string.")
@click.option("--clustering", "clustering_id", type=int, default=None,
              help="Clustering id (default: the accepted one, else the latest).")
@click.option("--concurrency", type=int, default=None)
@click.option("--retry-failed", is_flag=True,
              help="Ask again, with a fresh call, the clusters that failed before.")
@click.option("--merge", type=click.Choice(["all", "by-label", "medoid"]), default="all",
              show_default=True,
              help="How a cluster becomes a heuristic: the teacher merges all its rules (the "
                   "paper), or each label's rules apart (parts joined), or no teacher call: "
                   "each label's most central rule (medoid), joined.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def consolidate_cmd(ctx: click.Context, task: str, teacher: str, clustering_id: int | None,
                    concurrency: int | None, retry_failed: bool, merge: str,
                    as_json: bool) -> None:
    """Stage 3: one heuristic per cluster, keeping minority labels and edge cases."""
    from dataclasses import asdict

    from pld.pipeline.consolidate import consolidate

    _check_model(teacher)
    s = consolidate(_ws(ctx), task, teacher, clustering_id=clustering_id,
                    concurrency=concurrency, retry_failed=retry_failed, merge=merge,
                    on_progress=_Progress("consolidate"))
    _emit(asdict(s), as_json, lambda d: (
        f"consolidate run {d['run_id']}: {d['created']} heuristics created, {d['skipped']} "
        f"already there, {d['failed']} failed" + _failed_before_note(d)))


# --- review -------------------------------------------------------------------------------

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

    ws = _ws(ctx)
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

    _emit(data, as_json, text)


@review_group.command("show")
@click.argument("heuristic_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def review_show(ctx: click.Context, heuristic_id: int, as_json: bool) -> None:
    """One heuristic with its source rules and examples, and its history."""
    from pld import review

    ws = _ws(ctx)
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

    _emit(h, as_json, text)


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
@_as_option
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
    ws = _ws(ctx)
    h = review.edit(ws, heuristic_id, text, who=who, base_version=base_version, comment=comment)
    click.echo(f"heuristic #{heuristic_id} is now v{h['version']} ({h['status']})")


def _base_version_option(fn: F) -> F:
    return click.option(
        "--base-version", "base_versions", type=int, multiple=True,
        help="The version you reviewed (see review show); refused if it changed since. "
             "Give one per heuristic id, in the same order.")(fn)


def _with_base_versions(command: str, ids: tuple[int, ...],
                        versions: tuple[int, ...]) -> list[tuple[int, int | None]]:
    """Pair each heuristic id with the version the reviewer saw (None when not given)."""
    if not versions:
        return [(hid, None) for hid in ids]
    if len(versions) != len(ids):
        raise BadInput(f"review {command}: give one --base-version per heuristic id "
                       f"({len(ids)} ids, {len(versions)} versions)")
    return list(zip(ids, versions, strict=True))


@review_group.command("approve")
@click.argument("heuristic_ids", type=int, nargs=-1, required=True)
@_base_version_option
@click.option("--comment", default=None)
@_as_option
@click.pass_context
@handles_errors
def review_approve(ctx: click.Context, heuristic_ids: tuple[int, ...],
                   base_versions: tuple[int, ...], comment: str | None, who: str) -> None:
    """Approve heuristics (four-eyes: not the last editor)."""
    from pld import review

    pairs = _with_base_versions("approve", heuristic_ids, base_versions)
    ws = _ws(ctx)
    for hid, base in pairs:
        review.approve(ws, hid, who=who, base_version=base, comment=comment)
        click.echo(f"heuristic #{hid} approved by {who}")


@review_group.command("reject")
@click.argument("heuristic_ids", type=int, nargs=-1, required=True)
@_base_version_option
@click.option("--comment", default=None)
@_as_option
@click.pass_context
@handles_errors
def review_reject(ctx: click.Context, heuristic_ids: tuple[int, ...],
                  base_versions: tuple[int, ...], comment: str | None, who: str) -> None:
    """Reject heuristics (they never enter a prompt)."""
    from pld import review

    pairs = _with_base_versions("reject", heuristic_ids, base_versions)
    ws = _ws(ctx)
    for hid, base in pairs:
        review.reject(ws, hid, who=who, base_version=base, comment=comment)
        click.echo(f"heuristic #{hid} rejected by {who}")


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
@_as_option
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def review_new(ctx: click.Context, task: str, new_text: str | None, file: Path | None,
               source_rule_ids: tuple[int, ...], comment: str | None, who: str,
               as_json: bool) -> None:
    """Write a new draft heuristic by hand (you are its author, so someone else approves it)."""
    from pld import review

    text = _one_text("new", new_text, file)
    hid = review.create_heuristic(_ws(ctx), task, text, who, source_rule_ids, comment=comment)
    _emit({"action": "new", "ids": [hid], "by": who}, as_json, _new_ids_text)


@review_group.command("merge")
@click.argument("heuristic_ids", type=int, nargs=-1, required=True)
@click.option("--text", "new_text", default=None, help="The merged heuristic's text.")
@click.option("--file", "file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Read the merged text from a file.")
@_base_version_option
@click.option("--comment", default=None)
@_as_option
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
    new = review.merge_heuristics(_ws(ctx), heuristic_ids, text, who,
                                  base_versions=dict(pairs),  # type: ignore[arg-type]
                                  comment=comment)
    _emit({"action": "merge", "from": sorted(set(heuristic_ids)), "ids": [new], "by": who},
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
@_as_option
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
    new = review.split_heuristic(_ws(ctx), heuristic_id, parts, who, base_version=base_version,
                                 comment=comment)
    _emit({"action": "split", "from": [heuristic_id], "ids": new, "by": who}, as_json,
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
    ws = _ws(ctx)
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

    _emit(data, as_json, text)


@review_group.command("proposals")
@click.argument("task")
@click.option("--status", default="pending", show_default=True,
              type=click.Choice(["pending", "accepted", "rejected", "all"]))
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def review_proposals(ctx: click.Context, task: str, status: str, as_json: bool) -> None:
    """The teacher's proposed fixes from the conflict loop."""
    from pld.pipeline.resolve import list_proposals

    rows = list_proposals(_ws(ctx), task, status=None if status == "all" else status)
    data = {"task": task, "proposals": rows}

    def text(d: dict[str, Any]) -> str:
        out = []
        for p in d["proposals"]:
            target = f"heuristic #{p['heuristic_id']}" if p.get("heuristic_id") else "new"
            out.append(f"#{p['id']} iter {p['iteration']} {p['kind']} {target} "
                       f"[{p['status']}]: {(p.get('text') or '')[:80]}")
            out.append(f"     why: {(p.get('rationale') or '')[:100]}")
        return "\n".join(out) or "no proposals"

    _emit(data, as_json, text)


@review_group.command("decide")
@click.argument("proposal_id", type=int)
@click.argument("decision", type=click.Choice(["accept", "reject"]))
@click.option("--comment", default=None)
@_as_option
@click.pass_context
@handles_errors
def review_decide(ctx: click.Context, proposal_id: int, decision: str, comment: str | None,
                  who: str) -> None:
    """Accept or reject one proposal of the conflict loop."""
    from pld.pipeline.resolve import decide_proposal

    decide_proposal(_ws(ctx), proposal_id, decision == "accept", who, comment=comment)
    click.echo(f"proposal #{proposal_id} {decision}ed by {who}")


# --- student, conflicts, evaluation, export ------------------------------------------------

def _concurrency_option(help_text: str) -> Callable[[F], F]:
    # IntRange: a zero or negative pool size is bad input (exit 2), not a crash in the pool.
    return click.option("--concurrency", type=click.IntRange(min=1), default=None,
                        metavar="K", help=help_text)


@cli.command("resolve")
@click.argument("task")
@_model_option("student", "Student model string.")
@_model_option("teacher", "Teacher model string.")
@click.option("--iterations", type=int, default=3, show_default=True)
@click.option("--auto-accept-as", default=None, metavar="NAME",
              help="Accept proposals and approve their heuristics as NAME (benchmarks).")
@click.option("--val-limit", type=int, default=None, help="At most N validation examples.")
@_concurrency_option("Parallel student and teacher calls (default: 1 local, 8 remote).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def resolve_cmd(ctx: click.Context, task: str, student: str, teacher: str, iterations: int,
                auto_accept_as: str | None, val_limit: int | None, concurrency: int | None,
                as_json: bool) -> None:
    """Stage 6: run the student on validation, have the teacher propose fixes."""
    from dataclasses import asdict

    from pld.pipeline.resolve import resolve

    _check_model(student)
    _check_model(teacher)
    s = resolve(_ws(ctx), task, student, teacher, iterations=iterations,
                auto_accept_as=auto_accept_as, val_limit=val_limit, concurrency=concurrency,
                on_progress=_Progress("resolve"))
    data = asdict(s)

    def text(d: dict[str, Any]) -> str:
        lines = [f"resolve: {d.get('stop_reason')}; best prompt version {d.get('best_version')}"]
        for h in d.get("history") or []:
            lines.append(f"  iteration {h.get('iteration')}: v{h.get('prompt_version')} "
                         f"val macro-F1 {h.get('macro_f1')} errors {h.get('n_errors')} "
                         f"{'adopted' if h.get('adopted') else 'not adopted'}")
        return "\n".join(lines)

    _emit(data, as_json, text)


def _metrics_text(d: dict[str, Any]) -> str:
    m = d["metrics"]
    lo, hi = m["ci"]["macro_f1"]
    lines = [f"{d['method']} on {d['split']} (n={m['n']}): macro-F1 {m['macro_f1']:.3f} "
             f"[{lo:.3f}, {hi:.3f}], accuracy {m['accuracy']:.3f}"
             + (f", {m['n_unparseable']} unparseable" if m.get("n_unparseable") else "")]
    lines.append(f"  {'label':<24} {'P':>6} {'R':>6} {'F1':>6} {'n':>5}")
    for label, v in m["per_label"].items():
        lines.append(f"  {label[:24]:<24} {v['precision']:>6.3f} {v['recall']:>6.3f} "
                     f"{v['f1']:>6.3f} {v['support']:>5}")
    return "\n".join(lines)


@cli.command("eval")
@click.argument("task")
@_model_option("student", "Student model string.")
@click.option("--prompt", "prompt_file", type=click.Path(path_type=Path), default=None,
              help="An exported prompt.md.")
@click.option("--version", type=int, default=None, help="A prompt version of the workspace.")
@click.option("--zero-shot", is_flag=True, help="Baseline: labels and task description only.")
@click.option("--few-shot", type=int, default=None, metavar="K",
              help="Baseline: K training examples as demonstrations.")
@click.option("--split", default="test", show_default=True,
              type=click.Choice(["train", "val", "test"]))
@click.option("--limit", type=int, default=None, help="First N items of the split.")
@click.option("--seed", type=int, default=0, show_default=True)
@_concurrency_option("Parallel student calls (default: 1 local, 8 remote).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def eval_cmd(ctx: click.Context, task: str, student: str, prompt_file: Path | None,
             version: int | None, zero_shot: bool, few_shot: int | None, split: str,
             limit: int | None, seed: int, concurrency: int | None, as_json: bool) -> None:
    """Score a prompt (or a baseline) on a split: macro-F1 with CI, per-label, confusion."""
    from pld.pipeline.evaluate import evaluate

    chosen = sum(x is not None and x is not False for x in (prompt_file, version, few_shot)) + int(
        zero_shot)
    if chosen != 1:
        raise BadInput("eval: give exactly one of --prompt FILE, --version V, --zero-shot, "
                       "--few-shot K")
    _check_model(student)
    r = evaluate(_ws(ctx), task, student, version=version, prompt_file=prompt_file,
                 zero_shot=zero_shot, few_shot=few_shot, split=split, limit=limit, seed=seed,
                 concurrency=concurrency, on_progress=_Progress("eval"))
    data = {"task": task, "student": student, "split": split, "method": r.method,
            "evaluation_id": r.evaluation_id, "prompt_sha256": r.prompt_sha256,
            "run_id": r.run_id, "metrics": r.metrics}
    _emit(data, as_json, _metrics_text)


@cli.group("evals")
def evals_group() -> None:
    """List and compare the evaluations that `eval` stored (the Evaluate page's tables)."""


def _eval_name(e: dict[str, Any]) -> str:
    version = f" v{e['prompt_version']}" if e.get("prompt_version") is not None else ""
    return f"#{e['id']} {e['method']}{version} {e['student']} on {e['split']} (n={e['n']})"


@evals_group.command("list")
@click.argument("task")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def evals_list(ctx: click.Context, task: str, as_json: bool) -> None:
    """TASK's evaluations, oldest first: method, prompt version, student, split, scores."""
    from pld.pipeline.evaluate import list_evaluations
    from pld.tasks.store import task_info

    ws = _ws(ctx)
    task_info(ws, task)
    data = {"task": task, "evaluations": list_evaluations(ws, task)}

    def text(d: dict[str, Any]) -> str:
        out = []
        for e in d["evaluations"]:
            m = e["metrics"]
            lo, hi = (m.get("ci") or {}).get("macro_f1") or (None, None)
            ci = f" [{lo:.3f}, {hi:.3f}]" if lo is not None else ""
            out.append(f"{_eval_name(e)}: macro-F1 {m.get('macro_f1', 0):.3f}{ci}, accuracy "
                       f"{m.get('accuracy', 0):.3f}")
        return "\n".join(out) or f"no evaluations of {d['task']}; run python -m pld eval"

    _emit(data, as_json, text)


@evals_group.command("compare")
@click.argument("eval_a", type=int)
@click.argument("eval_b", type=int)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def evals_compare(ctx: click.Context, eval_a: int, eval_b: int, as_json: bool) -> None:
    """Two evaluations side by side: score deltas, items that flipped, the prompt diff (A → B)."""
    from pld.pipeline.evaluate import compare

    if eval_a == eval_b:
        raise BadInput("evals compare: give two different evaluation ids")
    data = compare(_ws(ctx), eval_a, eval_b)

    def text(d: dict[str, Any]) -> str:
        a, b = d["a"], d["b"]
        lines = [f"A {_eval_name(a)}", f"B {_eval_name(b)}"]
        if (a["split"], a["student"]) != (b["split"], b["student"]):
            lines.append("note: different splits or students, so the scores do not compare")
        lines.append(f"B - A: macro-F1 {d['delta_macro_f1']:+.3f}, accuracy "
                     f"{d['delta_accuracy']:+.3f} over {d['common']} items both scored")
        lines.append(f"fixed by B (wrong -> right): {d['wrong_to_right'] or 'none'}")
        lines.append(f"broken by B (right -> wrong): {d['right_to_wrong'] or 'none'}")
        lines.append(d["diff"].rstrip("\n") if d["diff"] else "the two prompts are identical")
        return "\n".join(lines)

    _emit(data, as_json, text)


@cli.group("prompts")
def prompts_group() -> None:
    """Build, list and show the prompt versions of a task (what eval --version and export use)."""


def _prompt_row(ws: Workspace, p: Any) -> dict[str, Any]:
    """One prompt version as the Export page's table shows it, with why it may not be exported."""
    from pld.pipeline.export import refusal

    why = refusal(ws, p)
    return {"version": p.version, "created_at": p.created_at, "origin": p.origin,
            "parent_version": p.parent_version, "heuristic_ids": p.heuristic_ids,
            "sha256": p.sha256, "exportable": why is None, "refused": why}


@prompts_group.command("build")
@click.argument("task")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def prompts_build(ctx: click.Context, task: str, as_json: bool) -> None:
    """Render TASK's approved heuristics into a prompt version.

    Building the same approved set again gives back the version that already holds that text.
    """
    from pld.pipeline.student import build_prompt, list_prompts

    ws = _ws(ctx)
    before = {p.version for p in list_prompts(ws, task)}
    p = build_prompt(ws, task)
    data = {"task": task, **_prompt_row(ws, p), "new": p.version not in before}
    _emit(data, as_json, lambda d: (
        f"prompt v{d['version']} of {d['task']} holds {len(d['heuristic_ids'])} approved "
        f"heuristics ({'new' if d['new'] else 'already there'}); sha256 {d['sha256'][:12]}"))


@prompts_group.command("list")
@click.argument("task")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def prompts_list(ctx: click.Context, task: str, as_json: bool) -> None:
    """TASK's prompt versions and whether each may be exported (oldest first)."""
    from pld.pipeline.student import list_prompts
    from pld.tasks.store import task_info

    ws = _ws(ctx)
    task_info(ws, task)
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

    _emit(data, as_json, text)


@prompts_group.command("show")
@click.argument("task")
@click.option("--version", type=int, default=None, help="Prompt version (default: latest).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def prompts_show(ctx: click.Context, task: str, version: int | None, as_json: bool) -> None:
    """Print a prompt version's exact system prompt (export's prompt.md)."""
    from pld.pipeline.student import get_prompt

    ws = _ws(ctx)
    p = get_prompt(ws, task, version)
    if as_json:
        _emit({"task": task, **_prompt_row(ws, p), "text": p.text}, True, str)
    else:
        # The text as stored: no newline added to one that has it, so it can be diffed.
        click.echo(p.text, nl=not p.text.endswith("\n"))


@cli.command("export")
@click.argument("task")
@click.option("--version", type=int, default=None, help="Prompt version (default: latest).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def export_cmd(ctx: click.Context, task: str, version: int | None, out_dir: Path,
               as_json: bool) -> None:
    """Write prompt.md and manifest.json of an approved prompt version."""
    from pld.pipeline.export import export

    try:
        r = export(_ws(ctx), task, out_dir, version=version)
    except OSError as e:  # the workspace is SQLite, so an OSError here is about --out
        raise BadInput(f"--out {out_dir}: cannot write there ({e.strerror or e})") from e
    data = {"prompt": str(r.prompt_path), "manifest": str(r.manifest_path),
            "sha256": r.manifest.get("prompt_sha256"), "version": r.manifest.get("version")}
    _emit(data, as_json, lambda d: f"wrote {d['prompt']} and {d['manifest']}")


@cli.command("run")
@click.argument("task")
@_model_option("teacher", "Teacher model string.")
@_model_option("student", "Student model string.")
@click.option("--auto-approve-as", default=None, metavar="NAME",
              help="Approve every heuristic and proposal as NAME (benchmarks; recorded as auto). "
                   "Without it the run stops after consolidation for people to review.")
@click.option("--limit", type=int, default=None, help="At most N training examples to extract.")
@click.option("--concurrency", type=int, default=None, help="Parallel teacher calls.")
@click.option("--method", type=click.Choice(["dbscan", "hdbscan", "kmeans"]), default="dbscan",
              show_default=True)
@click.option("--eps", default="auto", show_default=True)
@click.option("--min-samples", type=int, default=6, show_default=True)
@click.option("--k", type=int, default=None)
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
              help="Ask failed extract examples and consolidate clusters again.")
@click.option("--merge", type=click.Choice(["all", "by-label", "medoid"]), default="all",
              show_default=True,
              help="How a cluster becomes a heuristic: the teacher merges all its rules (the "
                   "paper), or each label's rules apart (parts joined), or no teacher call: "
                   "each label's most central rule (medoid), joined.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def run_cmd(ctx: click.Context, task: str, teacher: str, student: str,
            auto_approve_as: str | None, limit: int | None, concurrency: int | None,
            method: str, eps: str, min_samples: int, k: int | None, iterations: int,
            val_limit: int | None, test_limit: int | None, few_shot: int | None,
            out_dir: Path | None, seed: int, retry_failed: bool, merge: str,
            as_json: bool) -> None:
    """All stages for one task: extract, cluster, consolidate, (approve, resolve, eval, export)."""
    from dataclasses import asdict

    from pld.pipeline.chain import ChainOptions, run_chain

    _check_model(teacher)
    _check_model(student)
    eps_value: float | str = eps
    if eps != "auto":
        try:
            eps_value = float(eps)
        except ValueError:
            raise BadInput(f"--eps: expected a number or 'auto', got {eps!r}") from None
    options = ChainOptions(
        teacher=teacher, student=student, auto_approve_as=auto_approve_as, limit=limit,
        concurrency=concurrency, method=method, eps=eps_value, min_samples=min_samples, k=k,
        iterations=iterations, val_limit=val_limit, test_limit=test_limit, few_shot=few_shot,
        out_dir=out_dir or Path("data") / "exports" / task, seed=seed, retry_failed=retry_failed,
        merge=merge)
    s = run_chain(_ws(ctx), task, options, on_progress=_Progress(task))

    def text(d: dict[str, Any]) -> str:
        st = d["stages"]
        lines = [f"run {d['task']}: {d['stopped']}"]
        if "extract" in st:
            e = st["extract"]
            lines.append(f"  extract: {e['done']}/{e['total']} rules ({e['failed']} failed)"
                         + _failed_before_note(e))
        if "cluster" in st:
            c = st["cluster"]
            lines.append(f"  cluster: {c['n_clusters']} clusters, noise "
                         f"{100 * (c['noise_share'] or 0):.0f}%"
                         + (f" ({c['fallback']})" if c.get("fallback") else ""))
        if "consolidate" in st:
            c = st["consolidate"]
            lines.append(f"  consolidate: {c['created']} heuristics created, {c['skipped']} "
                         f"already there, {c['failed']} failed" + _failed_before_note(c))
        for name, ev in st.get("eval", {}).items():
            lines.append(f"  eval {name}: macro-F1 {ev['macro_f1']:.3f} "
                         f"[{ev['ci'][0]:.3f}, {ev['ci'][1]:.3f}] accuracy {ev['accuracy']:.3f} "
                         f"(n={ev['n']})")
        if "export" in st:
            lines.append(f"  export: {st['export']['prompt']}")
        if d["stopped"] == "awaiting-review":
            lines.append(f"  next: review the heuristics (python -m pld review list {d['task']})")
        return "\n".join(lines)

    _emit(asdict(s), as_json, text)


def _terminate(signum: int, frame: object) -> None:
    # A cancelled background job (SIGTERM) ends like Ctrl-C: the run row says "interrupted"
    # at once and the next invocation resumes, instead of looking "running" until noticed.
    raise KeyboardInterrupt


def main() -> None:
    """Entry point of ``python -m pld``."""
    signal.signal(signal.SIGTERM, _terminate)
    cli(prog_name="python -m pld")
