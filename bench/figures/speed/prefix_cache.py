"""``prefix_cache.speedup`` and ``prefix_cache.vs_limit``: the student classifies the same N
examples under a ~4,000-token rule prompt on the local model.

Three arms share one model process and run interleaved, example by example, so machine noise
hits all alike: *reuse* lets the server keep the prompt's KV state in its slot (what the student
stage does), *re-process* asks with ``cache_prompt: false`` (the whole prompt is evaluated
again), *floor* gets no rule prompt at all (the backend's one-line neutral system message). Each
arm makes one untimed warm-up call first, so the figures are per example in steady state; the
one-time cost of evaluating the prompt on the reuse arm is reported as ``first_call_s``.
``speedup`` is re-process ÷ reuse, ``vs_limit`` reuse ÷ floor.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from bench.figures.results import median
from bench.figures.speed.report import entry
from bench.figures.tokens import count_tokens
from bench.figures.workspaces import fresh_ws, load_demo
from pld.tasks.demo import DEMO_LABELS

# Realistic heuristics for the demo task (compliance-desk triage), used to build long student
# prompts. Written in the style consolidation produces.
DEMO_HEURISTICS = [
    "If the message reports money leaving an account that the customer did not authorise, "
    "including card payments, transfers or direct debits they do not recognise, answer "
    "escalate-fraud, even when the customer also complains about how the bank handled it.",
    "If someone contacted the customer pretending to be the bank, the police, a delivery firm or "
    "a utility and asked for codes, passwords, card details or remote access to a device, answer "
    "escalate-fraud.",
    "If an agent's note says a customer is being coached on what to say, is sending money to a "
    "person they met online, or is moving funds for someone else in return for a fee, answer "
    "escalate-fraud (possible scam victim or money mule).",
    "If the customer says they can no longer log in because the password, phone number or email "
    "on the account was changed without their knowledge, answer escalate-fraud (account "
    "takeover).",
    "If the customer asks for a copy of all the personal data the bank holds about them, or for "
    "the recordings, notes or decisions made about them, answer data-privacy-request.",
    "If the customer asks the bank to delete, erase or stop keeping their personal data, or to "
    "close their profile and forget them, answer data-privacy-request unless fraud is also "
    "reported.",
    "If the customer objects to their data being used for marketing, profiling or credit "
    "scoring, or withdraws consent to such use, answer data-privacy-request.",
    "If the customer asks for their data in a machine-readable file to take it to another "
    "provider, or to correct personal details the bank holds wrongly, answer "
    "data-privacy-request.",
    "If the customer is unhappy with a fee, a charge, an interest rate change or a decision the "
    "bank made and wants it reviewed, reversed or explained, with no sign of fraud and no data "
    "request, answer complaint.",
    "If the message criticises staff behaviour, waiting times, branch closures, app outages or "
    "the way a previous request was handled, answer complaint.",
    "If the customer threatens to leave the bank, go to the ombudsman or post a bad review "
    "because of how they were treated, answer complaint.",
    "If the message asks how to do an ordinary task (order a card, update an address, raise an "
    "overdraft limit, find an IBAN, book an appointment) and expresses no dissatisfaction, "
    "answer routine.",
    "If the message asks for product information such as interest rates, opening hours, "
    "account features or eligibility, answer routine.",
    "If an agent's note records a request that was handled normally after security checks, with "
    "no concern raised, answer routine.",
    "When a message fits several labels, the first in this order wins: escalate-fraud, "
    "data-privacy-request, complaint, routine. A complaint about a fraud investigation is still "
    "escalate-fraud while money is at risk.",
    "A request to know what data was shared with a third party, or with whom, is "
    "data-privacy-request, not complaint, even when the tone is angry.",
]


def rule_prompt(target_tokens: int, local_name: str) -> tuple[str, int]:
    """A student system prompt of at least ``target_tokens`` tokens, in the real template.

    Realistic heuristic lines are repeated (and numbered on) until the prompt is long enough.
    """
    from pld.pipeline.student import render_student_prompt
    from pld.tasks.demo import DemoTask

    description = DemoTask.description
    heuristics: list[str] = []
    while True:
        heuristics.append(DEMO_HEURISTICS[len(heuristics) % len(DEMO_HEURISTICS)])
        text = render_student_prompt(heuristics, DEMO_LABELS, description)
        if len(text) / 5 < target_tokens:  # cheap lower bound first; count exactly near the end
            continue
        n, _ = count_tokens(text, local_name)
        if n >= target_tokens:
            return text, n


def measure_prefix_cache(args: argparse.Namespace) -> dict[str, Any]:
    """Student calls with the rule prompt's KV state reused, re-processed and absent."""
    from pld.llm import calls
    from pld.llm.local_backend import LocalBackend
    from pld.llm.registry import parse_model

    spec = parse_model(args.model)
    if spec.provider != "local":
        raise SystemExit(f"--model must be a local model (local/default or local/small), "
                         f"not {args.model}")
    ws = fresh_ws("prefix.db")
    load_demo(ws)
    texts = [r["text"] for r in ws.query(
        "SELECT text FROM examples WHERE task = 'demo' ORDER BY id")]
    if len(texts) < args.n + 1:
        raise SystemExit(f"--n {args.n}: the demo task has only {len(texts) - 1} examples "
                         "besides the warm-up one")
    warm, items = texts[-1], texts[:args.n]
    system, prompt_tokens = rule_prompt(args.prompt_tokens, spec.name)
    arms = {
        "floor": (LocalBackend(spec.name, role="bench-floor"), None),
        "reuse": (LocalBackend(spec.name, role="bench-reuse"), system),
        # cache_prompt false: the server evaluates the whole prompt again for every call.
        "reprocess": (LocalBackend(spec.name, role="bench-reprocess", reuse_prefix=False),
                      system),
    }

    def call(arm: str, text: str) -> tuple[float, calls.CallResult]:
        backend, sys_prompt = arms[arm]
        t0 = time.perf_counter()
        res = calls.complete(ws, args.model, [{"role": "user", "content": text}],
                             system=sys_prompt, choices=DEMO_LABELS, max_tokens=16,
                             stage=f"bench-{arm}", role=f"bench-{arm}", use_cache=False,
                             backend=backend)
        return time.perf_counter() - t0, res

    print(f"prefix_cache: {args.model}, {prompt_tokens}-token rule prompt, {args.n} examples, "
          "arms interleaved per example", flush=True)
    first_call = {arm: call(arm, warm)[0] for arm in arms}
    times: dict[str, list[float]] = {arm: [] for arm in arms}
    cached: dict[str, list[int]] = {arm: [] for arm in arms}
    answers: dict[str, list[str]] = {arm: [] for arm in arms}
    t_start = time.monotonic()
    for i, text in enumerate(items, 1):
        for arm in arms:
            dt, res = call(arm, text)
            times[arm].append(dt)
            cached[arm].append(res.reply.cached_tokens)
            answers[arm].append(res.text)
        if i == 1 or i % max(1, args.n // 10) == 0 or i == args.n:
            elapsed = time.monotonic() - t_start
            print(f"  {i}/{args.n}  reuse {times['reuse'][-1]:.2f}s  reprocess "
                  f"{times['reprocess'][-1]:.2f}s  floor {times['floor'][-1]:.2f}s  "
                  f"(elapsed {elapsed / 60:.1f} min, ~{elapsed / i * (args.n - i) / 60:.1f} "
                  "min left)", flush=True)
    ws.close()

    total = {arm: sum(ts) for arm, ts in times.items()}
    arm_detail = {arm: {"mean_s": round(total[arm] / args.n, 4),
                        "median_s": round(median(times[arm]), 4),
                        "total_s": round(total[arm], 2),
                        "warmup_call_s": round(first_call[arm], 2),
                        "mean_reused_prompt_tokens": round(statistics.mean(cached[arm]), 1)}
                  for arm in arms}
    common = {"model": args.model, "n_examples": args.n, "rule_prompt_tokens": prompt_tokens,
              "arms": arm_detail,
              "how": "one model process (llama.cpp server, xllamacpp), calls interleaved per "
                     "example; reprocess = cache_prompt false on each call; floor = no rule "
                     "prompt (neutral one-line system message); each arm's warm-up call is "
                     "untimed"}
    speedup = total["reprocess"] / total["reuse"]
    vs_limit = total["reuse"] / total["floor"]
    same = sum(a == b for a, b in zip(answers["reuse"], answers["reprocess"], strict=True))
    return {
        "speedup": entry("prefix_cache", "speedup", round(speedup, 2), {
            **common,
            "first_call_s": round(first_call["reuse"], 2),
            "speedup_including_first_call": round(
                (total["reprocess"] + first_call["reprocess"])
                / (total["reuse"] + first_call["reuse"]), 2),
            "median_ratio": round(median(times["reprocess"]) / median(times["reuse"]), 2),
            "same_answer_reuse_vs_reprocess": f"{same}/{args.n}"}),
        "vs_limit": entry("prefix_cache", "vs_limit", round(vs_limit, 3), {
            "model": args.model, "n_examples": args.n, "rule_prompt_tokens": prompt_tokens,
            "reuse_mean_s": arm_detail["reuse"]["mean_s"],
            "floor_mean_s": arm_detail["floor"]["mean_s"],
            "median_ratio": round(median(times["reuse"]) / median(times["floor"]), 3)}),
    }
