"""Stage 2 ``cluster``; ``clusters ...`` inspects, accepts and edits clusterings, headless."""

from __future__ import annotations

from typing import Any

import click

from pld.cli import options
from pld.cli.common import acting, ctx_workspace, emit, signed_by, task_workspace, with_context
from pld.cli.inputs import NOISE, check_clustering, parse_cluster_ref, parse_eps
from pld.cli.root import cli
from pld.cli.stages import Progress
from pld.errors import BadInput


@cli.command("cluster")
@click.argument("task")
@options.clustering(eps_default="0.4")
@click.option("--embedder", default=None, help="Embedding model (default: minilm).")
@click.option("--umap", is_flag=True, help="Reduce with UMAP before clustering.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seeds UMAP and k-means, so the same rules give the same clusters.")
@click.option("--accept-as", default=None, metavar="NAME",
              help="Accept this clustering as NAME (otherwise it stays proposed).")
@click.option("--as", "who", default=None, metavar="NAME",
              help="Who starts the clustering (recorded on the run); an explicit --method is "
                   "recorded as NAME's choice.")
@options.json_output
@with_context
def cluster_cmd(ctx: click.Context, task: str, method: str, eps: str, min_samples: int,
                k: int | None, cover_labels: bool, embedder: str | None, umap: bool, seed: int,
                accept_as: str | None, who: str | None, as_json: bool) -> None:
    """Stage 2: embed TASK's rules and cluster them (proposed until accepted).

    By default (--method auto) no cluster holds more than 60% of the rules; the clusterings
    tried and why the kept one won are in the params. An explicit --method is kept as chosen.

    \b
    Examples:
      python -m pld cluster demo
      python -m pld cluster demo --method dbscan --eps auto --cover-labels --accept-as alice
      python -m pld cluster demo --method kmeans --k 8 --as alice --json
    """
    from pld.pipeline.cluster import edits, read, stage
    from pld.pipeline.embed import DEFAULT_EMBEDDER

    check_clustering(ctx, method)
    eps_value = parse_eps(eps)
    ws = ctx_workspace(ctx)
    accepter = signed_by(ctx, accept_as) if accept_as else None
    cid = stage.cluster(ws, task, method=method, eps=eps_value, min_samples=min_samples,
                        k=k, embed_model=embedder or DEFAULT_EMBEDDER, umap=umap,
                        seed=seed, cover=cover_labels, started_by=acting(ctx, who),
                        on_progress=Progress("cluster"))
    if accepter is not None:
        edits.accept_clustering(ws, cid, accepter)
    row = ws.query("SELECT * FROM clusterings WHERE id = ?", [cid])[0]
    from pld.workspace import loads

    data = {"clustering_id": cid, "status": row["status"], "params": loads(row["params"]),
            "metrics": loads(row["metrics"]),
            "clusters": read.cluster_summary(ws, cid)}

    def text(d: dict[str, Any]) -> str:
        m = d["metrics"]
        lines = [f"clustering {d['clustering_id']} ({d['status']}): {m.get('n_clusters')} "
                 f"clusters, noise {100 * (m.get('noise_share') or 0):.0f}%, largest "
                 f"{100 * (m.get('largest_share') or 0):.0f}%, silhouette {m.get('silhouette')}",
                 f"  {read.choice_words(d['params'])}",
                 *(f"    tried {read.candidate_words(x)}"
                   for x in (d["params"].get("auto") or {}).get("candidates", []))]
        for c in d["clusters"]:
            lines.append(f"  {c.get('id') or 'noise'!s:>5}  {c.get('size', 0):>4}  "
                         f"{c.get('name') or ''}")
        return "\n".join(lines)

    emit(data, as_json, text)


@cli.group("clusters")
def clusters_group() -> None:
    """List, show, accept and edit the clusterings that `cluster` made, as a named reviewer.

    \b
    Examples:
      python -m pld clusters list demo
      python -m pld clusters show 3
      python -m pld clusters accept 3 --as alice
    """


def _noise_pct(metrics: dict[str, Any]) -> str:
    return f"{100 * (metrics.get('noise_share') or 0):.0f}%"


@clusters_group.command("list")
@click.argument("task")
@options.json_output
@with_context
def clusters_list(ctx: click.Context, task: str, as_json: bool) -> None:
    """TASK's clusterings, with cluster count and noise share.

    Newest first; * marks the one consolidate uses (the accepted one, else the latest).

    \b
    Examples:
      python -m pld clusters list demo
      python -m pld clusters list demo --json
    """
    from pld.pipeline.cluster import read

    ws = task_workspace(ctx, task)
    current = read.current_clustering(ws, task)
    data = {"task": task, "current": current["id"] if current else None,
            "clusterings": [{k: c[k] for k in ("id", "method", "embed_model", "status",
                                               "created_at", "accepted_by", "accepted_at",
                                               "params", "metrics")}
                            for c in read.list_clusterings(ws, task)]}

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

    emit(data, as_json, text)


@clusters_group.command("show")
@click.argument("clustering_id", type=int)
@click.option("--cluster", "cluster_ref", default=None, metavar="ID|noise",
              help="List the rules of this cluster (or the noise) instead of the summary.")
@options.json_output
@with_context
def clusters_show(ctx: click.Context, clustering_id: int, cluster_ref: str | None,
                  as_json: bool) -> None:
    """Clustering CLUSTERING_ID's clusters, or one cluster's rules.

    Per cluster: id, size, name, c-TF-IDF keywords and the gold-label mix; the rules of one
    cluster (--cluster) give the rule ids that clusters move takes.

    \b
    Examples:
      python -m pld clusters show 3
      python -m pld clusters show 3 --cluster 17
      python -m pld clusters show 3 --cluster noise --json
    """
    from pld.pipeline.cluster import read

    ws = ctx_workspace(ctx)
    c = read.get_clustering(ws, clustering_id)
    if cluster_ref is not None:
        cid = parse_cluster_ref(cluster_ref, "--cluster")
        summary = read.cluster_summary(ws, clustering_id)
        if cid is not None and cid not in {s["id"] for s in summary}:
            raise BadInput(f"--cluster {cid}: not a cluster of clustering {clustering_id} "
                           f"(see python -m pld clusters show {clustering_id})")
        rules = [{"id": r["id"], "gold_label": r["gold_label"], "rule": r["rule"]}
                 for r in read.members(ws, clustering_id, cid)]
        data: dict[str, Any] = {"clustering_id": clustering_id, "cluster_id": cid,
                                "rules": rules}
        emit(data, as_json, lambda d: "\n".join(
            f"rule #{r['id']:<5} {r['gold_label']!s:<12} {r['rule']}" for r in d["rules"])
            or "no rules")
        return
    data = {**{k: c[k] for k in ("id", "task", "method", "embed_model", "status", "created_at",
                                 "accepted_by", "accepted_at", "params", "metrics")},
            "clusters": read.cluster_summary(ws, clustering_id)}

    def text(d: dict[str, Any]) -> str:
        m = d["metrics"]
        lines = [f"clustering #{d['id']} of {d['task']} ({d['status']}"
                 + (f" by {d['accepted_by']}" if d["accepted_by"] else "") + f"): {d['method']}, "
                 f"{m.get('n_clusters', 0)} clusters, noise {_noise_pct(m)}, silhouette "
                 f"{m.get('silhouette')}" + (", edited by reviewers" if m.get("edited") else ""),
                 f"  {read.choice_words(d['params'])}"]
        for s in d["clusters"]:
            mix = ", ".join(f"{k} {v}" for k, v in s["labels"].items())
            lines.append(f"  {NOISE if s['noise'] else s['id']!s:>6} {s['size']:>4}  "
                         f"{s['name']}  [{mix}]")
        return "\n".join(lines)

    emit(data, as_json, text)


@clusters_group.command("accept")
@click.argument("clustering_id", type=int)
@options.signer
@with_context
def clusters_accept(ctx: click.Context, clustering_id: int, who: str) -> None:
    """Accept clustering CLUSTERING_ID for consolidate to use.

    A clustering accepted before becomes superseded (kept for comparison, no longer editable).

    \b
    Example:
      python -m pld clusters accept 3 --as alice
    """
    from pld.pipeline.cluster import edits

    edits.accept_clustering(ctx_workspace(ctx), clustering_id, signed_by(ctx, who))
    click.echo(f"clustering #{clustering_id} accepted by {who}")


@clusters_group.command("rename")
@click.argument("cluster_id", type=int)
@click.argument("name")
@click.option("--expected-name", default=None, metavar="OLD",
              help="The name you saw (see clusters show); refused if it was renamed since.")
@options.signer
@with_context
def clusters_rename(ctx: click.Context, cluster_id: int, name: str, expected_name: str | None,
                    who: str) -> None:
    """Rename cluster CLUSTER_ID to NAME (a name you chose is kept when its keywords change).

    \b
    Example:
      python -m pld clusters rename 17 "refund requests" --expected-name "refund, money" --as alice
    """
    from pld.pipeline.cluster import edits

    edits.rename_cluster(ctx_workspace(ctx), cluster_id, name, signed_by(ctx, who),
                         expected_name=expected_name)
    click.echo(f"cluster {cluster_id} renamed to {name.strip()!r} by {who}")


@clusters_group.command("move")
@click.argument("clustering_id", type=int)
@click.argument("rule_ids", type=int, nargs=-1, required=True)
@click.option("--to", "target", required=True, metavar="ID|noise",
              help="The cluster to move the rules to, or 'noise' to send them to noise.")
@options.signer
@with_context
def clusters_move(ctx: click.Context, clustering_id: int, rule_ids: tuple[int, ...],
                  target: str, who: str) -> None:
    """Move RULE_IDS of clustering CLUSTERING_ID to another cluster or to noise (or back from
    noise).

    \b
    Examples:
      python -m pld clusters move 3 41 42 --to 17 --as alice
      python -m pld clusters move 3 43 --to noise --as alice
    """
    from pld.pipeline.cluster import edits, read

    to = parse_cluster_ref(target, "--to")
    ws = ctx_workspace(ctx)
    read.get_clustering(ws, clustering_id)
    edits.move_rules(ws, clustering_id, rule_ids, to, signed_by(ctx, who))  # all or nothing
    where = NOISE if to is None else f"cluster {to}"
    click.echo(f"moved {len(set(rule_ids))} rule(s) to {where} as {who}")


@clusters_group.command("merge")
@click.argument("clustering_id", type=int)
@click.argument("cluster_id", type=int)
@click.argument("other_ids", type=int, nargs=-1, required=True)
@options.signer
@with_context
def clusters_merge(ctx: click.Context, clustering_id: int, cluster_id: int,
                   other_ids: tuple[int, ...], who: str) -> None:
    """Merge clusters of clustering CLUSTERING_ID into CLUSTER_ID.

    The OTHER_IDS clusters are removed and their rules join CLUSTER_ID, whose keywords are
    recomputed; a name you gave it is kept.

    \b
    Example:
      python -m pld clusters merge 3 17 18 19 --as alice
    """
    from pld.pipeline.cluster import edits, read

    ws, me = ctx_workspace(ctx), signed_by(ctx, who)
    ids = {s["id"] for s in read.cluster_summary(ws, clustering_id) if not s["noise"]}
    # Checked before the first merge, so a bad id leaves the clustering as it was.
    for cid in (cluster_id, *other_ids):
        if cid not in ids:
            raise BadInput(f"cluster {cid} is not in clustering {clustering_id}; nothing was "
                           "merged")
    if cluster_id in other_ids:
        raise BadInput(f"cannot merge cluster {cluster_id} with itself")
    others = list(dict.fromkeys(other_ids))
    for other in others:
        edits.merge_clusters(ws, clustering_id, cluster_id, other, me)
    click.echo(f"merged cluster(s) {', '.join(map(str, others))} into cluster {cluster_id} "
               f"as {who}")


@clusters_group.command("split")
@click.argument("clustering_id", type=int)
@click.argument("cluster_id", type=int)
@click.option("--k", type=int, default=2, show_default=True, help="Number of parts.")
@options.signer
@options.json_output
@with_context
def clusters_split(ctx: click.Context, clustering_id: int, cluster_id: int, k: int, who: str,
                   as_json: bool) -> None:
    """Split cluster CLUSTER_ID of clustering CLUSTERING_ID in K parts.

    k-means on the rules' stored vectors; the largest part keeps CLUSTER_ID, the others get new
    ids and fresh keywords.

    \b
    Example:
      python -m pld clusters split 3 17 --k 3 --as alice
    """
    from pld.pipeline.cluster import edits

    parts = edits.split_cluster(ctx_workspace(ctx), clustering_id, cluster_id, k,
                                who=signed_by(ctx, who))
    emit({"clustering_id": clustering_id, "cluster_id": cluster_id, "parts": parts}, as_json,
          lambda d: f"split cluster {d['cluster_id']} into clusters "
                    f"{', '.join(map(str, d['parts']))} as {who}")
