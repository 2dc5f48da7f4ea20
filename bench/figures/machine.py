"""Where the benchmarks keep their files, and the ``machine`` block every result file carries:
hardware, software, models, load and date."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench" / "results"
# Scratch workspaces (SQLite files, ignored by git through *.db): kept between runs so that a
# rerun resumes from the workspace and its LLM call cache.
WORK = REPO / "bench" / ".work"
PACKAGES = ("xllamacpp", "torch", "streamlit", "sentence-transformers")


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (``platform.processor()`` elsewhere)."""
    m = re.search(r"^model name\s*:\s*(.+)$", _read("/proc/cpuinfo"), re.M)
    return m.group(1).strip() if m else (platform.processor() or "unknown")


def ram_gib() -> float | None:
    """Total RAM in GiB from /proc/meminfo, None where that file does not exist."""
    m = re.search(r"^MemTotal:\s*(\d+) kB", _read("/proc/meminfo"), re.M)
    return round(int(m.group(1)) / 2**20, 1) if m else None


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str | None]:
    """Installed versions of ``names`` (None when a package is not installed)."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def now() -> str:
    """UTC timestamp, ISO-8601 to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def machine_info(models: dict[str, Any]) -> dict[str, Any]:
    """The ``machine`` block every result file carries: hardware, software, models, date.

    The load average is recorded because the numbers of a busy machine are not those of a quiet
    one.
    """
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "ram_gib": ram_gib(),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": package_versions(),
        "models": models,
        "local_threads": os.environ.get("PLD_LOCAL_THREADS") or "all cores",
        "local_n_ctx": os.environ.get("PLD_LOCAL_N_CTX") or "8192 (default)",
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "date": now(),
    }
