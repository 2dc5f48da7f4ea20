"""``concurrency.speedup_8`` — extraction of 64 examples against the fake server answering after
a fixed 200 ms: concurrency 1 ÷ concurrency 8, wall time (after an untimed warm-up)."""

from __future__ import annotations

import argparse
import time
from typing import Any

from bench.figures.scripted import scripted_reply
from bench.figures.speed.report import entry
from bench.figures.workspaces import fresh_ws, load_demo
from pld.tasks.demo import DEMO_LABELS


def measure_concurrency(args: argparse.Namespace) -> dict[str, Any]:
    """Extraction wall time at concurrency 1 and 8 against a server with a fixed delay."""
    from pld.pipeline.extract.stage import extract
    from tests.fakes.openai_server import FakeOpenAI

    n = args.concurrency_examples
    print(f"concurrency: extract {n} examples against a {args.delay * 1000:.0f} ms fake server, "
          "concurrency 1 and 8", flush=True)
    wall: dict[int, float] = {}
    requests: dict[int, int] = {}
    with FakeOpenAI(responder=scripted_reply(DEMO_LABELS), delay_s=args.delay) as fake:
        model = fake.model_string("bench-fake")
        # Untimed warm-up: imports, the HTTP client and its connection pool are set up once,
        # so the first timed arm does not pay for them.
        ws = fresh_ws("concurrency-warmup.db")
        load_demo(ws)
        extract(ws, "demo", model, limit=8, concurrency=8)
        ws.close()
        for c in (1, 8):
            ws = fresh_ws(f"concurrency-{c}.db")
            load_demo(ws, n_train=n, n_val=1, n_test=1)
            before = len(fake.requests)
            t0 = time.perf_counter()
            s = extract(ws, "demo", model, concurrency=c)
            wall[c] = time.perf_counter() - t0
            requests[c] = len(fake.requests) - before
            if s.done != n:
                raise SystemExit(f"concurrency: {s.done} of {n} rules extracted at "
                                 f"concurrency {c} ({s.failed} failed)")
            ws.close()
    speedup = wall[1] / wall[8]
    return {"speedup_8": entry("concurrency", "speedup_8", round(speedup, 2), {
        "examples": n, "server_delay_s": args.delay,
        "wall_s_concurrency_1": round(wall[1], 2), "wall_s_concurrency_8": round(wall[8], 2),
        "requests": requests, "ideal_speedup": 8,
        "overhead_per_call_s_at_1": round(wall[1] / n - args.delay, 4)})}
