"""Kill -9 an extract run half-way, run it again: no duplicate rows, no completed call repeated."""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pld.pipeline.extract import stage as ex
from pld.workspace import Workspace
from tests.fakes.openai_server import FakeOpenAI
from tests.pipeline.extract.test_stage import good_reply, make_task

REPO = Path(__file__).resolve().parents[3]
N, HOLD_AFTER = 12, 6

# The child runs the stage exactly as the CLI would, against the fake server in this process.
CHILD = """
import sys
from pld.pipeline.extract.stage import extract
from pld.workspace import open_workspace
extract(open_workspace(sys.argv[1]), "tickets", sys.argv[2], concurrency=1)
"""


def _ok_rows(ws: Workspace) -> int:
    return ws.query("SELECT count(*) AS n FROM micro_instructions WHERE status = 'ok'")[0]["n"]


def test_killed_run_resumes_without_repeating_calls(ws: Workspace, ws_path: Path,
                                                    fake_openai: FakeOpenAI) -> None:
    make_task(ws, n=N)
    seen = itertools.count(1)
    release = threading.Event()

    def responder(body: dict[str, Any]) -> str:
        # Requests after the first HOLD_AFTER wait until the child is dead, so the kill always
        # lands with HOLD_AFTER rules written and exactly one call in flight.
        if next(seen) > HOLD_AFTER:
            release.wait(30)
        return good_reply(body)

    fake_openai.responder = responder
    fake_openai.delay_s = 0.05
    model = fake_openai.model_string()
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(ws_path), model], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120  # a guard against hanging, not a timing check
        while _ok_rows(ws) < HOLD_AFTER or len(fake_openai.requests) <= HOLD_AFTER:
            if child.poll() is not None:
                pytest.fail(f"child exited early ({child.returncode}): {child.stderr.read()}")
            if time.monotonic() > deadline:
                pytest.fail("child made no progress")
            time.sleep(0.02)
        child.kill()
        child.wait()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        release.set()
    [first_run] = ws.query("SELECT * FROM runs")
    assert first_run["status"] == "running" and first_run["pid"] == child.pid
    assert _ok_rows(ws) == HOLD_AFTER

    summary = ex.extract(ws, "tickets", model, concurrency=1)

    per_example = ws.query(
        "SELECT e.id, count(m.id) AS n, sum(m.status = 'ok') AS ok FROM examples e "
        "LEFT JOIN micro_instructions m ON m.example_id = e.id GROUP BY e.id")
    assert len(per_example) == N
    assert all(r["n"] == 1 and r["ok"] == 1 for r in per_example)
    repeated = ws.query(
        "SELECT cache_key, count(*) AS n FROM llm_calls WHERE cache_hit = 0 AND error IS NULL "
        "GROUP BY cache_key HAVING n > 1")
    assert repeated == []
    # Only the call in flight at the kill was sent twice.
    assert len(fake_openai.requests) == N + 1
    assert (summary.skipped, summary.done, summary.failed) == (HOLD_AFTER, N - HOLD_AFTER, 0)
    runs = {r["id"]: r for r in ws.query("SELECT * FROM runs")}
    assert runs[first_run["id"]]["status"] == "interrupted"
    assert runs[summary.run_id]["status"] == "done"
    assert runs[summary.run_id]["done"] == runs[summary.run_id]["total"] == N
