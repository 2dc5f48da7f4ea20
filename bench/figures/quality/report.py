"""``quality.json`` and its tables: merging a task's block into the file (a variant of the
method beside the base run, each seed's figures for the spread over seeds), the console tables
and the READMEs' tables: scores beside the paper's published numbers, then PLD's paired
differences from the strongest baselines and the spread over seeds."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench.figures.machine import REPO, machine_info
from bench.figures.quality.plan import TASKS
from bench.figures.quality.seeds import SPREAD_HEADERS, add_run, spread_rows
from bench.figures.quality.variants import variant_name
from bench.figures.results import merge_json, print_table, replace_block

PAPER = {  # arXiv 2602.21103, Gemma-3 4B student: baseline -> PLD (their test sets)
    "stereoset": ("macro-F1", 0.57, 0.90),
    "contract-nli": ("macro-F1", 0.67, 0.83),
    "logiqa": ("accuracy", 0.67, 0.70),
    "demo": None,  # our own task: no published number
}
READMES = (REPO / "README.md", REPO / "bench" / "README.md")
METHOD_KEYS = (("zero_shot", "zero-shot"), ("few_shot", "5-shot"),
               ("nearest_few_shot", "nearest 5-shot"), ("pld_clustered", "PLD clustered"),
               ("pld_post_conflict", "PLD after conflicts"),
               ("pld_worked", "PLD + worked examples"))


def record(out: Path, task: str, block: dict[str, Any], args: argparse.Namespace,
           primary: bool = True) -> dict[str, Any]:
    """Merge one task's block into the results file ``out``; the file's new contents.

    Every run's figures go to the spread over seeds; the ``primary`` seed's block (the first
    of ``--seeds``) is also the task's (or variant's) block, the table's row."""
    machine = machine_info({"teacher": args.teacher, "student": args.student})
    block.update(quick=args.quick, measured_at=machine["date"],
                 machine_cpu=machine["cpu_model"],
                 load_average_1_5_15=machine["load_average_1_5_15"])
    variant = variant_name(args)

    def update(data: dict[str, Any]) -> None:
        data["machine"] = machine
        add_run(data, variant, task, args.seed, block)
        if primary and variant:  # a variant of the method: kept beside the base run
            data.setdefault("variants", {}).setdefault(variant, {})[task] = block
        elif primary:
            data.setdefault("tasks", {})[task] = block
        data["paper"] = {k: {"metric": v[0], "baseline": v[1], "pld": v[2],
                             "model": "Gemma-3 4B"} for k, v in PAPER.items() if v}
        data["notes"] = ("Each task block comes from its own run (see its models, sizes "
                         "and workspace); 'machine' describes the latest run. Our models "
                         "and subsets differ from the paper's.")

    return merge_json(out, update)


def _fmt(block: dict[str, Any] | None, key: str = "macro_f1") -> str:
    if not block:
        return "-"
    ci = block.get("ci" if key == "macro_f1" else "accuracy_ci") or ["?", "?"]
    return f"{block[key]:.3f} [{ci[0]:.2f}, {ci[1]:.2f}]" if ci[0] != "?" else f"{block[key]:.3f}"


def _share(block: dict[str, Any] | None) -> str:
    share = (block or {}).get("top_answer_share")
    return "-" if share is None else f"{share:.0%}"


def _cell(block: dict[str, Any] | None, key: str) -> str:
    """Raw score → calibrated score, each with its most frequent answer's share."""
    if not block:
        return "-"
    raw = f"{_fmt(block, key)} ({_share(block)})"
    if "calibrated" not in block:  # measured before calibration existed
        return raw + " → not measured"
    cal = block["calibrated"]
    return raw + (f" → {_fmt(cal, key)} ({_share(cal)})" if cal else " → n/a")


def _items(t: dict[str, Any]) -> str:
    return f"{t['n_test']} ({str(t.get('measured_at') or '?')[:10]})"


def _metric_of(name: str) -> tuple[str, str]:
    paper = PAPER.get(name)
    metric = paper[0] if paper else "macro-F1"
    return metric, "accuracy" if metric == "accuracy" else "macro_f1"


def print_results(tasks: dict[str, Any]) -> None:
    """The comparison table of every task in the results file: raw → calibrated."""
    rows = []
    for name, t in tasks.items():
        if not t or "zero_shot" not in t:
            continue
        for key, label in (("macro_f1", "macro-F1"), ("accuracy", "accuracy")):
            rows.append([name, label, *(_cell(t.get(k), key) for k, _ in METHOD_KEYS),
                         t["clusters"], t["heuristics"], t["prompt_tokens"],
                         f"{t['n_train']}/{t['n_val']}/{t['n_test']}"])
    print_table(["task", "metric", *(label for _, label in METHOD_KEYS), "clusters",
                 "heuristics", "prompt tok", "train/val/test"], rows)


def _delta(p: dict[str, Any] | None) -> str:
    if not p or p.get("delta") is None:
        return "-"
    ci = p.get("ci") or []
    where = f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if len(ci) == 2 else ""
    return f"{p['delta']:+.3f}{where} {p.get('judged_by', '')}".rstrip()


def _share_of(t: dict[str, Any]) -> str:
    share = t.get("largest_cluster_share")
    return "-" if share is None else f"{share:.0%}"


def paired_rows(data: dict[str, Any]) -> list[list[str]]:
    """Per task and variant: PLD minus zero-shot and minus nearest k-shot on the same test
    items (paired-bootstrap 95% CI), the clustering kept and its largest cluster's share."""
    blocks = [(name, t) for name, t in data.get("tasks", {}).items()]
    blocks += [(f"{name}, {t.get('variant_flags') or v}", t)
               for v, tasks in data.get("variants", {}).items() for name, t in tasks.items()]
    return [[name, _delta((t.get("paired") or {}).get("pld_minus_zero_shot")),
             _delta((t.get("paired") or {}).get("pld_minus_nearest_few_shot")),
             t.get("cluster_chosen") or t.get("cluster_method") or "-",
             str(t.get("clusters", "-")), _share_of(t), str(t.get("heuristics", "-"))]
            for name, t in blocks if t and "zero_shot" in t]


PAIRED_HEADERS = ["task", "PLD − zero-shot", "PLD − nearest 5-shot", "clustering",
                  "clusters", "largest cluster", "heuristics"]


def print_summary(out: Path, data: dict[str, Any]) -> None:
    """The results file's tasks and variants, paired differences and seed spread on the
    console."""
    print(f"\nwrote {out}")
    print_results(data.get("tasks", {}))
    if data.get("variants"):
        print("\nvariants:")
        print_results({f"{t} ({v})": b for v, blocks in data["variants"].items()
                       for t, b in blocks.items()})
    print("\nPLD after the conflict loop minus each baseline, same test items (macro-F1, "
          "paired-bootstrap 95% CI):")
    print_table(PAIRED_HEADERS, paired_rows(data))
    spread = spread_rows(data)
    if spread:
        print("\nspread over seeds (macro-F1, calibrated; mean ± sd [min, max]):")
        print_table(SPREAD_HEADERS, spread)


def markdown_table(data: dict[str, Any]) -> str:
    """The README table: each method raw → calibrated, the share of the most frequent answer in
    brackets, and the paper's published numbers beside ours."""
    lines = [
        "| task | metric | paper: Gemma-3 4B baseline → PLD | ours: zero-shot | ours: 5-shot | "
        "ours: nearest 5-shot | ours: PLD clustered | ours: PLD after conflicts | "
        "ours: PLD + worked examples | ours: test items (measured) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    tasks = data.get("tasks", {})
    for name in TASKS:
        metric, key = _metric_of(name)
        paper = PAPER.get(name)
        published = f"{paper[1]:.2f} → {paper[2]:.2f}" if paper else "(our own task)"
        t = tasks.get(name) or {}
        if "zero_shot" in t:
            ours = [*(_cell(t.get(k), key) for k, _ in METHOD_KEYS), _items(t)]
        else:
            ours = ["not run yet"] + ["-"] * len(METHOD_KEYS)
        lines.append(f"| {name} | {metric} | {published} | " + " | ".join(ours) + " |")
        for variant, blocks in data.get("variants", {}).items():
            v = blocks.get(name)
            if v and "zero_shot" in v:
                flags = v.get("variant_flags") or f"--{variant.replace('-', ' ', 1)}"
                lines.append(f"| {name}, {flags} | {metric} | | "
                             + " | ".join(_cell(v.get(k), key) for k, _ in METHOD_KEYS)
                             + f" | {_items(v)} |")
    blocks = [*tasks.values(), *(b for v in data.get("variants", {}).values()
                                  for b in v.values())]
    models = sorted({f"{t['models']['teacher']} → {t['models']['student']}"
                     for t in blocks if t and "models" in t})
    if models:
        lines.append("")
        machines = sorted({(str(t.get("measured_at") or "?")[:10], t.get("machine_cpu") or "?")
                           for t in blocks if t and "models" in t})
        lines.append(f"Ours: teacher → student {', '.join(models)}; machines: "
                     + "; ".join(f"{cpu} (rows measured {day})" for day, cpu in machines)
                     + ". Each cell: raw score → "
                     "calibrated score (per-label bias fitted on validation only); brackets: "
                     "bootstrap 95% CI, then the share of the most frequent answer. n/a: the "
                     "student gave no label scores; not measured: a run from before "
                     "calibration existed (older templates too).")
    lines += ["", "PLD after the conflict loop minus the baselines on the same test items "
              "(macro-F1; paired-bootstrap 95% CI; calibrated answers unless marked raw), the "
              "clustering kept and the share of the rules in its largest cluster:", "",
              _markdown(PAIRED_HEADERS, paired_rows(data))]
    spread = spread_rows(data)
    if spread:
        lines += ["", "Spread over seeds (each seed its own split draw, clustering and "
                  "calibration; calibrated macro-F1, mean ± sd [min, max]):", "",
                  _markdown(SPREAD_HEADERS, spread)]
    return "\n".join(lines)


def _markdown(headers: list[str], rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(headers) + " |",
                      "| " + " | ".join("---" for _ in headers) + " |",
                      *("| " + " | ".join(row) + " |" for row in rows)])


def update_readme(data: dict[str, Any]) -> None:
    """Put the current results into the READMEs' quality tables."""
    for readme in READMES:
        replace_block(readme, "quality-table", markdown_table(data))
