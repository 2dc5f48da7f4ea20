"""Stage 5, the student: approved heuristics become a versioned system prompt, and the student
model classifies examples with it, answering with a label only (no chain-of-thought).

The system prompt is fixed and comes first, the example text is the one user message and comes
last. That order is what lets the local backend keep the prompt's KV state between examples and
lets remote providers cache the prefix. Prompt versions are content-addressed: building the same
text again returns the version that already holds it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pld import prompts, review_rows
from pld.errors import BadInput, NotReady
from pld.identity import Identity
from pld.llm import batch, calls
from pld.llm.base import ConfigError
from pld.llm.fan_out import fan_out
from pld.llm.registry import default_concurrency
from pld.pipeline.estimate import Planned
from pld.pipeline.runs import (
    ProgressCallback,
    stage_run,
)
from pld.preamble import compose, ensure_preamble
from pld.review import approved_heuristics
from pld.tasks.store import default_text, task_info
from pld.tasks.store import examples as task_examples
from pld.workspace import Workspace, dumps, loads, now

STUDENT_MAX_TOKENS = 16
# A method whose system prompt depends on the item: the item's text -> its system prompt.
ItemPrompt = Callable[[str], str]


@dataclass(frozen=True)
class PromptVersion:
    """One stored student prompt: ``text`` is the exact system prompt, ``sha256`` its digest."""

    id: int
    task: str
    version: int
    text: str
    sha256: str
    heuristic_ids: list[int]
    origin: str = "review"
    parent_version: int | None = None
    created_at: str = ""
    built_by: str | None = None


@dataclass(frozen=True)
class PredictResult:
    """Predictions of one run, in example-id order; ``pred`` is None where unparseable.

    ``scores`` holds each answer's label log-probabilities, None where the backend gave none.
    """

    run_id: int
    gold: list[str]
    pred: list[str | None]
    example_ids: list[int]
    call_ids: list[int | None] = field(default_factory=list)
    scores: list[dict[str, float] | None] = field(default_factory=list)


def sha256_text(text: str) -> str:
    """The sha256 of ``text`` encoded as UTF-8: the digest stored and exported for a prompt."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def render_student_prompt(heuristics: list[str], labels: list[str], description: str) -> str:
    """The student's system prompt for these heuristic texts under the template's first-draft
    preamble (pure: same inputs, same text). Without heuristics it is the zero-shot prompt.

    Prompts of a task in a workspace come from :func:`prompt_text`, which uses the task's
    reviewed preamble instead.
    """
    if not heuristics:
        return zero_shot_prompt(labels, description)
    return compose(default_text(description, labels), heuristics)


def zero_shot_prompt(labels: list[str], description: str) -> str:
    """The prompt without rules: the zero-shot baseline, and the floor every measured effect
    of a heuristic is compared with."""
    return prompts.render("zero_shot", description=description.strip(),
                          labels=", ".join(labels)).strip()


def prompt_text(ws: Workspace, task: str, heuristics: list[str]) -> str:
    """The system prompt the student runs with for these heuristic texts: the task's preamble
    as reviewers last left it, with the heuristics in its rules slot. Without heuristics it is
    the zero-shot prompt (the conflict loop's rule-free candidate, impact's floor)."""
    info = task_info(ws, task)
    if not heuristics:
        return zero_shot_prompt(info.labels, info.description)
    return compose(ensure_preamble(ws, task)["text"], heuristics)


def _from_row(row: dict[str, Any]) -> PromptVersion:
    return PromptVersion(
        id=row["id"], task=row["task"], version=row["version"], text=row["text"],
        sha256=row["sha256"], heuristic_ids=loads(row["heuristic_ids"], []),
        origin=row["origin"] or "", parent_version=row["parent_version"],
        created_at=row["created_at"] or "", built_by=row.get("built_by"),
    )


def store_prompt(
    ws: Workspace,
    task: str,
    text: str,
    heuristic_ids: list[int],
    *,
    origin: str = "review",
    parent_version: int | None = None,
    built_by: Identity | None = None,
) -> PromptVersion:
    """Store ``text`` as the task's next prompt version, or return the version that has it.
    A new version is recorded in the trail as built by ``built_by`` (a stage when None)."""
    sha = sha256_text(text)
    with ws.write() as db:
        # Inside the write transaction, so two builders cannot both take the same max+1.
        same = ws.query(
            "SELECT * FROM prompts WHERE task = ? AND sha256 = ? ORDER BY version LIMIT 1",
            [task, sha],
        )
        if same:
            return _from_row(same[0])
        top = ws.query("SELECT max(version) AS v FROM prompts WHERE task = ?", [task])[0]["v"]
        builder = built_by or Identity.system(origin)
        row_id = db["prompts"].insert({
            "task": task, "version": (top or 0) + 1, "text": text, "sha256": sha,
            "heuristic_ids": dumps(list(heuristic_ids)), "origin": origin,
            "parent_version": parent_version, "created_at": now(), "built_by": builder.name,
        }).last_pk
        review_rows.audit(db, builder, "prompt", int(row_id), "build", None,
                          {"task": task, "version": (top or 0) + 1, "sha256": sha,
                           "heuristic_ids": list(heuristic_ids)}, None)
    return _from_row(ws.query("SELECT * FROM prompts WHERE id = ?", [row_id])[0])


def build_prompt(
    ws: Workspace, task: str, *, origin: str = "review", parent_version: int | None = None,
    allow_empty: bool = False, who: Identity | None = None,
) -> PromptVersion:
    """Render the approved heuristics of ``task`` into a prompt version (new or existing).

    Raises :class:`NotReady` when no heuristic of the task is approved, unless ``allow_empty``
    (the conflict loop, after people removed every heuristic: the prompt without rules is then
    a candidate like any other).
    """
    task_info(ws, task)
    rows = approved_heuristics(ws, task)
    if not rows and not allow_empty:
        raise NotReady(
            f"no approved heuristics for task {task}; approve some with "
            f"python -m pld review approve ID --base-version V --as NAME"
        )
    text = prompt_text(ws, task, [r["text"] for r in rows])
    return store_prompt(ws, task, text, [int(r["id"]) for r in rows], origin=origin,
                        parent_version=parent_version, built_by=who)


def get_prompt(ws: Workspace, task: str, version: int | None = None) -> PromptVersion:
    """Prompt ``version`` of ``task`` (the latest when None); :class:`BadInput` if missing."""
    if version is None:
        rows = ws.query(
            "SELECT * FROM prompts WHERE task = ? ORDER BY version DESC LIMIT 1", [task]
        )
        if not rows:
            raise BadInput(
                f"task {task} has no prompt versions yet; approve heuristics and build one "
                f"(python -m pld prompts build {task}, or the Export page)"
            )
        return _from_row(rows[0])
    rows = ws.query("SELECT * FROM prompts WHERE task = ? AND version = ?", [task, version])
    if not rows:
        have = [str(r["version"]) for r in ws.query(
            "SELECT version FROM prompts WHERE task = ? ORDER BY version", [task])]
        raise BadInput(
            f"task {task} has no prompt version {version} "
            f"(versions: {', '.join(have) if have else 'none'})"
        )
    return _from_row(rows[0])


def list_prompts(ws: Workspace, task: str) -> list[PromptVersion]:
    """All prompt versions of ``task``, oldest first."""
    return [_from_row(r) for r in ws.query(
        "SELECT * FROM prompts WHERE task = ? ORDER BY version", [task])]


def _default_workers(student: str) -> int:
    try:
        return default_concurrency(student)
    except ConfigError as e:
        raise BadInput(str(e)) from e


def _select(
    ws: Workspace, task: str, split: str, example_ids: list[int] | None, limit: int | None
) -> list[dict[str, Any]]:
    if example_ids is None:
        rows = task_examples(ws, task, split, limit)
        if not rows:
            raise NotReady(
                f"task {task} has no {split} examples; load them with python -m pld load"
            )
        return rows
    wanted = sorted(set(example_ids))
    rows = ws.query(
        "SELECT * FROM examples WHERE task = ? AND id IN (SELECT value FROM json_each(?)) "
        "ORDER BY id",
        [task, dumps(wanted)],
    )
    missing = sorted(set(wanted) - {r["id"] for r in rows})
    if missing:
        raise BadInput(f"task {task} has no examples with ids {missing[:10]}")
    if not rows:
        raise BadInput("example_ids is empty")
    return rows[:limit] if limit is not None else rows


def predict(
    ws: Workspace,
    task: str,
    student: str,
    *,
    system_prompt: str,
    split: str = "val",
    example_ids: list[int] | None = None,
    limit: int | None = None,
    kind: str = "predict",
    params: dict[str, Any] | None = None,
    concurrency: int | None = None,
    on_progress: ProgressCallback | None = None,
    run_id: int | None = None,
    started_by: Identity | None = None,
    item_prompt: ItemPrompt | None = None,
) -> PredictResult:
    """Classify examples of ``task`` with ``student`` under ``system_prompt``.

    With ``item_prompt`` each item gets its own system prompt, ``item_prompt(text)`` (a method
    whose prompt depends on the item, e.g. nearest-neighbour k-shot); ``system_prompt`` then
    stands for the method: its sha256 is the run's ``prompt_sha256``.

    Items are ``example_ids`` (any split) or the first ``limit`` examples of ``split`` by id.
    Each answer is parsed strictly against the label set; an unparseable answer is stored with a
    NULL label and counts as wrong. One ``predictions`` row per (run, example) is written as it
    arrives; passing the ``run_id`` of an earlier, unfinished run resumes it and skips the rows
    it already has (and keeps whoever started it; ``started_by`` is recorded on a new run).
    Calls run on a thread pool of ``concurrency``
    (default: :func:`~pld.llm.registry.default_concurrency`). A call that fails for good fails the
    run; its finished rows stay.
    """
    info = task_info(ws, task)
    labels = info.labels
    workers = concurrency if concurrency is not None else _default_workers(student)
    if workers < 1:
        raise BadInput(f"concurrency must be at least 1, got {workers}")
    items = _select(ws, task, split, example_ids, limit)
    run_params: dict[str, Any] = {
        **(params or {}), "student": student, "prompt_sha256": sha256_text(system_prompt),
        "split": split if example_ids is None else None, "limit": limit, "n": len(items),
    }
    if example_ids is not None:
        run_params["example_ids"] = [r["id"] for r in items]

    with stage_run(ws, task, kind, run_params, on_progress, run_id=run_id,
                   same=("student", "prompt_sha256", "split"), started_by=started_by) as run:
        done = {r["example_id"]: r for r in ws.query(
            "SELECT example_id, label, call_id, scores FROM predictions WHERE run_id = ?",
            [run.id])}
        todo = [r for r in items if r["id"] not in done]
        run.set_total(len(items), done=len(items) - len(todo))

        def system_for(ex: dict[str, Any]) -> str:
            return system_prompt if item_prompt is None else item_prompt(ex["text"])

        def classify(ex: dict[str, Any]) -> dict[str, Any]:
            res = calls.complete(
                ws, student, [{"role": "user", "content": ex["text"]}], system=system_for(ex),
                choices=labels, max_tokens=STUDENT_MAX_TOKENS, stage=kind, run_id=run.id,
                role="student",
            )
            label = calls.match_choice(res.text, labels)
            scores = res.reply.label_logprobs
            row = {"run_id": run.id, "example_id": ex["id"], "raw": res.text, "label": label,
                   "correct": int(label == ex["label"]), "call_id": res.call_id,
                   "scores": dumps(scores) if scores is not None else None,
                   "created_at": now()}
            with ws.write() as db:
                db["predictions"].insert(row, ignore=True)
            return row

        # With --batch, the student's calls go through the batch API first (then answered
        # from the cache in classify); without it, this does nothing.
        params = calls.call_params(max_tokens=STUDENT_MAX_TOKENS, choices=labels)
        batch.prefetch(ws, (Planned(student, kind, system_for(ex),
                                    [{"role": "user", "content": ex["text"]}], params)
                            for ex in todo), run_id=run.id)
        for ex, row in fan_out(classify, todo, workers=workers, name="student"):
            done[ex["id"]] = row
            # Progress is counted on this thread only: Run is not thread-safe.
            run.advance()

    kept = [r for r in items if r["id"] in done]
    return PredictResult(
        run_id=run.id,
        gold=[r["label"] for r in kept],
        pred=[done[r["id"]]["label"] for r in kept],
        example_ids=[r["id"] for r in kept],
        call_ids=[done[r["id"]]["call_id"] for r in kept],
        scores=[loads(done[r["id"]]["scores"]) for r in kept],
    )
