"""Stage 7, evaluate: score a prompt version, an exported prompt file, or the zero-shot and k-shot
baselines, with the same student on the same items.

Every method is just a different system prompt in front of the same example messages: the first
``limit`` items of the split by id. That keeps methods comparable, and it makes evaluating an
exported ``prompt.md`` hit the call cache of the version it was exported from, so the stored
score is reproduced exactly. One ``evaluations`` row per evaluation holds the metrics together
with the model, the split and the prompt's sha256. Nearest-neighbour k-shot is the one method
whose system prompt depends on the item (its demonstrations are the item's nearest training
examples); the text it stores and hashes is the method's key (:mod:`pld.pipeline.nearest_shots`).

Evaluating is idempotent and resumable like every stage: the same method, prompt, student, split,
limit and seed again returns the stored evaluation (no new rows), and an evaluation whose run was
interrupted continues that run, skipping the items it already has.
"""

from __future__ import annotations

import difflib
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pld import prompts
from pld.errors import BadInput, NotReady
from pld.identity import Identity
from pld.llm import calls
from pld.metrics import paired_delta, score
from pld.pipeline.calibrate import DEFAULT_METHOD, FITTED, calibrate, calibrated_answers
from pld.pipeline.calibrate import METHODS as CALIBRATION_METHODS
from pld.pipeline.estimate import Planned
from pld.pipeline.nearest_shots import NearestShots
from pld.pipeline.runs import DONE, ProgressCallback, mark_dead_runs
from pld.pipeline.student import STUDENT_MAX_TOKENS, ItemPrompt, get_prompt, predict, sha256_text
from pld.pipeline.student import zero_shot_prompt as student_zero_shot
from pld.pipeline.worked_examples import worked_examples_prompt
from pld.tasks.store import TaskInfo, task_info
from pld.tasks.store import examples as task_examples
from pld.workspace import Workspace, dumps, loads, now, row_by_id


@dataclass(frozen=True)
class EvalResult:
    """One stored evaluation."""

    evaluation_id: int
    method: str
    metrics: dict[str, Any]
    prompt_sha256: str
    run_id: int
    student: str = ""
    split: str = ""
    n: int = 0
    prompt_version: int | None = None


def zero_shot_prompt(info: TaskInfo) -> str:
    """The zero-shot baseline: task description, label set, answer with the label only (the
    student's prompt without any heuristic)."""
    return student_zero_shot(info.labels, info.description)


def few_shot_examples(ws: Workspace, task: str, k: int, *, seed: int = 0) -> list[dict[str, Any]]:
    """``k`` training examples spread as evenly as possible across labels (seeded).

    Labels take turns in a seeded order, each contributing its next seeded-random example, until
    ``k`` are picked or the training split runs out; the picked demos are then shuffled so that
    their order carries no label pattern.
    """
    if k < 1:
        raise BadInput(f"--few-shot K must be at least 1, got {k}")
    info = task_info(ws, task)
    rows = ws.query(
        "SELECT id, text, label FROM examples WHERE task = ? AND split = 'train' ORDER BY id",
        [task],
    )
    if not rows:
        raise NotReady(f"task {task} has no train examples for few-shot demonstrations")
    rng = random.Random(seed)
    pools: dict[str, list[dict[str, Any]]] = {label: [] for label in info.labels}
    for r in rows:
        pools.setdefault(r["label"], []).append(r)
    for pool in pools.values():
        rng.shuffle(pool)
    order = [label for label in pools if pools[label]]
    rng.shuffle(order)
    picked: list[dict[str, Any]] = []
    while len(picked) < k and any(pools[label] for label in order):
        for label in order:
            if pools[label] and len(picked) < k:
                picked.append(pools[label].pop())
    rng.shuffle(picked)
    return picked


def few_shot_prompt(info: TaskInfo, demos: list[dict[str, Any]]) -> str:
    """The k-shot baseline: demonstrations live in the system prompt, so the prefix is cached."""
    blocks = [
        f"Example {i}\nInput:\n{d['text'].strip()}\nLabel: {d['label']}"
        for i, d in enumerate(demos, 1)
    ]
    return prompts.render(
        "few_shot", description=info.description.strip(), demonstrations="\n\n".join(blocks),
        labels=", ".join(info.labels),
    ).strip()


def read_prompt_file(path: str | Path) -> str:
    """An exported prompt, exactly as stored: the file's bytes decoded as UTF-8.

    ``path`` may be the export directory, whose ``prompt.md`` is read.
    """
    file = Path(path)
    if file.is_dir():
        file = file / "prompt.md"
    if not file.is_file():
        raise BadInput(f"{file}: prompt file not found")
    try:
        text = file.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadInput(f"{file}: prompt file is not UTF-8 ({e.reason} at byte {e.start})") from e
    if not text.strip():
        raise BadInput(f"{file}: prompt file is empty")
    return text


def manifest_calibration(path: str | Path, labels: list[str], student: str,
                         prompt_sha256: str) -> dict[str, Any] | None:
    """The calibration an export's ``manifest.json`` carries for ``student``, if any.

    ``path`` is the export directory or its ``prompt.md``. None when there is no manifest, it
    has no fitted calibration, or it was fitted for another student. A manifest that does not
    describe this prompt (another sha256) or whose bias names other labels is bad input.
    """
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    file = folder / "manifest.json"
    if not file.is_file():
        return None
    try:
        manifest = json.loads(file.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadInput(f"{file}: not a readable JSON manifest ({e})") from e
    if not isinstance(manifest, dict):
        raise BadInput(f"{file}: the manifest is not a JSON object")
    if manifest.get("prompt_sha256") not in (None, prompt_sha256):
        raise BadInput(f"{file}: prompt_sha256 does not match the prompt file beside it")
    cal = manifest.get("calibration")
    if not isinstance(cal, dict) or cal.get("status") != FITTED or cal.get("student") != student:
        return None
    bias = cal.get("bias")
    if not isinstance(bias, dict) or set(bias) != set(labels) or not all(
            isinstance(v, int | float) for v in bias.values()):
        raise BadInput(f"{file}: calibration.bias must give a number for each label {labels}")
    return {**cal, "bias": {k: float(v) for k, v in bias.items()}, "source": str(file)}


def _version_of(ws: Workspace, task: str, sha: str) -> int | None:
    rows = ws.query(
        "SELECT version FROM prompts WHERE task = ? AND sha256 = ? ORDER BY version LIMIT 1",
        [task, sha],
    )
    return rows[0]["version"] if rows else None


def evaluate(
    ws: Workspace,
    task: str,
    student: str,
    *,
    version: int | None = None,
    prompt_file: str | Path | None = None,
    zero_shot: bool = False,
    few_shot: int | None = None,
    nearest: bool = False,
    worked_examples: bool = False,
    split: str = "test",
    limit: int | None = None,
    seed: int = 0,
    concurrency: int | None = None,
    calibration: str | None = DEFAULT_METHOD,
    val_limit: int | None = None,
    started_by: Identity | None = None,
    on_progress: ProgressCallback | None = None,
) -> EvalResult:
    """Evaluate one method on the first ``limit`` items (by id) of ``split`` and store it.

    Exactly one of ``version`` (a stored prompt version, method ``pld``), ``prompt_file`` (an
    exported prompt.md or its directory, method ``file``), ``zero_shot`` or ``few_shot=K``
    (``few-shot-K``, K stratified training demos drawn with ``seed``; with ``nearest``,
    ``few-shot-K-nearest``: for each item the K most similar training examples, see
    :mod:`pld.pipeline.nearest_shots`, calibrated like every method) must be given;
    ``worked_examples`` with ``version`` evaluates that version with each heuristic followed by
    its most typical source example (method ``pld-worked``, never exported). ``seed``
    also seeds the bootstrap CI. ``concurrency``: student calls in flight (default: 1 for local
    models, 8 for remote ones).

    ``metrics`` are the raw answers' scores; ``metrics["calibrated"]`` the same scores of the
    calibrated answers, and ``metrics["calibration"]`` the bias used: the one an export's
    manifest carries for this student, else the one fitted with ``calibration`` (a method of
    :mod:`pld.pipeline.calibrate`, None for none) on the first ``val_limit`` validation items.
    ``started_by``: who started the job, recorded on its run.
    """
    chosen = [version is not None, prompt_file is not None, zero_shot, few_shot is not None]
    if sum(chosen) != 1:
        raise BadInput("choose exactly one of --version, --prompt, --zero-shot, --few-shot")
    if limit is not None and limit < 1:
        raise BadInput(f"--limit must be at least 1, got {limit}")
    if worked_examples and version is None:
        raise BadInput("--worked-examples goes with --version V")
    if nearest and few_shot is None:
        raise BadInput("--nearest goes with --few-shot K")
    if calibration is not None and calibration not in CALIBRATION_METHODS:
        raise BadInput(f"calibration must be one of {', '.join(CALIBRATION_METHODS)} or none, "
                       f"got {calibration!r}")
    info = task_info(ws, task)
    method, text, prompt_version, params, from_manifest, shots = _method_prompt(
        ws, info, student, version, prompt_file, zero_shot, few_shot, nearest, worked_examples,
        seed)
    sha = sha256_text(text)
    with ws.write() as db:
        # Kept so that compare() can diff any two evaluated prompts, baselines included.
        db["texts"].insert({"sha256": sha, "text": text}, ignore=True)

    params["seed"] = seed  # it seeds the bootstrap CI: another seed is another evaluation
    params["calibration"] = ("manifest" if from_manifest is not None else calibration) or "none"
    params["val_limit"] = val_limit
    if from_manifest is not None:
        params["bias"] = from_manifest["bias"]
    same = {"method": method, "prompt_sha256": sha, "student": student, "split": split,
            "limit": limit, "seed": seed, "calibration": params["calibration"],
            "val_limit": val_limit, "bias": params.get("bias")}
    run, stored = _earlier(ws, task, same)
    if stored is not None:
        return _result(stored)
    item_prompt = _item_prompt(ws, info, shots, (split, limit),
                               ("val", val_limit) if calibration is not None else None)
    result = predict(
        ws, task, student, system_prompt=text, split=split, limit=limit, kind="eval",
        params={"method": method, "prompt_version": prompt_version, **params},
        concurrency=concurrency, on_progress=on_progress,
        run_id=run["id"] if run is not None else None, started_by=started_by,
        item_prompt=item_prompt,
    )
    metrics = score(result.gold, result.pred, info.labels, seed=seed)
    if from_manifest is not None:
        summary: dict[str, Any] | None = from_manifest
    elif calibration is not None:
        summary = calibrate(ws, task, student, text, method=calibration, val_limit=val_limit,
                            concurrency=concurrency, on_progress=on_progress,
                            item_prompt=item_prompt).summary()
    else:
        summary = None
    if summary is not None:
        # Fitted on validation: scored on validation it is an in-sample (optimistic) number.
        summary = {**summary, "in_sample": split == "val" and from_manifest is None}
        metrics["calibration"] = summary
        if summary.get("status") == FITTED:
            cal = calibrated_answers(result.scores, result.pred, summary["bias"], info.labels)
            metrics["calibrated"] = score(result.gold, cal, info.labels, seed=seed)
    with ws.write() as db:
        eval_id = int(db["evaluations"].insert({
            "task": task, "run_id": result.run_id, "method": method,
            "prompt_version": prompt_version, "prompt_sha256": sha, "student": student,
            "split": split, "n": metrics["n"], "metrics": dumps(metrics), "created_at": now(),
        }).last_pk)
    return EvalResult(eval_id, method, metrics, sha, result.run_id, student, split,
                      metrics["n"], prompt_version)


# What a method runs: its name, its system prompt (the key of a per-item method), its prompt
# version, its own params, the calibration an export's manifest carries (None when not from an
# export), and the nearest-neighbour picker of a per-item method.
_Method = tuple[str, str, int | None, dict[str, Any], dict[str, Any] | None, NearestShots | None]


def _method_prompt(ws: Workspace, info: TaskInfo, student: str, version: int | None,
                   prompt_file: str | Path | None, zero_shot: bool, few_shot: int | None,
                   nearest: bool, worked_examples: bool, seed: int) -> _Method:
    """The method chosen by the arguments (see :data:`_Method`)."""
    params: dict[str, Any] = {}
    if version is not None:
        prompt = get_prompt(ws, info.name, version)
        if worked_examples:
            return ("pld-worked", worked_examples_prompt(ws, prompt), prompt.version, params,
                    None, None)
        return "pld", prompt.text, prompt.version, params, None, None
    if prompt_file is not None:
        text = read_prompt_file(prompt_file)
        params["prompt_file"] = str(prompt_file)
        return ("file", text, _version_of(ws, info.name, sha256_text(text)), params,
                manifest_calibration(prompt_file, info.labels, student, sha256_text(text)), None)
    if zero_shot:
        return "zero-shot", zero_shot_prompt(info), None, params, None, None
    assert few_shot is not None
    if nearest:
        shots = NearestShots(ws, info.name, few_shot)
        params.update(nearest=True, embedder=shots.embedder)
        return f"few-shot-{few_shot}-nearest", shots.key(), None, params, None, shots
    demos = few_shot_examples(ws, info.name, few_shot, seed=seed)
    params.update(seed=seed, demo_ids=[d["id"] for d in demos])
    return f"few-shot-{few_shot}", few_shot_prompt(info, demos), None, params, None, None


def _item_prompt(ws: Workspace, info: TaskInfo, shots: NearestShots | None,
                 *splits: tuple[str, int | None] | None) -> ItemPrompt | None:
    """Each item's system prompt for a per-item method (None for the others), with the
    demonstrations of the items of ``splits`` (split, limit) picked at once, in one batch."""
    if shots is None:
        return None
    shots.prepare([r["text"] for s in splits if s is not None
                   for r in task_examples(ws, info.name, *s)])
    return lambda text: few_shot_prompt(info, shots.demos(text))


def planned_calls(ws: Workspace, task: str, student: str, *, version: int | None = None,
                  prompt_file: str | Path | None = None, zero_shot: bool = False,
                  few_shot: int | None = None, nearest: bool = False,
                  worked_examples: bool = False,
                  split: str = "test", limit: int | None = None, seed: int = 0,
                  calibration: str | None = DEFAULT_METHOD,
                  val_limit: int | None = None) -> Iterator[Planned]:
    """The student calls :func:`evaluate` would make with these arguments (for
    ``--estimate-only``), one at a time: one per item of the split, and one per validation
    item to fit the calibration; items already answered are cached, and so free."""
    info = task_info(ws, task)
    _method, text, _version, _params, from_manifest, shots = _method_prompt(
        ws, info, student, version, prompt_file, zero_shot, few_shot, nearest, worked_examples,
        seed)
    params = calls.call_params(max_tokens=STUDENT_MAX_TOKENS, choices=info.labels)
    stages = [("eval", split, limit)]
    if calibration is not None and from_manifest is None:
        stages.append(("calibrate", "val", val_limit))
    item_prompt = _item_prompt(ws, info, shots, *[(which, n) for _, which, n in stages])
    return (Planned(student, stage, text if item_prompt is None else item_prompt(r["text"]),
                    [{"role": "user", "content": r["text"]}], params)
            for stage, which, n in stages for r in task_examples(ws, task, which, n))


def _earlier(ws: Workspace, task: str, same: dict[str, Any]
             ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The latest eval run of ``task`` whose params match ``same``, and its stored evaluation.

    ``(None, None)``: never evaluated. ``(run, evaluation)``: done, nothing to do.
    ``(run, None)``: the run stopped before its evaluation was stored, so it is resumed.
    """
    mark_dead_runs(ws)  # a killed evaluation's run is no longer "running"
    for run in ws.query("SELECT * FROM runs WHERE task = ? AND kind = 'eval' AND "
                        "status != 'running' ORDER BY id DESC", [task]):
        params = loads(run["params"], {})
        if any(params.get(k) != v for k, v in same.items()):
            continue
        rows = ws.query("SELECT * FROM evaluations WHERE run_id = ? ORDER BY id DESC LIMIT 1",
                        [run["id"]])
        if rows and run["status"] == DONE:
            row = rows[0]
            row["metrics"] = loads(row["metrics"], {})
            return run, row
        return run, None
    return None, None


def _result(row: dict[str, Any]) -> EvalResult:
    return EvalResult(row["id"], row["method"], row["metrics"], row["prompt_sha256"],
                      row["run_id"], row["student"], row["split"], row["n"],
                      row["prompt_version"])


def list_evaluations(ws: Workspace, task: str) -> list[dict[str, Any]]:
    """All evaluations of ``task``, oldest first, with ``metrics`` decoded."""
    rows = ws.query("SELECT * FROM evaluations WHERE task = ? ORDER BY id", [task])
    for r in rows:
        r["metrics"] = loads(r["metrics"], {})
    return rows


def _prompt_text(ws: Workspace, sha: str) -> str:
    rows = ws.query("SELECT text FROM texts WHERE sha256 = ?", [sha])
    return rows[0]["text"] if rows else ""


def _item_sets(ws: Workspace, task: str) -> dict[int, frozenset[int]]:
    """Each evaluation of ``task`` and the example ids it scored."""
    items: dict[int, set[int]] = {}
    for r in ws.query("SELECT e.id, p.example_id FROM evaluations e "
                      "JOIN predictions p ON p.run_id = e.run_id WHERE e.task = ?", [task]):
        items.setdefault(r["id"], set()).add(r["example_id"])
    return {i: frozenset(s) for i, s in items.items()}


def latest_comparable(ws: Workspace, task: str) -> tuple[int, int] | None:
    """The ids (A, B) of the latest two evaluations of ``task`` that compare: same split and
    the same items. B is the newest evaluation with an older comparable one, A the newest of
    those; None when no two evaluations compare."""
    items = _item_sets(ws, task)
    seen: dict[tuple[str, frozenset[int]], int] = {}
    best: tuple[int, int] | None = None
    # Oldest first, so each key keeps the newest evaluation before the current one.
    for e in ws.query("SELECT id, split FROM evaluations WHERE task = ? ORDER BY id", [task]):
        key = (e["split"], items.get(e["id"], frozenset()))
        if key[1] and key in seen:
            best = (seen[key], e["id"])
        seen[key] = e["id"]
    return best


def compare(ws: Workspace, eval_id_a: int, eval_id_b: int) -> dict[str, Any]:
    """Two evaluations side by side: scores, items that flipped, and the prompt diff.

    ``right_to_wrong`` are example ids A got right and B got wrong, ``wrong_to_right`` the
    reverse; only items both evaluations scored are compared (``common``). ``paired`` is the
    macro-F1 difference B − A on those items with a paired-bootstrap 95% interval, and
    ``beyond_noise`` says whether that interval excludes zero. ``comparable``: both scored the
    same split and the same items. With no item in common the score deltas are None: two
    scores of disjoint item sets have no difference worth a number.
    """
    a, b = (row_by_id(ws, "evaluations", i, "evaluation", {"metrics": {}})
            for i in (eval_id_a, eval_id_b))
    rows_a = {r["example_id"]: r for r in ws.query(
        "SELECT example_id, correct, label FROM predictions WHERE run_id = ?", [a["run_id"]])}
    rows_b = {r["example_id"]: r for r in ws.query(
        "SELECT example_id, correct, label FROM predictions WHERE run_id = ?", [b["run_id"]])}
    outcome_a = {i: r["correct"] for i, r in rows_a.items()}
    outcome_b = {i: r["correct"] for i, r in rows_b.items()}
    common = sorted(outcome_a.keys() & outcome_b.keys())
    paired = None
    if common:
        gold = {r["id"]: r["label"] for r in ws.query(
            "SELECT id, label FROM examples WHERE id IN (SELECT value FROM json_each(?))",
            [dumps(common)])}
        labels = task_info(ws, a["task"]).labels
        d = paired_delta([gold[i] for i in common], [rows_b[i]["label"] for i in common],
                         [rows_a[i]["label"] for i in common], labels)
        paired = {"delta": d["delta"], "ci": d["ci"], "n": len(common),
                  "beyond_noise": d["ci"] is not None and (d["ci"][0] > 0 or d["ci"][1] < 0)}
    diff = "".join(difflib.unified_diff(
        _prompt_text(ws, a["prompt_sha256"]).splitlines(keepends=True),
        _prompt_text(ws, b["prompt_sha256"]).splitlines(keepends=True),
        fromfile=f"evaluation {a['id']} ({a['method']})",
        tofile=f"evaluation {b['id']} ({b['method']})",
    ))
    return {
        "a": a,
        "b": b,
        "common": len(common),
        "right_to_wrong": [i for i in common if outcome_a[i] and not outcome_b[i]],
        "wrong_to_right": [i for i in common if not outcome_a[i] and outcome_b[i]],
        "comparable": a["split"] == b["split"] and set(rows_a) == set(rows_b) != set(),
        "delta_macro_f1": (b["metrics"]["macro_f1"] - a["metrics"]["macro_f1"]
                           if common else None),
        "delta_accuracy": (b["metrics"]["accuracy"] - a["metrics"]["accuracy"]
                           if common else None),
        "paired": paired,
        "diff": diff,
    }
