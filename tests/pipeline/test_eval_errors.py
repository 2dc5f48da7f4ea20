"""The wrong items of a stored evaluation: by example id, judged by the calibrated answers when
there are some, filterable by gold and answer.

Evaluations are written by :func:`pld.pipeline.evaluate.evaluate` with a fake OpenAI-compatible
student that always answers "neutral" but whose label scores put the right label second, so a
calibration fitted on validation recovers every item except the "weird" test items, whose
scores lean to "neutral" too strongly to move.
"""

from __future__ import annotations

from typing import Any

import pytest

from pld.errors import BadInput
from pld.pipeline import eval_errors as ee
from pld.pipeline import evaluate as ev
from pld.workspace import Workspace
from tests.fakes.openai_server import FakeOpenAI
from tests.pipeline.test_calibrate import lazy_student, leaning_scores
from tests.pipeline.test_student import TASK, first_user, keyword_student, load_reviews


def stubborn_scores(body: dict[str, Any]) -> list[tuple[str, float]]:
    """:func:`leaning_scores`, except on a weird item: "neutral" far ahead of the rest."""
    if "weird" in first_user(body):
        return [("neutral", -0.05), ("pos", -6.0), ("neg", -6.0)]
    return leaning_scores(body)


def _test_items(ws: Workspace) -> list[dict[str, Any]]:
    return ws.query("SELECT * FROM examples WHERE split = 'test' ORDER BY id")


def test_wrong_items_are_judged_by_the_calibrated_answers(ws: Workspace,
                                                          fake_openai: FakeOpenAI) -> None:
    load_reviews(ws)
    fake_openai.responder = lazy_student
    fake_openai.first_token_logprobs = stubborn_scores
    result = ev.evaluate(ws, TASK, fake_openai.model_string(), zero_shot=True)
    assert result.metrics["calibration"]["status"] == "fitted"
    test = _test_items(ws)
    weird = [r for r in test if "weird" in r["text"]]

    found = ee.wrong_items(ws, result.evaluation_id)

    assert (found.judged_by, found.calibrated, found.split, found.n) == (
        "calibrated", True, "test", len(test))
    # Only the weird items stay wrong after calibration (both have gold pos or neg).
    assert [e["example_id"] for e in found.errors] == [r["id"] for r in weird]
    first = found.errors[0]
    assert first == {
        "example_id": weird[0]["id"], "item": weird[0]["ext_id"], "text": weird[0]["text"],
        "gold": weird[0]["label"], "raw": "neutral", "reply": "neutral",
        "calibrated": "neutral", "answer": "neutral", "judged_by": "calibrated",
        "scores": {"pos": -6.0, "neg": -6.0, "neutral": -0.05}}
    # As many wrong items as the calibrated confusion matrix has off its diagonal.
    cm = result.metrics["calibrated"]["confusion"]
    off = sum(v for i, row in enumerate(cm["matrix"]) for j, v in enumerate(row) if i != j)
    assert off == len(found.errors)

    # The raw answers of the same evaluation: every item that is not neutral is wrong.
    raw = ee.wrong_items(ws, result.evaluation_id, judged_by="raw")
    assert [e["example_id"] for e in raw.errors] == [r["id"] for r in test
                                                     if r["label"] != "neutral"]
    assert {e["judged_by"] for e in raw.errors} == {"raw"}
    assert raw.errors[0]["calibrated"] == raw.errors[0]["gold"] != raw.errors[0]["answer"]

    # Filters: one gold label, one answer, or one cell of the confusion matrix.
    pos = ee.wrong_items(ws, result.evaluation_id, judged_by="raw", gold="pos")
    assert [e["gold"] for e in pos.errors] == ["pos"] * 3 and pos.gold == "pos"
    cell = ee.wrong_items(ws, result.evaluation_id, gold="neg", answer="neutral")
    assert [e["example_id"] for e in cell.errors] == [r["id"] for r in weird
                                                      if r["label"] == "neg"]
    assert ee.wrong_items(ws, result.evaluation_id, answer="pos").errors == []


def test_without_calibration_raw_answers_decide_and_unparseable_is_an_answer(
        ws: Workspace, fake_openai: FakeOpenAI) -> None:
    load_reviews(ws)
    fake_openai.responder = keyword_student
    result = ev.evaluate(ws, TASK, fake_openai.model_string(), zero_shot=True,
                         calibration=None)
    found = ee.wrong_items(ws, result.evaluation_id)
    assert (found.judged_by, found.calibrated) == ("raw", False)
    test = _test_items(ws)
    # Zero-shot, the student knows no keyword: "neutral", or no label for a weird item.
    assert [e["example_id"] for e in found.errors] == [r["id"] for r in test
                                                       if r["label"] != "neutral"]
    assert all(e["calibrated"] is None and e["scores"] is None for e in found.errors)
    unparseable = ee.wrong_items(ws, result.evaluation_id, answer="(unparseable)")
    assert [(e["raw"], e["reply"]) for e in unparseable.errors] == [
        (None, "I cannot tell")] * 2
    with pytest.raises(BadInput, match="has no calibrated answers"):
        ee.wrong_items(ws, result.evaluation_id, judged_by="calibrated")


def test_unknown_evaluation_or_label_is_bad_input(ws: Workspace,
                                                  fake_openai: FakeOpenAI) -> None:
    load_reviews(ws)
    fake_openai.responder = keyword_student
    result = ev.evaluate(ws, TASK, fake_openai.model_string(), zero_shot=True, limit=3,
                         calibration=None)
    with pytest.raises(BadInput, match="evaluation 999 not found"):
        ee.wrong_items(ws, 999)
    with pytest.raises(BadInput, match="gold label 'happy' is not one of pos, neg, neutral"):
        ee.wrong_items(ws, result.evaluation_id, gold="happy")
    with pytest.raises(BadInput, match="answer 'happy'"):
        ee.wrong_items(ws, result.evaluation_id, answer="happy")
