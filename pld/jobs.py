"""Background jobs: run ``python -m pld`` commands in their own process, find them again later.

Long stages (extract, cluster, consolidate, ...) must never block the app, and a page that is
closed and reopened, or opened in a second tab, must still see them. So a job is a detached
``python -m pld --workspace WS <args>`` process (its own session, so it survives the page and can
be stopped as a group) whose output goes to a log file, and everything about it is found from
disk, not from the page's session:

* a small JSON record per job in a ``jobs/`` folder next to the workspace file (pid, args,
  task, log file), written when the job starts: it covers the seconds before the process has
  opened its ``runs`` row, and failures that end it before any (a bad model string, say);
* the ``runs`` rows the stages write (status, ``done/total``, the pid of their process).

Who started a job travels with it, unforgeably: its ``start`` row in the audit trail holds the
sha256 of a random token that only the job's own process gets, in its environment
(:data:`JOB_TOKEN_ENV`, never on its command line); the process finds its starter, name and
identity kind, with :func:`job_identity`.

A process that died without closing its run (killed, or cancelled here) leaves a row marked
running; :func:`active_jobs` turns such rows into ``interrupted``, and since every stage skips
work already done, running the same command again resumes it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pld import review
from pld.errors import BadInput
from pld.identity import RESERVED_PREFIXES, Identity
from pld.pipeline.runs import (
    DONE,
    FAILED,
    INTERRUPTED,
    RUNNING,
    list_runs,
    mark_dead_runs,
)
from pld.processes import pid_alive, process_start, runs_pld_on
from pld.workspace import Workspace, now, open_workspace

REPO_ROOT = Path(__file__).resolve().parents[1]
LOG_TAIL_CHARS = 4000
JOB_TOKEN_ENV = "PLD_JOB_TOKEN"  # a job's proof of who started it (see job_identity)
# Processes started by this server process. Polling them reaps them: a finished child that is
# never waited for stays a zombie, which os.kill(pid, 0) reports as alive.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class JobRunning(BadInput):
    """A job of the same kind is already running for the task."""


@dataclass(frozen=True)
class Job:
    """One launched ``python -m pld`` process, as recorded in the ``jobs/`` folder."""

    id: str
    pid: int
    args: list[str]
    task: str | None
    kind: str
    workspace: str
    log: str
    started_at: str
    record: str = field(default="", compare=False)
    pid_start: int | None = None  # with pid, names the process (pids are reused)

    def describe(self) -> str:
        """One line for people: the command, its pid and where its log is (plain text: the
        pages show it literally, so Markdown backticks would show as backticks)."""
        return f"pld {' '.join(self.args)} · pid {self.pid} · log {Path(self.log).name}"


def jobs_dir(ws_path: str | Path) -> Path:
    """The folder holding job records and logs: ``jobs/`` next to the workspace file."""
    return Path(ws_path).resolve().parent / "jobs"


def _ws_path(ws: Workspace | str | Path) -> Path:
    return Path(ws.path if isinstance(ws, Workspace) else ws).resolve()


@contextmanager
def _locked(ws_path: Path) -> Iterator[None]:
    # Serialises "is one running? then start" across tabs, sessions and server processes.
    folder = jobs_dir(ws_path)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{ws_path.stem}.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _alive(pid: int | None, start: int | None = None) -> bool:
    """True while process ``pid`` runs, and is the one that started at ``start`` when given
    (a zombie counts as ended)."""
    if not pid:
        return False
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    return pid_alive(pid, start)


def _reap() -> None:
    """Poll the children started here (which reaps those that ended)."""
    # A copy: sessions run in threads, and another one may be starting a job right now.
    finished = [pid for pid, child in list(_CHILDREN.items()) if child.poll() is not None]
    # Ended children keep their exit code for job_status; bound how many are remembered.
    for pid in finished[:-100]:
        _CHILDREN.pop(pid, None)


def _mark_dead_runs(ws: Workspace) -> None:
    """Runs still marked running whose process has ended become ``interrupted``."""
    _reap()
    mark_dead_runs(ws, alive=_alive)


_GROUPS = ("review", "evals", "rules", "clusters", "prompts")


def _infer(args: Sequence[str]) -> tuple[str, str | None]:
    if not args:
        raise BadInput("a job needs a pld command, e.g. ['extract', TASK, '--teacher', MODEL]")
    if str(args[0]) in _GROUPS and len(args) > 1:
        # "review impact TASK": the subcommand is the kind (its runs carry that kind too).
        args = args[1:]
    kind = str(args[0])
    task = str(args[1]) if len(args) > 1 and not str(args[1]).startswith("-") else None
    return kind, task


def _write_record(job: Job) -> None:
    Path(job.record).write_text(json.dumps(asdict(job), indent=2), encoding="utf-8")


def _record_action(ws: Workspace | str | Path, who: Identity | None, action: str,
                   details: dict[str, Any]) -> None:
    """Audit starting or cancelling a job (jobs spend money and time): who, and what."""
    handle = ws if isinstance(ws, Workspace) else open_workspace(_ws_path(ws))
    try:
        review.record_action(handle, who, "job", action, details)
    finally:
        if handle is not ws:
            handle.close()


def _token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def job_identity(ws: Workspace, token: str) -> Identity | None:
    """Who started the job that was given ``token`` (:data:`JOB_TOKEN_ENV`): the name and
    identity kind of its ``start`` row; None when nobody was identified. :class:`BadInput`
    when no job of this workspace was started with that token."""
    rows = ws.query("SELECT who, identity_kind FROM reviews WHERE entity = 'job' AND "
                    "action = 'start' AND json_extract(after, '$.token_sha256') = ? "
                    "ORDER BY id DESC LIMIT 1", [_token_sha256(token)])
    if not rows:
        raise BadInput(f"${JOB_TOKEN_ENV} matches no job started on {ws.path}; refusing to "
                       "act under an identity nobody vouched for")
    if rows[0]["who"].startswith(RESERVED_PREFIXES):
        return None  # started while nobody was identified (pld:anonymous)
    return Identity(rows[0]["who"], rows[0]["identity_kind"])


def _command(path: Path, args: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """``python -m pld --workspace PATH ARGS`` and the environment it runs in (without a job
    token: only :func:`start` gives one, to its own job)."""
    cmd = [sys.executable, "-m", "pld", "--workspace", str(path), *map(str, args)]
    env = {k: v for k, v in os.environ.items() if k != JOB_TOKEN_ENV}
    # Jobs run with the project root as their working folder (REPO_ROOT), so relative paths in
    # ``args`` mean what they mean in the app, and ``-m`` finds ``pld`` there uninstalled too.
    return cmd, {**env, "PYTHONUNBUFFERED": "1"}


def estimate(ws: Workspace | str | Path, args: Sequence[str],
             timeout_s: float = 300) -> dict[str, Any]:
    """What the job of ``args`` would spend: ``python -m pld ARGS --estimate-only --json`` run
    to its end (it calls no model). :class:`BadInput` with the command's own reason when it
    refuses."""
    cmd, env = _command(_ws_path(ws), [*args, "--estimate-only", "--json"])
    done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          cwd=REPO_ROOT, env=env, timeout=timeout_s)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no reason given"])[-1]
        raise BadInput(reason.removeprefix("error: "))
    return json.loads(done.stdout)


def start(ws: Workspace | str | Path, args: Sequence[str], *, task: str | None = None,
          exclusive: bool = True, who: Identity | None = None) -> Job:
    """Launch ``python -m pld --workspace WS <args>`` detached; return its :class:`Job`.

    The command's kind is ``args[0]`` and its task ``args[1]`` (or ``task``). With ``exclusive``
    (the default) a job of the same kind already running for the task raises
    :class:`JobRunning` instead, checked under a file lock so two tabs cannot both start one.
    The start is recorded in the audit trail as ``who`` (the app's signed-in reviewer) before
    the process starts, and the process acts as ``who`` (see :func:`job_identity`): the runs
    it opens record them, and what it writes counts as theirs.
    """
    path = _ws_path(ws)
    kind, inferred = _infer(args)
    task = task or inferred
    with _locked(path):
        if exclusive and task is not None:
            handle = ws if isinstance(ws, Workspace) else open_workspace(path)
            try:
                running = active_jobs(handle, task, kind)
            finally:
                if handle is not ws:
                    handle.close()
            if running:
                r = running[0]
                raise JobRunning(f"a {kind} job for task {task!r} is already running "
                                 f"(pid {r['pid']}, {r['done']}/{r['total']})")
        folder = jobs_dir(path)
        job_id = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)
        log = folder / f"{path.stem}-{job_id}.log"
        token = secrets.token_urlsafe(32)
        # Written before the process starts, so that it finds who started it from its first
        # step; the pid is in the job's record.
        _record_action(ws, who, "start",
                       {"job_id": job_id, "kind": kind, "task": task,
                        "args": [str(a) for a in args], "token_sha256": _token_sha256(token)})
        cmd, env = _command(path, args)
        env[JOB_TOKEN_ENV] = token  # in the environment only: a command line is public
        with open(log, "wb") as out:
            out.write(("$ " + " ".join(cmd) + "\n").encode())
            out.flush()
            child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env,
                                     start_new_session=True)
        _CHILDREN[child.pid] = child
        job = Job(id=job_id, pid=child.pid, args=[str(a) for a in args], task=task, kind=kind,
                  workspace=str(path), log=str(log), started_at=now(),
                  record=str(folder / f"{path.stem}-{job_id}.json"),
                  pid_start=process_start(child.pid))
        _write_record(job)
    return job


def list_jobs(ws: Workspace | str | Path, task: str | None = None, kind: str | None = None,
              limit: int = 20) -> list[Job]:
    """Jobs launched on this workspace, newest first (optionally one task and/or kind)."""
    path = _ws_path(ws)
    folder = jobs_dir(path)
    if not folder.is_dir():
        return []
    out = []
    for rec in sorted(folder.glob(f"{path.stem}-*.json"), reverse=True):
        try:
            data = json.loads(rec.read_text(encoding="utf-8"))
            job = Job(**{**data, "record": str(rec)})
        except (OSError, ValueError, TypeError):
            continue  # a record being written, or not ours
        if job.workspace != str(path):
            continue
        if (task is None or job.task == task) and (kind is None or job.kind == kind):
            out.append(job)
            if len(out) >= limit:
                break
    return out


def _job_runs(ws: Workspace, job: Job) -> list[dict[str, Any]]:
    return ws.query("SELECT * FROM runs WHERE pid = ? AND started_at >= ? ORDER BY id",
                    [job.pid, job.started_at])


def active_jobs(ws: Workspace, task: str, kind: str | None = None) -> list[dict[str, Any]]:
    """What is running for ``task`` now (optionally of one ``kind``), from disk, newest first.

    One dict per process: ``pid``, ``kind`` (the command), ``stage`` (the kind of its running
    run, None while it starts up), ``run_id``, ``done``, ``total``, ``started_at``, ``job_id``
    and ``log`` (None for a process started outside the app, e.g. in a terminal). A job matches
    ``kind`` when its command or its current stage is that kind (``run`` runs ``extract``).
    """
    _mark_dead_runs(ws)
    running = ws.query("SELECT * FROM runs WHERE status = ? AND task = ? ORDER BY id DESC",
                       [RUNNING, task])
    by_pid: dict[int, dict[str, Any]] = {}
    for r in running:
        by_pid.setdefault(r["pid"], r)
    out: list[dict[str, Any]] = []
    seen: set[int] = set()
    for job in list_jobs(ws, task):
        if job.pid in seen or not _alive(job.pid, job.pid_start):
            continue
        seen.add(job.pid)
        run = by_pid.get(job.pid)
        stage = run["kind"] if run else None
        if kind is not None and kind not in (job.kind, stage):
            continue
        out.append({"pid": job.pid, "kind": job.kind, "stage": stage,
                    "run_id": run["id"] if run else None,
                    "run_started_at": run["started_at"] if run else None,
                    "done": run["done"] if run else 0, "total": run["total"] if run else 0,
                    "started_at": job.started_at, "job_id": job.id, "log": job.log,
                    "workspace": job.workspace,
                    "args": job.args, "pid_start": job.pid_start})
    for pid, run in by_pid.items():
        if pid in seen or (kind is not None and run["kind"] != kind):
            continue
        out.append({"pid": pid, "kind": run["kind"], "stage": run["kind"], "run_id": run["id"],
                    "run_started_at": run["started_at"],
                    "done": run["done"], "total": run["total"],
                    "started_at": run["started_at"], "job_id": None, "log": None, "args": None,
                    "pid_start": run["pid_start"]})
    return out


def recent_runs(ws: Workspace, task: str, kind: str | None = None,
                limit: int = 10) -> list[dict[str, Any]]:
    """The latest runs of ``task`` (optionally one stage kind), newest first, params decoded."""
    _mark_dead_runs(ws)
    return list_runs(ws, task=task, kind=kind, limit=limit)


def job_status(ws: Workspace, job: Job) -> str:
    """``running``, ``done``, ``failed`` or ``interrupted`` for a launched job.

    Decided by its process while it runs, then by the runs it wrote, then by its exit code when
    this process started it, else by its log (the CLI prints ``error: ...`` when it fails).
    """
    if _alive(job.pid, job.pid_start):
        return RUNNING
    _mark_dead_runs(ws)
    statuses = {r["status"] for r in _job_runs(ws, job)}
    for status in (FAILED, INTERRUPTED):
        if status in statuses:
            return status
    tail = job_log(job)
    error = job_error(job)
    if error and "interrupted" in error:
        return INTERRUPTED  # the CLI's own words for SIGTERM / Ctrl-C
    child = _CHILDREN.get(job.pid)
    if child is not None and child.returncode is not None:
        if child.returncode == 0:
            return DONE
        return INTERRUPTED if child.returncode < 0 else FAILED
    if error or "Traceback (most recent call last)" in tail:
        return FAILED
    return DONE


def job_error(job: Job | dict[str, Any]) -> str | None:
    """The one-line reason a job gave for failing (its last ``error: ...`` line), if any."""
    errors = [line for line in job_log(job).splitlines() if line.startswith("error: ")]
    return errors[-1].removeprefix("error: ") if errors else None


def job_log(job: Job | dict[str, Any], max_chars: int = LOG_TAIL_CHARS) -> str:
    """The last ``max_chars`` of a job's log ('' when it has none, e.g. started elsewhere).

    ``job`` is a :class:`Job` or an entry of :func:`active_jobs`.
    """
    log = job.log if isinstance(job, Job) else job.get("log")
    workspace = job.workspace if isinstance(job, Job) else job.get("workspace")
    if not log or not workspace:
        return ""
    # A job record is a file anyone with the folder can edit: serve only logs in its folder.
    path = Path(log).resolve()
    if not path.is_relative_to(jobs_dir(workspace).resolve()) or path.suffix != ".log":
        return ""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_chars))
            return fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def cancel(ws: Workspace, target: int | Job | dict[str, Any], *,
           timeout_s: float = 10.0, who: Identity | None = None) -> str:
    """Stop a run (by run id), a launched job or an :func:`active_jobs` entry; return the status.

    Sends SIGTERM to the process's group (its own session when started here), then SIGKILL if
    it is still there after ``timeout_s``. Its running run becomes ``interrupted``; starting the
    same command again resumes it.
    """
    if isinstance(target, Job):
        pid, run_id, start = target.pid, None, target.pid_start
    elif isinstance(target, dict):
        pid, run_id, start = int(target["pid"]), target.get("run_id"), target.get("pid_start")
    else:
        rows = ws.query("SELECT id, pid, pid_start, status FROM runs WHERE id = ?", [target])
        if not rows:
            raise BadInput(f"run {target} not found")
        pid, run_id, start = rows[0]["pid"], rows[0]["id"], rows[0]["pid_start"]
        if rows[0]["status"] != RUNNING:
            return str(rows[0]["status"])
    if pid == os.getpid():
        raise BadInput(f"run {run_id} runs inside this process; it cannot be cancelled here")
    _check_ours(ws, pid, start, run_id)
    _record_action(ws, who, "cancel", {"pid": pid, "run_id": run_id})
    # Checked before every signal: once our process has ended, its pid may belong to another.
    if _alive(pid, start):
        _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _alive(pid, start) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid, start):
            _signal(pid, signal.SIGKILL)
            while _alive(pid, start) and time.monotonic() < deadline + 5:
                time.sleep(0.05)
    _mark_dead_runs(ws)
    if run_id is None:
        return INTERRUPTED
    return str(ws.query("SELECT status FROM runs WHERE id = ?", [run_id])[0]["status"])


def _check_ours(ws: Workspace, pid: int, start: int | None, run_id: int | None) -> None:
    """:class:`BadInput` unless ``pid`` is a process this server started, or a PLD Studio
    command on this workspace that started when its record says. Run rows and job records
    are files anyone with the workspace can write: a forged one must not make the app signal
    an unrelated process."""
    if pid in _CHILDREN:
        return
    what = f"run {run_id}" if run_id is not None else f"job pid {pid}"
    if start is None:
        raise BadInput(f"{what}: its record has no process start time, so pid {pid} cannot be "
                       "shown to be that process; not signalled")
    if _alive(pid, start) and not runs_pld_on(pid, _ws_path(ws)):
        raise BadInput(f"{what}: pid {pid} is not a PLD Studio command on this workspace; "
                       "not signalled")


def stop_jobs(ws: Workspace | str | Path, task: str | None = None,
              timeout_s: float = 10.0) -> int:
    """Cancel every job still running on a workspace (optionally one task); return how many."""
    path = _ws_path(ws)
    if not path.exists():
        return 0
    handle = ws if isinstance(ws, Workspace) else open_workspace(path)
    try:
        live = [j for j in list_jobs(path, task, limit=10_000) if _alive(j.pid, j.pid_start)]
        for job in live:
            cancel(handle, job, timeout_s=timeout_s)
    finally:
        if handle is not ws:
            handle.close()
    return len(live)


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        pgid = os.getpgid(pid)
        # Never signal our own group (a run started from the same terminal as the server).
        if pgid != os.getpgrp():
            os.killpg(pgid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass
