"""Stage 6, resolve conflicts: the student runs on the validation split, the teacher proposes
per-heuristic changes from the errors, people accept or reject them, and the loop repeats until
validation macro-F1 settles.

One *iteration* is one evaluated prompt version. Iteration 1 evaluates the prompt built from the
approved heuristics as they are; every later iteration evaluates the prompt that the decisions on
the previous iteration's proposals led to. Per iteration:

1. **Evaluate.** The approved heuristics are built into a prompt version
   (:func:`~pld.pipeline.student.build_prompt`, origin ``resolve``, parent = the best version)
   and the student classifies the first ``val_limit`` examples of the ``val`` split. Test items
   are never used: every scored item is checked to be a ``val`` item and the loop stops with
   :class:`SplitLeakError` otherwise. The score is stored as an ``evaluations`` row (method
   ``resolve-iter-N``, split ``val``, the prompt version); the iteration's bookkeeping lives in
   that row's metrics under the key ``"resolve"``.
2. **Adopt or revert.** A version is *adopted* when its macro-F1 is not below the best so far
   (iteration 1 is always adopted). ``best_version`` is the last adopted version. A version that
   scores lower is kept (prompt row, predictions, score) but not adopted, and the heuristics are
   reverted to the best version's set in the same transaction that stores the score: every
   heuristic of the best version gets back the exact text and approval it had then (a review row
   with action ``revert``), every other approved heuristic is rejected (comment naming the
   iteration and the drop). Rebuilding the prompt therefore returns the best version again, and
   the next iteration starts from it.
3. **Stop?** When ``|ΔF1| < min_delta`` against the best version before this iteration the loop
   has converged; when the best version makes no errors there is nothing to fix.
4. **Propose.** The errors of the best version's run (this iteration's when adopted), plus a
   seeded sample of its successes (``n_success``, default as many as errors: the paper found
   successes critical against regressions), are attributed to heuristics: each example is
   compared with every approved heuristic by cosine similarity of sentence embeddings
   (``attribution`` names the embedder of :mod:`pld.pipeline.embed`, ``minilm`` by default;
   ``tfidf`` uses TF-IDF vectors instead, no model download), and its ``top_k`` most similar
   heuristics are kept. Similarity is cheap and deterministic, so it groups the errors; the
   teacher still sees the full numbered rule list in every call, so a clash with another rule is
   visible to it. Errors are grouped by their most similar heuristic and the teacher gets one
   call per group (``pld/prompts/resolve.md``): that heuristic's errors and successes, and a
   request for at most one ``edit``/``remove`` of it and a few ``add``. A reply that is not the
   JSON asked for is re-asked once with the parse error. When every teacher call of an iteration
   fails (a local model that writes past ``max_tokens`` fails the same way every time), the loop
   stops with ``teacher-failed``: the best version so far stands, the failures are stored in the
   iteration's record, and ``retry_failed=True`` asks again. When the iteration was not adopted, the
   changes that caused the drop are listed in the prompt as tried and undone. Proposals are
   stored together, status ``pending``, with the example ids they cite as evidence.
5. **Decide.** :func:`decide_proposal` applies a person's decision through :mod:`pld.review`:
   ``edit`` edits the heuristic as the acceptor (based on the version the teacher saw, so a
   heuristic changed since is refused as stale) and leaves it a draft that someone else must
   approve (four-eyes); ``add`` creates a draft; ``remove`` rejects the heuristic. Each decision
   appends a ``reviews`` row for the proposal besides the heuristic's own.

Interactive mode stops after proposing (``awaiting-review``); calling :func:`resolve` again goes
on once no proposal of the last iteration is pending and every heuristic that an accepted
proposal created or edited has been approved or rejected. With ``auto_accept_as=NAME`` every
proposal is accepted at once: the teacher is recorded as the author of the new text and NAME
approves it (identity kind ``auto``, comment ``auto-accepted (benchmark)``), which keeps the
four-eyes rule intact. ``iterations`` bounds how many new versions one call evaluates after the
first; in automatic mode the last of them gets no proposals, so nothing accepted is left
unevaluated.

The loop is idempotent: an iteration's proposals are written once (a rerun finds them), a
converged loop with unchanged heuristics returns at once, and every LLM call goes through the
cache. Loops with a different student or ``val_limit`` are separate series with their own best
version, because their scores are not comparable.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pld import review
from pld.errors import BadInput, NotReady
from pld.llm import calls
from pld.llm.base import ConfigError
from pld.llm.fan_out import fan_out
from pld.llm.json_reply import loads_reply
from pld.llm.registry import default_concurrency, parse_model
from pld.llm.teacher_json import UnusableReply, ask_json
from pld.metrics import score
from pld.pipeline.calibrate import DEFAULT_METHOD as DEFAULT_CALIBRATION
from pld.pipeline.calibrate import (
    apply_bias,
    calibrated_answers,
    fit_calibration,
)
from pld.pipeline.embed import check_embedder_name, get_embedder
from pld.pipeline.impact import measure_impact
from pld.pipeline.runs import ProgressCallback, Run, stage_run
from pld.pipeline.student import (
    PromptVersion,
    build_prompt,
    heuristic_item,
    predict,
    render_student_prompt,
    sha256_text,
)
from pld.prompts import render
from pld.tasks.store import TaskInfo, task_info
from pld.workspace import Workspace, dumps, loads, now

STAGE = "resolve"
PREDICT_KIND = "resolve-predict"
METHOD_PREFIX = "resolve-iter-"
VAL = "val"
PENDING, ACCEPTED, REJECTED = "pending", "accepted", "rejected"
PROPOSAL_STATUSES = (PENDING, ACCEPTED, REJECTED)
ADD, EDIT, REMOVE = "add", "edit", "remove"
KINDS = (ADD, EDIT, REMOVE)
CONVERGED, MAX_ITERATIONS, TEACHER_FAILED = "converged", "max-iterations", "teacher-failed"
AWAITING_REVIEW, NO_ERRORS = "awaiting-review", "no-errors"
AUTO_COMMENT = "auto-accepted (benchmark)"
REVERT_ACTOR = "pld-resolve"
TFIDF = "tfidf"
MAX_TOKENS = 1024
MAX_ADD = 2
TEXT_CHARS = 1500  # an example longer than this is cut in the teacher prompt
_TEACHER_PREFIX = "teacher:"


class SplitLeakError(RuntimeError):
    """An item outside the validation split reached the conflict loop (never expected)."""


class BadReplyError(ValueError):
    """The teacher's reply is not the JSON object the prompt asks for."""


@dataclass
class ResolveSummary:
    """What one :func:`resolve` call did. ``history`` is :func:`iteration_history` of this
    loop's series; ``iterations_run`` counts the iterations this call evaluated."""

    run_id: int
    task: str
    iterations_run: int
    stop_reason: str
    best_version: int | None
    best_macro_f1: float | None
    history: list[dict[str, Any]] = field(default_factory=list)
    proposals_made: int = 0
    pending: int = 0
    failed_groups: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Options:
    task: TaskInfo
    student: str
    teacher: str
    iterations: int
    auto_accept_as: str | None
    n_success: int | None
    val_limit: int | None
    seed: int
    min_delta: float
    attribution: str
    top_k: int
    max_examples: int
    concurrency: int | None
    on_progress: ProgressCallback | None
    retry_failed: bool = False
    calibration: str | None = DEFAULT_CALIBRATION
    impact: bool = True


# -- reading the loop's state ----------------------------------------------------------------------

def _iteration_of(method: str) -> int:
    return int(method[len(METHOD_PREFIX):])


def _records(ws: Workspace, task: str) -> list[dict[str, Any]]:
    """Every iteration of ``task``: the ``resolve`` bookkeeping plus the evaluation columns."""
    out = []
    for row in ws.query(
        "SELECT * FROM evaluations WHERE task = ? AND method LIKE ? ORDER BY id",
        [task, METHOD_PREFIX + "%"],
    ):
        metrics = loads(row["metrics"], {})
        rec = dict(metrics.get("resolve") or {})
        rec.update(evaluation_id=row["id"], run_id=row["run_id"], student=row["student"],
                   prompt_version=row["prompt_version"], prompt_sha256=row["prompt_sha256"],
                   n=row["n"],
                   # What adoption compares: calibrated answers when the student could be
                   # calibrated (what ships), raw answers otherwise.
                   macro_f1=(metrics.get("calibrated") or metrics).get("macro_f1"),
                   raw_macro_f1=metrics.get("macro_f1"),
                   calibrated_macro_f1=(metrics.get("calibrated") or {}).get("macro_f1"),
                   metric="calibrated" if metrics.get("calibrated") else "raw",
                   bias=((metrics.get("calibration") or {}).get("bias")
                         if metrics.get("calibrated") else None),
                   accuracy=metrics.get("accuracy"), created_at=row["created_at"],
                   iteration=_iteration_of(row["method"]))
        out.append(rec)
    return sorted(out, key=lambda r: r["iteration"])


def _series(ws: Workspace, task: str, student: str, val_limit: int | None) -> list[dict[str, Any]]:
    return [r for r in _records(ws, task)
            if r["student"] == student and r.get("val_limit") == val_limit]


def _record(ws: Workspace, task: str, iteration: int) -> dict[str, Any]:
    for r in _records(ws, task):
        if r["iteration"] == iteration:
            return r
    raise BadInput(f"task {task!r} has no resolve iteration {iteration}")


def _proposal_rows(ws: Workspace, task: str, iteration: int | None = None,
                   status: str | None = None) -> list[dict[str, Any]]:
    sql, args = "SELECT * FROM proposals WHERE task = ?", [task]
    if iteration is not None:
        sql += " AND iteration = ?"
        args.append(iteration)
    if status is not None:
        sql += " AND status = ?"
        args.append(status)
    rows = ws.query(sql + " ORDER BY id", args)
    for r in rows:
        r["evidence"] = loads(r["evidence"], [])
    return rows


def _decision(ws: Workspace, proposal_id: int) -> dict[str, Any] | None:
    """The ``after`` of the review row that decided a proposal."""
    rows = ws.query(
        "SELECT after FROM reviews WHERE entity = 'proposal' AND entity_id = ? "
        "AND action IN ('accept', 'reject') ORDER BY id DESC LIMIT 1", [proposal_id])
    return loads(rows[0]["after"], {}) if rows else None


def _touched(ws: Workspace, task: str, iteration: int) -> list[int]:
    """Heuristics that accepted edit/add proposals of ``iteration`` left as drafts."""
    ids = []
    for p in _proposal_rows(ws, task, iteration, ACCEPTED):
        if p["kind"] == EDIT:
            ids.append(p["heuristic_id"])
        elif p["kind"] == ADD:
            hid = (_decision(ws, p["id"]) or {}).get("heuristic_id")
            if hid is not None:
                ids.append(int(hid))
    if not ids:
        return []
    marks = ",".join("?" * len(ids))
    return [r["id"] for r in ws.query(
        f"SELECT id FROM heuristics WHERE status = 'draft' AND id IN ({marks}) ORDER BY id", ids)]


def best_version(ws: Workspace, task: str, student: str | None = None) -> int | None:
    """The adopted (best validation macro-F1) prompt version of the latest resolve loop of
    ``task`` (of ``student``'s loop when given); None when the loop never ran."""
    recs = [r for r in _records(ws, task) if student is None or r["student"] == student]
    if not recs:
        return None
    latest = max(recs, key=lambda r: r["evaluation_id"])
    return latest.get("best_version")


def iteration_history(ws: Workspace, task: str) -> list[dict[str, Any]]:
    """One dict per iteration of ``task``, oldest first: iteration, prompt_version, macro_f1
    (validation, on ``metric`` answers: calibrated when the student could be calibrated, what
    adoption compares), raw_macro_f1, accuracy, n, n_errors, proposals_made / proposals_accepted /
    proposals_rejected / proposals_pending, adopted, best_version after it, delta (against the
    best before it), basis_version (the version whose errors the proposals address), stop,
    failed_groups (heuristic id -> error of each teacher call that failed), student and
    evaluation_id."""
    counts: dict[tuple[int, str], int] = {
        (r["iteration"], r["status"]): r["n"] for r in ws.query(
            "SELECT iteration, status, count(*) AS n FROM proposals WHERE task = ? "
            "GROUP BY iteration, status", [task])}
    out = []
    for r in _records(ws, task):
        k = r["iteration"]
        made = sum(counts.get((k, s), 0) for s in PROPOSAL_STATUSES)
        out.append({
            "iteration": k, "prompt_version": r["prompt_version"], "macro_f1": r["macro_f1"],
            "metric": r["metric"], "raw_macro_f1": r["raw_macro_f1"],
            "accuracy": r["accuracy"], "n": r["n"], "n_errors": r.get("n_errors"),
            "proposals_made": made, "proposals_accepted": counts.get((k, ACCEPTED), 0),
            "proposals_rejected": counts.get((k, REJECTED), 0),
            "proposals_pending": counts.get((k, PENDING), 0),
            "adopted": bool(r.get("adopted")), "best_version": r.get("best_version"),
            "delta": r.get("delta"), "basis_version": (r.get("basis") or {}).get("version"),
            "proposed": bool(r.get("proposed")), "stop": r.get("stop"),
            "failed_groups": r.get("failed_groups") or {},
            "student": r["student"], "val_limit": r.get("val_limit"),
            "evaluation_id": r["evaluation_id"], "run_id": r["run_id"],
        })
    return out


def _examples_by_id(ws: Workspace, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    if not ids:
        return {}
    rows = ws.query(
        "SELECT id, ext_id, split, text, label FROM examples "
        "WHERE id IN (SELECT value FROM json_each(?))", [dumps(sorted(set(ids)))])
    return {r["id"]: r for r in rows}


def _predictions(ws: Workspace, run_id: int,
                 bias: dict[str, float] | None = None,
                 labels: list[str] | None = None) -> list[dict[str, Any]]:
    """Predictions of a run with their example, checked to be validation items only.

    With a calibration ``bias``, ``predicted`` and ``correct`` are the calibrated answer's
    (``raw`` stays the student's own answer).
    """
    rows = ws.query(
        "SELECT p.example_id, p.label AS predicted, p.raw, p.correct, p.scores, e.ext_id, "
        "e.split, e.text, e.label AS gold FROM predictions p JOIN examples e "
        "ON e.id = p.example_id WHERE p.run_id = ? ORDER BY p.example_id", [run_id])
    _check_val(rows)
    for r in rows:
        if bias is not None and labels is not None:
            r["predicted"] = apply_bias(loads(r["scores"]), bias, r["predicted"], labels)
            r["correct"] = int(r["predicted"] == r["gold"])
        del r["scores"]
    return rows


def _basis_predictions(ws: Workspace, task: str, basis: dict[str, Any]) -> list[dict[str, Any]]:
    """The answers of the run a proposal step worked from, calibrated as that iteration was
    scored (so the errors shown are the errors that counted)."""
    if not basis.get("run_id"):
        return []
    rec = next((r for r in _records(ws, task) if r["run_id"] == basis["run_id"]), None)
    if rec is None or rec.get("bias") is None:
        return _predictions(ws, basis["run_id"])
    return _predictions(ws, basis["run_id"], rec["bias"], task_info(ws, task).labels)


def _check_val(rows: Sequence[dict[str, Any]]) -> None:
    leaked = [r.get("example_id", r.get("id")) for r in rows if r["split"] != VAL]
    if leaked:
        # Tuning on test items would make every reported test score meaningless.
        raise SplitLeakError(f"resolve uses validation items only; got non-val items {leaked[:10]}")


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
    rows = _proposal_rows(ws, task, iteration, status)
    recs = {r["iteration"]: r for r in _records(ws, task)}
    predicted: dict[int, dict[int, str | None]] = {}
    for k in {r["iteration"] for r in rows}:
        basis = (recs.get(k) or {}).get("basis") or {}
        predicted[k] = {p["example_id"]: p["predicted"]
                        for p in _basis_predictions(ws, task, basis)}
    examples = _examples_by_id(ws, [i for r in rows for i in r["evidence"]])
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
            r["created_heuristic_id"] = (_decision(ws, r["id"]) or {}).get("heuristic_id")
    return rows


def errors_for_iteration(ws: Workspace, task: str, iteration: int) -> list[dict[str, Any]]:
    """The validation errors that the proposals of ``iteration`` address (the best version's
    when the iteration was not adopted), by example id: example_id, ext_id, text, gold,
    predicted, raw, and ``heuristics``: the attributed heuristics, most similar first, each
    with its number in the prompt the teacher saw, its text now and the similarity (empty
    until the iteration has proposed)."""
    rec = _record(ws, task, iteration)
    basis = rec.get("basis") or {"run_id": rec["run_id"]}
    attribution = rec.get("attribution") or {}
    rules = rec.get("rules") or []
    ids = sorted({hid for pairs in attribution.values() for hid, _ in pairs})
    texts = {r["id"]: r["text"] for r in ws.query(
        "SELECT id, text FROM heuristics WHERE id IN (SELECT value FROM json_each(?))",
        [dumps(ids)])} if ids else {}
    out = []
    for p in _basis_predictions(ws, task, basis):
        if p["correct"]:
            continue
        pairs = attribution.get(str(p["example_id"]), [])
        out.append({
            "example_id": p["example_id"], "ext_id": p["ext_id"], "text": p["text"],
            "gold": p["gold"], "predicted": p["predicted"], "raw": p["raw"],
            "heuristics": [{"id": hid, "number": rules.index(hid) + 1 if hid in rules else None,
                            "text": texts.get(hid), "similarity": sim} for hid, sim in pairs],
        })
    return out


# -- attribution ----------------------------------------------------------------------------------

def attribute(texts: Sequence[str], heuristics: Sequence[str], *, method: str = "minilm",
              top_k: int = 2) -> list[list[tuple[int, float]]]:
    """For each text, the ``top_k`` most similar heuristics as (index, cosine similarity),
    most similar first; ties keep the heuristics' order, so the result is deterministic.

    ``method`` is an embedder name of :mod:`pld.pipeline.embed` or ``"tfidf"``.
    """
    if not texts or not heuristics:
        return [[] for _ in texts]
    if method == TFIDF:
        from sklearn.feature_extraction.text import TfidfVectorizer

        vec = TfidfVectorizer(sublinear_tf=True).fit([*heuristics, *texts])
        sims = (vec.transform(texts) @ vec.transform(heuristics).T).toarray()
    else:
        embedder = get_embedder(method)
        sims = embedder.encode(list(texts)) @ embedder.encode(list(heuristics)).T
    out = []
    for row in np.asarray(sims, dtype=np.float64):
        order = np.argsort(-row, kind="stable")[:top_k]
        out.append([(int(i), round(float(row[i]), 4)) for i in order])
    return out


# -- the teacher ----------------------------------------------------------------------------------

def reply_schema() -> dict[str, Any]:
    """JSON schema of the teacher's reply (constrains decoding where the backend can)."""
    item = {
        "type": "object",
        "properties": {
            "kind": {"type": "string", "enum": list(KINDS)},
            "text": {"type": "string"},
            "rationale": {"type": "string"},
            "evidence": {"type": "array", "items": {"type": "integer"}},
        },
        "required": ["kind", "text", "rationale", "evidence"],
        "additionalProperties": False,
    }
    return {"type": "object", "properties": {"proposals": {"type": "array", "items": item}},
            "required": ["proposals"], "additionalProperties": False}


def _ids(value: Any) -> list[int]:
    if not isinstance(value, list):
        raise BadReplyError('"evidence" must be a list of example ids')
    out = []
    for v in value:
        # Models write the ids as shown ("#12") as often as bare numbers.
        m = re.fullmatch(r"\s*#?\s*(\d+)\s*", str(v)) if not isinstance(v, bool) else None
        if m is None:
            raise BadReplyError(f'"evidence" holds {v!r}, not an example id')
        out.append(int(m.group(1)))
    return out


def parse_reply(text: str) -> list[dict[str, Any]]:
    """The proposals of a reply as dicts (kind, text, rationale, evidence);
    :class:`BadReplyError` naming what is wrong."""
    try:
        data = loads_reply(text)
    except ValueError as e:
        raise BadReplyError(str(e)) from e
    if not isinstance(data, dict) or not isinstance(data.get("proposals"), list):
        raise BadReplyError('expected a JSON object with a "proposals" list')
    out = []
    for i, p in enumerate(data["proposals"], 1):
        if not isinstance(p, dict):
            raise BadReplyError(f"proposal {i} is not an object")
        kind = str(p.get("kind", "")).strip().lower()
        if kind not in KINDS:
            raise BadReplyError(f'proposal {i}: "kind" must be one of {", ".join(KINDS)}')
        body = p.get("text") or ""
        if not isinstance(body, str):
            raise BadReplyError(f'proposal {i}: "text" must be a string')
        if kind != REMOVE and not body.strip():
            raise BadReplyError(f'proposal {i}: an "{kind}" needs the rule text')
        rationale = p.get("rationale") or ""
        out.append({"kind": kind, "text": body.strip() if kind != REMOVE else "",
                    "rationale": str(rationale).strip(),
                    "evidence": _ids(p.get("evidence", []))})
    return out


@dataclass(frozen=True)
class _Group:
    """The errors (and successes) most similar to one heuristic."""

    heuristic_id: int
    number: int
    errors: list[dict[str, Any]]
    successes: list[dict[str, Any]]


def _clip(text: str) -> str:
    text = text.strip()
    return text if len(text) <= TEXT_CHARS else text[:TEXT_CHARS].rstrip() + " [...]"


def _error_block(rows: Sequence[dict[str, Any]]) -> str:
    return "\n\n".join(
        f"#{r['example_id']} (correct label: {r['gold']}; student answered: "
        f"{r['predicted'] if r['predicted'] is not None else 'no valid label'})\n{_clip(r['text'])}"
        for r in rows)


def _success_block(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return "(none among the sampled successes)"
    return "\n\n".join(f"#{r['example_id']} (label: {r['gold']})\n{_clip(r['text'])}"
                       for r in rows)


def _tried_note(tried: dict[str, Any] | None) -> str:
    if not tried:
        return ""
    lines = [f"\nNote: the changes below were tried in the last iteration. They lowered "
             f"validation macro-F1 from {tried['from']:.3f} to {tried['to']:.3f} and were "
             f"undone. Do not propose them again; look for a different fix.\n"]
    for c in tried["changes"]:
        target = f"rule #{c['heuristic_id']}" if c.get("heuristic_id") else "new rule"
        lines.append(f"- {c['kind']} {target}: {c.get('text') or '(removed)'}")
    return "\n".join(lines) + "\n"


def _teacher_prompt(o: _Options, rules: Sequence[dict[str, Any]], group: _Group,
                    tried: dict[str, Any] | None) -> str:
    return render(
        "resolve", task=o.task.name, description=o.task.description,
        labels=", ".join(o.task.labels),
        rules="\n".join(heuristic_item(i, r["text"]) for i, r in enumerate(rules, 1)),
        focus_number=group.number, errors=_error_block(group.errors),
        successes=_success_block(group.successes), tried=_tried_note(tried), max_add=MAX_ADD,
    )


def _ask_teacher(ws: Workspace, o: _Options, run_id: int, prompt: str) -> list[dict[str, Any]]:
    parsed, _ = ask_json(ws, o.teacher, prompt, parse_reply, schema=reply_schema(),
                         max_tokens=MAX_TOKENS, stage=STAGE, run_id=run_id,
                         shape_hint=' {"proposals": [...]}')
    return parsed


def _keep(group: _Group, texts: dict[int, str],
          raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The proposals of one group as rows: one edit/remove of the focus heuristic at most, at
    most ``MAX_ADD`` adds, none that repeats a current rule's text, evidence limited to the
    examples the teacher was shown."""
    shown = [r["example_id"] for r in (*group.errors, *group.successes)]
    fallback = [r["example_id"] for r in group.errors]
    existing = {t.strip() for t in texts.values()}
    out, changed, adds = [], False, 0
    for p in raw:
        if p["kind"] != REMOVE and p["text"] in existing:
            continue
        if p["kind"] in (EDIT, REMOVE):
            if changed:
                continue
            changed = True
        else:
            if adds >= MAX_ADD:
                continue
            adds += 1
        evidence = [i for i in dict.fromkeys(p["evidence"]) if i in shown]
        out.append({
            "heuristic_id": None if p["kind"] == ADD else group.heuristic_id,
            "kind": p["kind"], "text": p["text"], "rationale": p["rationale"],
            # Cited ids that were not shown are the model's invention; without any valid
            # citation, the evidence is what it was shown: the group's errors.
            "evidence": evidence or fallback,
        })
    return out


# -- one iteration --------------------------------------------------------------------------------

def _snapshot(row: dict[str, Any]) -> dict[str, Any]:
    keys = ("text", "version", "approved_by", "approved_at", "identity_kind", "updated_by")
    return {k: row[k] for k in keys}


def _current_prompt(ws: Workspace, o: _Options,
                    parent: int | None) -> tuple[PromptVersion, dict[str, dict[str, Any]]]:
    """Build the prompt of the approved heuristics and snapshot the rows it was built from."""
    for _ in range(3):
        prompt = build_prompt(ws, o.task.name, origin="resolve" if parent else "review",
                              parent_version=parent)
        rows = {r["id"]: r for r in review.approved_heuristics(ws, o.task.name)}
        if list(rows) == prompt.heuristic_ids and render_student_prompt(
                [rows[i]["text"] for i in prompt.heuristic_ids], o.task.labels,
                o.task.description) == prompt.text:
            return prompt, {str(i): _snapshot(rows[i]) for i in prompt.heuristic_ids}
    raise BadInput(f"the heuristics of task {o.task.name!r} keep changing while the prompt is "
                   f"built; try again when reviewers are done")


def _revert(ws: Workspace, o: _Options, best: dict[str, Any], comment: str) -> None:
    """Give the approved heuristics back the best version's set; call inside ``ws.write()``."""
    target: dict[str, dict[str, Any]] = best["heuristics"]
    for row in review.approved_heuristics(ws, o.task.name):
        if str(row["id"]) not in target:
            # Not review.reject: that is a person's decision, open only to the task's
            # approvers; undoing an adopted change is the loop's own bookkeeping.
            with ws.write() as db:
                review.apply_change(ws, db, row, {"status": review.REJECTED, "approved_by": None,
                                                  "approved_at": None, "identity_kind": None},
                                    who=REVERT_ACTOR, identity_kind=review.AUTO, action="revert",
                                    comment=comment)
    for key, snap in target.items():
        row = review.fetch(ws, int(key))
        if row["status"] == review.APPROVED and row["text"] == snap["text"]:
            continue
        changes = {"text": snap["text"], "status": review.APPROVED,
                   "approved_by": snap["approved_by"], "approved_at": snap["approved_at"],
                   "identity_kind": snap["identity_kind"], "updated_by": snap["updated_by"]}
        with ws.write() as db:
            review.apply_change(ws, db, row, changes, who=REVERT_ACTOR, identity_kind=review.AUTO,
                           action="revert", comment=comment)
    rows = review.approved_heuristics(ws, o.task.name)
    text = render_student_prompt([r["text"] for r in rows], o.task.labels, o.task.description)
    if sha256_text(text) != best["prompt_sha256"]:
        raise RuntimeError(f"reverting task {o.task.name!r} to prompt v{best['prompt_version']} "
                           f"did not restore its text; nothing was changed")


def _evaluate(ws: Workspace, o: _Options, run: Run, k: int,
              best: dict[str, Any] | None) -> dict[str, Any]:
    """Evaluate the current approved heuristics as iteration ``k``, adopt or revert, store."""
    parent = best["best_version"] if best else None
    prompt, snapshot = _current_prompt(ws, o, parent)
    result = predict(ws, o.task.name, o.student, system_prompt=prompt.text, split=VAL,
                     limit=o.val_limit, kind=PREDICT_KIND,
                     params={"prompt_version": prompt.version, "iteration": k,
                             "resolve_run_id": run.id},
                     concurrency=o.concurrency, on_progress=o.on_progress)
    _check_val([{**r, "id": i} for i, r in _examples_by_id(ws, result.example_ids).items()])
    metrics = score(result.gold, result.pred, o.task.labels, seed=o.seed)
    answers = result.pred
    if o.calibration is not None:
        cal = fit_calibration(ws, o.task.name, o.student, prompt.text, result,
                              method=o.calibration, val_limit=o.val_limit)
        if cal.available:
            answers = calibrated_answers(result.scores, result.pred, cal.bias, o.task.labels)
            metrics["calibrated"] = score(result.gold, answers, o.task.labels, seed=o.seed)
            metrics["calibration"] = {**cal.summary(), "in_sample": True}
    f1 = (metrics.get("calibrated") or metrics)["macro_f1"]
    n_errors = sum(g != p for g, p in zip(result.gold, answers, strict=True))
    best_f1 = best["best_macro_f1"] if best else None
    adopted = best is None or f1 >= best_f1 - 1e-12
    delta = None if best is None else f1 - best_f1
    rec: dict[str, Any] = {
        "iteration": k, "val_limit": o.val_limit, "adopted": adopted,
        "best_version": prompt.version if adopted else parent,
        "best_macro_f1": f1 if adopted else best_f1,
        "best_iteration": k if adopted else best["best_iteration"],
        "parent_version": parent, "delta": delta, "n_errors": n_errors,
        "heuristics": snapshot, "proposed": False, "stop": None, "resolve_run_id": run.id,
    }
    if adopted:
        rec["basis"] = {"version": prompt.version, "run_id": result.run_id, "iteration": k}
    else:
        assert best is not None
        rec["basis"] = dict(best["basis_of_best"])
    if delta is not None and abs(delta) < o.min_delta:
        rec["stop"] = CONVERGED
    elif (n_errors if adopted else best["best_n_errors"]) == 0:
        rec["stop"] = NO_ERRORS
    rec["best_n_errors"] = n_errors if adopted else best["best_n_errors"]
    rec["basis_of_best"] = rec["basis"] if adopted else best["basis_of_best"]
    with ws.write() as db:
        if db.execute("SELECT 1 FROM evaluations WHERE task = ? AND method = ?",
                      [o.task.name, f"{METHOD_PREFIX}{k}"]).fetchone():
            raise BadInput(f"resolve iteration {k} of task {o.task.name!r} was stored by "
                           f"another run meanwhile; run resolve again")
        db["texts"].insert({"sha256": prompt.sha256, "text": prompt.text}, ignore=True)
        db["evaluations"].insert({
            "task": o.task.name, "run_id": result.run_id, "method": f"{METHOD_PREFIX}{k}",
            "prompt_version": prompt.version, "prompt_sha256": prompt.sha256,
            "student": o.student, "split": VAL, "n": metrics["n"],
            "metrics": dumps({**metrics, "resolve": rec}), "created_at": now(),
        })
        if not adopted:
            assert best is not None and delta is not None
            best_rec = _record(ws, o.task.name, best["best_iteration"])
            _revert(ws, o, best_rec, f"reverted by resolve: iteration {k} (prompt "
                    f"v{prompt.version}) lowered validation macro-F1 {best_f1:.3f} -> {f1:.3f}; "
                    f"back to prompt v{parent}")
    return _record(ws, o.task.name, k)


def _update(ws: Workspace, task: str, k: int, **changes: Any) -> None:
    with ws.write() as db:
        row = db.execute("SELECT id, metrics FROM evaluations WHERE task = ? AND method = ?",
                         [task, f"{METHOD_PREFIX}{k}"]).fetchone()
        metrics = loads(row[1], {})
        metrics["resolve"] = {**metrics.get("resolve", {}), **changes}
        db["evaluations"].update(row[0], {"metrics": dumps(metrics)})


def _tried(ws: Workspace, series: list[dict[str, Any]],
           rec: dict[str, Any]) -> dict[str, Any] | None:
    """The accepted changes that made ``rec``'s version, when it was not adopted."""
    if rec.get("adopted") or rec.get("delta") is None:
        return None
    before = [r for r in series if r["iteration"] < rec["iteration"]]
    if not before:
        return None
    changes = [{"kind": p["kind"], "heuristic_id": p["heuristic_id"], "text": p["text"]}
               for p in _proposal_rows(ws, rec["task"], before[-1]["iteration"], ACCEPTED)]
    return {"from": rec["best_macro_f1"], "to": rec["macro_f1"], "changes": changes}


def _propose(ws: Workspace, o: _Options, run: Run, rec: dict[str, Any],
             series: list[dict[str, Any]], summary: ResolveSummary) -> int | None:
    """Attribute the basis errors, ask the teacher per group, store the proposals of ``rec``.

    Returns how many proposals were stored, or None when every teacher call failed (recorded as
    the iteration's stop, ``teacher-failed``, with each group's error)."""
    k = rec["iteration"]
    preds = _basis_predictions(ws, o.task.name, rec["basis"])
    errors = [p for p in preds if not p["correct"]]
    successes = [p for p in preds if p["correct"]]
    rng = random.Random(f"{o.seed}:{k}")
    n_success = len(errors) if o.n_success is None else o.n_success
    sample = sorted(rng.sample(successes, min(n_success, len(successes))),
                    key=lambda p: p["example_id"])
    rules = review.approved_heuristics(ws, o.task.name)
    if not rules:
        raise NotReady(f"no approved heuristics for task {o.task.name!r} to propose changes to")
    ranked = attribute([p["text"] for p in (*errors, *sample)], [r["text"] for r in rules],
                       method=o.attribution, top_k=o.top_k)
    attribution = {str(p["example_id"]): [[rules[i]["id"], s] for i, s in pairs]
                   for p, pairs in zip((*errors, *sample), ranked, strict=True)}
    by_rule: dict[int, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {
        r["id"]: ([], []) for r in rules}
    for p in errors:
        by_rule[attribution[str(p["example_id"])][0][0]][0].append(p)
    for p in sample:
        by_rule[attribution[str(p["example_id"])][0][0]][1].append(p)
    number = {r["id"]: i for i, r in enumerate(rules, 1)}
    groups = [_Group(hid, number[hid], errs[:o.max_examples], oks[:o.max_examples])
              for hid, (errs, oks) in by_rule.items() if errs]
    groups.sort(key=lambda g: (-len(by_rule[g.heuristic_id][0]), g.number))
    tried = _tried(ws, series, {**rec, "task": o.task.name})
    texts = {r["id"]: r["text"] for r in rules}
    run.set_total(len(groups))

    def work(group: _Group) -> list[dict[str, Any]] | str:
        try:
            raw = _ask_teacher(ws, o, run.id, _teacher_prompt(o, rules, group, tried))
        except (UnusableReply, calls.CallFailed) as e:
            return f"{type(e).__name__}: {e}"  # this group failed; the others go on
        return _keep(group, texts, raw)

    workers = o.concurrency or default_concurrency(o.teacher)
    outcomes: dict[int, list[dict[str, Any]] | str] = {}
    for g, outcome in fan_out(work, groups, workers=workers, name="resolve"):
        outcomes[g.heuristic_id] = outcome
        run.advance()
    found: list[dict[str, Any]] = []
    failed: dict[int, str] = {}
    # Collected in group order, so the stored proposals do not depend on thread timing.
    for g in groups:
        outcome = outcomes[g.heuristic_id]
        if isinstance(outcome, str):
            failed[g.heuristic_id] = outcome
        else:
            found.extend(outcome)
    removals = _impact_removals(ws, o, found) if o.impact else []
    found.extend(removals)
    if groups and len(failed) == len(groups) and not removals:
        # Nothing to store; the evaluated best version stands. Not an exception: a run that
        # reaches this point has paid for its evaluations, and the chain goes on to the test set.
        _update(ws, o.task.name, k, stop=TEACHER_FAILED,
                failed_groups={str(h): e for h, e in failed.items()})
        summary.failed_groups.update(failed)
        return None
    unique = list({(p["kind"], p["heuristic_id"], p["text"]): p for p in found}.values())
    with ws.write() as db:
        if db.execute("SELECT 1 FROM proposals WHERE task = ? AND iteration = ?",
                      [o.task.name, k]).fetchone():
            raise BadInput(f"proposals of iteration {k} of task {o.task.name!r} were stored by "
                           f"another run meanwhile; run resolve again")
        stamp = now()
        db["proposals"].insert_all(
            ({"task": o.task.name, "run_id": run.id, "iteration": k,
              "heuristic_id": p["heuristic_id"], "kind": p["kind"], "text": p["text"],
              "rationale": p["rationale"], "evidence": dumps(p["evidence"]), "status": PENDING,
              "created_at": stamp} for p in unique), pk="id")
        _update(ws, o.task.name, k, proposed=True, stop=None,
                errors=[p["example_id"] for p in errors],
                successes=[p["example_id"] for p in sample], attribution=attribution,
                rules=[r["id"] for r in rules],
                heuristic_versions={str(r["id"]): r["version"] for r in rules},
                groups=[g.heuristic_id for g in groups], failed_groups=failed,
                n_proposals=len(unique), attribution_method=o.attribution)
    summary.failed_groups.update(failed)
    return len(unique)


def _impact_removals(ws: Workspace, o: _Options,
                     found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A ``remove`` proposal, carrying the measured evidence, for each approved heuristic whose
    removal raised validation macro-F1 and that no teacher proposal already edits or removes."""
    report = measure_impact(ws, o.task.name, o.student, val_limit=o.val_limit,
                            calibration=o.calibration, seed=o.seed,
                            concurrency=o.concurrency, on_progress=o.on_progress)
    targeted = {p["heuristic_id"] for p in found if p["kind"] in (EDIT, REMOVE)}
    out = []
    for h in report["heuristics"]:
        if not h["harmful"] or h["heuristic_id"] in targeted:
            continue
        lo, hi = h["ci"] or (None, None)
        ci = f", paired 95% CI of the change [{lo:+.3f}, {hi:+.3f}]" if lo is not None else ""
        with_f1 = report["full"].get("calibrated_macro_f1" if report["metric"] == "calibrated"
                                     else "macro_f1")
        out.append({
            "heuristic_id": h["heuristic_id"], "kind": REMOVE, "text": "",
            "rationale": (f"Measured, not proposed by the teacher: on {report['n_val']} "
                          f"validation items ({report['metric']} answers) macro-F1 is "
                          f"{with_f1:.3f} with this heuristic and {with_f1 - h['effect']:.3f} "
                          f"without it{ci}; it breaks {len(h['breaks'])} answers and fixes "
                          f"{len(h['fixes'])}."),
            # The answers it breaks first: they are the case for removing it.
            "evidence": [*h["breaks"], *h["fixes"]],
        })
    return out


# -- decisions ------------------------------------------------------------------------------------

def _check_who(who: str, identity_kind: str) -> str:
    who = (who or "").strip()
    if not who:
        raise BadInput("--as: a reviewer name is required")
    if who.startswith(_TEACHER_PREFIX):
        raise BadInput(f"--as {who!r}: names starting with 'teacher:' are reserved for models")
    if identity_kind not in review.IDENTITY_KINDS:
        raise BadInput(f"identity kind {identity_kind!r}: use one of "
                       f"{', '.join(review.IDENTITY_KINDS)}")
    return who


def _proposal(ws: Workspace, proposal_id: int) -> dict[str, Any]:
    rows = ws.query("SELECT * FROM proposals WHERE id = ?", [proposal_id])
    if not rows:
        raise BadInput(f"proposal {proposal_id} not found")
    row = rows[0]
    row["evidence"] = loads(row["evidence"], [])
    return row


def _base_version(ws: Workspace, p: dict[str, Any]) -> int:
    """The version of the target heuristic that the teacher saw when proposing."""
    versions = _record(ws, p["task"], p["iteration"]).get("heuristic_versions") or {}
    if str(p["heuristic_id"]) not in versions:
        raise BadInput(f"proposal {p['id']}: heuristic {p['heuristic_id']} was not in the "
                       f"prompt of iteration {p['iteration']}")
    return int(versions[str(p["heuristic_id"])])


def _apply(ws: Workspace, p: dict[str, Any], who: str, identity_kind: str, comment: str,
           author: str | None, approver: str | None) -> dict[str, Any]:
    """Carry out an accepted proposal; call inside ``ws.write()``. ``author`` (a model, in
    automatic mode) writes the text instead of ``who``; ``approver`` then approves it."""
    out: dict[str, Any] = {}
    if p["kind"] == REMOVE:
        row = review.reject(ws, p["heuristic_id"], who, base_version=_base_version(ws, p),
                            identity_kind=identity_kind, comment=comment)
        return {"heuristic_id": row["id"], "heuristic_version": row["version"]}
    if p["kind"] == EDIT:
        base = _base_version(ws, p)
        if author is None:
            row = review.edit(ws, p["heuristic_id"], p["text"], who, base_version=base,
                              identity_kind=identity_kind, comment=comment)
        else:
            row = review.fetch(ws, p["heuristic_id"])
            if row["version"] != base:
                raise review.stale_error(ws, row["id"], base)
            with ws.write() as db:
                row = review.apply_change(
                    ws, db, row, {"text": p["text"], "updated_by": author, "status": review.DRAFT,
                                  "approved_by": None, "approved_at": None,
                                  "identity_kind": None},
                    who=author, identity_kind=review.AUTO, action="edit", comment=comment)
        hid = row["id"]
    else:
        if author is None:
            hid = review.create_heuristic(ws, p["task"], p["text"], who, origin=STAGE,
                                          identity_kind=identity_kind, comment=comment)
        else:
            with ws.write() as db:
                hid = review.insert_row(db, {"task": p["task"], "text": p["text"],
                                          "source_rule_ids": [], "origin": STAGE},
                                     who=author, identity_kind=review.AUTO, comment=comment)
    if approver is not None:
        review.approve(ws, hid, approver, identity_kind=review.AUTO, comment=AUTO_COMMENT)
    row = review.fetch(ws, hid)
    out.update(heuristic_id=hid, heuristic_version=row["version"], heuristic_status=row["status"])
    return out


def _decide(ws: Workspace, proposal_id: int, accept: bool, who: str, *, identity_kind: str,
            comment: str | None, author: str | None = None,
            approver: str | None = None) -> dict[str, Any]:
    with ws.write() as db:
        p = _proposal(ws, proposal_id)
        if p["status"] != PENDING:
            raise BadInput(f"proposal {proposal_id} is already {p['status']} "
                           f"(by {p['decided_by']})")
        status = ACCEPTED if accept else REJECTED
        effect: dict[str, Any] = {}
        if accept:
            note = (f"accepted proposal #{proposal_id} (resolve iteration {p['iteration']}): "
                    f"{p['rationale'] or p['kind']}")
            effect = _apply(ws, p, who, identity_kind, comment or note, author, approver)
        stamp = now()
        db["proposals"].update(proposal_id, {"status": status, "decided_by": who,
                                             "decided_at": stamp})
        db["reviews"].insert({
            "created_at": stamp, "who": who, "identity_kind": identity_kind,
            "entity": "proposal", "entity_id": proposal_id,
            "action": "accept" if accept else "reject", "before": dumps({"status": PENDING}),
            "after": dumps({"status": status, "kind": p["kind"], **effect}), "comment": comment,
        })
    return _proposal(ws, proposal_id)


def decide_proposal(ws: Workspace, proposal_id: int, accept: bool, who: str,
                    comment: str | None = None,
                    identity_kind: str = review.SELF_DECLARED) -> dict[str, Any]:
    """Accept or reject a pending proposal as ``who``; returns the proposal row.

    Accepting an ``edit`` edits the heuristic as ``who`` (a draft someone else must approve),
    refused as stale if it changed since the teacher saw it; an ``add`` creates a draft by
    ``who``; a ``remove`` rejects the heuristic. Every decision appends a ``reviews`` row for
    the proposal (entity ``proposal``), besides the heuristic's own rows, in one transaction.
    """
    who = _check_who(who, identity_kind)
    return _decide(ws, proposal_id, accept, who, identity_kind=identity_kind, comment=comment)


def _auto_accept(ws: Workspace, o: _Options, k: int) -> int:
    assert o.auto_accept_as is not None
    n = 0
    for p in _proposal_rows(ws, o.task.name, k, PENDING):
        _decide(ws, p["id"], True, o.auto_accept_as, identity_kind=review.AUTO,
                comment=AUTO_COMMENT, author=_TEACHER_PREFIX + o.teacher,
                approver=o.auto_accept_as)
        n += 1
    return n


# -- the loop -------------------------------------------------------------------------------------

def _check_args(ws: Workspace, task: str, student: str, teacher: str, *, iterations: int,
                auto_accept_as: str | None, n_success: int | None, val_limit: int | None,
                min_delta: float, attribution: str, top_k: int, max_examples: int) -> TaskInfo:
    for role, model in (("student", student), ("teacher", teacher)):
        try:
            parse_model(model)
        except ConfigError as e:
            raise BadInput(f"--{role}: {e}") from e
    if iterations < 1:
        raise BadInput(f"--iterations must be at least 1, got {iterations}")
    if n_success is not None and n_success < 0:
        raise BadInput(f"n_success must be at least 0, got {n_success}")
    if val_limit is not None and val_limit < 1:
        raise BadInput(f"--val-limit must be at least 1, got {val_limit}")
    if min_delta < 0:
        raise BadInput(f"min_delta must not be negative, got {min_delta}")
    if top_k < 1 or max_examples < 1:
        raise BadInput("top_k and max_examples must be at least 1")
    if attribution != TFIDF:
        check_embedder_name(attribution)
    if auto_accept_as is not None:
        _check_who(auto_accept_as, review.AUTO)
    info = task_info(ws, task)
    n_val = ws.query("SELECT count(*) AS n FROM examples WHERE task = ? AND split = ?",
                     [task, VAL])[0]["n"]
    if not n_val:
        raise NotReady(f"task {task!r} has no validation examples; load some with "
                       f"python -m pld load {task} --val N")
    return info


def _summary(ws: Workspace, o: _Options, run: Run, ran: int, stop: str, made: int,
             failed: dict[int, str]) -> ResolveSummary:
    series = _series(ws, o.task.name, o.student, o.val_limit)
    keep = {r["iteration"] for r in series}
    history = [h for h in iteration_history(ws, o.task.name) if h["iteration"] in keep]
    last = series[-1] if series else {}
    pending = len(_proposal_rows(ws, o.task.name, last["iteration"], PENDING)) if last else 0
    return ResolveSummary(run.id, o.task.name, ran, stop, last.get("best_version"),
                          last.get("best_macro_f1"), history, made, pending, failed)


def _best(rec: dict[str, Any]) -> dict[str, Any]:
    keys = ("best_version", "best_macro_f1", "best_iteration", "best_n_errors", "basis_of_best")
    return {k: rec[k] for k in keys}


def _loop(ws: Workspace, o: _Options, run: Run, summary: ResolveSummary) -> tuple[str, int]:
    """Run iterations until a stop reason; returns (reason, iterations evaluated)."""
    ran = 0
    task = o.task.name
    while True:
        series = _series(ws, task, o.student, o.val_limit)
        last = series[-1] if series else None
        if last is None:
            if not review.approved_heuristics(ws, task):
                raise NotReady(f"no approved heuristics for task {task!r}; approve some with "
                               f"python -m pld review approve ID --as NAME")
            rec = _evaluate(ws, o, run, _next_iteration(ws, task), None)
        elif last.get("proposed"):
            pending = _proposal_rows(ws, task, last["iteration"], PENDING)
            if pending or _touched(ws, task, last["iteration"]):
                return AWAITING_REVIEW, ran
            if ran >= o.iterations:
                return MAX_ITERATIONS, ran
            rec = _evaluate(ws, o, run, _next_iteration(ws, task), _best(last))
            ran += 1
        else:
            current = _current_prompt(ws, o, last["best_version"])[0]
            if current.version != last["best_version"]:
                # Reviewers changed the approved heuristics since: that is a new candidate.
                if ran >= o.iterations:
                    return MAX_ITERATIONS, ran
                rec = _evaluate(ws, o, run, _next_iteration(ws, task), _best(last))
                ran += 1
            elif last.get("stop") in (CONVERGED, NO_ERRORS):
                return last["stop"], ran
            elif last.get("stop") == TEACHER_FAILED and not o.retry_failed:
                return TEACHER_FAILED, ran
            else:
                rec = last  # evaluated, never proposed (budget ran out, or interrupted)
        if rec.get("stop") in (CONVERGED, NO_ERRORS):
            return rec["stop"], ran
        if o.auto_accept_as and ran >= o.iterations and rec is not last:
            _update(ws, task, rec["iteration"], stop=MAX_ITERATIONS)
            return MAX_ITERATIONS, ran
        made = _propose(ws, o, run, rec, _series(ws, task, o.student, o.val_limit), summary)
        if made is None:
            return TEACHER_FAILED, ran
        summary.proposals_made += made
        if o.auto_accept_as:
            _auto_accept(ws, o, rec["iteration"])
        elif made:
            return AWAITING_REVIEW, ran


def _next_iteration(ws: Workspace, task: str) -> int:
    recs = _records(ws, task)
    return recs[-1]["iteration"] + 1 if recs else 1


def resolve(
    ws: Workspace,
    task: str,
    student: str,
    teacher: str,
    *,
    iterations: int = 3,
    auto_accept_as: str | None = None,
    n_success: int | None = None,
    val_limit: int | None = None,
    seed: int = 0,
    min_delta: float = 0.01,
    attribution: str = "minilm",
    top_k: int = 2,
    max_examples: int = 8,
    concurrency: int | None = None,
    retry_failed: bool = False,
    calibration: str | None = DEFAULT_CALIBRATION,
    impact: bool = True,
    on_progress: ProgressCallback | None = None,
) -> ResolveSummary:
    """Run the conflict loop of ``task`` (see the module docstring) and say where it stopped:
    ``converged``, ``max-iterations``, ``awaiting-review``, ``no-errors`` or ``teacher-failed``
    (every teacher call of the last iteration failed; ``retry_failed=True`` asks again).

    ``iterations``: new versions this call may evaluate after the first. ``auto_accept_as``:
    accept every proposal and approve its heuristic as this name (benchmarks). ``n_success``:
    successes shown to the teacher (default: as many as errors). ``val_limit``: the first N
    validation items. ``attribution``: ``minilm``/``e5-small`` (embeddings) or ``tfidf``.
    ``top_k``: heuristics kept per example. ``max_examples``: errors (and successes) per teacher
    call. ``calibration``: each version is scored on calibrated answers (its own per-label
    bias, fitted on the same validation items; None: raw answers). ``impact``: measure every
    heuristic's leave-one-out effect and propose removing those whose removal raises validation
    macro-F1. Raises :class:`NotReady` without approved heuristics or validation examples and
    :class:`BadInput` for bad model strings or options.
    """
    info = _check_args(ws, task, student, teacher, iterations=iterations,
                       auto_accept_as=auto_accept_as, n_success=n_success, val_limit=val_limit,
                       min_delta=min_delta, attribution=attribution, top_k=top_k,
                       max_examples=max_examples)
    o = _Options(info, student, teacher, iterations,
                 auto_accept_as.strip() if auto_accept_as else None, n_success, val_limit, seed,
                 min_delta, attribution, top_k, max_examples, concurrency, on_progress,
                 retry_failed, calibration, impact)
    params = {"student": student, "teacher": teacher, "iterations": iterations,
              "auto_accept_as": o.auto_accept_as, "n_success": n_success, "val_limit": val_limit,
              "seed": seed, "min_delta": min_delta, "attribution": attribution, "top_k": top_k,
              "max_examples": max_examples, "calibration": calibration, "impact": impact}
    with stage_run(ws, task, STAGE, params, on_progress) as run:
        summary = ResolveSummary(run.id, task, 0, "", None, None)
        stop, ran = _loop(ws, o, run, summary)
        final = _summary(ws, o, run, ran, stop, summary.proposals_made, summary.failed_groups)
    return final
