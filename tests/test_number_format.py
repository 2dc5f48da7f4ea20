"""One rounding for every number shown: half up, 3 decimals for scores, 1 for seconds."""

from __future__ import annotations

import math

from pld.number_format import delta_text, score, score_text, seconds, seconds_text


def test_a_score_rounds_half_up_the_same_everywhere() -> None:
    # Python's own formatting rounds 0.5625 half to even (0.562); a browser table gives 0.563.
    assert f"{0.5625:.3f}" == "0.562"
    assert score(0.5625) == 0.563 and score_text(0.5625) == "0.563"
    assert score_text(0.56249) == "0.562"
    assert delta_text(0.0305) == "+0.031" and delta_text(-0.0305) == "-0.031"
    assert delta_text(0.0) == "+0.000"


def test_seconds_have_one_decimal() -> None:
    assert seconds(9.213065237000137) == 9.2 and seconds_text(9.25) == "9.3 s"
    assert seconds_text(None) == "–"


def test_no_value_is_a_dash_not_none_or_nan() -> None:
    assert score(None) is None
    assert score_text(None) == "–" and delta_text(float("nan")) == "–"
    assert math.isnan(score(float("nan")))
