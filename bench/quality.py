"""Quality benchmark: zero-shot, 5-shot, nearest-neighbour 5-shot, PLD after consolidation and PLD
after the conflict loop, on the same fixed test items, for StereoSet, Contract-NLI, LogiQA and the
demo, with the paired-bootstrap CI of PLD minus each strong baseline.

It drives the real pipeline (:func:`pld.pipeline.chain.run_chain`, the same code as
``python -m pld run``) on one workspace per task and configuration under ``bench/.work/``. Every
heuristic and proposal is auto-approved as ``bench`` (identity kind ``auto`` in the audit trail),
which is what makes an unattended run possible; the JSON says so. Rerunning the same command
resumes: the stages skip what the workspace holds and every finished LLM call is answered from the
workspace's call cache. Results of separate ``--task`` runs merge into one JSON file.

Default subset sizes are chosen so that one task takes about an hour with ``local/default`` as
teacher and student on a quiet 2-core CPU machine; the script prints its estimate before it
starts. ``--train/--val/--test`` scale them up for a GPU server
(``--teacher openai-compatible/<model>@http://host:port/v1``) or an API (``--teacher
anthropic/<model>``, key in ``ANTHROPIC_API_KEY``). The stages live in ``bench/figures/quality/``;
this script parses the command line and runs them task by task (and seed by seed).

Each part of the method that is on by default can be switched off, and a run with a part off is
a variant with its own row: ``--no-contrastive``, ``--no-failing-first``, ``--no-verify-rules``,
``--method dbscan`` (the earlier default clustering). ``--seeds 0,1,2`` runs each seed (its own
split draw, clustering and calibration) and reports the spread over seeds.

    python bench/quality.py --task stereoset
    python bench/quality.py --task demo --seeds 0,1,2
    python bench/quality.py --task demo --no-contrastive --no-failing-first --no-verify-rules \
        --method dbscan                                  # the method before issue 22
    python bench/quality.py --task all --teacher anthropic/claude-sonnet-4-5 --train 600 --test 500
    python bench/quality.py --quick --task all          # tiny smoke run on local/small
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.figures.machine import RESULTS, WORK
from bench.figures.quality.plan import TASKS, sizes_for
from bench.figures.quality.report import print_summary, record, update_readme
from bench.figures.quality.run import run_task
from pld.errors import BadInput, NotReady
from pld.llm.base import ConfigError
from pld.llm.registry import parse_model


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see ``--help``)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="all", choices=[*TASKS, "all"])
    p.add_argument("--teacher", default="local/default", help="Teacher model string.")
    p.add_argument("--student", default="local/default", help="Student model string.")
    p.add_argument("--train", type=int, default=None, help="Training examples (extraction).")
    p.add_argument("--val", type=int, default=None, help="Validation examples (conflict loop).")
    p.add_argument("--test", type=int, default=None, help="Test items (all four methods).")
    p.add_argument("--iterations", type=int, default=None,
                   help="Conflict-loop iterations after the first evaluation.")
    p.add_argument("--context-tokens", type=int, default=None,
                   help="contract-nli: input budget per example (default 500 here; the task's "
                        "own default is 1500).")
    p.add_argument("--few-shot", type=int, default=5, help="k of the k-shot baseline (0: skip).")
    p.add_argument("--nearest-few-shot", type=int, default=5,
                   help="k of the nearest-neighbour k-shot baseline: each item's k most similar "
                        "training examples (0: skip).")
    p.add_argument("--worked-examples", action="store_true",
                   help="Also evaluate the adopted prompt with each heuristic followed by its "
                        "most typical source example (eval --worked-examples).")
    p.add_argument("--no-contrastive", dest="contrastive", action="store_false",
                   help="Extract from each example alone, not against its nearest example of "
                        "another label (run --no-contrastive).")
    p.add_argument("--no-failing-first", dest="failing_first", action="store_false",
                   help="Extract from every training example, not first from those the "
                        "calibrated zero-shot student gets wrong (run --no-failing-first).")
    p.add_argument("--no-verify-rules", dest="verify_rules", action="store_false",
                   help="Do not try each rule on the student before clustering "
                        "(run --no-verify-rules).")
    p.add_argument("--method", default="auto", choices=["auto", "dbscan", "hdbscan", "kmeans"],
                   help="Clustering; dbscan (with --eps auto) is the default before issue 22.")
    p.add_argument("--eps", default="auto")
    p.add_argument("--min-samples", type=int, default=6)
    p.add_argument("--k", type=int, default=None, help="k-means: number of clusters.")
    p.add_argument("--cover-labels", action="store_true",
                   help="A cluster for each label whose rules all fall into noise "
                        "(cluster --cover-labels).")
    p.add_argument("--concurrency", type=int, default=None,
                   help="Parallel teacher calls (default: 1 local, 8 remote).")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", default=None, metavar="S,S,...",
                   help="Run each of these seeds (e.g. 0,1,2) and report the spread over them; "
                        "the first one's results are the table's row.")
    p.add_argument("--merge", default="all", choices=["all", "by-label", "medoid"],
                   help="How consolidate turns a cluster into a heuristic (consolidate --merge). "
                        "This or any --no-... or clustering option other than the default makes "
                        "a variant: its results go to variants.NAME.TASK (NAME e.g. "
                        "merge-medoid, kmeans-k8, no-contrastive) and its new workspace's call "
                        "cache is seeded from the base run's, so shared calls are not paid "
                        "again.")
    p.add_argument("--work", default=str(WORK), help="Folder of the benchmark workspaces.")
    p.add_argument("--out", default=None, help="Results file (default bench/results/quality.json"
                                               ", quality.quick.json with --quick).")
    p.add_argument("--quick", action="store_true",
                   help="Tiny smoke run: 8/4/4 items, local/small, 2-shot.")
    p.add_argument("--estimate-only", action="store_true",
                   help="Load the data, print the time estimate and stop.")
    args = p.parse_args(argv)
    if args.quick:
        if args.teacher == "local/default":
            args.teacher = "local/small"
        if args.student == "local/default":
            args.student = "local/small"
        args.few_shot = min(args.few_shot, 2)
        args.nearest_few_shot = min(args.nearest_few_shot, 2)
    if args.eps != "auto":
        args.eps = float(args.eps)
    try:
        args.seeds = ([int(x) for x in args.seeds.split(",") if x.strip()] if args.seeds
                      else [args.seed])
    except ValueError:
        p.error(f"--seeds: expected integers separated by commas, got {args.seeds!r}")
    if not args.seeds:
        p.error("--seeds: give at least one seed")
    for m in (args.teacher, args.student):
        try:
            parse_model(m)
        except ConfigError as e:
            p.error(str(e))
    out = args.out or RESULTS / ("quality.quick.json" if args.quick else "quality.json")
    args.out = Path(out)
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the chosen tasks, merge their results into the JSON file, print the table."""
    args = parse_args(argv)
    tasks = TASKS if args.task == "all" else (args.task,)
    failed = False
    for task in tasks:
        for seed in args.seeds:
            args.seed = seed
            try:
                block = run_task(task, args, sizes_for(task, args))
            except (BadInput, NotReady, ConfigError) as e:
                print(f"{task} (seed {seed}): {e}", file=sys.stderr)
                failed = True
                continue
            if not block:
                continue
            data = record(args.out, task, block, args, primary=seed == args.seeds[0])
            print_summary(args.out, data)
            if not args.quick and args.out.resolve() == (RESULTS / "quality.json").resolve():
                update_readme(data)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
