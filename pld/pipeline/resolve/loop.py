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
2. **Adopt or revert, on evidence.** A version is compared with the best so far on the same
   validation items, paired bootstrap (:mod:`~pld.pipeline.resolve.evidence`; the comparison
   is stored in the record). It is *adopted* when the 95% interval of the macro-F1 difference
   lies above zero, and not when it lies below. When the interval includes zero the difference
   is *not distinguishable*: a version people made stands as they approved it (adopted), a
   version made by automatic decisions is not adopted (iteration 1, and the best version
   evaluated again, are always adopted). ``best_version`` is the last adopted version. A version
   not adopted is kept (prompt row, predictions, score), and the heuristics are
   reverted in the same transaction that stores the score, but only the loop's own changes
   (its automatic decisions under ``auto_accept_as`` and the teacher's texts they carried in,
   its earlier reverts; :mod:`~pld.pipeline.resolve.revert`): a heuristic of the best version
   gets back the text it had then as a *draft* (a review row with action ``revert``), which
   people must approve again (in automatic mode the automatic approver re-signs what it had
   signed); an approved heuristic the loop added is rejected. The loop never sets ``approved``
   itself, and a person's decision is never undone: a proposal a person accepted, and what
   people approved, rejected, merged, split or edited meanwhile, stay as they are. The ids go
   into the iteration's record (``reverted_to_draft``, ``not_reverted``).
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
5. **Decide.** :func:`~pld.pipeline.resolve.decisions.decide_proposal` applies a person's decision
   through :mod:`pld.review`:
   ``edit`` edits the heuristic as the acceptor (based on the version the teacher saw, so a
   heuristic changed since is refused as stale) and leaves it a draft that someone else must
   approve (four-eyes); ``add`` creates a draft; ``remove`` rejects the heuristic. Each decision
   appends a ``reviews`` row for the proposal besides the heuristic's own.

Interactive mode stops after proposing (``awaiting-review``); calling :func:`resolve` again goes
on once no proposal of the last iteration is pending and every heuristic that an accepted
proposal created or edited has been approved or rejected. With ``auto_accept_as=NAME`` every
proposal is accepted at once: the teacher is recorded as the author of the new text and NAME
approves it (identity kind ``auto``, comment ``auto-accepted (benchmark)``), which keeps the
four-eyes rule intact. A measured removal whose paired CI does not lie above zero is *held*
instead: left pending, with its CI, for people; when nothing else was accepted the loop stops
with ``not-distinguishable``. ``iterations`` bounds how many new versions one call evaluates
after the first; in automatic mode the last of them gets no proposals, so nothing accepted is
left unevaluated.

The loop is idempotent: an iteration's proposals are written once (a rerun finds them), a
converged loop with unchanged heuristics returns at once, and every LLM call goes through the
cache. Loops with a different student or ``val_limit`` are separate series with their own best
version, because their scores are not comparable.

The parts live beside this module: :mod:`~pld.pipeline.resolve.state` (records and rows),
:mod:`~pld.pipeline.resolve.proposals` (attribution, the teacher, measured removals),
:mod:`~pld.pipeline.resolve.evidence` (the paired CI every automatic change must clear),
:mod:`~pld.pipeline.resolve.revert` (undoing a version not adopted),
:mod:`~pld.pipeline.resolve.decisions` (people's decisions) and :mod:`~pld.pipeline.resolve.view`
(what the Conflicts page reads).
"""

from __future__ import annotations

from typing import Any

from pld import review
from pld.authorship import COLUMNS
from pld.errors import BadInput, NotReady
from pld.identity import AUTO, Identity
from pld.llm import budget, calls
from pld.llm.base import ConfigError
from pld.llm.registry import parse_model
from pld.metrics import score
from pld.pipeline.calibrate import DEFAULT_METHOD as DEFAULT_CALIBRATION
from pld.pipeline.calibrate import (
    calibrated_answers,
    fit_calibration,
)
from pld.pipeline.embed import check_embedder_name
from pld.pipeline.estimate import Planned
from pld.pipeline.resolve.decisions import auto_accept
from pld.pipeline.resolve.evidence import adopts, versus_best
from pld.pipeline.resolve.proposals import propose, reply_schema
from pld.pipeline.resolve.revert import revert_to_best
from pld.pipeline.resolve.state import (
    AWAITING_REVIEW,
    CONVERGED,
    INDISTINCT,
    MAX_ITERATIONS,
    MAX_TOKENS,
    METHOD_PREFIX,
    NO_ERRORS,
    PENDING,
    PREDICT_KIND,
    STAGE,
    TEACHER_FAILED,
    TFIDF,
    VAL,
    LoopOptions,
    ResolveSummary,
    check_val,
    examples_by_id,
    iteration_record,
    iteration_records,
    loop_series,
    proposal_rows,
    touched_heuristics,
    update_record,
)
from pld.pipeline.resolve.view import iteration_history
from pld.pipeline.runs import ProgressCallback, Run, stage_run
from pld.pipeline.student import (
    STUDENT_MAX_TOKENS,
    PromptVersion,
    build_prompt,
    predict,
    prompt_text,
)
from pld.tasks.store import TaskInfo, task_info
from pld.tasks.store import examples as task_examples
from pld.workspace import Workspace, dumps, now


def _snapshot(row: dict[str, Any]) -> dict[str, Any]:
    keys = ("text", "version", "approved_by", "approved_at", "identity_kind", *COLUMNS)
    return {k: row[k] for k in keys}


def _current_prompt(ws: Workspace, o: LoopOptions,
                    parent: int | None) -> tuple[PromptVersion, dict[str, dict[str, Any]]]:
    """Build the prompt of the approved heuristics and snapshot the rows it was built from."""
    for _ in range(3):
        # After the first iteration every heuristic may have been removed: the prompt without
        # rules is then scored like any other, so an adopted prompt never scores below it.
        prompt = build_prompt(ws, o.task.name, origin="resolve" if parent else "review",
                              parent_version=parent, allow_empty=parent is not None)
        rows = {r["id"]: r for r in review.approved_heuristics(ws, o.task.name)}
        if list(rows) == prompt.heuristic_ids and prompt_text(
                ws, o.task.name, [rows[i]["text"] for i in prompt.heuristic_ids]) == prompt.text:
            return prompt, {str(i): _snapshot(rows[i]) for i in prompt.heuristic_ids}
    raise BadInput(f"the heuristics of task {o.task.name!r} keep changing while the prompt is "
                   f"built; try again when reviewers are done")


def _evaluate(ws: Workspace, o: LoopOptions, run: Run, k: int,
              best: dict[str, Any] | None) -> dict[str, Any]:
    """Evaluate the current approved heuristics as iteration ``k``, adopt or revert, store."""
    parent = best["best_version"] if best else None
    prompt, snapshot = _current_prompt(ws, o, parent)
    result = predict(ws, o.task.name, o.student, system_prompt=prompt.text, split=VAL,
                     limit=o.val_limit, kind=PREDICT_KIND,
                     params={"prompt_version": prompt.version, "iteration": k,
                             "resolve_run_id": run.id},
                     concurrency=o.concurrency, on_progress=o.on_progress)
    check_val([{**r, "id": i} for i, r in examples_by_id(ws, result.example_ids).items()])
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
    comparison = None
    if best is None or prompt.version == best["best_version"]:
        adopted = True  # the first version, or the best one evaluated again: nothing to decide
    else:
        comparison = versus_best(ws, o.task.name, o.task.labels, result.example_ids,
                                 result.gold, answers, best["basis_of_best"], seed=o.seed)
        adopted = adopts(comparison["verdict"], automatic=o.auto_accept_as is not None)
    delta = None if best is None else f1 - best_f1
    rec: dict[str, Any] = {
        "iteration": k, "val_limit": o.val_limit, "adopted": adopted,
        "best_version": prompt.version if adopted else parent,
        "best_macro_f1": f1 if adopted else best_f1,
        "best_iteration": k if adopted else best["best_iteration"],
        "parent_version": parent, "delta": delta, "n_errors": n_errors,
        "heuristics": snapshot, "proposed": False, "stop": None, "resolve_run_id": run.id,
        "comparison": comparison,
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
            best_rec = iteration_record(ws, o.task.name, best["best_iteration"])
            assert comparison is not None
            undone = revert_to_best(
                ws, o, best_rec, f"reverted by resolve: iteration {k} (prompt v{prompt.version}) "
                f"against the best version, validation macro-F1 {best_f1:.3f} -> {f1:.3f}: "
                f"{comparison['verdict']}; back to prompt v{parent}")
            update_record(ws, o.task.name, k, reverted_to_draft=undone["to_draft"],
                          not_reverted=undone["left"])
    return iteration_record(ws, o.task.name, k)


def _check_args(ws: Workspace, task: str, student: str, teacher: str, *, iterations: int,
                auto_accept_as: Identity | None, n_success: int | None, val_limit: int | None,
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
    if auto_accept_as is not None and auto_accept_as.kind != AUTO:
        raise BadInput(f"auto_accept_as: an identity of kind {AUTO}, not {auto_accept_as.kind}")
    info = task_info(ws, task)
    n_val = ws.query("SELECT count(*) AS n FROM examples WHERE task = ? AND split = ?",
                     [task, VAL])[0]["n"]
    if not n_val:
        raise NotReady(f"task {task!r} has no validation examples; load some with "
                       f"python -m pld load {task} --val N")
    return info


def _summary(ws: Workspace, o: LoopOptions, run: Run, ran: int, stop: str, made: int,
             failed: dict[int, str]) -> ResolveSummary:
    series = loop_series(ws, o.task.name, o.student, o.val_limit)
    keep = {r["iteration"] for r in series}
    history = [h for h in iteration_history(ws, o.task.name) if h["iteration"] in keep]
    last = series[-1] if series else {}
    pending = len(proposal_rows(ws, o.task.name, last["iteration"], PENDING)) if last else 0
    return ResolveSummary(run.id, o.task.name, ran, stop, last.get("best_version"),
                          last.get("best_macro_f1"), history, made, pending, failed)


def _best(rec: dict[str, Any]) -> dict[str, Any]:
    keys = ("best_version", "best_macro_f1", "best_iteration", "best_n_errors", "basis_of_best")
    return {k: rec[k] for k in keys}


def _loop(ws: Workspace, o: LoopOptions, run: Run, summary: ResolveSummary) -> tuple[str, int]:
    """Run iterations until a stop reason; returns (reason, iterations evaluated)."""
    ran = 0
    task = o.task.name
    while True:
        series = loop_series(ws, task, o.student, o.val_limit)
        last = series[-1] if series else None
        if last is None:
            if not review.approved_heuristics(ws, task):
                raise NotReady(f"no approved heuristics for task {task!r}; approve some with "
                               f"python -m pld review approve ID --base-version V --as NAME")
            rec = _evaluate(ws, o, run, _next_iteration(ws, task), None)
        elif last.get("proposed"):
            pending = proposal_rows(ws, task, last["iteration"], PENDING)
            if o.auto_accept_as:  # held for people: an automatic run goes on without them
                pending = [p for p in pending if p["id"] not in (last.get("held") or [])]
            if pending or touched_heuristics(ws, task, last["iteration"]):
                return AWAITING_REVIEW, ran
            if last.get("stop") == INDISTINCT and _current_prompt(
                    ws, o, last["best_version"])[0].version == last["best_version"]:
                return INDISTINCT, ran  # nothing changed since: nothing new to evaluate
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
            update_record(ws, task, rec["iteration"], stop=MAX_ITERATIONS)
            return MAX_ITERATIONS, ran
        made = propose(ws, o, run, rec, loop_series(ws, task, o.student, o.val_limit), summary)
        if made is None:
            return TEACHER_FAILED, ran
        summary.proposals_made += made
        if o.auto_accept_as:
            accepted, held = auto_accept(ws, o, rec["iteration"])
            if held:
                update_record(ws, task, rec["iteration"], held=held,
                              **({} if accepted else {"stop": INDISTINCT}))
            if held and not accepted:
                return INDISTINCT, ran
        elif made:
            return AWAITING_REVIEW, ran


def _next_iteration(ws: Workspace, task: str) -> int:
    recs = iteration_records(ws, task)
    return recs[-1]["iteration"] + 1 if recs else 1


def planned_calls(ws: Workspace, task: str, student: str, teacher: str, *, iterations: int = 3,
                  val_limit: int | None = None, max_examples: int = 8,
                  impact: bool = True) -> list[Planned]:
    """The calls one :func:`resolve` run could make at most (for ``--estimate-only``): per
    evaluated version the student on the validation items, and a teacher call per approved
    heuristic; with ``impact``, the student once more per heuristic left out. The first version
    is today's approved prompt (its cached answers are free); later versions' texts depend on
    the teacher's proposals, so they are counted at today's prompt's size, uncached."""
    info = task_info(ws, task)
    rules = [r["text"] for r in review.approved_heuristics(ws, task)]
    val = task_examples(ws, task, VAL, val_limit)
    student_params = calls.call_params(max_tokens=STUDENT_MAX_TOKENS, choices=info.labels)
    teacher_params = calls.call_params(max_tokens=MAX_TOKENS, json_schema=reply_schema())

    def on_val(text: str, stage: str, fresh: bool = False) -> list[Planned]:
        return [Planned(student, stage, text, [{"role": "user", "content": r["text"]}],
                        student_params, fresh=fresh) for r in val]

    prompt = prompt_text(ws, task, rules)
    planned = on_val(prompt, PREDICT_KIND)
    item_tokens = (sum(budget.text_tokens(None, [{"content": r["text"]}]) for r in val)
                   // max(len(val), 1))
    # The teacher sees the numbered rules, then up to max_examples errors and as many successes.
    teacher_in = budget.text_tokens(prompt, []) + 2 * max_examples * item_tokens + 400
    for k in range(iterations + 1):
        if k:
            planned += on_val(prompt, PREDICT_KIND, fresh=True)
        if k < iterations:
            planned += [Planned(teacher, STAGE, None, [], teacher_params, fresh=True,
                                input_tokens=teacher_in) for _ in rules]
    if impact and len(rules) > 1:
        for i in range(len(rules)):
            planned += on_val(prompt_text(ws, task, rules[:i] + rules[i + 1:]), "impact")
    return planned


def resolve(
    ws: Workspace,
    task: str,
    student: str,
    teacher: str,
    *,
    iterations: int = 3,
    auto_accept_as: Identity | None = None,
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
    started_by: Identity | None = None,
    on_progress: ProgressCallback | None = None,
) -> ResolveSummary:
    """Run the conflict loop of ``task`` (see the module docstring) and say where it stopped:
    ``converged``, ``max-iterations``, ``awaiting-review``, ``no-errors``, ``teacher-failed``
    (every teacher call of the last iteration failed; ``retry_failed=True`` asks again) or
    ``not-distinguishable`` (automatic mode: what is left waits for people, with its CI).

    ``iterations``: new versions this call may evaluate after the first. ``auto_accept_as``:
    accept every proposal and approve its heuristic as this identity, of kind ``auto``
    (benchmarks). ``n_success``: successes shown to the teacher (default: as many as errors).
    ``val_limit``: the first N validation items. ``attribution``: ``minilm``/``e5-small``
    (embeddings) or ``tfidf``. ``top_k``: heuristics kept per example. ``max_examples``: errors
    (and successes) per teacher call. ``calibration``: each version is scored on calibrated
    answers (its own per-label bias, fitted on the same validation items; None: raw answers).
    ``impact``: measure every heuristic's leave-one-out effect and propose removing those whose
    removal raises validation macro-F1. ``started_by``: who started the job, recorded on the
    run. Raises :class:`NotReady` without approved heuristics or validation examples and
    :class:`BadInput` for bad model strings or options.
    """
    info = _check_args(ws, task, student, teacher, iterations=iterations,
                       auto_accept_as=auto_accept_as, n_success=n_success, val_limit=val_limit,
                       min_delta=min_delta, attribution=attribution, top_k=top_k,
                       max_examples=max_examples)
    o = LoopOptions(info, student, teacher, iterations, auto_accept_as, n_success, val_limit,
                    seed, min_delta, attribution, top_k, max_examples, concurrency, on_progress,
                    retry_failed, calibration, impact)
    params = {"student": student, "teacher": teacher, "iterations": iterations,
              "auto_accept_as": auto_accept_as.name if auto_accept_as else None,
              "n_success": n_success, "val_limit": val_limit,
              "seed": seed, "min_delta": min_delta, "attribution": attribution, "top_k": top_k,
              "max_examples": max_examples, "calibration": calibration, "impact": impact}
    with stage_run(ws, task, STAGE, params, on_progress, started_by=started_by) as run:
        summary = ResolveSummary(run.id, task, 0, "", None, None)
        stop, ran = _loop(ws, o, run, summary)
        final = _summary(ws, o, run, ran, stop, summary.proposals_made, summary.failed_groups)
    return final

