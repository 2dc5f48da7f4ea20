"""What a stage would spend before it runs (``--estimate-only``, and the pages before Start).

Each stage lists the calls it would make now (:class:`Planned`), built with the stage's own
prompt code, so the input side is the real text: work already done is skipped as the stage
would skip it, and a call whose cache key is already answered is counted as cached (free).
Input tokens are estimated from characters (about 4 a token, :mod:`pld.llm.budget`); a reply's
length is the mean the call log measured for that model and stage once there is one, else the
typical length in :data:`TYPICAL_OUTPUT` (our own runs' medians). Dollars come from
:mod:`pld.llm.pricing`, at list price and at the batch APIs' price.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pld.llm import budget, calls
from pld.llm.base import Message
from pld.llm.pricing import estimate_cost, is_priced
from pld.workspace import Workspace

# Reply tokens per call before the call log has measured any (medians of our runs: a rule's
# reasoning and text; a heuristic; a teacher's proposals; one label).
TYPICAL_OUTPUT = {"extract": 110, "consolidate": 220, "resolve": 350, "eval": 3, "predict": 3,
                  "calibrate": 3}


@dataclass(frozen=True)
class Planned:
    """One call a stage would make; ``input_tokens`` overrides the count from the text (for a
    call whose text depends on replies not yet made)."""

    model: str
    stage: str
    system: str | None
    messages: list[Message]
    params: dict[str, Any]
    fresh: bool = False  # asked again past the cache (a retry of a failure)
    input_tokens: int | None = None


@dataclass
class ModelEstimate:
    """The calls of one model in an estimate."""

    model: str
    calls: int = 0
    cached: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    usd: float = 0.0
    batch_usd: float = 0.0
    priced: bool = True
    output_basis: dict[str, str] = field(default_factory=dict)  # stage -> measured | typical


def summarize(ws: Workspace, planned: Iterable[Planned]) -> dict[str, Any]:
    """Per model: calls (cached ones free), input/output tokens and dollars; and totals.
    ``planned`` is read once, so a stage may hand its calls over one at a time."""
    out: dict[str, ModelEstimate] = {}
    reply_len: dict[tuple[str, str], tuple[int, str]] = {}
    for p in planned:
        est = out.setdefault(p.model, ModelEstimate(p.model, priced=is_priced(p.model)))
        est.calls += 1
        key = calls.cache_key(p.model, p.system, p.messages, p.params)
        if not p.fresh and calls.is_cached(ws, key):
            est.cached += 1
            continue
        if (p.model, p.stage) not in reply_len:
            measured = calls.measured_output_tokens(ws, p.model, p.stage)
            reply_len[(p.model, p.stage)] = (
                (round(measured), "measured") if measured is not None
                else (min(TYPICAL_OUTPUT.get(p.stage, 200), p.params["max_tokens"]), "typical"))
        n_out, basis = reply_len[(p.model, p.stage)]
        est.output_basis[p.stage] = basis
        n_in = p.input_tokens if p.input_tokens is not None else budget.text_tokens(
            p.system, p.messages)
        est.input_tokens += n_in
        est.output_tokens += n_out
        est.usd += estimate_cost(p.model, n_in, n_out)
        est.batch_usd += estimate_cost(p.model, n_in, n_out, batch=True)
    models = list(out.values())
    return {"models": [vars(m) for m in models],
            "calls": sum(m.calls for m in models), "cached": sum(m.cached for m in models),
            "input_tokens": sum(m.input_tokens for m in models),
            "output_tokens": sum(m.output_tokens for m in models),
            "usd": sum(m.usd for m in models), "batch_usd": sum(m.batch_usd for m in models),
            "unpriced": [m.model for m in models if not m.priced]}


def estimate_text(d: dict[str, Any], what: str) -> str:
    """The estimate for people: one line per model, then the total."""
    lines = [f"estimate for {what} (nothing was called):"]
    by_stage: dict[str, list[str]] = defaultdict(list)
    for m in d["models"]:
        for stage, basis in m["output_basis"].items():
            by_stage[basis].append(f"{m['model']} {stage}")
        price = (f"${m['usd']:.4f} (batch ${m['batch_usd']:.4f})" if m["priced"]
                 else "no price known")
        lines.append(f"  {m['model']}: {m['calls']} calls ({m['cached']} cached, free), "
                     f"~{m['input_tokens']:,} input and ~{m['output_tokens']:,} output tokens, "
                     f"{price}")
    lines.append(f"  total: {d['calls']} calls, ${d['usd']:.4f} at list price, "
                 f"${d['batch_usd']:.4f} through a batch API")
    if by_stage.get("typical"):
        lines.append("  reply lengths are typical ones until the call log has measured some: "
                     + ", ".join(by_stage["typical"]))
    if d["unpriced"]:
        lines.append("  no price is known for " + ", ".join(d["unpriced"])
                     + " (pld/llm/pricing.py): counted as $0")
    return "\n".join(lines)
