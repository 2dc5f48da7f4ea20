"""Evidence per heuristic: leave-one-out effect on validation, matching direct evaluations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pld.errors import NotReady
from pld.pipeline import evaluate as ev
from pld.pipeline.resolve.impact import latest_impact, measure_impact
from pld.pipeline.student import render_student_prompt
from pld.review import approved_heuristics
from pld.tasks.store import task_info
from pld.workspace import Workspace
from tests.fakes.openai_server import FakeOpenAI
from tests.pipeline.test_student import (
    RULES,
    TASK,
    add_heuristic,
    first_user,
    keyword_student,
    load_reviews,
    system_of,
)

HARMFUL = "If the review says okay, then the label is neg."


def misled_student(body: dict[str, Any]) -> str:
    """The keyword student, misled by the harmful rule when the prompt carries it."""
    if "says okay" in system_of(body) and "okay" in first_user(body):
        return "neg"
    return keyword_student(body)


@pytest.fixture
def three_rules(ws: Workspace, fake_openai: FakeOpenAI) -> str:
    load_reviews(ws, n_val=12)
    for text in (RULES[0], HARMFUL, RULES[1]):
        add_heuristic(ws, text)
    fake_openai.responder = misled_student
    return fake_openai.model_string()


def test_each_heuristic_effect_matches_a_direct_evaluation_without_it(
        ws: Workspace, three_rules: str, tmp_path: Path) -> None:
    report = measure_impact(ws, TASK, three_rules)
    assert report["metric"] == "raw" and report["n_val"] == 12  # the fake sends no scores
    by_text = {h["text"]: h for h in report["heuristics"]}
    # Harmful first: removing it raises validation macro-F1.
    assert report["heuristics"][0]["text"] == HARMFUL
    assert by_text[HARMFUL]["effect"] < 0 and by_text[HARMFUL]["harmful"]
    assert by_text[RULES[0]]["effect"] > 0 and not by_text[RULES[0]]["harmful"]

    info = task_info(ws, TASK)
    rows = approved_heuristics(ws, TASK)
    full = ev.evaluate(ws, TASK, three_rules, prompt_file=_file(
        tmp_path / "full.md", [r["text"] for r in rows], info), split="val", calibration=None)
    assert report["full"]["macro_f1"] == pytest.approx(full.metrics["macro_f1"])
    # The prompt without any heuristic is the zero-shot baseline itself.
    zero = ev.evaluate(ws, TASK, three_rules, zero_shot=True, split="val", calibration=None)
    assert report["no_rules"]["macro_f1"] == pytest.approx(zero.metrics["macro_f1"])
    for h in report["heuristics"]:
        rest = [r["text"] for r in rows if r["id"] != h["heuristic_id"]]
        direct = ev.evaluate(ws, TASK, three_rules, prompt_file=_file(
            tmp_path / f"without-{h['heuristic_id']}.md", rest, info), split="val",
            calibration=None)
        assert h["without"]["macro_f1"] == pytest.approx(direct.metrics["macro_f1"])
        assert h["effect"] == pytest.approx(full.metrics["macro_f1"]
                                            - direct.metrics["macro_f1"])
        lo, hi = h["ci"]
        assert lo <= h["effect"] <= hi
    # The harmful rule breaks the "okay" items: right without it, wrong with it.
    okay = {r["id"] for r in ws.query(
        "SELECT id FROM examples WHERE split = 'val' AND text LIKE '%okay%'")}
    assert set(by_text[HARMFUL]["breaks"]) == okay and not by_text[HARMFUL]["fixes"]


def _file(path: Path, texts: list[str], info: Any) -> Path:
    path.write_bytes(render_student_prompt(texts, info.labels, info.description).encode())
    return path


def test_the_report_is_stored_and_follows_the_approved_set(
        ws: Workspace, three_rules: str, fake_openai: FakeOpenAI) -> None:
    first = measure_impact(ws, TASK, three_rules)
    n = len(fake_openai.requests)
    assert measure_impact(ws, TASK, three_rules) == first
    assert len(fake_openai.requests) == n
    assert latest_impact(ws, TASK)["current"] is True
    add_heuristic(ws, "If the review is short, then the label is neutral.")
    assert latest_impact(ws, TASK)["current"] is False


def test_nothing_approved_is_not_ready(ws: Workspace, fake_openai: FakeOpenAI) -> None:
    load_reviews(ws)
    with pytest.raises(NotReady, match="no approved heuristics"):
        measure_impact(ws, TASK, fake_openai.model_string())


def test_review_impact_command(ws: Workspace, ws_path: Path, three_rules: str) -> None:
    from tests.cli.test_contract import pld

    r = pld("review", "impact", TASK, "--student", three_rules, "--json", ws=ws_path)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["heuristics"][0]["text"] == HARMFUL and data["heuristics"][0]["harmful"]
    assert data == measure_impact(ws, TASK, three_rules)  # stored: the same report
    text = pld("review", "impact", TASK, "--student", three_rules, ws=ws_path)
    assert text.returncode == 0, text.stderr
    assert "removing it raised validation macro-F1" in text.stdout
    missing = pld("review", "impact", "nope", "--student", three_rules, ws=ws_path)
    assert missing.returncode == 2 and "not loaded" in missing.stderr


def test_effects_are_read_on_calibrated_answers_when_the_student_has_scores(
        ws: Workspace, fake_openai: FakeOpenAI) -> None:
    from tests.pipeline.test_calibrate import lazy_student, leaning_scores

    load_reviews(ws, n_val=12)
    add_heuristic(ws, RULES[0])
    add_heuristic(ws, RULES[1])
    fake_openai.responder = lazy_student
    fake_openai.first_token_logprobs = leaning_scores
    report = measure_impact(ws, TASK, fake_openai.model_string())
    assert report["metric"] == "calibrated"
    # The scores do not depend on the rules here, so no heuristic changes a calibrated answer.
    assert report["full"]["calibrated_macro_f1"] == pytest.approx(1.0)
    assert report["full"]["macro_f1"] < 0.25
    assert all(h["effect"] == 0 and not h["fixes"] and not h["breaks"]
               for h in report["heuristics"])
    stored = ws.query("SELECT count(*) AS n FROM calibrations WHERE status = 'fitted'")[0]["n"]
    assert stored == 4  # the full prompt, no rules, and each prompt without one heuristic
