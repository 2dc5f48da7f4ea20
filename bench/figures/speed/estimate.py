"""``estimate.error`` — the demo task's chain (extract, cluster, consolidate, eval) against a
fake ``openai/gpt-4.1`` whose usage counts tokens with a real BPE tokenizer (Qwen2.5's) and
whose replies are as long as the local teacher's were in the LogiQA run: before each stage,
``--estimate-only``'s tokens; after it, the call log's; |estimated − actual| ÷ actual over all
stages' input and output tokens.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
from collections.abc import Callable
from typing import Any

from bench.figures.scripted import FILLER, scripted_reply
from bench.figures.speed.report import entry
from bench.figures.tokens import count_tokens
from bench.figures.workspaces import fresh_path, load_demo
from pld.tasks.demo import DEMO_LABELS
from pld.workspace import Workspace, open_workspace

GPT = "openai/gpt-4.1"

# Reply lengths (output tokens) of the embedded teacher (local/default) in the LogiQA quality
# run of 2026-12-06: its 80 extraction replies and 4 consolidations, in the order made.
EXTRACT_REPLY_TOKENS = [
    178, 190, 166, 93, 123, 156, 128, 92, 120, 86, 178, 74, 31, 170, 206, 99, 190, 101, 130,
    138, 144, 171, 123, 170, 110, 171, 136, 136, 130, 173, 90, 151, 132, 70, 143, 152, 105, 129,
    136, 151, 131, 128, 200, 149, 81, 136, 103, 135, 43, 160, 125, 132, 107, 148, 100, 105, 109,
    123, 129, 119, 114, 128, 89, 135, 105, 143, 108, 121, 112, 111, 169, 219, 118, 108, 163, 111,
    84, 151, 131, 108]
CONSOLIDATE_REPLY_TOKENS = [55, 84, 49, 117]


def _sized_reply(labels: list[str],
                 tokens: Callable[[str], int]) -> Callable[[dict[str, Any]], str]:
    """The chain's scripted replies, padded to the lengths the local teacher wrote."""
    base = scripted_reply(labels)
    lengths = {"reasoning": itertools.cycle(EXTRACT_REPLY_TOKENS),
               "heuristic": itertools.cycle(CONSOLIDATE_REPLY_TOKENS)}

    def pad(obj: dict[str, Any], field: str) -> str:
        target = next(lengths[field])
        words = itertools.cycle(FILLER)
        text = json.dumps(obj)
        while tokens(text) < target:
            obj[field] = f"{obj[field]} {next(words)}"
            text = json.dumps(obj)
        return text

    def reply(body: dict[str, Any]) -> str:
        text = base(body)
        try:
            obj = json.loads(text)
        except ValueError:
            return text  # the student's label
        if not isinstance(obj, dict):
            return text
        field = next((f for f in lengths if f in obj), None)
        return pad(obj, field) if field else text

    return reply


def _spent(ws: Workspace, stages: tuple[str, ...]) -> tuple[int, int, int]:
    """Input tokens, output tokens and calls the call log holds for ``stages`` (cache misses)."""
    marks = ", ".join("?" for _ in stages)
    row = ws.query("SELECT coalesce(sum(input_tokens), 0) AS i, coalesce(sum(output_tokens), 0) "
                   f"AS o, count(*) AS n FROM llm_calls WHERE cache_hit = 0 AND stage IN "
                   f"({marks})", list(stages))[0]
    return row["i"], row["o"], row["n"]


def measure_estimate(args: argparse.Namespace) -> dict[str, Any]:
    """Estimated ÷ actual tokens of the demo chain, stage by stage."""
    from pld.llm import registry
    from pld.pipeline import evaluate
    from pld.pipeline.cluster import stage as cluster
    from pld.pipeline.consolidate import stage as consolidate
    from pld.pipeline.estimate import summarize
    from pld.pipeline.extract import stage as extract
    from tests.fakes.openai_server import FakeOpenAI

    how = count_tokens("probe")[1]
    tokens: Callable[[str], int] = lambda text: count_tokens(text)[0]  # noqa: E731
    path = fresh_path("estimate.db")
    print(f"estimate: the demo chain against a fake {GPT}, tokens counted with {how}",
          flush=True)
    stages: dict[str, dict[str, int]] = {}
    with FakeOpenAI(responder=_sized_reply(DEMO_LABELS, tokens)) as fake:
        fake.token_counter = tokens
        os.environ.update(OPENAI_BASE_URL=fake.base_url, OPENAI_API_KEY="sk-bench-estimate")
        registry.reset()
        ws = open_workspace(path)
        load_demo(ws)

        def measure(stage: str, planned: Any, run: Callable[[], Any],
                    log_stages: tuple[str, ...]) -> None:
            est = summarize(ws, planned)
            before = _spent(ws, log_stages)
            run()
            after = _spent(ws, log_stages)
            stages[stage] = {"estimated_input": est["input_tokens"],
                             "estimated_output": est["output_tokens"],
                             "actual_input": after[0] - before[0],
                             "actual_output": after[1] - before[1],
                             "estimated_calls": est["calls"] - est["cached"],
                             "actual_calls": after[2] - before[2]}

        measure("extract", extract.planned_calls(ws, "demo", GPT),
                lambda: extract.extract(ws, "demo", GPT, concurrency=4), ("extract",))
        cluster.cluster(ws, "demo")  # the latest clustering is what consolidate takes
        measure("consolidate", consolidate.planned_calls(ws, "demo", GPT),
                lambda: consolidate.consolidate(ws, "demo", GPT, concurrency=4),
                ("consolidate",))
        measure("eval", evaluate.planned_calls(ws, "demo", GPT, zero_shot=True),
                lambda: evaluate.evaluate(ws, "demo", GPT, zero_shot=True, concurrency=4),
                ("eval", "calibrate"))
        ws.close()
    est = sum(s["estimated_input"] + s["estimated_output"] for s in stages.values())
    act = sum(s["actual_input"] + s["actual_output"] for s in stages.values())
    error = abs(est - act) / act
    return {"error": entry("estimate", "error", round(error, 3), {
        "estimated_tokens": est, "actual_tokens": act, "stages": stages,
        "tokens_counted_with": how,
        "reply_lengths": "extraction and consolidation replies padded to the output tokens "
                         "local/default wrote in the LogiQA run of 2026-12-06 (in order)",
        "how": "before each stage, pld.pipeline.estimate.summarize(planned_calls) (what "
               "--estimate-only prints); after it, the tokens the fake server reported in the "
               "call log; error = |estimated - actual| / actual over every stage's input and "
               "output tokens"})}
