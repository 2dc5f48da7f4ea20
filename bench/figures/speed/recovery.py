"""What a repeated, interrupted or killed run costs again, against the fake servers:

* ``rerun.uncached_calls`` — ``llm_calls`` rows that missed the cache (``cache_hit = 0``, no
  error) added by repeating a finished ``run`` of the demo task: against the fake
  OpenAI-compatible server (every stage, with a conflict loop that really changes the prompt),
  and with ``--local-rerun`` also on the local model (a small slice of the demo task).
* ``resume.repeated_calls`` — an ``extract`` subprocess (the real CLI, 8 parallel calls against
  the fake server) is killed with SIGKILL once half the rules are written, then run again:
  completed calls that were made a second time.
* ``batch.resubmitted_after_kill`` — ``python -m pld extract demo --batch`` (the real CLI and
  the real Anthropic SDK against the fake Message Batches API) is killed with SIGKILL once its
  batch is submitted and its id stored, while it polls; the same command again: requests
  submitted more than once.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from bench.figures.scripted import BATCH_TEACHER, scripted_reply
from bench.figures.speed.report import entry
from bench.figures.workspaces import (
    child_env,
    count_rows,
    fresh_path,
    fresh_ws,
    kill_when,
    load_demo,
    run_again,
)
from pld.identity import AUTO, Identity
from pld.tasks.demo import DEMO_LABELS
from pld.workspace import Workspace, open_workspace

# Batches whose provider id is stored: the moment a killed command resumes by polling.
STORED_SQL = "SELECT count(*) FROM batches WHERE provider_batch_id IS NOT NULL"


def _chain_twice(ws: Workspace, teacher: str, student: str, **options: Any) -> dict[str, Any]:
    """Run the chain on the demo task, then again; what the second run added to the call log."""
    from pld.pipeline.chain import ChainOptions, run_chain

    o = ChainOptions(teacher=teacher, student=student, auto_approve_as=Identity("bench", AUTO),
                     **options)
    t0 = time.monotonic()
    first = run_chain(ws, "demo", o)
    t1 = time.monotonic()
    mark = ws.query("SELECT coalesce(max(id), 0) AS n FROM llm_calls")[0]["n"]
    second = run_chain(ws, "demo", o)
    t2 = time.monotonic()
    added = ws.query(
        "SELECT coalesce(sum(cache_hit = 0 AND error IS NULL), 0) AS uncached, "
        "coalesce(sum(cache_hit), 0) AS hits, coalesce(sum(error IS NOT NULL), 0) AS errors, "
        "count(*) AS calls FROM llm_calls WHERE id > ?", [mark])[0]
    by_stage = {r["stage"]: r["n"] for r in ws.query(
        "SELECT stage, count(*) AS n FROM llm_calls WHERE id > ? AND cache_hit = 0 "
        "GROUP BY stage", [mark])}
    first_calls = ws.query("SELECT count(*) AS n FROM llm_calls WHERE id <= ? AND cache_hit = 0",
                           [mark])[0]["n"]
    evals = second.stages.get("eval", {})
    return {"uncached_calls": int(added["uncached"]), "cache_hits": int(added["hits"]),
            "errors": int(added["errors"]), "calls_logged": int(added["calls"]),
            "uncached_by_stage": by_stage, "first_run_uncached_calls": first_calls,
            "first_run_s": round(t1 - t0, 1), "second_run_s": round(t2 - t1, 1),
            "same_scores": {k: v["macro_f1"] for k, v in evals.items()}
            == {k: v["macro_f1"] for k, v in first.stages.get("eval", {}).items()},
            "options": dict(options)}


def measure_rerun(args: argparse.Namespace) -> dict[str, Any]:
    """Repeat a finished run: every call must come from the cache."""
    from tests.fakes.openai_server import FakeOpenAI

    print("rerun: chain on the demo task twice against the fake server", flush=True)
    with FakeOpenAI(responder=scripted_reply(DEMO_LABELS)) as fake:
        model = fake.model_string("bench-fake")
        ws = fresh_ws("rerun-fake.db")
        fake_detail = _chain_twice(ws, model, model, method="kmeans", k=4, iterations=2,
                                   few_shot=5)
        requests_total = len(fake.requests)
        ws.close()
    fake_detail["server_requests_total"] = requests_total
    detail: dict[str, Any] = {"fake_openai_compatible": fake_detail}
    value = fake_detail["uncached_calls"]
    if args.local_rerun:
        print(f"rerun: chain on a slice of the demo task twice with {args.rerun_model}",
              flush=True)
        ws = fresh_ws("rerun-local.db")
        sizes = (dict(limit=6, val_limit=4, test_limit=4, k=2) if args.quick
                 else dict(limit=20, val_limit=10, test_limit=10, k=3))
        local = _chain_twice(ws, args.rerun_model, args.rerun_model, method="kmeans",
                             iterations=1, few_shot=2, **sizes)
        ws.close()
        local["model"] = args.rerun_model
        detail["local"] = local
        value += local["uncached_calls"]
    else:
        detail["local"] = "not run (pass --local-rerun)"
    return {"uncached_calls": entry("rerun", "uncached_calls", value, detail)}


def measure_resume(args: argparse.Namespace) -> dict[str, Any]:
    """Kill an extraction subprocess at ~50% (SIGKILL), resume it, count repeated calls."""
    from tests.fakes.openai_server import FakeOpenAI

    ws = fresh_ws("resume.db")
    load_demo(ws)
    n = ws.query("SELECT count(*) AS n FROM examples WHERE split = 'train'")[0]["n"]
    path = ws.path
    ws.close()
    ok_sql = "SELECT count(*) FROM micro_instructions WHERE status = 'ok'"
    print(f"resume: extract {n} examples, {args.resume_concurrency} in parallel, SIGKILL at "
          f"~50%, resume", flush=True)
    with FakeOpenAI(responder=scripted_reply(DEMO_LABELS), delay_s=args.resume_delay) as fake:
        model = fake.model_string("bench-fake")
        cmd = [sys.executable, "-m", "pld", "--workspace", str(path), "extract", "demo",
               "--teacher", model, "--concurrency", str(args.resume_concurrency)]
        env = child_env()
        kill_when(cmd, env, lambda: count_rows(path, ok_sql) >= n // 2, "resume")
        at_kill = count_rows(path, ok_sql)
        requests_at_kill = len(fake.requests)
        run_again([*cmd, "--json"], env, "resume")
        requests_total = len(fake.requests)
    with open_workspace(path) as ws:
        repeated = ws.query(
            "SELECT coalesce(sum(n - 1), 0) AS extra, count(*) AS keys FROM (SELECT cache_key, "
            "count(*) AS n FROM llm_calls WHERE cache_hit = 0 AND error IS NULL "
            "GROUP BY cache_key HAVING n > 1)")[0]
        per_example = ws.query(
            "SELECT count(*) AS n FROM (SELECT e.id, count(m.id) AS rows, "
            "coalesce(sum(m.status = 'ok'), 0) AS ok FROM examples e LEFT JOIN "
            "micro_instructions m ON m.example_id = e.id WHERE e.split = 'train' GROUP BY e.id "
            "HAVING rows = 1 AND ok = 1)")[0]["n"]
        runs = ws.query("SELECT status FROM runs WHERE kind = 'extract' ORDER BY id")
        completed = ws.query("SELECT count(DISTINCT cache_key) AS n FROM llm_calls "
                             "WHERE cache_hit = 0 AND error IS NULL")[0]["n"]
    return {"repeated_calls": entry("resume", "repeated_calls", int(repeated["extra"]), {
        "examples": n, "ok_rules_at_kill": at_kill, "killed_at_share": round(at_kill / n, 2),
        "concurrency": args.resume_concurrency, "server_delay_s": args.resume_delay,
        "server_requests_before_kill": requests_at_kill,
        "server_requests_total": requests_total,
        "distinct_completed_calls": completed,
        "in_flight_at_kill_resent": requests_total - completed,
        "examples_with_exactly_one_ok_row": per_example,
        "run_statuses": [r["status"] for r in runs],
        "how": "python -m pld extract as a subprocess against the fake server; SIGKILL once "
               "half the rules are written; the same command again; repeated = completed calls "
               "(cache_hit 0, no error) logged more than once for the same cache key. Calls in "
               "flight at the kill never completed, so they are sent again: "
               "in_flight_at_kill_resent"})}


def measure_batch(args: argparse.Namespace) -> dict[str, Any]:
    """Kill ``extract --batch`` after its submit, run it again, count double submissions."""
    from tests.fakes.anthropic_server import FakeAnthropicBatches

    path = fresh_path("batch-kill.db")
    with open_workspace(path) as ws:
        load_demo(ws)
        n = ws.query("SELECT count(*) AS n FROM examples WHERE split = 'train'")[0]["n"]
    print(f"batch: extract {n} demo examples with --batch, SIGKILL after the submit, resume",
          flush=True)
    with FakeAnthropicBatches(responder=scripted_reply(DEMO_LABELS)) as fake:
        env = child_env({"ANTHROPIC_BASE_URL": fake.base_url,
                         "ANTHROPIC_API_KEY": "sk-ant-bench", "PLD_BATCH_POLL_S": "0.2"})
        fake.book.polls_to_finish = 10**9  # still in progress while the first process polls
        cmd = [sys.executable, "-m", "pld", "--workspace", str(path), "extract", "demo",
               "--teacher", BATCH_TEACHER, "--batch", "--json"]
        polls: list[int] = []

        def submitted() -> bool:
            if not (fake.book.creates and count_rows(path, STORED_SQL)):
                return False
            polls.append(sum(10**9 - b.polls_left for b in fake.book.batches.values()))
            return True

        kill_when(cmd, env, submitted, "batch", poll_s=0.02)
        for b in fake.book.batches.values():
            b.polls_left = 1  # the provider finishes while nobody polls
        run_again(cmd, env, "batch")
        submitted_ids, creates = list(fake.book.submitted), fake.book.creates
        sync = len(fake.requests)
    with open_workspace(path) as ws:
        ok = ws.query("SELECT count(*) AS n FROM micro_instructions WHERE status = 'ok'")[0]["n"]
        runs = [r["status"] for r in ws.query(
            "SELECT status FROM runs WHERE kind = 'extract' ORDER BY id")]
    twice = len(submitted_ids) - len(set(submitted_ids))
    return {"resubmitted_after_kill": entry("batch", "resubmitted_after_kill", twice, {
        "examples": n, "batch_creates": creates, "requests_submitted": len(submitted_ids),
        "distinct_requests": len(set(submitted_ids)), "polls_before_kill": polls[-1],
        "synchronous_calls": sync, "ok_rules": ok, "run_statuses": runs,
        "how": "python -m pld extract demo --batch (anthropic SDK, fake Message Batches API); "
               "SIGKILL once the provider batch id is stored, while it polls; the same command "
               "again; resubmitted = custom ids the fake received more than once"})}
