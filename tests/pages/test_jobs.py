"""pld.jobs: real ``python -m pld extract`` processes against the fake OpenAI-compatible server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from streamlit.testing.v1 import AppTest

from pld import jobs
from pld.errors import BadInput
from pld.identity import OIDC, Identity
from pld.processes import process_start
from pld.tasks import load_task
from pld.workspace import Workspace
from tests.fakes.openai_server import FakeOpenAI
from tests.pages.conftest import connect

T = TypeVar("T")
GUARD_S = 120  # only so that a broken job cannot hang the suite; no test measures time


def _wait(what: str, probe: Callable[[], T]) -> T:
    import time

    deadline = time.monotonic() + GUARD_S
    while time.monotonic() < deadline:
        got = probe()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


def _reply(body: dict[str, Any]) -> str:
    return json.dumps({"reasoning": "The message mentions a card.",
                       "rule": "If the message mentions a card charge, the label is complaint."})


@pytest.fixture
def demo(ws: Workspace, app_ws: Path, fake_openai: FakeOpenAI) -> FakeOpenAI:
    """The demo task in ``ws`` and a fake teacher that answers valid rules."""
    load_task(ws, "demo")
    fake_openai.responder = _reply
    return fake_openai


def _extract(ws_path: Path, fake: FakeOpenAI, limit: int,
             who: Identity | None = None) -> jobs.Job:
    return jobs.start(ws_path, ["extract", "demo", "--teacher", fake.model_string(),
                                "--limit", str(limit), "--concurrency", "1"], who=who)


def _ok_rules(ws: Workspace) -> int:
    return int(ws.query("SELECT count(*) AS n FROM micro_instructions WHERE status = 'ok'")[0]["n"])


def test_extract_job_reports_progress_until_done(ws: Workspace, ws_path: Path,
                                                 demo: FakeOpenAI) -> None:
    demo.delay_s = 0.3
    job = _extract(ws_path, demo, 6)
    assert jobs.jobs_dir(ws_path).is_dir() and Path(job.log).exists()
    assert job.kind == "extract" and job.task == "demo"

    seen: list[tuple[int, int]] = []

    def finished() -> bool:
        for entry in jobs.active_jobs(ws, "demo", "extract"):
            assert entry["pid"] == job.pid and entry["job_id"] == job.id
            if entry["run_id"] is not None:
                seen.append((entry["done"], entry["total"]))
        return jobs.job_status(ws, job) != "running"

    _wait("the extract job to end", finished)
    # Progress was visible while it ran, from the workspace alone.
    assert any(total == 6 and done < 6 for done, total in seen), seen
    assert jobs.job_status(ws, job) == "done"
    assert jobs.active_jobs(ws, "demo", "extract") == []
    run = jobs.recent_runs(ws, "demo", "extract")[0]
    assert (run["status"], run["done"], run["total"], run["pid"]) == ("done", 6, 6, job.pid)
    assert _ok_rules(ws) == 6
    assert "extract run" in jobs.job_log(job)
    # Another handle (another tab, a reloaded page) finds the same job from disk.
    with connect(ws_path) as other:
        assert [j.id for j in jobs.list_jobs(other, "demo", "extract")] == [job.id]


def _start_row(ws: Workspace, job: jobs.Job) -> dict[str, Any]:
    rows = [r for r in ws.query("SELECT * FROM reviews WHERE entity = 'job' AND action = 'start'")
            if json.loads(r["after"])["job_id"] == job.id]
    assert len(rows) == 1
    return {**rows[0], "after": json.loads(rows[0]["after"])}


@pytest.mark.parametrize("who", [Identity("ana@bank.example", OIDC), Identity("Ana")])
def test_the_job_acts_as_whoever_started_it(ws: Workspace, ws_path: Path, demo: FakeOpenAI,
                                            who: Identity) -> None:
    # Before: a job got only --as NAME, so an OIDC reviewer's job was recorded self-declared,
    # and jobs other than consolidate were started by pld:anonymous.
    job = _extract(ws_path, demo, 2, who=who)
    _wait("the extract job to end", lambda: jobs.job_status(ws, job) != "running")
    assert jobs.job_status(ws, job) == "done", jobs.job_log(job)
    start = _start_row(ws, job)
    assert (start["who"], start["identity_kind"]) == (who.name, who.kind)
    assert start["after"]["kind"] == "extract" and start["after"]["args"] == job.args
    run = jobs.recent_runs(ws, "demo", "extract")[0]
    assert (run["pid"], run["started_by"], run["started_by_kind"]) == (job.pid, who.name, who.kind)
    # The token that carries the identity is in the job's environment, never on its command
    # line (the log's first line is the command).
    assert "PLD_JOB_TOKEN" not in jobs.job_log(job) and "token" not in " ".join(job.args)


def test_a_job_nobody_started_records_nobody(ws: Workspace, ws_path: Path,
                                             demo: FakeOpenAI) -> None:
    job = _extract(ws_path, demo, 1)
    _wait("the extract job to end", lambda: jobs.job_status(ws, job) != "running")
    assert _start_row(ws, job)["who"] == "pld:anonymous"
    run = jobs.recent_runs(ws, "demo", "extract")[0]
    assert (run["started_by"], run["started_by_kind"]) == (None, None)


def test_a_process_with_a_token_no_job_was_given_is_refused(ws: Workspace, ws_path: Path,
                                                            demo: FakeOpenAI) -> None:
    job = _extract(ws_path, demo, 1, who=Identity("ana"))  # a start row, with its own token
    _wait("the extract job to end", lambda: jobs.job_status(ws, job) != "running")
    env = {**os.environ, "PLD_JOB_TOKEN": "not-the-token-any-job-was-given"}
    done = subprocess.run([sys.executable, "-m", "pld", "--workspace", str(ws_path), "extract",
                           "demo", "--teacher", demo.model_string(), "--limit", "1"],
                          capture_output=True, text=True, env=env, cwd=jobs.REPO_ROOT,
                          timeout=GUARD_S)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: $PLD_JOB_TOKEN matches no job")
    assert done.stderr.count("\n") == 1
    assert len(jobs.recent_runs(ws, "demo", "extract")) == 1  # it opened no run


def test_cancel_midway_interrupts_and_rerun_resumes(ws: Workspace, ws_path: Path,
                                                    demo: FakeOpenAI) -> None:
    demo.delay_s = 0.4
    job = _extract(ws_path, demo, 10)
    entry = _wait("two rules to be written", lambda: next(
        (e for e in jobs.active_jobs(ws, "demo", "extract")
         if e["run_id"] is not None and _ok_rules(ws) >= 2), None))
    assert jobs.cancel(ws, entry["run_id"]) == "interrupted"
    assert jobs.job_status(ws, job) == "interrupted"
    assert jobs.active_jobs(ws, "demo", "extract") == []
    kept = _ok_rules(ws)
    assert 2 <= kept < 10

    demo.delay_s = 0.0
    again = _extract(ws_path, demo, 10)
    _wait("the resumed job to end", lambda: jobs.job_status(ws, again) != "running")
    assert jobs.job_status(ws, again) == "done"
    runs = jobs.recent_runs(ws, "demo", "extract")
    assert [r["status"] for r in runs] == ["done", "interrupted"]
    assert _ok_rules(ws) == 10
    # Finished calls were not repeated: at most the one in flight at cancel time was asked again.
    assert len(demo.requests) <= 11


def test_second_job_of_same_kind_is_refused(ws: Workspace, ws_path: Path,
                                            demo: FakeOpenAI) -> None:
    demo.delay_s = 0.5
    first = _extract(ws_path, demo, 10)
    with pytest.raises(jobs.JobRunning, match="already running"):
        _extract(ws_path, demo, 10)
    assert [j.id for j in jobs.list_jobs(ws_path, "demo")] == [first.id]
    assert jobs.cancel(ws, first) == "interrupted"


def test_job_cancelled_while_starting_is_interrupted(ws: Workspace, ws_path: Path,
                                                      demo: FakeOpenAI) -> None:
    job = _extract(ws_path, demo, 5)
    assert jobs.cancel(ws, job) == "interrupted"
    assert jobs.job_status(ws, job) == "interrupted"
    assert jobs.active_jobs(ws, "demo") == []


def test_job_failing_before_its_run_shows_the_error(ws: Workspace, ws_path: Path,
                                                    demo: FakeOpenAI) -> None:
    job = jobs.start(ws_path, ["extract", "demo", "--teacher", "nosuchprovider/x"])
    _wait("the job to exit", lambda: jobs.job_status(ws, job) != "running")
    assert jobs.job_status(ws, job) == "failed"
    assert "error:" in jobs.job_log(job) and "nosuchprovider" in jobs.job_log(job)
    assert jobs.recent_runs(ws, "demo", "extract") == []


def test_ended_child_that_nobody_reaped_is_not_running(ws: Workspace, ws_path: Path,
                                                       demo: FakeOpenAI) -> None:
    # As after a server restart: the process is not in this server's children, so it is not
    # polled; once it exits it stays a zombie, which os.kill(pid, 0) still reports as alive.
    demo.delay_s = 0.0
    job = _extract(ws_path, demo, 2)
    child = jobs._CHILDREN.pop(job.pid)
    try:
        _wait("the process to exit", lambda: _zombie_or_gone(job.pid))
        assert jobs.job_status(ws, job) == "done"
        assert jobs.active_jobs(ws, "demo") == []
    finally:
        child.wait()


def _zombie_or_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def test_cancel_refuses_a_run_of_this_process(ws: Workspace) -> None:
    with ws.write() as db:
        run_id = int(db["runs"].insert({"task": "demo", "kind": "extract", "status": "running",
                                        "pid": os.getpid(), "done": 0, "total": 3}).last_pk)
    with pytest.raises(BadInput, match="inside this process"):
        jobs.cancel(ws, run_id)
    assert jobs.active_jobs(ws, "demo", "extract")[0]["run_id"] == run_id


def test_cancel_never_signals_a_process_that_reused_the_pid(ws: Workspace) -> None:
    # Before: cancel signalled whatever process had the recorded pid. Here a live stranger
    # has it, started at another time than the run's process: it must be left alone.
    stranger = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        start = process_start(stranger.pid)
        assert start is not None
        with ws.write() as db:
            run_id = int(db["runs"].insert({
                "task": "demo", "kind": "extract", "status": "running", "pid": stranger.pid,
                "pid_start": start - 1, "done": 0, "total": 3}).last_pk)
        assert jobs.cancel(ws, run_id, timeout_s=1) == "interrupted"
        assert stranger.poll() is None  # still running: never signalled
        assert jobs.active_jobs(ws, "demo") == []
    finally:
        stranger.kill()
        stranger.wait()


def _model_process_of(pid: int) -> int | None:
    """The pid of the model process (``pld.llm.local_server``) started by process ``pid``."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().split(") ", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and b"pld.llm.local_server" in cmdline:
            return int(stat.parent.name)
    return None


@pytest.mark.model
def test_model_process_crash_fails_the_job_with_its_reason(
        ws: Workspace, ws_path: Path, app_ws: Path,
        open_page: Callable[..., AppTest]) -> None:
    """A native crash of the embedded runtime mid-call, on a real job with the real model."""
    import signal

    load_task(ws, "demo")
    job = jobs.start(ws_path, ["extract", "demo", "--teacher", "local/small", "--limit", "8",
                               "--concurrency", "4"])
    model_pid = _wait("the job's model process", lambda: _model_process_of(job.pid))
    # Once the first answer is stored the other three calls are being decoded.
    _wait("a first rule", lambda: ws.query("SELECT count(*) AS n FROM llm_calls")[0]["n"])
    os.kill(model_pid, signal.SIGSEGV)
    _wait("the job to end", lambda: jobs.job_status(ws, job) != "running")

    assert jobs.job_status(ws, job) == "failed"
    run = jobs.recent_runs(ws, "demo", "extract")[0]
    assert run["status"] == "failed"
    assert "crashed with signal 11 (SIGSEGV)" in run["error"]
    reason = jobs.job_error(job)
    assert reason is not None and reason.startswith(
        "local/small: the embedded runtime (llama.cpp) crashed with signal 11 (SIGSEGV)")
    # The rules finished before the crash are kept; the test process (the app's) lives on.
    assert 1 <= _ok_rules(ws) < 8
    at = open_page("extract", task="demo").run()
    assert not at.exception
    assert any("The last extract job failed" in e.value for e in at.error)
    assert any(reason in t.value for t in at.text)


def _forged_run(ws: Workspace, pid: int, pid_start: int | None) -> int:
    with ws.write() as db:
        return int(db["runs"].insert({
            "task": "demo", "kind": "extract", "params": "{}", "status": "running", "done": 0,
            "total": 1, "started_at": "2026-01-01T00:00:00", "updated_at": "2026-01-01T00:00:00",
            "pid": pid, "pid_start": pid_start}).last_pk)


@pytest.mark.parametrize("with_start", [True, False])
def test_a_forged_run_row_never_gets_another_process_signalled(ws: Workspace,
                                                                with_start: bool) -> None:
    # Before: a runs row naming another process's pid (with its real start time, or none)
    # got that process SIGTERM from the app's Cancel button.
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        start = process_start(stranger.pid) if with_start else None
        run_id = _forged_run(ws, stranger.pid, start)
        with pytest.raises(BadInput, match="not signalled"):
            jobs.cancel(ws, run_id, timeout_s=1)
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_a_job_record_cannot_serve_a_file_outside_the_jobs_folder(ws_path: Path,
                                                                  tmp_path: Path) -> None:
    secret = tmp_path / "secret.log"
    secret.write_text("not for the page")
    folder = jobs.jobs_dir(ws_path)
    folder.mkdir(parents=True, exist_ok=True)
    for log in ("/etc/passwd", str(secret), str(folder / ".." / "secret.log")):
        forged = jobs.Job(id="x", pid=1, args=["extract", "demo"], task="demo", kind="extract",
                          workspace=str(ws_path.resolve()), log=log, started_at="")
        assert jobs.job_log(forged) == ""
    real = folder / "workspace-1.log"
    real.write_text("a real log")
    assert jobs.job_log(jobs.Job(id="y", pid=1, args=[], task="demo", kind="extract",
                                 workspace=str(ws_path.resolve()), log=str(real),
                                 started_at="")) == "a real log"
