"""Speed benchmark: every figure is a ratio (or a count) measured within one run, so that a noisy,
shared machine still gives comparable numbers.

Each figure family lives in a module of ``bench/figures/speed/`` that says how it is measured:
``prefix_cache`` (the student's KV-state reuse), ``local_runtime`` (local_concurrency,
local_json, local_teacher), ``recovery`` (rerun, resume, batch), ``concurrency``, ``scale``
(pages, scale), ``estimate`` and ``load`` (concurrent writers on one workspace). This script
parses the command line, runs the chosen sections and merges each into the results file as it
finishes.

    python bench/speed.py                        # everything, local/default, N=50 (~50 min)
    python bench/speed.py --only prefix_cache --model local/small
    python bench/speed.py --quick                # tiny smoke run of every measurement
    python bench/speed.py --only load --seconds 3 --processes 4
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.figures.machine import RESULTS
from bench.figures.results import read_json
from bench.figures.speed.concurrency import measure_concurrency
from bench.figures.speed.estimate import measure_estimate
from bench.figures.speed.load import measure_load
from bench.figures.speed.local_runtime import (
    measure_local_concurrency,
    measure_local_json,
    measure_local_teacher,
)
from bench.figures.speed.prefix_cache import measure_prefix_cache
from bench.figures.speed.recovery import measure_batch, measure_rerun, measure_resume
from bench.figures.speed.report import SECTIONS, print_summary, record
from bench.figures.speed.scale import measure_pages, measure_scale

RUNNERS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "prefix_cache": measure_prefix_cache, "local_concurrency": measure_local_concurrency,
    "local_json": measure_local_json, "local_teacher": measure_local_teacher,
    "rerun": measure_rerun, "resume": measure_resume,
    "concurrency": measure_concurrency, "pages": measure_pages, "scale": measure_scale,
    "batch": measure_batch, "estimate": measure_estimate, "load": measure_load,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see ``--help``)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default=",".join(SECTIONS),
                   help=f"Comma-separated sections to run (default all: {','.join(SECTIONS)}); "
                        "the others keep their values in the results file.")
    p.add_argument("--model", default=None,
                   help="prefix_cache: local model (default local/default; local/small "
                        "with --quick).")
    p.add_argument("--n", type=int, default=None, help="prefix_cache: examples (default 50).")
    p.add_argument("--prompt-tokens", type=int, default=None,
                   help="prefix_cache: rule prompt length in tokens (default 4000).")
    p.add_argument("--local-examples", type=int, default=None,
                   help="local_concurrency: extraction examples per arm (default 24; half that "
                        "for local_json and local_teacher).")
    p.add_argument("--local-rerun", action="store_true",
                   help="rerun: also repeat a run on the local model.")
    p.add_argument("--rerun-model", default=None,
                   help="rerun --local-rerun: model (default local/default; local/small with "
                        "--quick).")
    p.add_argument("--resume-concurrency", type=int, default=8)
    p.add_argument("--resume-delay", type=float, default=0.3,
                   help="resume: fake server delay per call, seconds.")
    p.add_argument("--concurrency-examples", type=int, default=None,
                   help="concurrency: examples (default 64).")
    p.add_argument("--delay", type=float, default=0.2,
                   help="concurrency: fake server delay per call, seconds.")
    p.add_argument("--rules-big", type=int, default=None, help="pages: default 10000.")
    p.add_argument("--rules-huge", type=int, default=None, help="scale: default 100000.")
    p.add_argument("--rules-small", type=int, default=100)
    p.add_argument("--scale-parts", default="page,rss",
                   help="scale: which figures (page: the page at 100k rules; rss: peak memory "
                        "of a 100k batch extraction); the other keeps its value.")
    p.add_argument("--extract-huge", type=int, default=None,
                   help="scale rss: examples of the big extraction (default 100000).")
    p.add_argument("--extract-small", type=int, default=None,
                   help="scale rss: examples of the small one (default 10000).")
    p.add_argument("--renders", type=int, default=None, help="pages: renders each (default 5).")
    p.add_argument("--seconds", type=float, default=None,
                   help="load: how long the writers run, seconds (default 60; 3 with --quick).")
    p.add_argument("--processes", type=int, default=None,
                   help="load: writer processes on one workspace (default 16; 4 with --quick).")
    p.add_argument("--out", default=None,
                   help="Results file (default bench/results/speed.json; speed.quick.json "
                        "with --quick).")
    p.add_argument("--quick", action="store_true",
                   help="Tiny smoke run: local/small, 3 examples, 600-token prompt, 16 "
                        "extraction examples, 1,000 vs 100 rules, 2 renders, 4 writers "
                        "for 3 s.")
    args = p.parse_args(argv)
    quick = args.quick
    args.model = args.model or ("local/small" if quick else "local/default")
    args.rerun_model = args.rerun_model or ("local/small" if quick else "local/default")
    args.n = args.n or (3 if quick else 50)
    args.local_examples = args.local_examples or (8 if quick else 24)
    args.prompt_tokens = args.prompt_tokens or (600 if quick else 4000)
    args.concurrency_examples = args.concurrency_examples or (16 if quick else 64)
    args.rules_big = args.rules_big or (1000 if quick else 10_000)
    args.rules_huge = args.rules_huge or (2000 if quick else 100_000)
    args.renders = args.renders or (2 if quick else 5)
    args.extract_huge = args.extract_huge or (2000 if quick else 100_000)
    args.extract_small = args.extract_small or (200 if quick else 10_000)
    args.seconds = args.seconds or (3.0 if quick else 60.0)
    args.processes = args.processes or (4 if quick else 16)
    args.out = Path(args.out or RESULTS / ("speed.quick.json" if quick else "speed.json"))
    args.sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(args.sections) - set(SECTIONS))
    if unknown:
        p.error(f"--only: unknown section(s) {', '.join(unknown)}; choose from "
                f"{', '.join(SECTIONS)}")
    if args.seconds <= 0 or args.processes < 1:
        p.error("--seconds must be positive and --processes at least 1")
    if not 1 <= args.concurrency_examples <= 83:
        p.error("--concurrency-examples must be 1..83 (the demo task has 100 items)")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the chosen sections, merging each into the results file as it finishes."""
    args = parse_args(argv)
    models = {"prefix_cache": args.model, "local_runtime": args.model,
              "rerun_local": args.rerun_model if args.local_rerun else None,
              "fake": "tests/fakes FakeOpenAI (127.0.0.1)"}
    data = read_json(args.out)
    for section in args.sections:
        t0 = time.monotonic()
        result = RUNNERS[section](args)
        print(f"  {section} took {time.monotonic() - t0:.1f} s", flush=True)
        data = record(args.out, section, result, models, args.quick)
    print_summary(args.out, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
