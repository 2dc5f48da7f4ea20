"""Contrastive extraction, starting where the student fails, and restatements flagged at
extraction: against the scripted fake teacher and student, on a real workspace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pld.errors import BadInput
from pld.pipeline.embed import get_embedder
from pld.pipeline.extract import stage as ex
from pld.pipeline.extract.browse import get_rule
from pld.pipeline.extract.contrast import MULTIPLE_CHOICE_NOTE
from pld.workspace import Workspace, open_workspace
from tests.fakes.openai_server import FakeOpenAI
from tests.pipeline.extract import scripted as sc


def _nearest_other(i: int) -> int:
    """Index in TRAIN of the most similar training example of another label than TRAIN[i]
    (cosine of the same sentence embeddings, computed here independently)."""
    vectors = get_embedder("minilm").encode([t for t, _ in sc.TRAIN])
    sims = vectors @ vectors[i]
    others = [j for j, (_, label) in enumerate(sc.TRAIN) if label != sc.TRAIN[i][1]]
    return max(others, key=lambda j: (float(sims[j]), -j))


def _rules(ws: Workspace) -> dict[int, dict]:
    return {r["example_id"]: r for r in ws.query("SELECT * FROM micro_instructions")}


def test_each_example_is_shown_beside_its_nearest_example_of_another_label(
        ws: Workspace, fake_openai: FakeOpenAI) -> None:
    sc.make_task(ws)
    model = sc.script(fake_openai)

    summary = ex.extract(ws, sc.TASK, model)

    assert summary.contrastive and summary.contrasted == summary.done == len(sc.TRAIN)
    ids = sc.ids(ws)
    by_text = {sc.example_text(sc.user(b)): sc.contrast_text(sc.user(b))
               for b in fake_openai.requests}
    rules = _rules(ws)
    for i, (text, _) in enumerate(sc.TRAIN):
        j = _nearest_other(i)
        assert by_text[text] == sc.TRAIN[j][0]
        assert json.loads(rules[ids[i]]["source_examples"]) == {"source": ids[i],
                                                                "contrast": [ids[j]]}
    # The invoice that was charged twice is paired with the invoice page that crashes.
    assert _nearest_other(0) == 1
    prompt = next(sc.user(b) for b in fake_openai.requests
                  if sc.example_text(sc.user(b)) == sc.TRAIN[0][0])
    assert "two examples that read alike" in prompt and "Its label: " in prompt
    assert prompt.rstrip().endswith(f"Gold label: {sc.TRAIN[0][1]}") and "$" not in prompt
    rule = get_rule(ws, rules[ids[0]]["id"])
    assert [c["id"] for c in rule["contrast"]] == [ids[1]]
    assert rule["contrast"][0]["text"] == sc.TRAIN[1][0]


def test_without_contrast_the_example_is_asked_about_alone(ws: Workspace,
                                                          fake_openai: FakeOpenAI) -> None:
    sc.make_task(ws)
    summary = ex.extract(ws, sc.TASK, sc.script(fake_openai), contrastive=False)
    assert not summary.contrastive and summary.contrasted == 0 and summary.contrast_note == ""
    assert all(sc.contrast_text(sc.user(b)) is None for b in fake_openai.requests)
    assert all("## Example" in sc.user(b) for b in fake_openai.requests)
    ids = sc.ids(ws)
    assert {json.dumps(json.loads(r["source_examples"]), sort_keys=True)
            for r in _rules(ws).values()} == {
        json.dumps({"contrast": [], "source": i}, sort_keys=True) for i in ids}
    # Contrastive prompts are other prompts: extracting again with pairs finds every rule done.
    assert ex.extract(ws, sc.TASK, sc.script(fake_openai)).skipped == len(sc.TRAIN)


def test_multiple_choice_tasks_and_single_label_splits_get_no_pairs(
        ws: Workspace, fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    sc.make_task(ws, shape="multiple-choice", labels=["A", "B", "C", "D"],
                 train=[(t, "ABCD"[i % 4]) for i, (t, _) in enumerate(sc.TRAIN[:4])])
    fake_openai.responder = lambda b: json.dumps(
        {"reasoning": "r", "rule": "If the question asks for a cause, choose the option that "
                                   "names one."})
    summary = ex.extract(ws, sc.TASK, fake_openai.model_string())
    assert not summary.contrastive and summary.contrast_note == MULTIPLE_CHOICE_NOTE
    assert all(sc.contrast_text(sc.user(b)) is None for b in fake_openai.requests)

    with open_workspace(tmp_path / "one-label.db") as one:
        sc.make_task(one, train=[(t, "billing") for t, _ in sc.TRAIN[:3]])
        summary = ex.extract(one, sc.TASK, sc.script(fake_openai))
        assert summary.contrastive and summary.contrasted == 0 and summary.done == 3


def test_estimate_counts_the_contrastive_prompts_extraction_sends(
        ws: Workspace, fake_openai: FakeOpenAI) -> None:
    sc.make_task(ws)
    model = sc.script(fake_openai)
    planned = list(ex.planned_calls(ws, sc.TASK, model))
    ex.extract(ws, sc.TASK, model, concurrency=1)
    assert [p.messages[0]["content"] for p in planned] == [
        sc.user(b) for b in fake_openai.requests]
    plain = list(ex.planned_calls(ws, sc.TASK, model, contrastive=False, retry_failed=True))
    assert plain == []  # every example has its rule now


def test_student_that_answers_right_leaves_its_examples_out(ws: Workspace,
                                                           fake_openai: FakeOpenAI) -> None:
    sc.make_task(ws)
    model = sc.script(fake_openai)

    summary = ex.extract(ws, sc.TASK, model, student=model)

    ids = sc.ids(ws)
    assert sorted(_rules(ws)) == [ids[i] for i in sc.WRONG]
    assert summary.student_right == len(sc.TRAIN) - len(sc.WRONG)
    assert summary.done == len(sc.WRONG) and summary.total == len(sc.TRAIN)
    assert summary.screen_note.startswith(f"8 of 10 examples left out: the zero-shot student "
                                          f"{model} already answers them right (calibrated")
    assert "fitted on 6 validation items" in summary.screen_note
    # The raw answers are "other" for everything: only the bias fitted on validation makes
    # the billing and technical examples right, and it was fitted on validation alone.
    [cal] = ws.query("SELECT * FROM calibrations")
    assert cal["split"] == "val" and cal["n"] == len(sc.VAL)
    fitted_on = ws.query("SELECT e.split FROM predictions p JOIN examples e ON "
                         "e.id = p.example_id WHERE p.run_id = ?", [cal["run_id"]])
    assert {r["split"] for r in fitted_on} == {"val"}
    teacher_texts = {sc.example_text(sc.user(b)) for b in fake_openai.requests
                     if sc.is_teacher(b)}
    assert teacher_texts == {sc.TRAIN[i][0] for i in sc.WRONG}
    # Again: nothing new is asked, and the same examples are left out.
    n = len(fake_openai.requests)
    again = ex.extract(ws, sc.TASK, model, student=model)
    assert len(fake_openai.requests) == n
    assert again.student_right == summary.student_right and again.skipped == len(sc.WRONG)


def test_a_bad_student_string_is_bad_input_before_any_call(ws: Workspace,
                                                           fake_openai: FakeOpenAI) -> None:
    sc.make_task(ws)
    with pytest.raises(BadInput):
        ex.extract(ws, sc.TASK, sc.script(fake_openai), student="nonsense-provider/x")
    assert fake_openai.requests == []


def test_clear_restatements_are_flagged_before_any_verification(
        ws: Workspace, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    sc.make_task(ws)
    model = sc.script(fake_openai)
    plain = sc.teacher_rule

    def restating(text: str, label: str) -> str:
        rule = plain(text, label)
        return f"If the message is about {label}, then the label is {label}." \
            if label == "billing" and rule == sc.LOOSE["billing"] else rule

    monkeypatch.setattr(sc, "teacher_rule", restating)
    summary = ex.extract(ws, sc.TASK, model)
    rows = list(_rules(ws).values())
    flagged = {r["rule"] for r in rows if "restates_task" in json.loads(r["flags"])}
    assert flagged == {"If the message is about billing, then the label is billing."}
    assert summary.restatements == 3  # TRAIN 0, 2 and 5
    about = next(r for r in rows if r["rule"] in flagged)
    assert about["task_similarity"] >= 0.7 and about["similar_to"] == "the label name 'billing'"
    # A loose rule reads a little like its label, not enough to be flagged unverified.
    loose = next(r for r in rows if r["rule"] == sc.LOOSE["technical"])
    assert 0.5 <= loose["task_similarity"] < 0.7 and "restates_task" not in loose["flags"]
    assert get_rule(ws, about["id"])["restatement"].startswith(
        "its condition reads like the label name 'billing' (similarity 0.7")
