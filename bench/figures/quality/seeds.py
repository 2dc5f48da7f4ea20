"""The spread over seeds: with a few dozen test items one rule moves a score by several points, so
a configuration is run with several seeds (``--seeds 0,1,2``: each its own split draw, clustering
and calibration) and reported as mean, standard deviation and range over them.

``quality.json`` keeps one short entry per run in ``by_seed.CONFIG.TASK.SEED`` (CONFIG is
``base`` or the variant's name) and the summary over them in ``seed_spread.CONFIG.TASK``.
"""

from __future__ import annotations

import statistics
from typing import Any

BASE = "base"
# The figures of a run whose spread is reported: calibrated macro-F1 of each method (raw when
# the student gave no label scores), the paired differences and the largest cluster's share.
SCORES = ("zero_shot", "few_shot", "nearest_few_shot", "pld_post_conflict")
DIFFERENCES = ("pld_minus_zero_shot", "pld_minus_nearest_few_shot")


def _score(block: dict[str, Any] | None) -> float | None:
    if not block:
        return None
    cal = block.get("calibrated")
    return (cal or block)["macro_f1"]


def seed_entry(block: dict[str, Any]) -> dict[str, Any]:
    """The figures of one run (one task block of ``quality.json``) that the spread reads."""
    paired = block.get("paired") or {}
    return {
        **{key: _score(block.get(key)) for key in SCORES},
        **{key: (paired.get(key) or {}).get("delta") for key in DIFFERENCES},
        "largest_cluster_share": block.get("largest_cluster_share"),
        "clusters": block.get("clusters"), "heuristics": block.get("heuristics"),
        "n_test": block.get("n_test"), "measured_at": block.get("measured_at"),
    }


def _summary(values: list[float]) -> dict[str, Any]:
    return {"mean": round(statistics.fmean(values), 4),
            "sd": round(statistics.stdev(values), 4) if len(values) > 1 else None,
            "min": round(min(values), 4), "max": round(max(values), 4), "n": len(values)}


def spread(entries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Mean, standard deviation, min and max over the seeds' entries of each figure."""
    out: dict[str, Any] = {"seeds": sorted(entries, key=int)}
    for key in (*SCORES, *DIFFERENCES, "largest_cluster_share"):
        values = [e[key] for e in entries.values() if e.get(key) is not None]
        if values:
            out[key] = _summary(values)
    return out


def add_run(data: dict[str, Any], config: str, task: str, seed: int,
            block: dict[str, Any]) -> None:
    """Record one run's entry under its seed and recompute the task's spread over seeds."""
    runs = data.setdefault("by_seed", {}).setdefault(config or BASE, {}).setdefault(task, {})
    runs[str(seed)] = seed_entry(block)
    data.setdefault("seed_spread", {}).setdefault(config or BASE, {})[task] = spread(runs)


def _cell(s: dict[str, Any], key: str) -> str:
    v = s.get(key)
    if not v:
        return "-"
    sd = "" if v["sd"] is None else f" ± {v['sd']:.3f}"
    return f"{v['mean']:+.3f}{sd} [{v['min']:+.3f}, {v['max']:+.3f}]" if key in DIFFERENCES \
        else f"{v['mean']:.3f}{sd} [{v['min']:.3f}, {v['max']:.3f}]"


def spread_rows(data: dict[str, Any]) -> list[list[str]]:
    """One row per configuration and task run with more than one seed: its seeds, each
    method's calibrated macro-F1 and each paired difference as mean ± sd [min, max]."""
    rows = []
    for config, tasks in (data.get("seed_spread") or {}).items():
        for task, s in tasks.items():
            if len(s["seeds"]) < 2:
                continue
            rows.append([task if config == BASE else f"{task}, {config}",
                         ",".join(s["seeds"]),
                         *(_cell(s, key) for key in (*SCORES, *DIFFERENCES)),
                         _cell(s, "largest_cluster_share")])
    return rows


SPREAD_HEADERS = ["task", "seeds", "zero-shot", "5-shot", "nearest 5-shot", "PLD",
                  "PLD − zero-shot", "PLD − nearest 5-shot", "largest cluster"]
