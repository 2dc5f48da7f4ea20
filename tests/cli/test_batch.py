"""``--batch`` on the command line: kill -9 after submit resumes by polling the same batch (no
second submission); cancelling the job cancels the provider batch (real subprocesses, the real
Anthropic SDK against the fake Message Batches API)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pld.workspace import open_workspace
from tests.cli.test_contract import ROOT, pld
from tests.fakes.anthropic_server import FakeAnthropicBatches
from tests.llm.test_batch import scripted

TEACHER = "anthropic/claude-sonnet-4-6"


@pytest.fixture
def fake(ws_path: Path) -> Iterator[tuple[FakeAnthropicBatches, dict[str, str]]]:
    assert pld("load", "demo", ws=ws_path).returncode == 0
    with FakeAnthropicBatches(responder=scripted) as f:
        yield f, {"ANTHROPIC_BASE_URL": f.base_url, "ANTHROPIC_API_KEY": "sk-ant-kill-test",
                  "PLD_BATCH_POLL_S": "0.05"}


def _start(ws_path: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pld", "--workspace", str(ws_path), "extract", "demo",
         "--teacher", TEACHER, "--batch", *args],
        cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PLD_RETRY_BASE_S": "0.01", "PLD_RETRY_MAX_S": "0.05", **env})


def _submitted(ws_path: Path, f: FakeAnthropicBatches, env: dict[str, str],
               *args: str) -> subprocess.Popen[str]:
    """``extract demo --batch ARGS`` started, once its batch is submitted and its id stored;
    the batch stays in progress (a test ends it by setting ``polls_left``)."""
    f.book.polls_to_finish = 10**9
    proc = _start(ws_path, env, *args)
    _wait_for(lambda: f.book.creates == 1 and _stored_id(ws_path) is not None, "the submit")
    return proc


def _wait_for(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


def _stored_id(ws_path: Path) -> str | None:
    with open_workspace(ws_path) as ws:
        rows = ws.query("SELECT provider_batch_id FROM batches")
    return rows[0]["provider_batch_id"] if rows else None


def test_kill_after_submit_resumes_by_polling_the_same_batch(
        ws_path: Path, fake: tuple[FakeAnthropicBatches, dict[str, str]]) -> None:
    f, env = fake
    proc = _submitted(ws_path, f, env, "--max-cost", "5")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    [batch] = f.book.batches.values()
    assert _stored_id(ws_path) == batch.id
    batch.polls_left = 2  # the provider finishes it while nobody is looking
    r = pld("extract", "demo", "--teacher", TEACHER, "--batch", "--max-cost", "5", "--json",
            ws=ws_path, env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["done"] == 50
    assert f.book.creates == 1 and len(f.book.submitted) == len(set(f.book.submitted)) == 50
    assert f.requests == []  # no synchronous call: every answer came from the one batch
    with open_workspace(ws_path) as ws:
        answers = ws.query("SELECT count(*) AS n, count(DISTINCT cache_key) AS keys "
                           "FROM llm_calls WHERE batch_id IS NOT NULL")[0]
        assert answers == {"n": 50, "keys": 50}
        runs = ws.query("SELECT status FROM runs WHERE kind = 'extract' ORDER BY id")
        assert [r["status"] for r in runs] == ["interrupted", "done"]
    assert f"batch 1 ({batch.id})" in r.stderr and "landed 50 answers" in r.stderr


def test_cancel_cancels_the_provider_batch_and_a_rerun_finishes(
        ws_path: Path, fake: tuple[FakeAnthropicBatches, dict[str, str]]) -> None:
    f, env = fake
    proc = _submitted(ws_path, f, env, "--limit", "6")
    proc.send_signal(signal.SIGTERM)  # what cancelling the job in the app sends
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1 and "cancel asked of the provider" in err
    [batch] = f.book.batches.values()
    assert batch.state == "canceling"
    with open_workspace(ws_path) as ws:
        assert ws.query("SELECT status FROM batches")[0]["status"] == "canceling"
    # Run again: the canceled batch ends, its requests fail inside it and are asked
    # synchronously; nothing is submitted again.
    r = pld("extract", "demo", "--teacher", TEACHER, "--batch", "--limit", "6", "--json",
            ws=ws_path, env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["done"] == 6
    assert f.book.creates == 1 and len(f.requests) == 6
    assert "6 failed (retried synchronously)" in r.stderr
    listed = json.loads(pld("batches", "--json", ws=ws_path).stdout)["batches"]
    assert [(b["provider id"], b["submitted"], b["status"], b["landed"]) for b in listed] == [
        (batch.id, 6, "ended", True)]
    again = pld("batches", "--cancel", "1", ws=ws_path)
    assert again.returncode == 2 and "batch 1 is landed, not open" in again.stderr


def test_batches_cancel_asks_the_provider(
        ws_path: Path, fake: tuple[FakeAnthropicBatches, dict[str, str]]) -> None:
    f, env = fake
    proc = _submitted(ws_path, f, env, "--limit", "3")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    r = pld("batches", "--cancel", "1", "--json", ws=ws_path, env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["status"] == "canceling"
    assert [b.state for b in f.book.batches.values()] == ["canceling"]
