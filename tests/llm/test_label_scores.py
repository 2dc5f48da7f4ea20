"""Label scores from the first answer token's alternatives."""

from __future__ import annotations

import math

import pytest

from pld.llm.label_scores import scores_from_top


def test_each_label_sums_the_tokens_that_begin_only_it() -> None:
    top = [("Ent", math.log(0.5)), ("Entail", math.log(0.1)), ("Contr", math.log(0.2)),
           ("I", math.log(0.05))]
    s = scores_from_top(top, ["Entailment", "Contradiction", "NotMentioned"])
    assert s is not None
    assert s["Entailment"] == pytest.approx(math.log(0.6))
    assert s["Contradiction"] == pytest.approx(math.log(0.2))
    # Not listed: the lowest listed log-probability bounds it from above.
    assert s["NotMentioned"] == pytest.approx(math.log(0.05))


def test_a_token_shared_by_two_labels_counts_for_neither() -> None:
    s = scores_from_top([("ne", -0.1), ("neg", -2.0), ("neutral", -3.0)], ["neg", "neutral"])
    assert s == {"neg": -2.0, "neutral": -3.0}


def test_the_chosen_token_is_counted_once() -> None:
    s = scores_from_top([("A", -0.2), ("B", -2.0), ("A", -0.2)], ["A", "B"])
    assert s == {"A": -0.2, "B": -2.0}


def test_no_alternatives_means_no_scores() -> None:
    assert scores_from_top([], ["A", "B"]) is None
    assert scores_from_top([("A", float("-inf"))], ["A", "B"]) is None
