"""Deciding on evidence, not noise: the paired-bootstrap 95% interval of a macro-F1 difference on
the same validation items, and what the conflict loop may do on its own with it.

On a few dozen validation items one answer moves macro-F1 by several points, so a difference is
only acted on when its interval excludes zero. Each comparison reads as one *verdict*:
``better`` (the interval lies above zero), ``worse`` (below) or ``not distinguishable``. An
automatic change (adopting or reverting a version, accepting a measured removal under
``--auto-accept-as``) is made only on ``better`` or ``worse``; otherwise the loop says the
difference is not distinguishable, leaves the approved heuristics as people approved them, and
keeps the interval beside the iteration or the proposal for people to decide.
"""

from __future__ import annotations

from typing import Any

from pld.metrics import paired_delta
from pld.pipeline.resolve.state import basis_predictions
from pld.workspace import Workspace

BETTER, WORSE, NOT_DISTINGUISHABLE = "better", "worse", "not distinguishable"
N_BOOT = 1000


def verdict(ci: list[float] | None) -> str:
    """``better``/``worse`` when the interval ``ci`` excludes zero, else
    ``not distinguishable`` (also without an interval)."""
    if ci is None:
        return NOT_DISTINGUISHABLE
    lo, hi = ci
    if lo > 0:
        return BETTER
    if hi < 0:
        return WORSE
    return NOT_DISTINGUISHABLE


def adopts(found: str, *, automatic: bool) -> bool:
    """Whether the loop adopts a version whose comparison with the best reads ``found``.

    A clear gain is adopted and a clear loss is not. A difference the interval cannot tell from
    zero decides nothing by itself: a version people made (they accepted the proposals and
    approved the drafts) stands as they approved it, and a version the loop made by its own
    automatic decisions is not adopted (its changes are undone, back to what was approved).
    """
    if found == BETTER:
        return True
    if found == WORSE:
        return False
    return not automatic


def versus_best(ws: Workspace, task: str, labels: list[str], example_ids: list[int],
                gold: list[str], answers: list[str | None], basis_of_best: dict[str, Any],
                *, seed: int = 0) -> dict[str, Any]:
    """This version's ``answers`` against the best version's (its basis run, calibrated as
    that iteration was scored) on the validation items both answered: ``delta`` (this − best
    macro-F1), ``ci``, ``n`` and ``verdict``."""
    best = {r["example_id"]: r["predicted"] for r in basis_predictions(ws, task, basis_of_best)}
    keep = [i for i, e in enumerate(example_ids) if e in best]
    if not keep:
        return {"delta": None, "ci": None, "n": 0, "verdict": NOT_DISTINGUISHABLE}
    d = paired_delta([gold[i] for i in keep], [answers[i] for i in keep],
                     [best[example_ids[i]] for i in keep], labels, n_boot=N_BOOT, seed=seed)
    return {"delta": d["delta"], "ci": d["ci"], "n": len(keep), "verdict": verdict(d["ci"])}


def removal_evidence(report: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    """What removing heuristic ``item`` of an impact ``report`` does to validation macro-F1:
    ``change`` (without − with), its paired ``ci``, ``n``, the ``metric`` read and the
    ``verdict``."""
    ci = None if not item["ci"] else [-item["ci"][1], -item["ci"][0]]
    return {"change": -item["effect"], "ci": ci, "n": report["n_val"],
            "metric": report["metric"], "verdict": verdict(ci)}


def ci_words(delta: float | None, ci: list[float] | None, n: int) -> str:
    """``+0.036, paired 95% CI [-0.050, +0.120] on 40 validation items: not distinguishable
    from zero`` (the verdict in words)."""
    if delta is None or ci is None:
        return "no paired interval (no validation item in common)"
    found = verdict(ci)
    tail = {BETTER: "above zero", WORSE: "below zero",
            NOT_DISTINGUISHABLE: "not distinguishable from zero"}[found]
    return (f"{delta:+.3f}, paired 95% CI [{ci[0]:+.3f}, {ci[1]:+.3f}] on {n} validation "
            f"items: {tail}")


def measured_words(measured: dict[str, Any]) -> str:
    """A measured removal's evidence in a sentence, saying who decides."""
    words = (f"Measured: removing it changes validation macro-F1 by "
             f"{ci_words(measured.get('change'), measured.get('ci'), measured.get('n') or 0)}")
    if measured.get("verdict") == BETTER:
        return words + "."
    return words + "; the loop does not remove it by itself: people decide."


def comparison_words(h: dict[str, Any]) -> str | None:
    """How iteration ``h``'s version compared with the best version before it, and what the
    loop did about it; None for an iteration with no comparison (the first of a loop, or the
    best version itself evaluated again)."""
    c = h.get("comparison")
    if not c:
        return None
    words = (f"Iteration {h['iteration']} against the best version before it: macro-F1 "
             f"{ci_words(c.get('delta'), c.get('ci'), c.get('n') or 0)}")
    if c.get("verdict") != NOT_DISTINGUISHABLE:
        return words + (", adopted." if h.get("adopted") else ", reverted.")
    if h.get("adopted"):
        return words + ", so the loop kept the heuristics as people approved them."
    return words + ", so the loop undid its own automatic changes (back to what was approved)."
