"""What the Conflicts page reads of the loop: the stop word of each iteration, and errors
grouped by the heuristic they are attributed to."""

from __future__ import annotations

from typing import Any

from pld.pipeline.resolve import view


def _h(**kw: Any) -> dict[str, Any]:
    return {"stop": None, "series_last": True, "proposed": False, "proposals_made": 0, **kw}


def test_the_stop_word_is_never_blank() -> None:
    # Before: an iteration that had not stopped showed an empty "stop" cell.
    assert view.stop_label(_h(stop="converged"), 0, 0) == "converged"
    assert view.stop_label(_h(series_last=False, proposed=True), 0, 0) == "went on"
    assert view.stop_label(_h(proposed=True, proposals_made=2), 1, 0) == "awaiting review"
    assert view.stop_label(_h(proposed=True, proposals_made=2), 0, 1) == "awaiting review"
    assert view.stop_label(_h(proposed=True, proposals_made=2), 0, 0) == \
        "ready for the next iteration"
    assert view.stop_label(_h(proposed=True), 0, 0) == "nothing kept to decide"
    assert view.stop_label(_h(), 0, 0) == "not proposed yet"


def _err(eid: int, *hids: int) -> dict[str, Any]:
    return {"example_id": eid, "heuristics": [{"id": h, "similarity": 0.5} for h in hids]}


def test_errors_by_heuristic_most_errors_first_and_unattributed_last() -> None:
    groups = view.errors_by_heuristic([_err(1, 7), _err(2, 3, 7), _err(3), _err(4, 3)])
    assert [(h and h["id"], [e["example_id"] for e in g]) for h, g in groups] == [
        (3, [2, 4]), (7, [1, 2]), (None, [3])]
