"""What the Conflicts page and ``review proposals`` show of the conflict loop: each
iteration's score and proposals, the errors they address, the proposals with their evidence.
"""

from __future__ import annotations

from typing import Any

from pld import review
from pld.errors import BadInput
from pld.pipeline.resolve.state import (
    ACCEPTED,
    ADD,
    INDISTINCT,
    PENDING,
    PROPOSAL_STATUSES,
    REJECTED,
    basis_predictions,
    decision_of,
    examples_by_id,
    iteration_record,
    iteration_records,
    proposal_rows,
)
from pld.workspace import Workspace, dumps, loads


def iteration_history(ws: Workspace, task: str) -> list[dict[str, Any]]:
    """One dict per iteration of ``task``, oldest first: iteration, prompt_version, macro_f1
    (validation, on ``metric`` answers: calibrated when the student could be calibrated, what
    adoption compares), raw_macro_f1, accuracy, n, n_errors, proposals_made / proposals_accepted /
    proposals_rejected / proposals_pending, adopted, best_version after it, delta (against the
    best before it), basis_version (the version whose errors the proposals address), stop,
    failed_groups (heuristic id -> error of each teacher call that failed), reverted_to_draft
    and not_reverted (what undoing a worse version left for people, and what people had
    changed, so it was left alone), comparison (against the best version before it: delta,
    paired CI, n, verdict; see :mod:`pld.pipeline.resolve.evidence`), held (proposals an
    automatic run left to people), student and evaluation_id.

    ``series`` numbers the loops (1, 2, … in order of their first iteration): one student on one
    validation limit, whose scores compare with each other and with no other series' (the loop
    keeps a best version per series). ``series_first`` marks a series' first iteration, adopted
    because there is nothing before it to compare with, and ``series_last`` its latest."""
    counts: dict[tuple[int, str], int] = {
        (r["iteration"], r["status"]): r["n"] for r in ws.query(
            "SELECT iteration, status, count(*) AS n FROM proposals WHERE task = ? "
            "GROUP BY iteration, status", [task])}
    records = iteration_records(ws, task)
    series: dict[tuple[str, int | None], int] = {}
    for r in records:
        series.setdefault((r["student"], r.get("val_limit")), len(series) + 1)
    last_of = {series[(r["student"], r.get("val_limit"))]: r["iteration"] for r in records}
    out = []
    for r in records:
        k = r["iteration"]
        made = sum(counts.get((k, s), 0) for s in PROPOSAL_STATUSES)
        n_series = series[(r["student"], r.get("val_limit"))]
        out.append({
            "iteration": k, "series": n_series,
            "series_first": not any(h["series"] == n_series for h in out),
            "series_last": last_of[n_series] == k,
            "prompt_version": r["prompt_version"], "macro_f1": r["macro_f1"],
            "metric": r["metric"], "raw_macro_f1": r["raw_macro_f1"],
            "accuracy": r["accuracy"], "n": r["n"], "n_errors": r.get("n_errors"),
            "proposals_made": made, "proposals_accepted": counts.get((k, ACCEPTED), 0),
            "proposals_rejected": counts.get((k, REJECTED), 0),
            "proposals_pending": counts.get((k, PENDING), 0),
            "adopted": bool(r.get("adopted")), "best_version": r.get("best_version"),
            "delta": r.get("delta"), "basis_version": (r.get("basis") or {}).get("version"),
            "proposed": bool(r.get("proposed")), "stop": r.get("stop"),
            "failed_groups": r.get("failed_groups") or {},
            "reverted_to_draft": r.get("reverted_to_draft") or [],
            "dropped": r.get("dropped") or [],
            "resolve_run_id": r.get("resolve_run_id"),
            "not_reverted": r.get("not_reverted") or [],
            "comparison": r.get("comparison"), "held": r.get("held") or [],
            "student": r["student"], "val_limit": r.get("val_limit"),
            "evaluation_id": r["evaluation_id"], "run_id": r["run_id"],
        })
    return out


STOP_WORDS = {
    "converged": "it converged: validation macro-F1 moved by less than the minimum change "
                 "({min_delta}) against the best version",
    "no-errors": "the best version makes no errors on the validation items: nothing to fix",
    "max-iterations": "it evaluated as many new versions as this run allowed; run the loop "
                      "again to go on",
    "teacher-failed": "every teacher call of the iteration failed (see the reasons above)",
    INDISTINCT: "the changes left to make were not distinguishable from noise (their "
                           "paired 95% CI includes zero), so it kept the approved heuristics; "
                           "those proposals wait for people, each with its CI",
    "awaiting-review": "it waits for people: proposals to decide, or drafts to approve",
}


def stop_in_words(ws: Workspace, h: dict[str, Any], pending: int, drafts: int) -> str:
    """Why the loop stands where it does after iteration ``h``, in a sentence: its stop reason,
    or what it waits for (``pending`` proposals, ``drafts`` to approve); the proposals the
    teacher made that were dropped are counted, so "0 proposals" never goes unexplained."""
    if (pending or drafts) and h["stop"] != INDISTINCT:  # that stop names what waits itself
        why = (f"it waits for people: {pending} proposal(s) to decide and {drafts} draft(s) "
               "to approve before the next iteration")
    elif h["stop"]:
        params = ws.query("SELECT params FROM runs WHERE id = ?", [h.get("resolve_run_id")])
        min_delta = loads(params[0]["params"], {}).get("min_delta") if params else None
        why = STOP_WORDS.get(h["stop"], h["stop"]).format(
            min_delta="min_delta" if min_delta is None else f"{min_delta:g}")
    elif h["proposed"] and not h["proposals_made"]:
        why = "the teacher proposed nothing that could be kept"
    else:
        why = "it has not proposed for this iteration yet; run the loop to go on"
    dropped = len(h.get("dropped") or [])
    tail = (f" {dropped} proposal(s) of the teacher were dropped; each is listed under the "
            "iteration with why.") if dropped else ""
    return f"After iteration {h['iteration']} the loop stopped because {why}.{tail}"


STOP_LABELS = {"awaiting": "awaiting review", "nothing": "nothing kept to decide",
               "continued": "went on", "open": "not proposed yet",
               "ready": "ready for the next iteration"}


def stop_label(h: dict[str, Any], pending: int, drafts: int) -> str:
    """A short word for the history table's "stop" column of iteration ``h``: its stop reason,
    or where the loop stands there (``pending`` proposals and ``drafts`` to approve count only
    for the latest iteration of its series, where the loop waits); never blank."""
    if h["stop"]:
        return str(h["stop"])
    if not h["series_last"]:
        return STOP_LABELS["continued"]
    if pending or drafts:
        return STOP_LABELS["awaiting"]
    if h["proposed"]:
        return STOP_LABELS["ready"] if h["proposals_made"] else STOP_LABELS["nothing"]
    return STOP_LABELS["open"]


def waiting_after_revert(ws: Workspace, history: list[dict[str, Any]]
                         ) -> tuple[dict[str, Any] | None, list[int]]:
    """The latest iteration whose revert left drafts for people, and those of them still
    drafts; (None, []) when nothing waits."""
    reverted = [h for h in history if h["reverted_to_draft"]]
    if not reverted:
        return None, []
    waiting = [i for i in reverted[-1]["reverted_to_draft"]
               if ws.query("SELECT status FROM heuristics WHERE id = ?", [i])[0]["status"]
               == "draft"]
    return (reverted[-1], waiting) if waiting else (None, [])


def list_proposals(ws: Workspace, task: str, iteration: int | None = None,
                   status: str | None = None) -> list[dict[str, Any]]:
    """Proposals of ``task`` by id, optionally of one iteration and/or status.

    Each has ``evidence`` (example ids) and ``evidence_examples`` (id, ext_id, text, gold,
    predicted: the label the student gave under the prompt the teacher saw), ``heuristic``
    (the target heuristic as it is now, None for ``add``) and ``created_heuristic_id`` (the
    draft an accepted ``add`` created).
    """
    if status is not None and status not in PROPOSAL_STATUSES:
        raise BadInput(f"proposal status {status!r}: use one of {', '.join(PROPOSAL_STATUSES)}")
    rows = proposal_rows(ws, task, iteration, status)
    recs = {r["iteration"]: r for r in iteration_records(ws, task)}
    predicted: dict[int, dict[int, str | None]] = {}
    for k in {r["iteration"] for r in rows}:
        basis = (recs.get(k) or {}).get("basis") or {}
        predicted[k] = {p["example_id"]: p["predicted"]
                        for p in basis_predictions(ws, task, basis)}
    examples = examples_by_id(ws, [i for r in rows for i in r["evidence"]])
    for r in rows:
        r["evidence_examples"] = [
            {"id": i, "ext_id": examples[i]["ext_id"], "text": examples[i]["text"],
             "gold": examples[i]["label"], "predicted": predicted[r["iteration"]].get(i)}
            for i in r["evidence"] if i in examples]
        r["heuristic"] = None
        if r["heuristic_id"] is not None:
            h = ws.query("SELECT id, text, status, version FROM heuristics WHERE id = ?",
                         [r["heuristic_id"]])
            r["heuristic"] = h[0] if h else None
        r["created_heuristic_id"] = None
        if r["kind"] == ADD and r["status"] == ACCEPTED:
            r["created_heuristic_id"] = (decision_of(ws, r["id"]) or {}).get("heuristic_id")
    return rows


def addresses(p: dict[str, Any], err: dict[str, Any]) -> bool:
    """True when proposal ``p`` addresses error ``err`` (of
    :func:`errors_for_iteration`): it changes one of the error's heuristics, or cites it."""
    return (p["heuristic_id"] in {h["id"] for h in err["heuristics"]}
            or err["example_id"] in p["evidence"])


def addressed_examples(p: dict[str, Any], errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The examples proposal ``p`` (of :func:`list_proposals`) is about, by id: the errors it
    :func:`addresses` and the examples it cites as evidence (successes too: the teacher sees a
    sample of them). Each: example_id, ext_id, gold, predicted, text, ``error`` and ``cited``."""
    out = {e["example_id"]: {"example_id": e["example_id"], "ext_id": e["ext_id"],
                             "gold": e["gold"], "predicted": e["predicted"], "text": e["text"],
                             "error": True, "cited": e["example_id"] in p["evidence"]}
           for e in errors if addresses(p, e)}
    for e in p["evidence_examples"]:
        out.setdefault(e["id"], {"example_id": e["id"], "ext_id": e["ext_id"],
                                 "gold": e["gold"], "predicted": e["predicted"],
                                 "text": e["text"], "error": e["gold"] != e["predicted"],
                                 "cited": True})
    return [out[i] for i in sorted(out)]


def errors_by_heuristic(errors: list[dict[str, Any]]) -> list[tuple[dict[str, Any] | None,
                                                                      list[dict[str, Any]]]]:
    """The errors of :func:`errors_for_iteration` grouped by the heuristics they are
    attributed to, most errors first (ties by heuristic id): (heuristic, its errors), each error
    with that heuristic's ``similarity``. An error counts under each of its heuristics; errors
    with none come last, under None."""
    groups: dict[int, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
    loose = []
    for e in errors:
        if not e["heuristics"]:
            loose.append(e)
        for h in e["heuristics"]:
            groups.setdefault(h["id"], (h, []))[1].append({**e, "similarity": h["similarity"]})
    out: list[tuple[dict[str, Any] | None, list[dict[str, Any]]]] = sorted(
        groups.values(), key=lambda g: (-len(g[1]), g[0]["id"]))
    return out + ([(None, loose)] if loose else [])


def errors_for_iteration(ws: Workspace, task: str, iteration: int) -> list[dict[str, Any]]:
    """The validation errors that the proposals of ``iteration`` address (the best version's
    when the iteration was not adopted), by example id: example_id, ext_id, text, gold,
    predicted, raw, and ``heuristics``: the attributed heuristics, most similar first, each
    with its number in the prompt the teacher saw, its ``text`` as it was in that prompt (its
    ``version`` then), ``text_now`` and ``version_now`` (None once deleted) and the similarity
    (empty until the iteration has proposed)."""
    rec = iteration_record(ws, task, iteration)
    basis = rec.get("basis") or {"run_id": rec["run_id"]}
    attribution = rec.get("attribution") or {}
    rules = rec.get("rules") or []
    then = {int(h): v for h, v in (rec.get("heuristic_versions") or {}).items()}
    ids = sorted({hid for pairs in attribution.values() for hid, _ in pairs})
    now_rows = {r["id"]: r for r in ws.query(
        "SELECT id, text, version FROM heuristics WHERE id IN (SELECT value FROM json_each(?))",
        [dumps(ids)])} if ids else {}
    texts: dict[int, dict[str, Any]] = {}
    for hid in ids:
        row = now_rows.get(hid) or {}
        version = then.get(hid, row.get("version"))
        old = review.text_at_version(ws, hid, version) if version is not None else None
        texts[hid] = {"text": old if old is not None else row.get("text"), "version": version,
                      "text_now": row.get("text"), "version_now": row.get("version")}
    out = []
    for p in basis_predictions(ws, task, basis):
        if p["correct"]:
            continue
        pairs = attribution.get(str(p["example_id"]), [])
        out.append({
            "example_id": p["example_id"], "ext_id": p["ext_id"], "text": p["text"],
            "gold": p["gold"], "predicted": p["predicted"], "raw": p["raw"],
            "heuristics": [{"id": hid, "number": rules.index(hid) + 1 if hid in rules else None,
                            **texts[hid], "similarity": sim} for hid, sim in pairs],
        })
    return out

