"""Stage 7, calibrate: a per-label bias fitted on validation only, applied to every method."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from pld.errors import BadInput
from pld.pipeline import calibrate as cb
from pld.pipeline import evaluate as ev
from pld.pipeline.export import export
from pld.pipeline.student import build_prompt
from pld.workspace import Workspace, open_workspace
from tests.fakes.openai_server import FakeOpenAI
from tests.pipeline.test_student import (
    LABELS,
    RULES,
    TASK,
    add_heuristic,
    first_user,
    load_reviews,
)

GOLD_BY_WORD = {"good": "pos", "bad": "neg", "okay": "neutral"}


def lazy_student(body: dict[str, Any]) -> str:
    """Always answers "neutral", the label it leans to whatever it reads."""
    return "neutral"


def leaning_scores(body: dict[str, Any]) -> list[tuple[str, float]]:
    """First-token alternatives: "neutral" on top, but the right label clearly second.

    An argmax answers "neutral" for everything; the scores still rank the items perfectly, so a
    bias toward pos and neg recovers them.
    """
    user = first_user(body)
    right = next((label for word, label in GOLD_BY_WORD.items() if word in user), "neutral")
    scores = {"neutral": -0.2, "pos": -3.0, "neg": -3.0}
    if right != "neutral":
        scores[right] = -1.0
    # "ne" begins both neg and neutral, so it must count for neither.
    return [*sorted(scores.items(), key=lambda kv: -kv[1]), ("ne", -0.5), ("Sure", -4.0)]


@pytest.fixture
def leaning(fake_openai: FakeOpenAI) -> str:
    fake_openai.responder = lazy_student
    fake_openai.first_token_logprobs = leaning_scores
    return fake_openai.model_string()


def test_fit_max_f1_undoes_a_prior_bias() -> None:
    gold = ["pos", "neg", "neutral"] * 4
    scores = [{"neutral": -0.2, "pos": -1.0 if g == "pos" else -3.0,
               "neg": -1.0 if g == "neg" else -3.0} for g in gold]
    bias = cb.fit_max_f1(scores, gold, LABELS)
    assert set(bias) == set(LABELS) and abs(sum(bias.values())) < 1e-6
    assert cb.calibrated_answers(scores, ["neutral"] * 12, bias, LABELS) == gold
    # Raw argmax says "neutral" everywhere; the fitted bias moves pos and neg above it.
    assert bias["pos"] - bias["neutral"] > 0.8 and bias["neg"] - bias["neutral"] > 0.8


def test_fit_max_f1_keeps_a_bias_that_is_already_right() -> None:
    gold = ["pos", "neg", "neutral"]
    scores = [{"pos": -0.1, "neg": -3, "neutral": -3}, {"pos": -3, "neg": -0.1, "neutral": -3},
              {"pos": -3, "neg": -3, "neutral": -0.1}]
    assert cb.fit_max_f1(scores, gold, LABELS) == {label: 0.0 for label in LABELS}


def test_fit_content_free_cancels_the_prior() -> None:
    prior = {"pos": math.log(0.1), "neg": math.log(0.1), "neutral": math.log(0.8)}
    bias = cb.fit_content_free([prior, prior], LABELS)
    assert bias["pos"] == pytest.approx(bias["neg"])
    assert bias["pos"] - bias["neutral"] == pytest.approx(math.log(8), rel=1e-4)


def test_apply_bias_keeps_raw_answers_without_scores() -> None:
    assert cb.apply_bias(None, {"pos": 1.0}, "neg", LABELS) == "neg"
    assert cb.apply_bias({"pos": -1, "neg": -0.5, "neutral": -2}, None, "neg", LABELS) == "neg"
    assert cb.apply_bias({"pos": -1, "neg": -0.5, "neutral": -2}, {"pos": 1, "neg": 0,
                                                                  "neutral": 0}, "neg",
                         LABELS) == "pos"


def test_calibrated_evaluation_recovers_the_signal(ws: Workspace, leaning: str,
                                                   fake_openai: FakeOpenAI) -> None:
    load_reviews(ws)
    result = ev.evaluate(ws, TASK, leaning, zero_shot=True)
    m = result.metrics
    assert m["top_answer"] == "neutral" and m["top_answer_share"] == 1.0
    assert m["macro_f1"] < 0.25
    cal = m["calibration"]
    assert cal["status"] == "fitted" and cal["method"] == "max-f1" and cal["n_val"] == 6
    assert not cal["in_sample"]
    assert m["calibrated"]["macro_f1"] == pytest.approx(1.0)
    assert m["calibrated"]["top_answer_share"] == pytest.approx(1 / 3)
    # The requests asked for the first token's alternatives.
    assert all(b.get("logprobs") is True and b.get("top_logprobs") == 20
               for b in fake_openai.requests)


def _val_and_test_texts(ws: Workspace) -> tuple[set[str], set[str]]:
    rows = ws.query("SELECT split, text FROM examples WHERE task = ?", [TASK])
    return ({r["text"] for r in rows if r["split"] == "val"},
            {r["text"] for r in rows if r["split"] == "test"})


def test_calibration_fitted_on_validation_never_reads_test_items(
        ws: Workspace, leaning: str, fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    load_reviews(ws)
    val, test = _val_and_test_texts(ws)
    cal = cb.calibrate(ws, TASK, leaning, "Label the review.")
    asked = {first_user(b) for b in fake_openai.requests}
    assert asked == val and not asked & test
    assert cal.available and cal.n == 6

    # Another workspace with the same validation split but a test split of different items and
    # labels fits exactly the same bias.
    other = open_workspace(tmp_path / "other.db")
    load_reviews(other, n_test=30)
    with other.write() as db:
        db.execute("UPDATE examples SET label = 'pos' WHERE split = 'test'")
    again = cb.calibrate(other, TASK, leaning, "Label the review.")
    assert again.bias == cal.bias
    # Stored: asking again makes no call.
    n = len(fake_openai.requests)
    assert cb.calibrate(ws, TASK, leaning, "Label the review.") == cal
    assert len(fake_openai.requests) == n


def test_exported_prompt_reproduces_the_calibrated_score(ws: Workspace, leaning: str,
                                                         tmp_path: Path) -> None:
    load_reviews(ws)
    add_heuristic(ws, RULES[0])
    build_prompt(ws, TASK)
    stored = ev.evaluate(ws, TASK, leaning, version=1)
    out = export(ws, TASK, tmp_path / "exported")
    manifest = out.manifest
    assert manifest["calibration"]["bias"] == stored.metrics["calibration"]["bias"]
    assert manifest["calibration"]["student"] == leaning and "logit_bias" in \
        manifest["calibration"]["how_to_apply"]
    assert manifest["evaluations"][0]["calibrated"]["macro_f1"] == pytest.approx(
        stored.metrics["calibrated"]["macro_f1"])

    again = ev.evaluate(ws, TASK, leaning, prompt_file=tmp_path / "exported")
    assert again.metrics["calibration"]["source"].endswith("manifest.json")
    assert again.metrics["calibrated"] == stored.metrics["calibrated"]
    assert again.metrics["macro_f1"] == stored.metrics["macro_f1"]

    # The manifest's bias is what is applied: a different one scores differently.
    path = tmp_path / "exported" / "manifest.json"
    data = json.loads(path.read_text())
    data["calibration"]["bias"] = {"pos": 0.0, "neg": 0.0, "neutral": 0.0}
    path.write_text(json.dumps(data))
    raw = ev.evaluate(ws, TASK, leaning, prompt_file=tmp_path / "exported")
    assert raw.metrics["calibrated"]["macro_f1"] == pytest.approx(raw.metrics["macro_f1"])

    data["calibration"]["bias"] = {"pos": 1.0}
    path.write_text(json.dumps(data))
    with pytest.raises(BadInput, match=r"calibration\.bias"):
        ev.evaluate(ws, TASK, leaning, prompt_file=tmp_path / "exported")
    data["prompt_sha256"] = "0" * 64
    path.write_text(json.dumps(data))
    with pytest.raises(BadInput, match="prompt_sha256"):
        ev.evaluate(ws, TASK, leaning, prompt_file=tmp_path / "exported")


def test_backend_without_scores_is_reported_raw(ws: Workspace,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    load_reviews(ws)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test-not-used")
    cal = cb.calibrate(ws, TASK, "anthropic/claude-sonnet-4-5", "Label the review.")
    assert not cal.available and "no label scores" in cal.reason
    # Nothing was asked: the backend is known to have no scores.
    assert ws.query("SELECT count(*) AS n FROM llm_calls")[0]["n"] == 0


def test_a_server_that_refuses_logprobs_still_answers(ws: Workspace, leaning: str,
                                                      fake_openai: FakeOpenAI) -> None:
    load_reviews(ws)
    fake_openai.reject_logprobs = True
    result = ev.evaluate(ws, TASK, leaning, zero_shot=True, limit=3)
    assert result.n == 3 and result.metrics["top_answer"] == "neutral"
    assert result.metrics["calibration"]["status"] == "unavailable"
    assert "calibrated" not in result.metrics


def test_calibration_settings_are_checked(ws: Workspace, leaning: str) -> None:
    load_reviews(ws)
    with pytest.raises(BadInput, match="calibration"):
        ev.evaluate(ws, TASK, leaning, zero_shot=True, calibration="platt")
    with pytest.raises(BadInput, match="validation limit"):
        cb.calibrate(ws, TASK, leaning, "S", val_limit=0)
