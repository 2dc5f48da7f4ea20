"""``speed.json``: its sections and targets, an entry per figure, merging a section's run into
the file, and the README's speed table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.figures.machine import REPO, RESULTS, machine_info
from bench.figures.results import merge_json, print_table, replace_block

SECTIONS = ("prefix_cache", "local_concurrency", "local_json", "local_teacher", "rerun", "resume",
            "concurrency", "pages", "scale", "batch", "estimate", "load")
TARGETS = {
    ("prefix_cache", "speedup"): (">=", 5),
    ("prefix_cache", "vs_limit"): ("<=", 1.5),
    ("local_concurrency", "speedup_4"): (">=", 1.8),
    ("local_json", "vs_free"): ("<=", 1.1),
    ("local_teacher", "vs_floor"): ("<=", 1.3),
    ("rerun", "uncached_calls"): ("==", 0),
    ("resume", "repeated_calls"): ("==", 0),
    ("concurrency", "speedup_8"): (">=", 6),
    ("pages", "ratio_10k_vs_100"): ("<=", 3),
    ("scale", "page_100k_vs_100"): ("<=", 3),
    ("scale", "rss_100k_vs_10k"): ("<=", 1.5),
    ("batch", "resubmitted_after_kill"): ("==", 0),
    ("estimate", "error"): ("<=", 0.25),
    ("load", "concurrent_writers"): ("==", 0),
}


def entry(section: str, key: str, value: float | int, detail: dict[str, Any]) -> dict[str, Any]:
    """One figure of ``speed.json``: its value, its target and whether it is met."""
    op, target = TARGETS[(section, key)]
    met = {">=": value >= target, "<=": value <= target, "==": value == target}[op]
    return {"value": value, "target": f"{op} {target}", "detail": {"met": met, **detail}}


def record(out: Path, section: str, result: dict[str, Any], models: dict[str, Any],
           quick: bool) -> dict[str, Any]:
    """Merge one section's figures into the results file ``out``; the file's new contents.

    Sections may come from different runs (``--only``): each entry says when, on which CPU and
    under what load it was measured.
    """
    machine = machine_info(models)
    for figure in result.values():
        figure["detail"].update(measured_at=machine["date"], quick=quick,
                                cpu_model=machine["cpu_model"],
                                load_average_1_5_15=machine["load_average_1_5_15"])

    def update(data: dict[str, Any]) -> None:
        # Entries from earlier runs keep the CPU they were measured on (the machine block
        # describes the latest run only).
        before = (data.get("machine") or {}).get("cpu_model")
        for old in SECTIONS:
            for figure in (data.get(old) or {}).values():
                figure["detail"].setdefault("cpu_model", before)
        data["machine"] = machine
        # A section run in part (--scale-parts) keeps its other figures.
        data[section] = {**(data.get(section) or {}), **result}

    return merge_json(out, update)


def print_summary(out: Path, data: dict[str, Any]) -> None:
    """Every figure of the results file on the console; the READMEs' table too when ``out`` is
    the committed ``speed.json``."""
    rows = []
    for section in SECTIONS:
        for key, figure in (data.get(section) or {}).items():
            rows.append([f"{section}.{key}", figure["value"], figure["target"],
                         "yes" if figure["detail"].get("met") else "NO",
                         figure["detail"].get("measured_at", "")])
    print(f"\nwrote {out}")
    print_table(["measure", "value", "target", "met", "measured"], rows)
    if out.resolve() == (RESULTS / "speed.json").resolve():
        for readme in (REPO / "README.md", REPO / "bench" / "README.md"):
            replace_block(readme, "speed-table", markdown_table(data))


def _scale(section: str, d: dict[str, Any]) -> str:
    """The model and scale a figure was measured at, as the README table says it."""
    return {"prefix_cache": f"{d.get('model')}, {d.get('n_examples')} examples, "
                            f"{d.get('rule_prompt_tokens')}-token prompt",
            "rerun": "fake server" + (" + local" if isinstance(d.get("local"), dict) else ""),
            "resume": f"{d.get('examples')} examples, concurrency {d.get('concurrency')}",
            "concurrency": f"{d.get('examples')} examples, {d.get('server_delay_s')} s server",
            "local_concurrency": f"{d.get('model')}, {d.get('examples')} examples",
            "local_json": f"{d.get('model')}, {d.get('calls_each')} calls each",
            "local_teacher": f"{d.get('model')}, {d.get('calls')} calls",
            "pages": f"{d.get('rules_big')} vs {d.get('rules_small')} rules",
            "scale": (f"{d.get('rules_big')} vs {d.get('rules_small')} rules"
                      if "rules_big" in d else f"{d.get('examples_big')} vs "
                      f"{d.get('examples_small')} examples, --batch"),
            "batch": f"{d.get('examples')} examples, fake batch API",
            "estimate": f"demo chain, {d.get('tokens_counted_with')}",
            "load": f"{d.get('processes')} processes x {d.get('seconds')} s, "
                    f"{d.get('ops_per_s')} ops/s"}[section]


def markdown_table(data: dict[str, Any]) -> str:
    """The README's speed table from a results file."""
    lines = ["| measure | value | target | met | model / scale | measured |",
             "| --- | --- | --- | --- | --- | --- |"]
    for section in SECTIONS:
        for key, figure in (data.get(section) or {}).items():
            d = figure["detail"]
            cpu = f", {d['cpu_model']}" if d.get("cpu_model") else ""
            lines.append(f"| `{section}.{key}` | {figure['value']} | {figure['target']} | "
                         f"{'yes' if d.get('met') else 'no'} | {_scale(section, d)} | "
                         f"{d.get('measured_at', '')[:10]}{cpu} |")
    m = data.get("machine", {})
    lines += ["", f"Latest run's machine: {m.get('cpu_model', '?')}, {m.get('cores', '?')} "
                  f"cores, {m.get('ram_gib', '?')} GiB, Python {m.get('python', '?')}; each row "
                  "names the CPU it was measured on."]
    return "\n".join(lines)
