"""The conflict loop's proposals: errors attributed to heuristics, one teacher call per group
(``pld/prompts/resolve.md``), and measured ``remove`` proposals for heuristics whose removal
raised validation macro-F1 (:mod:`pld.pipeline.resolve.impact`). Proposals are stored ``pending``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pld import review
from pld.errors import BadInput
from pld.llm import calls
from pld.llm.fan_out import fan_out
from pld.llm.json_reply import loads_reply
from pld.llm.registry import default_concurrency
from pld.llm.teacher_json import UnusableReply, ask_json
from pld.pipeline.embed import get_embedder
from pld.pipeline.resolve.evidence import ci_words, removal_evidence
from pld.pipeline.resolve.impact import measure_impact
from pld.pipeline.resolve.state import (
    ACCEPTED,
    ADD,
    EDIT,
    KINDS,
    MAX_ADD,
    MAX_TOKENS,
    PENDING,
    REMOVE,
    STAGE,
    TEACHER_FAILED,
    TEXT_CHARS,
    TFIDF,
    LoopOptions,
    ResolveSummary,
    basis_predictions,
    proposal_rows,
    stored_evidence,
    update_record,
)
from pld.pipeline.runs import Run
from pld.preamble import heuristic_item
from pld.prompts import render
from pld.workspace import Workspace, now


class BadReplyError(ValueError):
    """The teacher's reply is not the JSON object the prompt asks for."""


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


def _teacher_prompt(o: LoopOptions, rules: Sequence[dict[str, Any]], group: _Group,
                    tried: dict[str, Any] | None) -> str:
    return render(
        "resolve", task=o.task.name, description=o.task.description,
        labels=", ".join(o.task.labels),
        rules="\n".join(heuristic_item(i, r["text"]) for i, r in enumerate(rules, 1)),
        focus_number=group.number, errors=_error_block(group.errors),
        successes=_success_block(group.successes), tried=_tried_note(tried), max_add=MAX_ADD,
    )


def _ask_teacher(ws: Workspace, o: LoopOptions, run_id: int, prompt: str) -> list[dict[str, Any]]:
    parsed, _ = ask_json(ws, o.teacher, prompt, parse_reply, schema=reply_schema(),
                         max_tokens=MAX_TOKENS, stage=STAGE, run_id=run_id,
                         shape_hint=' {"proposals": [...]}')
    return parsed


# What one teacher call gave: the proposals kept and those dropped, or why it failed.
_Outcome = tuple[list[dict[str, Any]], list[dict[str, Any]]] | str


def _keep(group: _Group, texts: dict[int, str],
          raw: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The proposals of one group as rows: one edit/remove of the focus heuristic at most, at
    most ``MAX_ADD`` adds, none that repeats a current rule's text, evidence limited to the
    examples the teacher was shown. Also returns what was dropped, each with its reason, so
    people can see what the teacher said even when nothing came of it."""
    shown = [r["example_id"] for r in (*group.errors, *group.successes)]
    fallback = [r["example_id"] for r in group.errors]
    existing = {t.strip() for t in texts.values()}
    out: list[dict[str, Any]] = []
    dropped: list[dict[str, Any]] = []
    changed, adds = False, 0

    def drop(p: dict[str, Any], reason: str) -> None:
        dropped.append({"heuristic_id": group.heuristic_id, "kind": p["kind"],
                        "text": p["text"], "reason": reason})

    for p in raw:
        if p["kind"] != REMOVE and p["text"] in existing:
            drop(p, "its text is already a current heuristic's, word for word")
            continue
        if p["kind"] in (EDIT, REMOVE):
            if changed:
                drop(p, "a second edit or remove of the same heuristic in one reply")
                continue
            changed = True
        else:
            if adds >= MAX_ADD:
                drop(p, f"more than {MAX_ADD} new heuristics in one reply")
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
    return out, dropped


def tried_changes(ws: Workspace, series: list[dict[str, Any]],
                  rec: dict[str, Any]) -> dict[str, Any] | None:
    """The accepted changes that made ``rec``'s version, when it was not adopted."""
    if rec.get("adopted") or rec.get("delta") is None:
        return None
    before = [r for r in series if r["iteration"] < rec["iteration"]]
    if not before:
        return None
    changes = [{"kind": p["kind"], "heuristic_id": p["heuristic_id"], "text": p["text"]}
               for p in proposal_rows(ws, rec["task"], before[-1]["iteration"], ACCEPTED)]
    return {"from": rec["best_macro_f1"], "to": rec["macro_f1"], "changes": changes}


def propose(ws: Workspace, o: LoopOptions, run: Run, rec: dict[str, Any],
            series: list[dict[str, Any]], summary: ResolveSummary) -> int | None:
    """Attribute the basis errors, ask the teacher per group, store the proposals of ``rec``.

    Returns how many proposals were stored, or None when every teacher call failed (recorded as
    the iteration's stop, ``teacher-failed``, with each group's error)."""
    k = rec["iteration"]
    preds = basis_predictions(ws, o.task.name, rec["basis"])
    errors = [p for p in preds if not p["correct"]]
    successes = [p for p in preds if p["correct"]]
    rng = random.Random(f"{o.seed}:{k}")
    n_success = len(errors) if o.n_success is None else o.n_success
    sample = sorted(rng.sample(successes, min(n_success, len(successes))),
                    key=lambda p: p["example_id"])
    rules = review.approved_heuristics(ws, o.task.name)
    if not rules:
        # Every heuristic was removed: nothing to attribute errors to or to change.
        update_record(ws, o.task.name, k, proposed=True, stop=None, rules=[], n_proposals=0,
                      heuristic_versions={}, errors=[], successes=[], groups=[])
        return 0
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
    tried = tried_changes(ws, series, {**rec, "task": o.task.name})
    texts = {r["id"]: r["text"] for r in rules}
    run.set_total(len(groups))

    def work(group: _Group) -> _Outcome:
        try:
            raw = _ask_teacher(ws, o, run.id, _teacher_prompt(o, rules, group, tried))
        except (UnusableReply, calls.CallFailed) as e:
            return f"{type(e).__name__}: {e}"  # this group failed; the others go on
        return _keep(group, texts, raw)

    workers = o.concurrency or default_concurrency(o.teacher)
    outcomes: dict[int, _Outcome] = {}
    for g, outcome in fan_out(work, groups, workers=workers, name="resolve"):
        outcomes[g.heuristic_id] = outcome
        run.advance()
    found: list[dict[str, Any]] = []
    dropped: list[dict[str, Any]] = []
    failed: dict[int, str] = {}
    # Collected in group order, so the stored proposals do not depend on thread timing.
    for g in groups:
        outcome = outcomes[g.heuristic_id]
        if isinstance(outcome, str):
            failed[g.heuristic_id] = outcome
        else:
            found.extend(outcome[0])
            dropped.extend(outcome[1])
    removals = _impact_removals(ws, o, found) if o.impact else []
    found.extend(removals)
    if groups and len(failed) == len(groups) and not removals:
        # Nothing to store; the evaluated best version stands. Not an exception: a run that
        # reaches this point has paid for its evaluations, and the chain goes on to the test set.
        update_record(ws, o.task.name, k, stop=TEACHER_FAILED,
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
              "rationale": p["rationale"],
              "evidence": stored_evidence(p["evidence"], p.get("measured")), "status": PENDING,
              "created_at": stamp} for p in unique), pk="id")
        update_record(ws, o.task.name, k, proposed=True, stop=None, dropped=dropped,
                      errors=[p["example_id"] for p in errors],
                      successes=[p["example_id"] for p in sample], attribution=attribution,
                      rules=[r["id"] for r in rules],
                      heuristic_versions={str(r["id"]): r["version"] for r in rules},
                      groups=[g.heuristic_id for g in groups], failed_groups=failed,
                      n_proposals=len(unique), attribution_method=o.attribution)
    summary.failed_groups.update(failed)
    return len(unique)


def _impact_removals(ws: Workspace, o: LoopOptions,
                     found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A ``remove`` proposal for each approved heuristic whose removal raised validation
    macro-F1 and that no teacher proposal already edits or removes, carrying the measurement:
    the change, its paired CI and the verdict (only a removal whose CI lies above zero may be
    accepted automatically)."""
    report = measure_impact(ws, o.task.name, o.student, val_limit=o.val_limit,
                            calibration=o.calibration, seed=o.seed,
                            concurrency=o.concurrency, on_progress=o.on_progress)
    targeted = {p["heuristic_id"] for p in found if p["kind"] in (EDIT, REMOVE)}
    out = []
    for h in report["heuristics"]:
        if not h["harmful"] or h["heuristic_id"] in targeted:
            continue
        measured = removal_evidence(report, h)
        with_f1 = report["full"].get("calibrated_macro_f1" if report["metric"] == "calibrated"
                                     else "macro_f1")
        out.append({
            "heuristic_id": h["heuristic_id"], "kind": REMOVE, "text": "",
            "rationale": (f"Measured, not proposed by the teacher: on {report['n_val']} "
                          f"validation items ({report['metric']} answers) macro-F1 is "
                          f"{with_f1:.3f} with this heuristic and {with_f1 - h['effect']:.3f} "
                          f"without it; removing it changes macro-F1 by "
                          f"{ci_words(measured['change'], measured['ci'], measured['n'])}. It "
                          f"breaks {len(h['breaks'])} answers and fixes {len(h['fixes'])}."),
            # The answers it breaks first: they are the case for removing it.
            "evidence": [*h["breaks"], *h["fixes"]],
            "measured": measured,
        })
    return out

