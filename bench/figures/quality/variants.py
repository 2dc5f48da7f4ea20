"""One workspace per task and configuration, and the variants of the method: any extraction,
verification, clustering or consolidation option other than the base run's gets its own
workspace, key and table row, its call cache seeded from the base run's."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from bench.figures.quality.plan import Sizes

# The base configuration (what `run` does by default); any other option makes a variant.
# --no-contrastive --no-failing-first --no-verify-rules --method dbscan is the method as it was
# before issue 22 (DBSCAN, eps auto).
BASE_METHOD = {"contrastive": True, "failing_first": True, "verify_rules": True,
               "method": "auto", "eps": "auto", "min_samples": 6, "k": None,
               "cover_labels": False, "merge": "all"}
# The parts of the method that are on by default: each switched off is a variant named after it.
SWITCHES = ("contrastive", "failing_first", "verify_rules")


def _slug(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", model).strip("-")[:60]


def workspace_path(work: Path, task: str, sizes: Sizes, seed: int, teacher: str,
                   student: str, variant: str = "") -> Path:
    """One workspace per task, sizes, seed, models and method variant: results of different
    settings never mix (a task's splits cannot change inside a workspace anyway)."""
    ctx = f"-ctx{sizes.context_tokens}" if sizes.context_tokens else ""
    name = (f"{task}-tr{sizes.train}-va{sizes.val}-te{sizes.test}{ctx}-s{seed}"
            f"--{_slug(teacher)}--{_slug(student)}{f'--{variant}' if variant else ''}.db")
    return work / name


def variant_flags(args: argparse.Namespace) -> list[tuple[str, Any]]:
    """The method options of this run that differ from the base configuration, in flag order."""
    return [(name, getattr(args, name)) for name, default in BASE_METHOD.items()
            if getattr(args, name) != default]


def _flag(name: str, value: Any) -> str:
    option = name.replace("_", "-")
    if value is True:
        return f"--{option}"
    if value is False:
        return f"--no-{option}"
    return f"--{option} {value}"


def flags_text(args: argparse.Namespace) -> str:
    """The variant's flags as typed on the command line (``--no-contrastive --method kmeans
    --k 3``)."""
    return " ".join(_flag(name, value) for name, value in variant_flags(args))


def variant_name(args: argparse.Namespace) -> str:
    """The variant's key in ``quality.json`` and its workspace suffix; "" for the base run.

    ``--merge medoid`` gives ``merge-medoid``; ``--method kmeans --k 8`` gives ``kmeans-k8``;
    ``--cover-labels --merge medoid`` gives ``cover+merge-medoid``; ``--no-verify-rules
    --method dbscan`` gives ``no-verify-rules+dbscan``.
    """
    flags = dict(variant_flags(args))
    parts = [f"no-{name.replace('_', '-')}" for name in SWITCHES if name in flags]
    if any(name in flags for name in ("method", "eps", "min_samples", "k")):
        parts.append(args.method + "".join(f"-{short}{flags[name]}" for name, short in
                                           (("eps", "eps"), ("min_samples", "ms"), ("k", "k"))
                                           if name in flags))
    if "cover_labels" in flags:
        parts.append("cover")
    if "merge" in flags:
        parts.append(f"merge-{args.merge}")
    return "+".join(parts)


def seed_call_cache(ws: Any, source: Path) -> int:
    """Copy the LLM call log of the workspace at ``source`` into the new, empty ``ws``.

    A method variant (``--merge medoid``, ``--method kmeans --k 8``) starts from the base run's
    workspace cache, so every call it shares with the base run (all of extraction, the
    baselines) is answered from the cache instead of being paid for again. Returns the highest
    copied call id: rows up to it were made by the base run and are left out of this run's token
    counts.
    """
    # ATTACH and DETACH cannot run inside a transaction: only the copy is one.
    ws.db.execute("ATTACH DATABASE ? AS src", [str(source)])
    try:
        with ws.write() as db:
            cols = ", ".join(c.name for c in db["llm_calls"].columns)
            db.execute(f"INSERT INTO llm_calls ({cols}) SELECT {cols} FROM src.llm_calls")
            db.execute("INSERT OR IGNORE INTO texts (sha256, text) "
                       "SELECT sha256, text FROM src.texts")
    finally:
        ws.db.execute("DETACH DATABASE src")
    return int(ws.query("SELECT coalesce(max(id), 0) AS n FROM llm_calls")[0]["n"])
