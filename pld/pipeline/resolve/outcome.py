"""What the conflict loop's outcome means for the prompt. When the loop removed every heuristic
and the prompt without rules scored best on validation, no heuristic helped: the best prompt is
the zero-shot baseline, which is not exported. ``run``, the Conflicts page and the Export page
say so in the same words (:func:`no_heuristic_helped`), as an outcome, not an error.
"""

from __future__ import annotations

from pld.errors import BadInput
from pld.pipeline.resolve.state import iteration_records
from pld.pipeline.student import get_prompt
from pld.workspace import Workspace


def no_heuristic_helped(ws: Workspace, task: str, student: str | None = None) -> str | None:
    """The plain statement when the best version of ``task``'s latest conflict loop (of
    ``student``'s, when given) holds no heuristic; None otherwise, or when no loop ran."""
    recs = [r for r in iteration_records(ws, task) if student is None or r["student"] == student]
    if not recs:
        return None
    latest = max(recs, key=lambda r: r["evaluation_id"])
    if latest.get("best_version") is None:
        return None
    try:
        best = get_prompt(ws, task, latest["best_version"])
    except BadInput:  # deleted since
        return None
    if best.heuristic_ids:
        return None
    scored = next((r for r in recs if r["iteration"] == latest.get("best_iteration")), latest)
    return (f"No heuristic helped on validation: the best prompt is the zero-shot baseline "
            f"(macro-F1 {latest['best_macro_f1']:.3f} on {scored['n']} validation items, "
            f"{scored['metric']} answers), so there is nothing to export.")
