"""The model process: a real ``pld.llm.local_server`` child on local/small, killed for real.

A native crash is simulated the way it happens: the model process receives SIGSEGV while it
answers. The caller must live on and get a one-line reason; the next call starts a new process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pld.llm.base import LLMError, RuntimeCrashed
from pld.llm.calls import complete
from pld.llm.local_backend import LocalBackend
from pld.llm.local_process import crash_message
from pld.workspace import Workspace

GUARD_S = 60  # only so that a broken process cannot hang the suite; nothing here is timed
LONG = [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ", 1)[1].startswith("Z"))


def _crash_during_a_call(backend: LocalBackend, call: object) -> tuple[int, BaseException | None]:
    """Run ``call`` on a thread, SIGSEGV the model process while it answers, return the
    pid killed and what the call raised."""
    pid = backend.process().proc.pid  # type: ignore[union-attr]
    raised: list[BaseException] = []

    def run() -> None:
        try:
            call()  # type: ignore[operator]
        except BaseException as err:  # handed to the test's asserts
            raised.append(err)

    t = threading.Thread(target=run)
    t.start()
    time.sleep(1.0)  # the long answer takes many seconds; this is well inside it
    os.kill(pid, signal.SIGSEGV)
    t.join(GUARD_S)
    assert not t.is_alive(), "the call did not return after its model process died"
    return pid, (raised[0] if raised else None)


@pytest.mark.model
def test_segfault_mid_call_is_one_line_and_the_next_call_restarts() -> None:
    backend = LocalBackend("small", role="crash-test")
    pid, err = _crash_during_a_call(backend, lambda: backend.complete(LONG, max_tokens=400))
    assert isinstance(err, RuntimeCrashed)
    msg = str(err)
    assert "\n" not in msg
    assert "local/small: the embedded runtime (llama.cpp) crashed with signal 11 (SIGSEGV)" in msg
    assert "the same command resumes it" in msg and "openai-compatible/" in msg
    assert err.transient is False
    assert not _alive(pid)
    # This process lives on, and the next call gets a new model process that answers.
    reply = backend.complete([{"role": "user", "content": "Say hi."}], max_tokens=4)
    assert reply.text
    assert backend.process().proc.pid != pid  # type: ignore[union-attr]


@pytest.mark.model
def test_crash_is_logged_and_propagates_through_the_call_log(ws: Workspace) -> None:
    backend = LocalBackend("small", role="crash-test")

    def call() -> None:
        complete(ws, "local/small", LONG, max_tokens=400, stage="test", role="crash-test")

    _, err = _crash_during_a_call(backend, call)
    # Not a CallFailed of one item: no item can succeed, so stages stop on it.
    assert isinstance(err, RuntimeCrashed)
    rows = ws.query("SELECT error, cache_hit FROM llm_calls")
    assert len(rows) == 1 and rows[0]["cache_hit"] == 0
    assert rows[0]["error"].startswith("RuntimeCrashed: local/small: the embedded runtime")


@pytest.mark.model
def test_model_process_ends_with_its_parent(tmp_path: Path) -> None:
    script = ("from pld.llm.local_backend import LocalBackend\n"
              "b = LocalBackend('small')\n"
              "print(b.process().proc.pid, flush=True)\n"
              "import time; time.sleep(600)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                              text=True, cwd=Path(__file__).resolve().parents[2])
    try:
        assert parent.stdout is not None
        model_pid = int(parent.stdout.readline())
        assert _alive(model_pid)
    finally:
        parent.kill()  # SIGKILL: no cleanup code of the parent runs
        parent.wait()
    deadline = time.monotonic() + GUARD_S
    while _alive(model_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(model_pid), "the model process outlived its parent"


@pytest.mark.parametrize(("code", "words"), [
    (-11, "crashed with signal 11 (SIGSEGV) on this CPU ("),
    (-4, "crashed with signal 4 (SIGILL)"),
    (-9, "the model process was stopped by signal 9 (SIGKILL)"),
    (3, "the model process exited with status 3"),
])
def test_crash_message_says_what_happened(code: int, words: str) -> None:
    msg = crash_message("local/default", code)
    assert msg.startswith("local/default: ") and words in msg and "\n" not in msg


def test_crash_while_loading_says_so() -> None:
    assert "crashed while loading its weights with signal 11" in crash_message(
        "local/default", -11, while_loading=True)


@pytest.mark.model
def test_no_answer_in_time_is_an_error_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLD_LOCAL_TIMEOUT", "1")
    backend = LocalBackend("small", role="timeout-test")
    with pytest.raises(LLMError, match="no answer from the model process within 1 s") as info:
        backend.complete(LONG, max_tokens=400)
    assert not isinstance(info.value, RuntimeCrashed)
    assert backend.process().alive()
