"""The student's calibrated view of training examples: which it already answers right under the
zero-shot prompt (extraction starts where it fails), and how probable it finds each gold label
under a prompt (what rule verification compares).

The calibration is the zero-shot prompt's, fitted on the validation split only
(:func:`~pld.pipeline.calibrate.calibrate`, the same one every evaluation of the zero-shot
baseline uses), and applied here to training items it never saw. The student is asked through
:func:`~pld.pipeline.student.predict`, so every answer is cached and logged like any other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pld.errors import BadInput, NotReady
from pld.pipeline.calibrate import (
    DEFAULT_METHOD,
    UNAVAILABLE,
    Calibration,
    apply_bias,
    calibrate,
)
from pld.pipeline.runs import ProgressCallback
from pld.pipeline.student import predict, prompt_text
from pld.tasks.store import task_info
from pld.workspace import Workspace

Scores = dict[str, float]


@dataclass(frozen=True)
class Scored:
    """The student's answers on some examples under one system prompt.

    ``probs``: each example's calibrated probability of every label (softmax of label score
    plus bias), only for examples whose answer had label scores; ``answers``: the calibrated
    answer (the raw one where there are no scores).
    """

    run_id: int
    gold: dict[int, str]
    probs: dict[int, Scores]
    answers: dict[int, str | None]


def probabilities(scores: Scores, bias: dict[str, float] | None, labels: list[str]) -> Scores:
    """Each label's probability after calibration: softmax over the labels of score + bias."""
    raw = [scores.get(label, -math.inf) + (bias or {}).get(label, 0.0) for label in labels]
    top = max(raw)
    if top == -math.inf:
        return {label: 1.0 / len(labels) for label in labels}
    exp = [math.exp(v - top) for v in raw]
    total = sum(exp)
    return {label: e / total for label, e in zip(labels, exp, strict=True)}


def zero_shot_calibration(ws: Workspace, task: str, student: str, *,
                          val_limit: int | None = None,
                          concurrency: int | None = None) -> Calibration | None:
    """The zero-shot prompt's calibration for ``student``, fitted on the first ``val_limit``
    validation items (stored, or fitted now); None when the task has no validation split.

    :class:`BadInput` when the student gives no label scores: nothing can be calibrated or
    measured with it.
    """
    try:
        cal = calibrate(ws, task, student, prompt_text(ws, task, []), method=DEFAULT_METHOD,
                        val_limit=val_limit, concurrency=concurrency)
    except NotReady:
        return None  # no validation examples: raw scores are all there is
    if cal.status == UNAVAILABLE:
        raise BadInput(f"{student}: {cal.reason}")
    return cal


def scored(ws: Workspace, task: str, student: str, system_prompt: str, example_ids: list[int],
           calibration: Calibration | None, *, kind: str, params: dict[str, object] | None = None,
           concurrency: int | None = None,
           on_progress: ProgressCallback | None = None) -> Scored:
    """Ask ``student`` about ``example_ids`` under ``system_prompt`` (one ``kind`` run) and
    read the answers through ``calibration``'s bias (none: the raw scores)."""
    labels = task_info(ws, task).labels
    bias = calibration.bias if calibration is not None else None
    result = predict(ws, task, student, system_prompt=system_prompt, example_ids=example_ids,
                     kind=kind, params=params, concurrency=concurrency,
                     on_progress=on_progress)
    gold = dict(zip(result.example_ids, result.gold, strict=True))
    probs, answers = {}, {}
    for ex_id, pred, scores in zip(result.example_ids, result.pred, result.scores, strict=True):
        answers[ex_id] = apply_bias(scores, bias, pred, labels)
        if scores is not None:
            probs[ex_id] = probabilities(scores, bias, labels)
    return Scored(result.run_id, gold, probs, answers)


@dataclass(frozen=True)
class Screen:
    """Which examples the calibrated zero-shot student already answers right, and why they are
    left out (``note``, for people)."""

    right: frozenset[int]
    note: str


def screen(ws: Workspace, task: str, student: str, example_ids: list[int], *,
           val_limit: int | None = None, concurrency: int | None = None,
           on_progress: ProgressCallback | None = None) -> Screen:
    """The examples of ``example_ids`` that ``student`` answers right under the zero-shot
    prompt, calibrated on validation: they need no rule, so extraction leaves them out.
    ``on_progress`` follows the answers on the examples."""
    if not example_ids:
        return Screen(frozenset(), "")
    cal = zero_shot_calibration(ws, task, student, val_limit=val_limit, concurrency=concurrency)
    got = scored(ws, task, student, prompt_text(ws, task, []), example_ids, cal,
                 kind="extract-screen", concurrency=concurrency, on_progress=on_progress)
    right = frozenset(i for i, answer in got.answers.items() if answer == got.gold[i])
    how = (f"calibrated with the zero-shot bias fitted on {cal.n} validation items"
           if cal is not None else "raw answers: the task has no validation split to "
                                   "calibrate on")
    note = (f"{len(right)} of {len(example_ids)} examples left out: the zero-shot student "
            f"{student} already answers them right ({how}); a rule is written for the "
            f"{len(example_ids) - len(right)} it gets wrong")
    return Screen(right, note)
