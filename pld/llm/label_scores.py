"""Label scores: how strongly the student leaned to each label, read from its first answer token.

A small student's answer is often one label for almost everything, yet the log-probabilities it
gives the labels at the answer position still rank the examples well. Calibration
(:mod:`pld.pipeline.calibrate`) needs those scores, and backends expose them the same way: the
top log-probabilities of the first generated token (``logprobs``/``top_logprobs`` on OpenAI, vLLM
and llama.cpp's server). This module turns such a list into one score per label.

A label's score is the log of the summed probability of the listed tokens that begin it and begin
no other label ("Ent" for "Entailment"; "C" is skipped when "Contradiction" and "Consistent" are
both labels). A label none of whose beginnings is listed gets the lowest listed log-probability,
an upper bound on its true score. The scores are log-probabilities, so a per-label bias added to
them is exactly a ``logit_bias`` on the label's first token.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

# How many of the first token's alternatives to ask for. OpenAI allows at most 20; llama.cpp
# sorts the whole vocabulary anyway, so asking it for more costs nothing and leaves fewer labels
# at the floor.
TOP_LOGPROBS_OPENAI = 20
TOP_LOGPROBS_LOCAL = 200


def _logsumexp(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def scores_from_top(top: Iterable[tuple[str, float]], labels: list[str]) -> dict[str, float] | None:
    """Per-label log-probability from the first token's ``(token text, logprob)`` alternatives.

    None when the list is empty. Token texts are compared exactly (a leading space is part of a
    token and labels are answered without one).
    """
    # The chosen token is usually listed among the alternatives too: count each token once.
    unique = {t: float(lp) for t, lp in top if t and math.isfinite(float(lp))}
    alternatives = list(unique.items())
    if not alternatives:
        return None
    floor = min(lp for _, lp in alternatives)
    out: dict[str, float] = {}
    for label in labels:
        mine = [lp for token, lp in alternatives
                if label.startswith(token)
                and not any(other.startswith(token) for other in labels if other != label)]
        out[label] = _logsumexp(mine) if mine else floor
    return out
