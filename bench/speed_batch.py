"""Batch mode, scale and the cost estimate: the figures of ``bench/speed.py`` that need a fake
batch server or a large workspace.

* ``batch.resubmitted_after_kill`` — ``python -m pld extract demo --batch`` (the real CLI and
  the real Anthropic SDK against the fake Message Batches API) is killed with SIGKILL once its
  batch is submitted and its id stored, while it polls; the same command again: requests
  submitted more than once.
* ``scale.rss_100k_vs_10k`` — peak resident memory (VmHWM of the CLI process) of extracting
  100,000 examples ÷ 10,000 with ``--batch`` against the fake batch server, every request
  answered; the server runs in the benchmark's process, so only the CLI is measured.
* ``estimate.error`` — the demo task's chain (extract, cluster, consolidate, eval) against a
  fake ``openai/gpt-4.1`` whose usage counts tokens with a real BPE tokenizer (Qwen2.5's) and
  whose replies are as long as the local teacher's were in the LogiQA run: before each stage,
  ``--estimate-only``'s tokens; after it, the call log's; |estimated − actual| ÷ actual over
  all stages' input and output tokens.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from _common import REPO, WORK, count_rows, count_tokens

from pld.workspace import Workspace, open_workspace

CLAUDE = "anthropic/claude-sonnet-4-6"
# Batches whose provider id is stored: the moment a killed command resumes by polling.
STORED_SQL = "SELECT count(*) FROM batches WHERE provider_batch_id IS NOT NULL"
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

FILLER_TEXT = ("the message names the feature that decides its label and the other details do "
               "not change it because the request is about the same matter as before")
FILLER = FILLER_TEXT.split()


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "PLD_RETRY_BASE_S": "0.05",
            "PLD_RETRY_MAX_S": "1", **extra}


def _fresh_path(name: str) -> Path:
    path = WORK / "speed" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return path


def _rule_reply(labels: list[str]) -> Callable[[dict[str, Any]], str]:
    """A teacher that writes a rule ending in the gold label (the student: the first label)."""
    import re

    def reply(body: dict[str, Any]) -> str:
        users = [m.get("content", "") for m in body.get("messages", [])
                 if m.get("role") == "user"]
        gold = re.search(r"Gold label: (\S+)", str(users[-1]) if users else "")
        if gold is None:
            return labels[0]
        return json.dumps({"reasoning": "The message names the deciding feature.",
                           "rule": f"If the message is about this matter, then the label is "
                                   f"{gold.group(1)}."})

    return reply


# -- batch.resubmitted_after_kill ---------------------------------------------------------------

def bench_batch(args: Any, entry: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """Kill ``extract --batch`` after its submit, run it again, count double submissions."""
    from pld.tasks import load_task
    from tests.fakes.anthropic_server import FakeAnthropicBatches

    path = _fresh_path("batch-kill.db")
    with open_workspace(path) as ws:
        load_task(ws, "demo")
        n = ws.query("SELECT count(*) AS n FROM examples WHERE split = 'train'")[0]["n"]
    labels = ["escalate-fraud", "data-privacy-request", "complaint", "routine"]
    print(f"batch: extract {n} demo examples with --batch, SIGKILL after the submit, resume",
          flush=True)
    with FakeAnthropicBatches(responder=_rule_reply(labels)) as fake:
        env = _child_env({"ANTHROPIC_BASE_URL": fake.base_url,
                          "ANTHROPIC_API_KEY": "sk-ant-bench", "PLD_BATCH_POLL_S": "0.2"})
        fake.book.polls_to_finish = 10**9  # still in progress while the first process polls
        cmd = [sys.executable, "-m", "pld", "--workspace", str(path), "extract", "demo",
               "--teacher", CLAUDE, "--batch", "--json"]
        child = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300  # a guard against a hung child, not a measurement
        try:
            while not (fake.book.creates and count_rows(path, STORED_SQL)):
                if child.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("batch: the child ended or hung before submitting")
                time.sleep(0.02)
            polls_before_kill = sum(10**9 - b.polls_left for b in fake.book.batches.values())
            child.send_signal(signal.SIGKILL)
        finally:
            if child.poll() is None:
                child.kill()
            child.wait()
        for b in fake.book.batches.values():
            b.polls_left = 1  # the provider finishes while nobody polls
        resumed = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                                 timeout=600)
        if resumed.returncode != 0:
            raise SystemExit(f"batch: the resumed extract failed: {resumed.stderr[-2000:]}")
        submitted, creates, sync = list(fake.book.submitted), fake.book.creates, \
            len(fake.requests)
    with open_workspace(path) as ws:
        ok = ws.query("SELECT count(*) AS n FROM micro_instructions WHERE status = 'ok'")[0]["n"]
        runs = [r["status"] for r in ws.query(
            "SELECT status FROM runs WHERE kind = 'extract' ORDER BY id")]
    twice = len(submitted) - len(set(submitted))
    return {"resubmitted_after_kill": entry("batch", "resubmitted_after_kill", twice, {
        "examples": n, "batch_creates": creates, "requests_submitted": len(submitted),
        "distinct_requests": len(set(submitted)), "polls_before_kill": polls_before_kill,
        "synchronous_calls": sync, "ok_rules": ok, "run_statuses": runs,
        "how": "python -m pld extract demo --batch (anthropic SDK, fake Message Batches API); "
               "SIGKILL once the provider batch id is stored, while it polls; the same command "
               "again; resubmitted = custom ids the fake received more than once"})}


# -- scale.rss_100k_vs_10k ----------------------------------------------------------------------

def _examples_ws(name: str, n: int) -> Path:
    """A workspace with task ``big``: ``n`` training examples (about 300 characters each)."""
    from pld.tasks.store import Example, save_task

    path = _fresh_path(name)
    body = " ".join(FILLER * 2)
    with open_workspace(path) as ws:
        save_task(ws, name="big", kind="custom", labels=["no", "yes"],
                  description="Decide whether the message asks for a refund.", source="bench",
                  params={}, examples=(Example(f"e{i}", "train", f"Message {i}: {body}",
                                               "yes" if i % 3 == 0 else "no", {})
                                       for i in range(n)))
    return path


# python -c HWM_AT_EXIT FILE ARGS...: runs ``python -m pld ARGS`` and, at exit, writes the
# process's peak resident memory in KiB (VmHWM of /proc/self/status) to FILE.
HWM_AT_EXIT = """
import atexit, re, runpy, sys
out = sys.argv.pop(1)
def hwm():
    status = open("/proc/self/status").read()
    open(out, "w").write(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1))
atexit.register(hwm)
sys.argv[0] = "pld"
runpy.run_module("pld", run_name="__main__", alter_sys=True)
"""


def extract_rss(n: int) -> dict[str, Any]:
    """Peak RSS (MiB) and wall time of ``extract big --batch`` over ``n`` examples."""
    from tests.fakes.anthropic_server import FakeAnthropicBatches

    path = _examples_ws(f"rss-{n}.db", n)
    with FakeAnthropicBatches(responder=_rule_reply(["no", "yes"])) as fake:
        env = _child_env({"ANTHROPIC_BASE_URL": fake.base_url,
                          "ANTHROPIC_API_KEY": "sk-ant-bench", "PLD_BATCH_POLL_S": "0.5"})
        hwm = Path(tempfile.mkstemp(prefix="pld-bench-hwm-")[1])
        # The CLI itself, told to write its own peak resident memory (VmHWM) as it exits.
        # Not ru_maxrss: Linux carries the parent's peak into a child's across exec, and this
        # benchmark's process holds the embedding and tokenizer models by then.
        cmd = [sys.executable, "-c", HWM_AT_EXIT, str(hwm), "--workspace", str(path), "extract",
               "big", "--teacher", CLAUDE, "--batch", "--json"]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=3600)
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            raise SystemExit(f"scale: extract of {n} failed: {r.stderr[-2000:]}")
        creates, submitted = fake.book.creates, len(fake.book.submitted)
    peak_kib = int(hwm.read_text())
    hwm.unlink()
    done = json.loads(r.stdout)["done"]
    return {"examples": n, "peak_rss_mib": round(peak_kib / 1024, 1),
            "wall_s": round(wall, 1), "rules_done": done, "batches": creates,
            "requests_submitted": submitted}


def rss_ratio(small: int, big: int) -> tuple[float, dict[str, Any]]:
    """Peak memory of a ``big`` batch extraction ÷ a ``small`` one."""
    print(f"scale: peak memory of extract --batch, {big:,} vs {small:,} examples", flush=True)
    runs = {n: extract_rss(n) for n in (small, big)}
    ratio = runs[big]["peak_rss_mib"] / runs[small]["peak_rss_mib"]
    return ratio, {"examples_small": small, "examples_big": big,
                   "small": runs[small], "big": runs[big],
                   "how": "python -m pld extract big --teacher anthropic/… --batch against the "
                          "fake Message Batches API (in the benchmark's process); the CLI "
                          "process's own peak resident memory (VmHWM), read as it exits; "
                          "every example answered"}


# -- estimate.error -----------------------------------------------------------------------------

def _sized_reply(labels: list[str],
                 tokens: Callable[[str], int]) -> Callable[[dict[str, Any]], str]:
    """The chain's scripted replies, padded to the lengths the local teacher wrote."""
    from _common import scripted_reply

    base = scripted_reply(labels)
    counters = {"extract": iter(_cycle(EXTRACT_REPLY_TOKENS)),
                "consolidate": iter(_cycle(CONSOLIDATE_REPLY_TOKENS))}

    def pad(obj: dict[str, Any], field: str, target: int) -> str:
        words = iter(_cycle(FILLER))
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
        if "reasoning" in obj:
            return pad(obj, "reasoning", next(counters["extract"]))
        if "heuristic" in obj:
            return pad(obj, "heuristic", next(counters["consolidate"]))
        return text

    return reply


def _cycle(values: list[Any]) -> Iterator[Any]:
    while True:
        yield from values


def bench_estimate(args: Any, entry: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """Estimated ÷ actual tokens of the demo chain, stage by stage."""
    from pld.pipeline import cluster, consolidate, evaluate, extract
    from pld.pipeline.estimate import summarize
    from pld.tasks import load_task
    from tests.fakes.openai_server import FakeOpenAI

    labels = ["escalate-fraud", "data-privacy-request", "complaint", "routine"]
    how = count_tokens("probe")[1]
    tokens: Callable[[str], int] = lambda text: count_tokens(text)[0]  # noqa: E731
    path = _fresh_path("estimate.db")
    print(f"estimate: the demo chain against a fake {GPT}, tokens counted with {how}",
          flush=True)
    stages: dict[str, dict[str, int]] = {}
    with FakeOpenAI(responder=_sized_reply(labels, tokens)) as fake:
        fake.token_counter = tokens
        os.environ.update(OPENAI_BASE_URL=fake.base_url, OPENAI_API_KEY="sk-bench-estimate")
        from pld.llm import registry

        registry.reset()
        ws = open_workspace(path)
        load_task(ws, "demo")

        def measure(stage: str, planned: Any, run: Callable[[], Any],
                    log_stages: tuple[str, ...]) -> None:
            est = summarize(ws, planned)
            before = _tokens(ws, log_stages)
            run()
            after = _tokens(ws, log_stages)
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


def _tokens(ws: Workspace, stages: tuple[str, ...]) -> tuple[int, int, int]:
    marks = ", ".join("?" for _ in stages)
    row = ws.query("SELECT coalesce(sum(input_tokens), 0) AS i, coalesce(sum(output_tokens), 0) "
                   f"AS o, count(*) AS n FROM llm_calls WHERE cache_hit = 0 AND stage IN "
                   f"({marks})", list(stages))[0]
    return row["i"], row["o"], row["n"]
