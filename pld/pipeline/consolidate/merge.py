"""How consolidate turns one cluster's rules into the text of one heuristic.

The teacher sees the rules grouped under the label each leads to, with the label counts and the
minority labels named, and the template (``pld/prompts/consolidate.md``) tells it to keep every
label and edge case explicit; its reply names the labels it claims to cover.

A cluster with more than ``max_rules`` rules is consolidated hierarchically: balanced chunks of
rules (grouped by label, so a minority label's rules stay together) are consolidated into partial
heuristics, which are merged again, in groups of at most ``max_rules``, until one call merges the
rest.

``merge`` chooses how a cluster's rules become one heuristic:

* ``all`` (default, the paper's method): the teacher merges all of them in one go, as above.
* ``by-label``: the teacher merges each label's rules on its own and the parts are joined as
  they are, so a label cannot be dropped.
* ``medoid``: no teacher call. Of each label's rules in the cluster, the most central one (the
  closest to the group's mean embedding) is kept, and those are joined. For a teacher too weak
  to generalise many rules into one (a small local model tends to copy one odd rule), the most
  typical rule it wrote is often the better summary.

:func:`plan` lists the calls a merge makes, for ``--estimate-only`` and ``--batch``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pld.llm import budget, calls
from pld.llm.json_reply import loads_reply
from pld.llm.teacher_json import ask_json
from pld.pipeline.embed import load_vectors
from pld.pipeline.estimate import TYPICAL_OUTPUT, Planned
from pld.prompts import render
from pld.tasks.store import TaskInfo
from pld.workspace import Workspace

MAX_TOKENS = 1024
DIRECT, HIERARCHICAL, BY_LABEL, MEDOID = "direct", "hierarchical", "by-label", "medoid"
MERGES = ("all", BY_LABEL, MEDOID)
RULES_KIND = "rules (micro-instructions), each written by a teacher for one training example"
PARTS_KIND = "partial heuristics, each consolidated from a part of the cluster's rules"


class ReplyError(ValueError):
    """The teacher's reply is not the JSON object the prompt asks for."""


@dataclass(frozen=True)
class Rule:
    """One micro-instruction of a cluster, the label it leads to and its verified effect (the
    shift of the gold label's calibrated probability it gives the student; None: not verified)."""

    id: int
    text: str
    label: str
    effect: float | None = None


@dataclass(frozen=True)
class Part:
    """A (partial) heuristic and the label counts of the rules behind it."""

    text: str
    labels_covered: list[str]
    counts: Counter[str]



@dataclass(frozen=True)
class Merger:
    """How one run merges clusters: its workspace, task, teacher and options."""

    ws: Workspace
    task: TaskInfo
    teacher: str
    run_id: int
    max_rules: int
    schema: dict[str, Any]
    merge: str = "all"
    embed_model: str = ""


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


def _ask(ctx: Merger, prompt: str) -> tuple[str, list[str]]:
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


def _prompt(ctx: Merger, items: str, n_items: int, source_kind: str,
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


def _from_rules(ctx: Merger, rules: Sequence[Rule]) -> Part:
    counts = Counter(r.label for r in rules)
    prompt = _prompt(ctx, _rules_text(rules), len(rules), RULES_KIND, counts)
    return Part(*_ask(ctx, prompt), counts)


def _from_parts(ctx: Merger, parts: Sequence[Part]) -> Part:
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


def _reduce(ctx: Merger, rules: list[Rule]) -> tuple[Part, str]:
    if len(rules) <= ctx.max_rules:
        return _from_rules(ctx, rules), DIRECT
    counts = Counter(r.label for r in rules)
    # Same-label rules side by side: a minority label's rules land in one chunk, not one per chunk.
    # Within a label the rules keep their order (best verified first, see consolidate.weigh).
    by_label = sorted(rules, key=lambda r: (-counts[r.label], r.label))
    parts = [_from_rules(ctx, chunk) for chunk in chunks(by_label, ctx.max_rules)]
    while len(parts) > ctx.max_rules:
        # A group of one partial needs no call: it goes up a level as it is.
        parts = [group[0] if len(group) == 1 else _from_parts(ctx, group)
                 for group in chunks(parts, ctx.max_rules)]
    return _from_parts(ctx, parts), HIERARCHICAL


def _reduce_by_label(ctx: Merger, rules: list[Rule]) -> tuple[Part, str]:
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


def _medoids(ctx: Merger, rules: list[Rule]) -> tuple[Part, str]:
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


def dropped_labels(part: Part) -> tuple[str, ...]:
    """The labels of the rules behind ``part`` that its text does not claim to cover."""
    covered = {lab.strip().lower() for lab in part.labels_covered}
    return tuple(lab for lab in _ordered_labels(part.counts) if lab.lower() not in covered)


def merge_rules(ctx: Merger, rules: list[Rule]) -> tuple[Part, str]:
    """One cluster's rules merged as ``ctx.merge`` says, and how (:data:`DIRECT`,
    :data:`HIERARCHICAL`, :data:`BY_LABEL` or :data:`MEDOID`)."""
    merge = {"all": _reduce, BY_LABEL: _reduce_by_label, MEDOID: _medoids}[ctx.merge]
    return merge(ctx, rules)


def _plan_reduce(ctx: Merger, rules: list[Rule]) -> list[Planned]:
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
    by_label = sorted(rules, key=lambda r: (-counts[r.label], r.label))
    planned = [from_rules(chunk) for chunk in chunks(by_label, ctx.max_rules)]
    frame = budget.text_tokens(None, [{"content": _prompt(ctx, "", 0, PARTS_KIND, counts)}])
    typical = TYPICAL_OUTPUT["consolidate"]
    parts = len(planned)
    while parts > ctx.max_rules:
        groups = chunks(range(parts), ctx.max_rules)
        planned += [ask("", frame + len(g) * typical) for g in groups if len(g) > 1]
        parts = len(groups)
    return [*planned, ask("", frame + parts * typical)]

def plan(ctx: Merger, todo: dict[int, list[Rule]]) -> list[Planned]:
    """The teacher calls that merging the rules of the clusters ``todo`` makes."""
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
