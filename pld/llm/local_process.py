"""The embedded model's process, seen from the process that uses it.

Each process that calls a ``local/<name>`` model (the app's server, a CLI command, a background
job) starts one model process per model file, on first use: ``python -m pld.llm.local_server``
(llama.cpp's server through xllamacpp), reached over HTTP on 127.0.0.1 with a random key that
exists only in the two processes' memory. Why a process and not the library in-process:

* a native crash of the runtime (the first call segfaulting on some CPU) kills only the model
  process; the caller gets :class:`~pld.llm.base.RuntimeCrashed`, a one-line reason, and its
  stage ends ``failed`` with that reason instead of the whole program vanishing;
* llama.cpp's server decodes several sequences per step (continuous batching), so K calls in
  flight from K threads share the two cores' memory bandwidth instead of queueing.

The model process exits when its parent does: it serves until its stdin reaches end of file.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pld.llm.base import ConfigError, LLMError, RuntimeCrashed
from pld.workspace import now

_PACKAGE_ROOT = Path(__file__).resolve().parents[2]
# Signals that mean someone stopped the process rather than the runtime failing.
_STOPPED = {signal.SIGKILL, signal.SIGTERM, signal.SIGINT}


def cpu_model() -> str:
    """This machine's CPU model name (``lscpu``'s), for messages and benchmark reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown CPU"


@dataclass(frozen=True)
class ProcessSettings:
    """How a model process is started; one process per distinct settings."""

    name: str
    model_path: Path
    n_ctx: int
    parallel: int
    threads: int
    cache_ram_mib: int


@dataclass
class ModelProcess:
    """One running model process and what the status page shows about it."""

    settings: ProcessSettings
    proc: subprocess.Popen[bytes] | None = None
    address: str = ""
    load_s: float = 0.0
    loaded_at: str = ""
    calls: int = 0
    _key: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def model(self) -> str:
        return f"local/{self.settings.name}"

    def alive(self) -> bool:
        """True while the process runs (it may still be loading)."""
        return self.proc is not None and self.proc.poll() is None

    def ensure_started(self) -> None:
        """Start the process and wait for its weights to load, unless it already runs.

        A process that died earlier (a crash, a kill) is replaced by a new one.
        """
        with self._lock:
            if self.alive() and self.address:
                return
            self._start()

    def _start(self) -> None:
        s = self.settings
        if self.proc is not None:  # a dead predecessor: release its pipes
            for pipe in (self.proc.stdin, self.proc.stdout):
                if pipe is not None:
                    pipe.close()
            self.proc.wait()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(_PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p)
        # libgomp's default (spin briefly, then sleep) suits a process that only runs the model:
        # OMP_WAIT_POLICY=PASSIVE halved generation speed (0.5B: 14 vs 30 tok/s, AMD EPYC, 2
        # cores), while the default still idles at ~0 CPU between calls.
        env.pop("OMP_WAIT_POLICY", None)
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "pld.llm.local_server"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
        )
        cfg = {"model_path": str(s.model_path), "n_ctx": s.n_ctx, "parallel": s.parallel,
               "threads": s.threads, "cache_ram_mib": s.cache_ram_mib, "api_key": self._key}
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write((json.dumps(cfg) + "\n").encode())
            proc.stdin.flush()
        except BrokenPipeError:
            pass  # it died at once; its exit status says why, below
        line = proc.stdout.readline()
        ready: dict[str, Any] = {}
        if line:
            try:
                ready = json.loads(line)
            except ValueError:
                ready = {"error": f"unexpected output {line[:200]!r}"}
        if "address" not in ready:
            if "error" in ready:
                proc.kill()
                proc.wait()
                raise ConfigError(f"{self.model}: cannot load {s.model_path}: {ready['error']}")
            code = proc.wait()
            raise RuntimeCrashed(crash_message(self.model, code, while_loading=True))
        self.proc = proc
        self.address = str(ready["address"])
        self.load_s = time.perf_counter() - t0
        self.loaded_at = now()

    def exit_code(self, wait_s: float = 0.0) -> int | None:
        """The process's exit status, waiting up to ``wait_s`` for it to end; None if alive."""
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout=wait_s) if wait_s > 0 else self.proc.poll()
        except subprocess.TimeoutExpired:
            return None

    def request(self, path: str, body: dict[str, Any], *, timeout: float) -> tuple[int, Any]:
        """POST ``body`` as JSON to ``path``; the HTTP status and the decoded JSON reply.

        Raises :class:`RuntimeCrashed` when the process died before answering, and a
        permanent :class:`LLMError` when it did not answer within ``timeout`` seconds.
        """
        self.ensure_started()
        url = urlsplit(self.address)
        conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=timeout)
        try:
            conn.request("POST", path, body=json.dumps(body).encode("utf-8"), headers={
                "Content-Type": "application/json", "Authorization": f"Bearer {self._key}"})
            resp = conn.getresponse()
            status, raw = resp.status, resp.read()
        except (OSError, http.client.HTTPException) as err:
            # A dead process closes its sockets at once; give the kernel a moment to report
            # its exit status before deciding it was something else.
            code = self.exit_code(wait_s=2.0)
            if code is not None:
                raise RuntimeCrashed(crash_message(self.model, code)) from err
            raise LLMError(
                f"{self.model}: no answer from the model process within {timeout:g} s: "
                f"{type(err).__name__}: {err} (raise PLD_LOCAL_TIMEOUT if long calls are "
                "expected)"
            ) from err
        finally:
            conn.close()
        self.calls += 1
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, {"error": {"message": raw[:300].decode("utf-8", "replace")}}

    def stop(self) -> None:
        """End the process (closing its stdin is enough; killed if it lingers)."""
        with self._lock:
            proc, self.proc, self.address = self.proc, None, ""
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def crash_message(model: str, code: int, *, while_loading: bool = False) -> str:
    """One line for people: what happened to the model process and what to do."""
    when = " while loading its weights" if while_loading else ""
    if code < 0:
        sig = signal.Signals(-code)
        if sig in _STOPPED:
            what = f"the model process was stopped{when} by signal {-code} ({sig.name})"
        else:
            what = (f"the embedded runtime (llama.cpp) crashed{when} with signal {-code} "
                    f"({sig.name}) on this CPU ({cpu_model()})")
    else:
        what = f"the model process exited{when} with status {code}"
    return (f"{model}: {what}. Work done so far is saved; the same command resumes it. If it "
            "happens again, try PLD_LOCAL_THREADS=1, or use a model served elsewhere "
            "(--teacher/--student openai-compatible/MODEL@URL, anthropic/…, openai/…).")


_processes: dict[ProcessSettings, ModelProcess] = {}
_processes_lock = threading.Lock()


def model_process(settings: ProcessSettings) -> ModelProcess:
    """The process-wide :class:`ModelProcess` for ``settings`` (not started yet if new)."""
    with _processes_lock:
        mp = _processes.get(settings)
        if mp is None:
            mp = _processes[settings] = ModelProcess(settings)
        return mp


def running_processes() -> list[ModelProcess]:
    """The model processes of this process that are up."""
    with _processes_lock:
        return [mp for mp in _processes.values() if mp.alive() and mp.address]


def stop_all() -> None:
    """Stop every model process this process started (tests, and settings that changed)."""
    with _processes_lock:
        procs = list(_processes.values())
        _processes.clear()
    for mp in procs:
        mp.stop()
