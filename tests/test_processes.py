"""pld.processes on real processes: a pid names a process only together with its start time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pld.processes import command_line, pid_alive, process_start, runs_pld_on


def test_a_running_process_is_alive_with_its_start_time() -> None:
    start = process_start(os.getpid())
    assert start is not None
    assert pid_alive(os.getpid(), start)
    assert not pid_alive(os.getpid(), start + 1)  # a later process that got the same pid


def test_an_ended_process_is_not_alive_even_before_it_is_reaped() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    start = process_start(child.pid)
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # ended, still a zombie
    assert not pid_alive(child.pid, start)
    child.wait()
    assert not pid_alive(child.pid)


def test_no_pid_is_not_alive() -> None:
    assert not pid_alive(None)
    assert not pid_alive(0)


def test_command_line_reads_the_arguments() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(5)", "marker"],
        stdout=subprocess.PIPE)
    try:
        child.stdout.readline()  # past exec: /proc shows the new arguments
        assert command_line(child.pid)[-1] == "marker"
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    assert command_line(child.pid) is None


def _fake_pld(tmp_path: Path, args: list[str],
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A process whose command line reads as PLD Studio's (a script named ``pld``)."""
    script = tmp_path / "pld"
    script.write_text("import sys, time\nprint('up', flush=True)\ntime.sleep(30)\n")
    child = subprocess.Popen([sys.executable, str(script), *args], stdout=subprocess.PIPE,
                             env={**os.environ, **(env or {})}, cwd=tmp_path)
    child.stdout.readline()  # past exec
    return child


def test_a_pld_command_on_another_workspace_is_not_ours(tmp_path: Path) -> None:
    # Before: only "--workspace PATH" was read; "--workspace=PATH" or $PLD_WORKSPACE naming
    # another workspace counted as this one's, so a forged run row got it SIGTERM.
    here, other = tmp_path / "team.db", tmp_path / "other.db"
    cases = [(["--workspace=" + str(other), "extract", "t"], None, False),
             (["--workspace=" + str(here), "extract", "t"], None, True),
             (["extract", "t"], {"PLD_WORKSPACE": str(other)}, False),
             (["extract", "t"], {"PLD_WORKSPACE": "team.db"}, True),
             (["--workspace", "other.db", "extract", "t"], None, False)]
    for args, env, ours in cases:
        child = _fake_pld(tmp_path, args, env)
        try:
            assert runs_pld_on(child.pid, here) is ours, (args, env)
        finally:
            child.kill()
            child.wait()
            child.stdout.close()
