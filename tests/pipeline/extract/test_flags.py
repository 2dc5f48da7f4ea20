"""Flags on extracted rules: which doubtful rules reviewers are warned about."""

from __future__ import annotations

import pytest

from pld.pipeline.extract.flags import (
    NO_EFFECT,
    SIMILAR_ALONE,
    SIMILAR_WITH_NO_EFFECT,
    flag_rule,
    labels_named,
    restatement_reason,
)
from pld.pipeline.extract.restatements import condition

NLI = ["entailment", "not_entailment"]


@pytest.mark.parametrize(("rule", "gold_label", "flags"), [
    ("If the hypothesis adds a fact the premise never states, then the label is "
     "not_entailment.", "not_entailment", []),
    ("If the premise states the hypothesis in other words, then the label is entailment.",
     "entailment", []),
    ("If the hypothesis adds a new fact, then the label is not entailment.", "entailment",
     ["wrong_label"]),
    ("The label is entailment.", "entailment", ["restates_label"]),
    ("If it is entailment, then the label is entailment.", "entailment", ["restates_label"]),
    ("Entailment because it is entailment.", "entailment", ["restates_label"]),
    ("If the premise agrees with the hypothesis, the answer is yes.", "entailment", ["no_label"]),
    ("If the company Acme Widgets sold its London office, then the label is entailment.",
     "entailment", ["copies_example"]),
])
def test_flag_rule(rule: str, gold_label: str, flags: list[str]) -> None:
    example = "Premise: the company Acme Widgets sold its London office in 2020. Hypothesis: ..."
    assert flag_rule(rule, gold_label, NLI, example) == flags


def test_labels_named_prefers_longer_labels() -> None:
    assert labels_named("then the label is not_entailment", NLI) == ["not_entailment"]
    assert labels_named("Entailment, not NOT ENTAILMENT", NLI) == ["not_entailment",
                                                                      "entailment"]
    assert labels_named("anti-stereotype", ["stereotype", "anti-stereotype"]) == [
        "anti-stereotype"]

def test_multiple_choice_rules_say_how_to_choose_and_name_no_letter() -> None:
    letters = ["A", "B", "C", "D"]
    good = ("If the question asks which option weakens the argument, choose the option that "
            "gives a reason the conclusion may not follow.")
    assert flag_rule(good, "B", letters, "passage", "multiple-choice") == []
    assert "names_option" in flag_rule("If the question is about cause, then the answer is "
                                       "option B.", "B", letters, "p", "multiple-choice")
    assert "names_option" in flag_rule("If the passage is long, choose (C) that repeats it.",
                                       "C", letters, "p", "multiple-choice")
    # The article "a" is no option letter, and no gold letter is expected.
    assert flag_rule("If a question asks for an assumption, choose the option that the "
                     "argument needs.", "A", letters, "p", "multiple-choice") == []
    # Read as a single-text rule it is wrongly flagged: the article "a" reads as label A.
    assert flag_rule(good, "B", letters, "passage") == ["wrong_label"]


def test_a_restatement_is_judged_by_similarity_alone_until_its_effect_is_known() -> None:
    to = "the label name 'billing'"
    assert restatement_reason(None, None, None) is None
    assert restatement_reason(SIMILAR_ALONE - 0.01, to, None) is None
    alone = restatement_reason(SIMILAR_ALONE, to, None)
    assert alone == (f"its condition reads like {to} (similarity 0.70 >= 0.70; not verified "
                     "with the student yet)")
    # Verified: similar and moving nothing is a restatement; moving the student is not.
    verified = restatement_reason(SIMILAR_WITH_NO_EFFECT, to, NO_EFFECT / 2)
    assert verified is not None and "moved the gold label's probability by +0.010" in verified
    assert restatement_reason(0.95, to, NO_EFFECT) is None
    assert restatement_reason(0.95, to, -NO_EFFECT) is None
    assert restatement_reason(SIMILAR_WITH_NO_EFFECT - 0.01, to, 0.0) is None


@pytest.mark.parametrize(("rule", "condition_text"), [
    ("If the message is about billing, then the label is billing.", "the message is about billing"),
    ("When a refund is asked the label should be billing.", "a refund is asked"),
    ("The label is other.", "other"),
    ("If the question asks for a cause, choose the option that names one.",
     "the question asks for a cause, choose the option that names one"),
])
def test_a_rules_condition_is_read_without_its_conclusion(rule: str,
                                                          condition_text: str) -> None:
    assert condition(rule) == condition_text
