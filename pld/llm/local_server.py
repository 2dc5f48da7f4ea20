"""The model process: llama.cpp's server (xllamacpp) holding one embedded model.

Started by :mod:`pld.llm.local_process` as ``python -m pld.llm.local_server``, never by people.
Native code that crashes (a CPU whose instructions the build mishandles, say) then kills only
this process: the app, the CLI and the background job that started it live on and say so.

Protocol, kept to pipes so nothing secret shows in ``ps``:

* stdin, first line: a JSON object with ``model_path``, ``n_ctx`` (per sequence), ``parallel``
  (sequences decoded together), ``threads``, ``cache_ram_mib`` and ``api_key``;
* stdout, one line once the weights are loaded: ``{"address": "http://127.0.0.1:PORT",
  "load_s": ..., "pid": ...}``, or ``{"error": "..."}`` when loading failed;
* then the process serves HTTP on that address until stdin reaches end of file, which happens
  when the parent exits or closes it, however it ends.
"""

from __future__ import annotations

import faulthandler
import json
import os
import signal
import sys
import time
from typing import Any


def _params(cfg: dict[str, Any]) -> Any:
    import xllamacpp

    p = xllamacpp.CommonParams()
    p.model.path = cfg["model_path"]
    parallel = int(cfg["parallel"])
    # Each sequence gets n_ctx of its own (no unified cache), so whether a prompt fits never
    # depends on what else is running.
    p.n_parallel = parallel
    p.kv_unified = False
    p.n_ctx = int(cfg["n_ctx"]) * parallel
    p.cont_batching = True
    p.cpuparams.n_threads = p.cpuparams_batch.n_threads = int(cfg["threads"])
    p.cache_ram_mib = int(cfg["cache_ram_mib"])
    p.api_keys = [cfg["api_key"]]
    p.verbosity = int(cfg.get("verbosity", 0))
    p.endpoint_metrics = False
    p.warmup = False
    return p


def main() -> None:
    """Load the model named on stdin, report its address, serve until stdin closes."""
    # A native crash still writes the Python stack to stderr (the job log) before the process
    # dies with its signal, which the parent reports.
    faulthandler.enable()
    # Ctrl-C and a cancelled job's SIGTERM are for the caller, which ends cleanly and closes
    # the pipe; this process then exits by itself instead of looking like a crash.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    cfg = json.loads(sys.stdin.readline())
    t0 = time.perf_counter()
    try:
        import xllamacpp

        server = xllamacpp.Server(_params(cfg))
    except Exception as err:  # reported to the parent, which raises it as a config error
        print(json.dumps({"error": f"{type(err).__name__}: {err}"}), flush=True)
        return
    print(json.dumps({"address": server.listening_address,
                      "load_s": round(time.perf_counter() - t0, 3), "pid": os.getpid()}),
          flush=True)
    while sys.stdin.read(1 << 16):  # blocks; end of file once the parent is gone
        pass
    # The server's destructor waits for its threads; nothing is left to save, so skip it.
    os._exit(0)


if __name__ == "__main__":
    main()
