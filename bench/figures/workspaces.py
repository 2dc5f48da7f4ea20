"""Scratch workspaces of the speed figures under ``bench/.work/speed/``, and the CLI run as a
child process that a figure kills and resumes."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.figures.machine import REPO, WORK
from pld.workspace import Workspace, open_workspace

# A guard against a hung child, not a measurement.
CHILD_GUARD_S = 300


def fresh_path(name: str) -> Path:
    """The path of workspace ``name`` under bench/.work/speed/, a stale one deleted first."""
    path = WORK / "speed" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return path


def fresh_ws(name: str) -> Workspace:
    """A new, empty workspace at :func:`fresh_path`."""
    return open_workspace(fresh_path(name))


def load_demo(ws: Workspace, **sizes: int) -> None:
    """Load the in-house demo task into ``ws`` (``n_train=...`` etc. pick a slice)."""
    from pld.tasks import load_task

    load_task(ws, "demo", **sizes)


def count_rows(path: Path, sql: str) -> int:
    """The count ``sql`` returns from the workspace at ``path``, which a child process may be
    writing meanwhile (its own read-only use of a connection); 0 before the tables exist."""
    con = sqlite3.connect(str(path), timeout=30)
    try:
        return int(con.execute(sql).fetchone()[0])
    except sqlite3.OperationalError:
        return 0  # the child has not created the tables yet
    finally:
        con.close()


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a ``python -m pld`` child: this checkout first on the path, retries
    after milliseconds (the fakes never need more), then ``extra``."""
    return {**os.environ, "PYTHONPATH": str(REPO), "PLD_RETRY_BASE_S": "0.05",
            "PLD_RETRY_MAX_S": "1", **(extra or {})}


def kill_when(cmd: list[str], env: dict[str, str], ready: Callable[[], bool], what: str,
              poll_s: float = 0.01) -> None:
    """Run ``cmd`` as a child and SIGKILL it as soon as ``ready()`` holds, the way a crash or an
    impatient user stops it; a child that ends first, or makes no progress in
    :data:`CHILD_GUARD_S`, stops the benchmark with its stderr."""
    log = Path(tempfile.gettempdir()) / f"pld-bench-{what}-{os.getpid()}.log"
    with open(log, "w") as err:
        child = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + CHILD_GUARD_S
    try:
        while not ready():
            if child.poll() is not None:
                raise SystemExit(f"{what}: the child exited early ({child.returncode}): "
                                 f"{log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise SystemExit(f"{what}: the child made no progress in {CHILD_GUARD_S} s")
            time.sleep(poll_s)
        child.send_signal(signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()


def run_again(cmd: list[str], env: dict[str, str], what: str) -> str:
    """Run the killed command again to its end; its stdout (a failure stops the benchmark)."""
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"{what}: the resumed command failed: {done.stderr[-2000:]}")
    return done.stdout
