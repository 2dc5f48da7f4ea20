"""Flags on extracted rules: which doubtful rules reviewers are warned about."""

from __future__ import annotations

import pytest

from pld.pipeline.extract.flags import flag_rule, labels_named

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
