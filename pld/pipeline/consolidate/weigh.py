"""Which rules of each cluster consolidation takes, in what order, from the rules' evidence.

Student-verified evidence (:mod:`pld.pipeline.rule_evidence`): each rule tried alone in the
student's prompt moves the gold label's calibrated probability by its *effect* (above zero it
helps). A rule with a negative effect pushes the student away from the gold label, so it is left
out of its cluster's heuristic; the others go to the teacher best first (rules without evidence
after those with it, in id order). A cluster whose rules are all restatements of the task
description or of a label's name carries nothing the student does not have already: it gets no
heuristic, and neither does a cluster whose every rule was left out. Rules never verified change
nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from pld.pipeline.consolidate.merge import Rule

RESTATEMENTS_ONLY = "every rule restates the task description or a label's name"
ALL_HURT = "every rule's verified effect is negative (it moves the student away from gold)"


@dataclass(frozen=True)
class Weighed:
    """The clusters to consolidate with their rules in order (``todo``), the clusters that get
    no heuristic and why (``set_aside``), and the rules left out of each cluster (``dropped``)."""

    todo: dict[int, list[Rule]] = field(default_factory=dict)
    set_aside: dict[int, str] = field(default_factory=dict)
    dropped: dict[int, list[int]] = field(default_factory=dict)


def _order(rule: Rule) -> tuple[int, float, int]:
    # Verified rules first, the most helpful first; the rest by id.
    return (rule.effect is None, -(rule.effect or 0.0), rule.id)


def weigh(clusters: dict[int, list[Rule]], effects: dict[int, float],
          restatements: set[int]) -> Weighed:
    """Each cluster's rules as consolidation takes them (see the module docstring)."""
    out = Weighed()
    for cid, rules in clusters.items():
        if rules and all(r.id in restatements for r in rules):
            out.set_aside[cid] = RESTATEMENTS_ONLY
            continue
        scored = [replace(r, effect=effects.get(r.id)) for r in rules]
        hurt = [r.id for r in scored if r.effect is not None and r.effect < 0]
        kept = sorted((r for r in scored if r.id not in hurt), key=_order)
        if hurt:
            out.dropped[cid] = hurt
        if rules and not kept:
            out.set_aside[cid] = ALL_HURT
            continue
        out.todo[cid] = kept
    return out
