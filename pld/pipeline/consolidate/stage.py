"""Stage 3, consolidate: the teacher merges each cluster's rules into one draft heuristic.

One heuristic per cluster of the chosen clustering (an explicit id, else the accepted clustering
of the task, else the latest). Noise rules (``cluster_members.cluster_id`` NULL) are not
consolidated; reviewers see them in the cluster view.

The paper's known failure is that synthesis keeps the majority label's rule and drops the
conditions under which a minority label applies. How the rules are put to the teacher against
that, how a large cluster is merged in parts and the ``merge`` options (``all``, ``by-label``,
``medoid``) are in :mod:`~pld.pipeline.consolidate.merge`. Labels the rules lead to but the
reply does not claim to cover are reported in the summary. Every rule id stays in
``source_rule_ids`` either way.

The rules' student-verified evidence weighs in (:mod:`~pld.pipeline.consolidate.weigh`): rules
that push the student away from the gold label are left out, the rest go to the teacher best
first, and a cluster of restatements only (or of rules that all hurt) gets no heuristic; the
summary says which (``set_aside``, ``dropped_rules``).

A reply that is not the expected JSON is re-asked once with the parse error; if that fails too the
cluster is reported as failed, gets no heuristic row, and its error is kept in
``consolidate_failures``. Clusters that already have a heuristic are skipped, and so are clusters
that failed before with the same teacher (reported in ``failed_before``), so a rerun makes no LLM
call at all. ``retry_failed`` (``--retry-failed``) asks the failed ones again; a cached unusable
reply is then asked afresh rather than replayed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from pld import review
from pld.authorship import Authorship
from pld.errors import BadInput, NotReady
from pld.identity import Identity
from pld.llm import batch, calls
from pld.llm.fan_out import fan_out
from pld.llm.teacher_json import UnusableReply
from pld.pipeline.concurrency import concurrency_for
from pld.pipeline.consolidate.merge import (
    DIRECT,
    HIERARCHICAL,
    MERGES,
    Merger,
    Part,
    Rule,
    dropped_labels,
    merge_rules,
    plan,
    reply_schema,
)
from pld.pipeline.consolidate.weigh import Weighed, weigh
from pld.pipeline.estimate import Planned
from pld.pipeline.rule_evidence import restatement_ids, rule_effects
from pld.pipeline.runs import ProgressCallback, Run, stage_run
from pld.tasks.store import task_info
from pld.workspace import Workspace, now


@dataclass
class ConsolidateSummary:
    """What one consolidate run did. ``hierarchical`` lists the cluster ids done in chunks;
    ``errors`` maps failed cluster ids to the reason (this run's failures and the
    ``failed_before`` ones, which an earlier run left failed and this run did not ask again);
    ``dropped_labels`` maps cluster ids to labels their rules lead to that the heuristic does
    not claim to cover; ``set_aside`` maps the clusters that get no heuristic to why (their
    rules only restate the task, or all hurt); ``dropped_rules`` maps cluster ids to the rules
    left out of their heuristic for a negative verified effect."""

    run_id: int
    clustering_id: int
    created: int = 0
    skipped: int = 0
    failed: int = 0
    failed_before: int = 0
    hierarchical: list[int] = field(default_factory=list)
    heuristic_ids: list[int] = field(default_factory=list)
    errors: dict[int, str] = field(default_factory=dict)
    dropped_labels: dict[int, list[str]] = field(default_factory=dict)
    set_aside: dict[int, str] = field(default_factory=dict)
    dropped_rules: dict[int, list[int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (for ``--json``)."""
        return asdict(self)


@dataclass(frozen=True)
class _Context:
    """One run's merging, and where and for whom its drafts are stored."""

    merger: Merger
    clustering_id: int
    author: Identity | None = None  # who started the job: may not approve its drafts


@dataclass(frozen=True)
class _Outcome:
    cluster_id: int
    heuristic_id: int | None = None
    method: str = DIRECT
    dropped: tuple[str, ...] = ()
    error: str | None = None


def choose_clustering(ws: Workspace, task: str, clustering_id: int | None = None) -> dict[str, Any]:
    """The clustering to consolidate: ``clustering_id``, else the accepted one, else the latest."""
    if clustering_id is not None:
        rows = ws.query("SELECT * FROM clusterings WHERE id = ? AND task = ?",
                        [clustering_id, task])
        if not rows:
            raise BadInput(f"clustering {clustering_id} not found for task {task!r}")
        return rows[0]
    rows = ws.query(
        "SELECT * FROM clusterings WHERE task = ? ORDER BY (status = 'accepted') DESC, id DESC "
        "LIMIT 1", [task],
    )
    if not rows:
        raise NotReady(f"task {task!r} has no clustering; run: python -m pld cluster {task}")
    return rows[0]


def cluster_rules(ws: Workspace, clustering_id: int) -> dict[int, list[Rule]]:
    """Cluster id -> its rules (noise excluded), each with the label its example has."""
    out: dict[int, list[Rule]] = {
        r["id"]: [] for r in ws.query(
            "SELECT id FROM clusters WHERE clustering_id = ? ORDER BY label, id", [clustering_id])
    }
    for r in ws.query(
        "SELECT cm.cluster_id, mi.id, mi.rule, COALESCE(mi.label, e.label) AS label "
        "FROM cluster_members cm JOIN micro_instructions mi ON mi.id = cm.rule_id "
        "LEFT JOIN examples e ON e.id = mi.example_id "
        "WHERE cm.clustering_id = ? AND cm.cluster_id IS NOT NULL AND mi.rule IS NOT NULL "
        "ORDER BY cm.cluster_id, mi.id",
        [clustering_id],
    ):
        if r["cluster_id"] in out:
            out[r["cluster_id"]].append(Rule(r["id"], r["rule"], r["label"] or "?"))
    return out


def _done_clusters(ws: Workspace, clustering_id: int) -> set[int]:
    rows = ws.query(
        "SELECT DISTINCT cluster_id FROM heuristics WHERE clustering_id = ? "
        "AND cluster_id IS NOT NULL", [clustering_id])
    return {r["cluster_id"] for r in rows}


def _failed_clusters(ws: Workspace, clustering_id: int, teacher: str) -> dict[int, str]:
    """Cluster id -> error, for the clusters ``teacher`` failed to consolidate before."""
    rows = ws.query("SELECT cluster_id, error FROM consolidate_failures WHERE clustering_id = ? "
                    "AND teacher = ?", [clustering_id, teacher])
    return {r["cluster_id"]: r["error"] for r in rows}


def _store_failure(ctx: _Context, cluster_id: int, error: str) -> None:
    m = ctx.merger
    with m.ws.write() as db:
        db["consolidate_failures"].upsert({
            "clustering_id": ctx.clustering_id, "cluster_id": cluster_id,
            "teacher": m.teacher, "task": m.task.name, "run_id": m.run_id,
            "error": error, "created_at": now()},
            pk=("clustering_id", "cluster_id", "teacher"))


def _store(ctx: _Context, cluster_id: int, rules: list[Rule], part: Part,
           method: str) -> int | None:
    """Insert the draft and its audit row; None when another process stored one first."""
    m = ctx.merger
    with m.ws.write() as db:
        if db.execute("SELECT 1 FROM heuristics WHERE clustering_id = ? AND cluster_id = ?",
                      [ctx.clustering_id, cluster_id]).fetchone():
            return None
        # Failed before and now done (--retry-failed): the failure no longer holds.
        db.execute("DELETE FROM consolidate_failures WHERE clustering_id = ? AND cluster_id = ?",
                   [ctx.clustering_id, cluster_id])
        return review.insert_row(
            db, {"task": m.task.name, "cluster_id": cluster_id,
                 "clustering_id": ctx.clustering_id, "text": part.text,
                 "source_rule_ids": [r.id for r in rules], "origin": "consolidate",
                 "run_id": m.run_id},
            who=Identity.teacher(m.teacher),
            authorship=Authorship(Identity.teacher(m.teacher), ctx.author),
            note={"labels_covered": part.labels_covered, "method": method},
            comment=f"consolidated from {len(rules)} rules of cluster {cluster_id} "
                    f"({method}, run {m.run_id})")


def _consolidate_cluster(ctx: _Context, cluster_id: int, rules: list[Rule]) -> _Outcome:
    out = _try_cluster(ctx, cluster_id, rules)
    if out.error is not None:
        _store_failure(ctx, cluster_id, out.error)
    return out


def _try_cluster(ctx: _Context, cluster_id: int, rules: list[Rule]) -> _Outcome:
    if not rules:
        return _Outcome(cluster_id, error="cluster has no rules")
    try:
        part, method = merge_rules(ctx.merger, rules)
    except (UnusableReply, calls.CallFailed) as e:
        return _Outcome(cluster_id, error=f"{type(e).__name__}: {e}")
    hid = _store(ctx, cluster_id, rules, part, method)
    return _Outcome(cluster_id, hid, method, dropped_labels(part))


def _record(summary: ConsolidateSummary, out: _Outcome) -> None:
    if out.error is not None:
        summary.failed += 1
        summary.errors[out.cluster_id] = out.error
        return
    if out.heuristic_id is None:
        summary.skipped += 1
        return
    summary.created += 1
    summary.heuristic_ids.append(out.heuristic_id)
    if out.method == HIERARCHICAL:
        summary.hierarchical.append(out.cluster_id)
    if out.dropped:
        summary.dropped_labels[out.cluster_id] = list(out.dropped)


def _check_args(teacher: str, concurrency: int | None, max_rules_per_call: int,
                merge: str) -> int:
    """The options checked; returns the concurrency to use."""
    concurrency = concurrency_for(teacher, concurrency)
    if max_rules_per_call < 2:
        raise BadInput(f"max_rules_per_call must be at least 2, got {max_rules_per_call}")
    if merge not in MERGES:
        raise BadInput(f"--merge must be one of {', '.join(MERGES)}, got {merge!r}")
    return concurrency


def _work(ctx: _Context, todo: dict[int, list[Rule]], concurrency: int,
          summary: ConsolidateSummary, run: Run) -> None:
    """Consolidate clusters on a pool, writing each heuristic as it arrives."""
    def work(cluster_id: int) -> Any:
        return _consolidate_cluster(ctx, cluster_id, todo[cluster_id])

    # With --batch, each cluster's first calls go through the batch API first (merges of a
    # large cluster's partial heuristics depend on those replies and run synchronously).
    batch.prefetch(ctx.merger.ws, plan(ctx.merger, todo), run_id=run.id)
    for _, outcome in fan_out(work, list(todo), workers=concurrency, name="consolidate"):
        _record(summary, outcome)
        run.advance()


@dataclass(frozen=True)
class _Todo:
    """The clustering, its clusters' rules, the clusters done, those that failed before (with
    why), the rules weighed by their evidence and the clusters still to consolidate."""

    clustering: dict[str, Any]
    clusters: dict[int, list[Rule]]
    done: set[int]
    failed_before: dict[int, str]
    weighed: Weighed
    todo: dict[int, list[Rule]]


def _todo(ws: Workspace, task: str, teacher: str, clustering_id: int | None,
          retry_failed: bool) -> _Todo:
    clustering = choose_clustering(ws, task, clustering_id)
    cid = int(clustering["id"])
    clusters = cluster_rules(ws, cid)
    if not clusters:
        raise NotReady(f"clustering {cid} of task {task!r} has no clusters (all rules are noise); "
                       f"re-cluster with other parameters")
    done = _done_clusters(ws, cid) & clusters.keys()
    failed_before = {} if retry_failed else {
        k: e for k, e in _failed_clusters(ws, cid, teacher).items()
        if k in clusters and k not in done}
    weighed = weigh(clusters, rule_effects(ws, task), restatement_ids(ws, task))
    todo = {k: v for k, v in weighed.todo.items() if k not in done and k not in failed_before}
    return _Todo(clustering, clusters, done, failed_before, weighed, todo)


def planned_calls(ws: Workspace, task: str, teacher: str, *, clustering_id: int | None = None,
                  max_rules_per_call: int = 30, retry_failed: bool = False,
                  merge: str = "all") -> list[Planned]:
    """The teacher calls :func:`consolidate` would make now (for ``--estimate-only``)."""
    _check_args(teacher, None, max_rules_per_call, merge)
    info = task_info(ws, task)
    todo = _todo(ws, task, teacher, clustering_id, retry_failed).todo
    return plan(Merger(ws, info, teacher, 0, max_rules_per_call, reply_schema(info.labels),
                       merge), todo)


def consolidate(
    ws: Workspace,
    task: str,
    teacher: str,
    *,
    clustering_id: int | None = None,
    concurrency: int | None = None,
    max_rules_per_call: int = 30,
    retry_failed: bool = False,
    merge: str = "all",
    started_by: Identity | None = None,
    on_progress: ProgressCallback | None = None,
) -> ConsolidateSummary:
    """Write one draft heuristic per cluster that has none yet; return what was done.

    ``merge``: ``all`` (the teacher merges a cluster's rules in one go), ``by-label`` (each
    label's rules apart, parts joined) or ``medoid`` (each label's most central rule, joined; no
    teacher call). See the module docstring.

    Clusters this teacher failed to consolidate before stay failed (no call) unless
    ``retry_failed``. ``started_by`` is the person starting the job: the drafts count as
    theirs for four-eyes, so someone else must approve them.

    Raises :class:`BadInput` for a bad teacher string or clustering id, and :class:`NotReady`
    when the task has no clustering or the clustering has no clusters.
    """
    concurrency = _check_args(teacher, concurrency, max_rules_per_call, merge)
    info = task_info(ws, task)
    t = _todo(ws, task, teacher, clustering_id, retry_failed)
    clustering, done, failed_before = t.clustering, t.done, t.failed_before
    # Clusters set aside by their evidence are finished: they get no heuristic.
    aside = {k: v for k, v in t.weighed.set_aside.items() if k not in done}
    cid = int(clustering["id"])
    params = {"teacher": teacher, "clustering_id": cid, "concurrency": concurrency,
              "max_rules_per_call": max_rules_per_call, "large_clusters": HIERARCHICAL,
              "retry_failed": retry_failed, "merge": merge}
    with stage_run(ws, task, "consolidate", params, on_progress,
                   started_by=started_by) as run:
        summary = ConsolidateSummary(run.id, cid, skipped=len(done),
                                     failed_before=len(failed_before), errors=failed_before,
                                     set_aside=aside,
                                     dropped_rules={k: v for k, v in t.weighed.dropped.items()
                                                    if k in t.todo})
        run.set_total(len(t.clusters), done=len(done) + len(failed_before) + len(aside))
        merger = Merger(ws, info, teacher, run.id, max_rules_per_call,
                        reply_schema(info.labels), merge, clustering.get("embed_model") or "")
        ctx = _Context(merger, cid, started_by)
        _work(ctx, t.todo, concurrency, summary, run)
    summary.heuristic_ids.sort()
    summary.hierarchical.sort()
    return summary
