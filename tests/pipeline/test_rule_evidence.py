"""Student-verified rules: each rule alone in the student's prompt, on its source, contrast and
nearest training examples; the stored effect; restatements flagged with it. Against the
scripted fake teacher and student, on a real workspace."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pld.errors import BadInput
from pld.llm.calls import CallFailed
from pld.pipeline.extract.browse import get_rule
from pld.pipeline.extract.restatements import mark_restatements
from pld.pipeline.extract.stage import extract
from pld.pipeline.rule_evidence import restatement_ids, rule_effects, verify_rules
from pld.pipeline.student import prompt_text, zero_shot_prompt
from pld.preamble import compose, ensure_preamble
from pld.workspace import Workspace
from tests.fakes.openai_server import FakeOpenAI
from tests.pipeline.extract import scripted as sc


@pytest.fixture
def extracted(ws: Workspace, fake_openai: FakeOpenAI) -> str:
    """The ticket task with one contrastive rule per training example, rule ids in example
    order; the scripted model."""
    sc.make_task(ws)
    model = sc.script(fake_openai)
    extract(ws, sc.TASK, model, concurrency=1)
    fake_openai.requests.clear()
    return model


def _rule_id(ws: Workspace, text: str) -> int:
    return int(ws.query("SELECT id FROM micro_instructions WHERE rule = ? ORDER BY id",
                        [text])[0]["id"])


def _evidence(ws: Workspace, rule_id: int) -> dict[str, Any]:
    [row] = ws.query("SELECT * FROM rule_evidence WHERE rule_id = ?", [rule_id])
    row["items"] = json.loads(row["items"])
    return row


def test_a_rule_that_moves_the_student_to_the_gold_label_has_a_positive_effect(
        ws: Workspace, fake_openai: FakeOpenAI, extracted: str) -> None:
    summary = verify_rules(ws, sc.TASK, extracted)

    ids = sc.ids(ws)
    money = _evidence(ws, _rule_id(ws, sc.MONEY_BACK))
    assert money["status"] == "verified" and money["n"] == 5
    items = money["items"]
    # Source, contrast, then the nearest training examples, from the smaller side first.
    assert [i["role"] for i in items] == ["source", "contrast", "neighbour", "neighbour",
                                          "neighbour"]
    assert items[0]["example_id"] == ids[8] and items[0]["gold"] == "billing"
    assert items[1]["gold"] != "billing"
    sides = [i["gold"] == "billing" for i in items]
    assert sides.count(True) in (2, 3) and len(set(i["example_id"] for i in items)) == 5
    # Only the source holds the cue: it moves from "other" to billing, nothing else moves.
    source = items[0]
    assert source["answer_zero_shot"] == "other" and source["answer_with_rule"] == "billing"
    assert source["with_rule"] > 0.9 > source["zero_shot"]
    assert all(i["with_rule"] == i["zero_shot"] for i in items[1:])
    same = [i["with_rule"] - i["zero_shot"] for i in items if i["gold"] == "billing"]
    assert money["effect"] == pytest.approx(sum(same) / len(same) / 2, abs=1e-3)
    assert money["effect"] > 0.1 and money["helped"] == 1 and money["hurt"] == 0
    assert summary["verified"] == summary["rules"] == len(sc.TRAIN)
    assert summary["helping"] == 2 and summary["effects"][str(money["rule_id"])] > 0.1
    assert summary["calibration"]["fitted_on"] == "val"


def test_the_rule_is_alone_in_the_preamble_and_each_item_is_asked_once(
        ws: Workspace, fake_openai: FakeOpenAI, extracted: str) -> None:
    verify_rules(ws, sc.TASK, extracted, neighbours=1, concurrency=1)

    systems = [sc.system(b) for b in fake_openai.requests]
    preamble = ensure_preamble(ws, sc.TASK)["text"]
    expected = {compose(preamble, [r["rule"]]) for r in
                ws.query("SELECT rule FROM micro_instructions")}
    zero = zero_shot_prompt(sc.LABELS, sc.DESCRIPTION)
    assert set(systems) == expected | {zero}
    assert compose(preamble, [sc.MONEY_BACK]) == prompt_text(ws, sc.TASK, [sc.MONEY_BACK])
    assert "1. " + sc.MONEY_BACK in prompt_text(ws, sc.TASK, [sc.MONEY_BACK])
    # Each rule's items: its source, its contrast and one neighbour, all training examples.
    train = set(sc.ids(ws))
    for row in ws.query("SELECT items FROM rule_evidence"):
        items = json.loads(row["items"])
        assert len(items) == 3 and {i["example_id"] for i in items} <= train
    # Every (prompt, item) is asked once: rules of the same text share their cached answers
    # (one rule at a time; rules in flight together may both ask before either is cached).
    asked = [(sc.system(b), sc.user(b)) for b in fake_openai.requests]
    assert len(asked) == len(set(asked)) <= 3 * len(sc.TRAIN) + len(sc.VAL) + len(sc.TRAIN)


def test_verifying_again_is_free_and_a_killed_run_resumes(
        ws: Workspace, fake_openai: FakeOpenAI, extracted: str) -> None:
    def broken(body: dict[str, Any]) -> list[tuple[str, float]]:
        if sc.NOTHING_LOADS in sc.system(body):
            raise RuntimeError("the student fell over")
        return sc.student_scores(body)

    fake_openai.first_token_logprobs = broken
    with pytest.raises(CallFailed):
        verify_rules(ws, sc.TASK, extracted, concurrency=1)  # the broken rule comes last
    done = {r["rule_id"] for r in ws.query("SELECT rule_id FROM rule_evidence")}
    nothing = _rule_id(ws, sc.NOTHING_LOADS)
    assert len(done) == len(sc.TRAIN) - 1 and nothing not in done
    run = ws.query("SELECT status FROM runs WHERE kind = 'verify'")[0]
    assert run["status"] == "failed"

    fake_openai.first_token_logprobs = sc.student_scores
    fake_openai.requests.clear()
    summary = verify_rules(ws, sc.TASK, extracted)
    assert summary["skipped"] == len(done) and summary["verified"] == len(sc.TRAIN) - len(done)
    # The rules done before are not asked about again; their answers were all cached.
    done_prompts = {prompt_text(ws, sc.TASK, [r["rule"]]) for r in ws.query(
        "SELECT rule FROM micro_instructions WHERE id IN (SELECT value FROM json_each(?))",
        [json.dumps(sorted(done))])}
    assert not any(sc.system(b) in done_prompts for b in fake_openai.requests)
    assert _evidence(ws, nothing)["effect"] > 0.1
    fake_openai.requests.clear()
    again = verify_rules(ws, sc.TASK, extracted)
    assert fake_openai.requests == [] and again["verified"] == 0
    assert again["skipped"] == len(sc.TRAIN)


def test_a_loose_rule_that_moves_nothing_is_flagged_as_a_restatement(
        ws: Workspace, fake_openai: FakeOpenAI, extracted: str) -> None:
    loose = _rule_id(ws, sc.LOOSE["technical"])
    money = _rule_id(ws, sc.MONEY_BACK)
    assert restatement_ids(ws, sc.TASK) == set()  # similarity 0.64 alone flags nothing

    summary = verify_rules(ws, sc.TASK, extracted)

    assert _evidence(ws, loose)["effect"] == 0.0
    flagged = restatement_ids(ws, sc.TASK)
    texts = {r["rule"] for r in ws.query(
        "SELECT rule FROM micro_instructions WHERE id IN (SELECT value FROM json_each(?))",
        [json.dumps(sorted(flagged))])}
    assert texts == {sc.LOOSE["technical"], sc.LOOSE["billing"]}
    assert loose in flagged and money not in flagged
    assert summary["restatements"] == len(flagged) and summary["no_effect"] == len(sc.TRAIN) - 2
    reason = get_rule(ws, loose)["restatement"]
    assert reason.startswith("its condition reads like the label name 'technical' (similarity")
    assert "moved the gold label's probability by +0.000" in reason
    # An effect, were it measured, clears the flag: the rule carries something after all.
    mark_restatements(ws, sc.TASK, {loose: 0.3})
    assert loose not in restatement_ids(ws, sc.TASK)


def test_effects_are_kept_per_student(ws: Workspace, fake_openai: FakeOpenAI,
                                      extracted: str) -> None:
    other = fake_openai.model_string("another-student")
    verify_rules(ws, sc.TASK, extracted, neighbours=0)
    first = rule_effects(ws, sc.TASK, extracted)
    assert len(first) == len(sc.TRAIN) and rule_effects(ws, sc.TASK) == first

    fake_openai.first_token_logprobs = lambda body: sc.student_scores(
        {**body, "messages": [m for m in body["messages"] if m["role"] != "system"]})
    verify_rules(ws, sc.TASK, other, neighbours=0)  # a student that ignores every rule
    assert set(rule_effects(ws, sc.TASK, other).values()) == {0.0}
    assert rule_effects(ws, sc.TASK) == rule_effects(ws, sc.TASK, other)
    assert rule_effects(ws, sc.TASK, extracted) == first
    assert ws.query("SELECT count(*) AS n FROM rule_evidence")[0]["n"] == 2 * len(sc.TRAIN)


def test_a_student_without_label_scores_cannot_verify(ws: Workspace, fake_openai: FakeOpenAI,
                                                      extracted: str) -> None:
    fake_openai.first_token_logprobs = None
    with pytest.raises(BadInput, match="no label scores"):
        verify_rules(ws, sc.TASK, extracted)
    assert ws.query("SELECT count(*) AS n FROM rule_evidence")[0]["n"] == 0
    with pytest.raises(BadInput, match="at least 0"):
        verify_rules(ws, sc.TASK, extracted, neighbours=-1)
