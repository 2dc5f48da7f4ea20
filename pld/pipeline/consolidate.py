"""Stage 3, consolidate: the teacher merges each cluster's rules into one draft heuristic.

One heuristic per cluster of the chosen clustering (an explicit id, else the accepted clustering
of the task, else the latest). Noise rules (``cluster_members.cluster_id`` NULL) are not
consolidated; reviewers see them in the cluster view.

The paper's known failure is that synthesis keeps the majority label's rule and drops the
conditions under which a minority label applies. So the teacher sees the rules grouped under the
label each leads to, with the label counts and the minority labels named, and the template
(``pld/prompts/consolidate.md``) tells it to keep every label and edge case explicit. Labels the
rules lead to but the reply does not claim to cover are reported in the summary.

A cluster with more than ``max_rules_per_call`` rules is consolidated hierarchically: balanced
chunks of rules (grouped by label, so a minority label's rules stay together) are consolidated
into partial heuristics, which are merged again, in groups of at most ``max_rules_per_call``,
until one call merges the rest. Every rule id stays in ``source_rule_ids`` either way.

``merge`` chooses how a cluster's rules become one heuristic:

* ``all`` (default, the paper's method): the teacher merges all of them in one go, as above.
* ``by-label``: the teacher merges each label's rules on its own and the parts are joined as
  they are, so a label cannot be dropped.
* ``medoid``: no teacher call. Of each label's rules in the cluster, the most central one (the
  closest to the group's mean embedding) is kept, and those are joined. For a teacher too weak
  to generalise many rules into one (a small local model tends to copy one odd rule), the most
  typical rule it wrote is often the better summary.

A reply that is not the expected JSON is re-asked once with the parse error; if that fails too the
cluster is reported as failed, gets no heuristic row, and its error is kept in
``consolidate_failures``. Clusters that already have a heuristic are skipped, and so are clusters
that failed before with the same teacher (reported in ``failed_before``), so a rerun makes no LLM
call at all. ``retry_failed`` (``--retry-failed``) asks the failed ones again; a cached unusable
reply is then asked afresh rather than replayed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from pld import review
from pld.errors import BadInput, NotReady
from pld.llm import batch, budget, calls
from pld.llm.base import ConfigError
from pld.llm.fan_out import fan_out
from pld.llm.json_reply import loads_reply
from pld.llm.registry import default_concurrency, parse_model
from pld.llm.teacher_json import UnusableReply, ask_json
from pld.pipeline.embed import load_vectors
from pld.pipeline.estimate import TYPICAL_OUTPUT, Planned
from pld.pipeline.runs import ProgressCallback, Run, stage_run
from pld.prompts import render
from pld.tasks.store import TaskInfo, task_info
from pld.workspace import Workspace, now

MAX_TOKENS = 1024
DIRECT, HIERARCHICAL, BY_LABEL, MEDOID = "direct", "hierarchical", "by-label", "medoid"
MERGES = ("all", BY_LABEL, MEDOID)
RULES_KIND = "rules (micro-instructions), each written by a teacher for one training example"
PARTS_KIND = "partial heuristics, each consolidated from a part of the cluster's rules"


class ReplyError(ValueError):
    """The teacher's reply is not the JSON object the prompt asks for."""


@dataclass(frozen=True)
class Rule:
    """One micro-instruction of a cluster and the label it leads to."""

    id: int
    text: str
    label: str


@dataclass(frozen=True)
class Part:
    """A (partial) heuristic and the label counts of the rules behind it."""

    text: str
    labels_covered: list[str]
    counts: Counter[str]


@dataclass
class ConsolidateSummary:
    """What one consolidate run did. ``hierarchical`` lists the cluster ids done in chunks;
    ``errors`` maps failed cluster ids to the reason (this run's failures and the
    ``failed_before`` ones, which an earlier run left failed and this run did not ask again);
    ``dropped_labels`` maps cluster ids to labels their rules lead to that the heuristic does
    not claim to cover."""

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

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (for ``--json``)."""
        return asdict(self)


@dataclass(frozen=True)
class _Context:
    ws: Workspace
    task: TaskInfo
    teacher: str
    run_id: int
    clustering_id: int
    max_rules: int
    schema: dict[str, Any]
    merge: str = "all"
    embed_model: str = ""
    author: str | None = None  # the person who started the job: counts as the drafts' author


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
    with ctx.ws.write() as db:
        db["consolidate_failures"].upsert({
            "clustering_id": ctx.clustering_id, "cluster_id": cluster_id,
            "teacher": ctx.teacher, "task": ctx.task.name, "run_id": ctx.run_id,
            "error": error, "created_at": now()},
            pk=("clustering_id", "cluster_id", "teacher"))


def reply_schema(labels: Sequence[str]) -> dict[str, Any]:
    """JSON schema of the teacher's reply (constrains decoding where the backend can)."""
    return {
        "type": "object",
        "properties": {
            "heuristic": {"type": "string"},
            "labels_covered": {"type": "array", "items": {"type": "string", "enum": list(labels)}},
        },
        "required": ["heuristic", "labels_covered"],
        "additionalProperties": False,
    }


def parse_reply(text: str) -> tuple[str, list[str]]:
    """``(heuristic, labels_covered)`` from a reply; :class:`ReplyError` naming what is wrong."""
    try:
        data = loads_reply(text)
    except ValueError as e:
        raise ReplyError(str(e)) from e
    if not isinstance(data, dict):
        raise ReplyError("expected a JSON object")
    heuristic = data.get("heuristic")
    if not isinstance(heuristic, str) or not heuristic.strip():
        raise ReplyError('"heuristic" must be a non-empty string')
    labels = data.get("labels_covered")
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise ReplyError('"labels_covered" must be a list of label strings')
    return heuristic.strip(), labels


def _ask(ctx: _Context, prompt: str) -> tuple[str, list[str]]:
    parsed, _ = ask_json(ctx.ws, ctx.teacher, prompt, parse_reply, schema=ctx.schema,
                         max_tokens=MAX_TOKENS, stage="consolidate", run_id=ctx.run_id,
                         shape_hint=' {"heuristic": "...", "labels_covered": [...]}')
    return parsed


def _ordered_labels(counts: Counter[str]) -> list[str]:
    return sorted(counts, key=lambda lab: (-counts[lab], lab))


def _counts_text(counts: Counter[str]) -> str:
    return ", ".join(f"{lab}: {counts[lab]}" for lab in _ordered_labels(counts))


def _minority_note(counts: Counter[str]) -> str:
    top = max(counts.values())
    minority = [lab for lab in _ordered_labels(counts) if counts[lab] < top]
    if not minority:
        return ""
    named = ", ".join(f"{lab} ({counts[lab]})" for lab in minority)
    return (f"Minority labels, whose conditions must stay explicit in the heuristic: {named}.")


def _rules_text(rules: Sequence[Rule]) -> str:
    counts = Counter(r.label for r in rules)
    top = max(counts.values())
    blocks = []
    for lab in _ordered_labels(counts):
        tag = ", minority label" if counts[lab] < top else ""
        lines = [f'Rules leading to "{lab}" ({counts[lab]} of {len(rules)} rules{tag}):']
        lines += [f"- [rule {r.id}] {r.text}" for r in rules if r.label == lab]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _parts_text(parts: Sequence[Part]) -> str:
    return "\n\n".join(
        f"Partial heuristic {i} (from {sum(p.counts.values())} rules: {_counts_text(p.counts)}; "
        f"covers: {', '.join(p.labels_covered) or 'no label named'}):\n{p.text}"
        for i, p in enumerate(parts, 1)
    )


def _prompt(ctx: _Context, items: str, n_items: int, source_kind: str,
            counts: Counter[str]) -> str:
    return render(
        "consolidate", task=ctx.task.name, description=ctx.task.description,
        labels=", ".join(ctx.task.labels), n_items=n_items, source_kind=source_kind,
        label_counts=_counts_text(counts), minority_note=_minority_note(counts), items=items,
        shape_note=shape_note(ctx.task.shape),
    )


def shape_note(shape: str) -> str:
    """What a heuristic must respect for tasks of this shape (``pld/prompts/shape_note_*.md``;
    none for single-text tasks)."""
    if shape == "single":
        return ""
    return render(f"shape_note_{shape.replace('-', '_')}").strip()


def _from_rules(ctx: _Context, rules: Sequence[Rule]) -> Part:
    counts = Counter(r.label for r in rules)
    prompt = _prompt(ctx, _rules_text(rules), len(rules), RULES_KIND, counts)
    return Part(*_ask(ctx, prompt), counts)


def _from_parts(ctx: _Context, parts: Sequence[Part]) -> Part:
    counts: Counter[str] = sum((p.counts for p in parts), Counter())
    prompt = _prompt(ctx, _parts_text(parts), len(parts), PARTS_KIND, counts)
    return Part(*_ask(ctx, prompt), counts)


def chunks(items: Sequence[Any], size: int) -> list[list[Any]]:
    """``items`` cut into the fewest contiguous chunks of at most ``size``, sizes balanced."""
    n = -(-len(items) // size)
    base, extra = divmod(len(items), n)
    out, start = [], 0
    for i in range(n):
        end = start + base + (1 if i < extra else 0)
        out.append(list(items[start:end]))
        start = end
    return out


def _reduce(ctx: _Context, rules: list[Rule]) -> tuple[Part, str]:
    if len(rules) <= ctx.max_rules:
        return _from_rules(ctx, rules), DIRECT
    counts = Counter(r.label for r in rules)
    # Same-label rules side by side: a minority label's rules land in one chunk, not one per chunk.
    by_label = sorted(rules, key=lambda r: (-counts[r.label], r.label, r.id))
    parts = [_from_rules(ctx, chunk) for chunk in chunks(by_label, ctx.max_rules)]
    while len(parts) > ctx.max_rules:
        # A group of one partial needs no call: it goes up a level as it is.
        parts = [group[0] if len(group) == 1 else _from_parts(ctx, group)
                 for group in chunks(parts, ctx.max_rules)]
    return _from_parts(ctx, parts), HIERARCHICAL


def _reduce_by_label(ctx: _Context, rules: list[Rule]) -> tuple[Part, str]:
    """Each label's rules merged on their own, the results joined without another call.

    A weak teacher asked to merge rules of several labels tends to keep the majority's and drop
    the rest (the paper's known failure, seen here with a 1.5B teacher). Merging same-label rules
    is an easier task, and joining the parts mechanically means no label can be lost.
    """
    counts = Counter(r.label for r in rules)
    if len(counts) == 1 and len(rules) > 1:
        return _reduce(ctx, rules)
    texts = []
    for lab in _ordered_labels(counts):
        group = [r for r in rules if r.label == lab]
        # A single rule already is a heuristic for its label: no call needed.
        texts.append(group[0].text if len(group) == 1 else _reduce(ctx, group)[0].text)
    return Part(" ".join(texts), _ordered_labels(counts), counts), BY_LABEL


def _medoids(ctx: _Context, rules: list[Rule]) -> tuple[Part, str]:
    """Each label's most central rule (cosine to the group's mean embedding), joined."""
    counts = Counter(r.label for r in rules)
    texts = []
    for lab in _ordered_labels(counts):
        group = [r for r in rules if r.label == lab]
        vectors = load_vectors(ctx.ws, [r.id for r in group], ctx.embed_model)
        centre = vectors.mean(axis=0)
        # Ties go to the lowest rule id: the same rules always give the same heuristic.
        texts.append(group[int(np.argmax(vectors @ centre))].text)
    return Part(" ".join(texts), _ordered_labels(counts), counts), MEDOID


def _dropped(part: Part) -> tuple[str, ...]:
    covered = {lab.strip().lower() for lab in part.labels_covered}
    return tuple(lab for lab in _ordered_labels(part.counts) if lab.lower() not in covered)


def _store(ctx: _Context, cluster_id: int, rules: list[Rule], part: Part,
           method: str) -> int | None:
    """Insert the draft and its audit row; None when another process stored one first."""
    who = review.TEACHER_PREFIX + ctx.teacher
    with ctx.ws.write() as db:
        if db.execute("SELECT 1 FROM heuristics WHERE clustering_id = ? AND cluster_id = ?",
                      [ctx.clustering_id, cluster_id]).fetchone():
            return None
        # Failed before and now done (--retry-failed): the failure no longer holds.
        db.execute("DELETE FROM consolidate_failures WHERE clustering_id = ? AND cluster_id = ?",
                   [ctx.clustering_id, cluster_id])
        return review.insert_row(
            db, {"task": ctx.task.name, "cluster_id": cluster_id,
                 "clustering_id": ctx.clustering_id, "text": part.text,
                 "source_rule_ids": [r.id for r in rules], "origin": "consolidate",
                 "run_id": ctx.run_id},
            who=who, identity_kind=review.AUTO, author=ctx.author,
            note={"labels_covered": part.labels_covered, "method": method},
            comment=f"consolidated from {len(rules)} rules of cluster {cluster_id} "
                    f"({method}, run {ctx.run_id})")


def _consolidate_cluster(ctx: _Context, cluster_id: int, rules: list[Rule]) -> _Outcome:
    out = _try_cluster(ctx, cluster_id, rules)
    if out.error is not None:
        _store_failure(ctx, cluster_id, out.error)
    return out


def _try_cluster(ctx: _Context, cluster_id: int, rules: list[Rule]) -> _Outcome:
    if not rules:
        return _Outcome(cluster_id, error="cluster has no rules")
    try:
        reduce = {"all": _reduce, BY_LABEL: _reduce_by_label, MEDOID: _medoids}[ctx.merge]
        part, method = reduce(ctx, rules)
    except (UnusableReply, calls.CallFailed) as e:
        return _Outcome(cluster_id, error=f"{type(e).__name__}: {e}")
    hid = _store(ctx, cluster_id, rules, part, method)
    return _Outcome(cluster_id, hid, method, _dropped(part))


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


def _check_args(teacher: str, concurrency: int | None, max_rules_per_call: int) -> int:
    try:
        if concurrency is None:
            concurrency = default_concurrency(teacher)
        else:
            parse_model(teacher)
    except ConfigError as e:
        raise BadInput(str(e)) from e
    if concurrency < 1:
        raise BadInput(f"--concurrency must be at least 1, got {concurrency}")
    if max_rules_per_call < 2:
        raise BadInput(f"max_rules_per_call must be at least 2, got {max_rules_per_call}")
    return concurrency


def _work(ctx: _Context, todo: dict[int, list[Rule]], concurrency: int,
          summary: ConsolidateSummary, run: Run) -> None:
    """Consolidate clusters on a pool, writing each heuristic as it arrives."""
    def work(cluster_id: int) -> Any:
        return _consolidate_cluster(ctx, cluster_id, todo[cluster_id])

    # With --batch, each cluster's first calls go through the batch API first (merges of a
    # large cluster's partial heuristics depend on those replies and run synchronously).
    batch.prefetch(ctx.ws, _plan(ctx, todo), run_id=run.id)
    for _, outcome in fan_out(work, list(todo), workers=concurrency, name="consolidate"):
        _record(summary, outcome)
        run.advance()


def _todo(ws: Workspace, task: str, teacher: str, clustering_id: int | None,
          retry_failed: bool) -> tuple[dict[str, Any], dict[int, list[Rule]], set[int],
                                       dict[int, str], dict[int, list[Rule]]]:
    """The clustering, its clusters' rules, the clusters done, those that failed before (with
    why) and those still to consolidate."""
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
    todo = {k: v for k, v in clusters.items() if k not in done and k not in failed_before}
    return clustering, clusters, done, failed_before, todo


def _plan_reduce(ctx: _Context, rules: list[Rule]) -> list[Planned]:
    """The calls :func:`_reduce` makes for ``rules``. Merges of partial heuristics depend on
    replies not made yet: their input is the template plus typical partial heuristics."""
    params = calls.call_params(max_tokens=MAX_TOKENS, json_schema=ctx.schema)

    def ask(prompt: str, input_tokens: int | None = None) -> Planned:
        return Planned(ctx.teacher, "consolidate", None, [{"role": "user", "content": prompt}],
                       params, input_tokens=input_tokens)

    def from_rules(group: Sequence[Rule]) -> Planned:
        counts = Counter(r.label for r in group)
        return ask(_prompt(ctx, _rules_text(group), len(group), RULES_KIND, counts))

    if len(rules) <= ctx.max_rules:
        return [from_rules(rules)]
    counts = Counter(r.label for r in rules)
    by_label = sorted(rules, key=lambda r: (-counts[r.label], r.label, r.id))
    planned = [from_rules(chunk) for chunk in chunks(by_label, ctx.max_rules)]
    frame = budget.text_tokens(None, [{"content": _prompt(ctx, "", 0, PARTS_KIND, counts)}])
    typical = TYPICAL_OUTPUT["consolidate"]
    parts = len(planned)
    while parts > ctx.max_rules:
        groups = chunks(range(parts), ctx.max_rules)
        planned += [ask("", frame + len(g) * typical) for g in groups if len(g) > 1]
        parts = len(groups)
    return [*planned, ask("", frame + parts * typical)]


def planned_calls(ws: Workspace, task: str, teacher: str, *, clustering_id: int | None = None,
                  max_rules_per_call: int = 30, retry_failed: bool = False,
                  merge: str = "all") -> list[Planned]:
    """The teacher calls :func:`consolidate` would make now (for ``--estimate-only``)."""
    _check_args(teacher, None, max_rules_per_call)
    if merge not in MERGES:
        raise BadInput(f"--merge must be one of {', '.join(MERGES)}, got {merge!r}")
    info = task_info(ws, task)
    clustering, _clusters, _done, _failed, todo = _todo(ws, task, teacher, clustering_id,
                                                        retry_failed)
    ctx = _Context(ws, info, teacher, 0, int(clustering["id"]), max_rules_per_call,
                   reply_schema(info.labels), merge)
    return _plan(ctx, todo)


def _plan(ctx: _Context, todo: dict[int, list[Rule]]) -> list[Planned]:
    """The teacher calls that consolidating the clusters ``todo`` makes."""
    planned: list[Planned] = []
    for rules in todo.values():
        counts = Counter(r.label for r in rules)
        if ctx.merge == MEDOID or not rules:
            continue
        if ctx.merge == BY_LABEL and not (len(counts) == 1 and len(rules) > 1):
            for lab in _ordered_labels(counts):
                group = [r for r in rules if r.label == lab]
                if len(group) > 1:
                    planned += _plan_reduce(ctx, group)
        else:
            planned += _plan_reduce(ctx, rules)
    return planned


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
    started_by: str | None = None,
    identity_kind: str = review.SELF_DECLARED,
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
    concurrency = _check_args(teacher, concurrency, max_rules_per_call)
    if started_by is not None:
        started_by = review.check_actor(started_by, identity_kind)
    if merge not in MERGES:
        raise BadInput(f"--merge must be one of {', '.join(MERGES)}, got {merge!r}")
    info = task_info(ws, task)
    clustering, clusters, done, failed_before, todo = _todo(ws, task, teacher, clustering_id,
                                                            retry_failed)
    cid = int(clustering["id"])
    params = {"teacher": teacher, "clustering_id": cid, "concurrency": concurrency,
              "max_rules_per_call": max_rules_per_call, "large_clusters": HIERARCHICAL,
              "retry_failed": retry_failed, "merge": merge}
    with stage_run(ws, task, "consolidate", params, on_progress, started_by=started_by,
                   started_by_kind=identity_kind) as run:
        summary = ConsolidateSummary(run.id, cid, skipped=len(done),
                                     failed_before=len(failed_before), errors=failed_before)
        run.set_total(len(clusters), done=len(done) + len(failed_before))
        ctx = _Context(ws, info, teacher, run.id, cid, max_rules_per_call,
                       reply_schema(info.labels), merge, clustering.get("embed_model") or "",
                       started_by)
        _work(ctx, todo, concurrency, summary, run)
    summary.heuristic_ids.sort()
    summary.hierarchical.sort()
    return summary
