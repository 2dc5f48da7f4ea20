"""pld.processes on real processes: a pid names a process only together with its start time."""

from __future__ import annotations

import os
import subprocess
import sys

from pld.processes import command_line, pid_alive, process_start


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
