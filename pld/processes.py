"""Is this process ours, and is it still alive: the facts about OS processes that runs, jobs and
batches keep in the workspace (a pid plus its start time) and check later.

A pid alone does not name a process: once it has ended its pid is handed to another. A pid
with its start time does. Everything here reads ``/proc`` where there is one and degrades to
the signal test where there is not (macOS).
"""

from __future__ import annotations

import os
from itertools import pairwise
from pathlib import Path


def _stat_fields(pid: int) -> list[str] | None:
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return None


def process_start(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (``/proc/PID/stat`` field 22);
    None where there is no ``/proc`` or no such process."""
    fields = _stat_fields(pid)
    try:
        return int(fields[19]) if fields else None
    except (ValueError, IndexError):
        return None


def pid_alive(pid: int | None, start: int | None = None) -> bool:
    """True while process ``pid`` runs (and, when ``start`` is given, is the process that
    started then, not a later one that got the same pid). A zombie (ended, not yet reaped by
    its parent) counts as ended: ``os.kill(pid, 0)`` alone would report it alive."""
    if not pid:
        return False
    if start is not None and process_start(pid) not in (None, start):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = _stat_fields(pid)
    if fields is None:
        return True  # no /proc (macOS): the signal test is all there is
    return fields[0] not in ("Z", "X")


def command_line(pid: int) -> list[str] | None:
    """The arguments process ``pid`` was started with; None where they cannot be read."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _cwd(pid: int) -> Path | None:
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None


def _environment(pid: int) -> dict[str, str] | None:
    """The environment process ``pid`` was started with; None where it cannot be read."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    pairs = (a.decode(errors="replace").partition("=") for a in raw.split(b"\0") if a)
    return {k: v for k, _, v in pairs}


def _workspace_named(pid: int, argv: list[str]) -> str | None:
    """The workspace a PLD Studio command works on, as it names it: ``--workspace PATH`` or
    ``--workspace=PATH``, else ``$PLD_WORKSPACE`` in its environment, else the default
    ``data/workspace.db``; None when its environment cannot be read."""
    for flag, value in pairwise(argv):
        if flag == "--workspace":
            return value
    for arg in argv:
        if arg.startswith("--workspace="):
            return arg.partition("=")[2]
    env = _environment(pid)
    if env is None:
        return None
    return env.get("PLD_WORKSPACE") or str(Path("data") / "workspace.db")


def runs_pld_on(pid: int, workspace: Path) -> bool:
    """True when process ``pid`` is PLD Studio's command line (``python -m pld`` or the ``pld``
    script) working on ``workspace`` (named by ``--workspace``, ``$PLD_WORKSPACE`` or the
    default, relative to its working folder). Where that cannot be read (no ``/proc``), False:
    a process that cannot be shown to be ours is not signalled."""
    argv = command_line(pid)
    if not argv:
        return False
    pld = any(a == "-m" and b == "pld" for a, b in pairwise(argv)) or any(
        Path(a).name == "pld" for a in argv[:2])
    named = _workspace_named(pid, argv) if pld else None
    if named is None:
        return False
    base = _cwd(pid) or Path("/")
    return (base / named).resolve() == workspace.resolve()
