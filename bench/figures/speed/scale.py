"""How the app and the CLI scale with the size of a workspace:

* ``pages.ratio_10k_vs_100`` — median time to render the micro-instructions page
  (``pages/extract.py`` in ``AppTest``, 5 interleaved renders after a warm-up) for a task with
  10,000 rules ÷ one with 100; ``scale.page_100k_vs_100`` the same at 100,000 rules.
* ``scale.rss_100k_vs_10k`` — peak resident memory (VmHWM of the CLI process) of extracting
  100,000 examples ÷ 10,000 with ``--batch`` against the fake batch server, every request
  answered; the server runs in the benchmark's process, so only the CLI is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.figures.machine import REPO
from bench.figures.results import median
from bench.figures.scripted import BATCH_TEACHER, FILLER, scripted_reply
from bench.figures.speed.report import entry
from bench.figures.workspaces import child_env, fresh_path
from pld.workspace import open_workspace

# python -c HWM_AT_EXIT FILE ARGS...: runs ``python -m pld ARGS`` and, at exit, writes the
# process's peak resident memory in KiB (VmHWM of /proc/self/status) to FILE.
HWM_AT_EXIT = """
import atexit, re, runpy, sys
out = sys.argv.pop(1)
def hwm():
    status = open("/proc/self/status").read()
    open(out, "w").write(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1))
atexit.register(hwm)
sys.argv[0] = "pld"
runpy.run_module("pld", run_name="__main__", alter_sys=True)
"""


def _big_task_ws(name: str, n: int, text: str, *, with_rules: bool) -> Path:
    """A workspace with task ``big``: ``n`` training examples (``text`` numbered), each with an
    ok rule when ``with_rules``."""
    from pld.tasks.store import Example, save_task
    from pld.workspace import dumps, now

    path = fresh_path(name)
    with open_workspace(path) as ws:
        save_task(ws, name="big", kind="custom", labels=["no", "yes"],
                  description="Decide whether the message asks for a refund.", source="bench",
                  params={}, examples=(Example(f"e{i}", "train", text.format(i=i),
                                               "yes" if i % 3 == 0 else "no", {})
                                       for i in range(n)))
        if not with_rules:
            return path
        ids = [r["id"] for r in ws.query("SELECT id FROM examples ORDER BY id")]
        stamp = now()
        with ws.write() as db:
            db["micro_instructions"].insert_all((
                {"task": "big", "example_id": eid, "run_id": None, "teacher": "local/default",
                 "reasoning": f"The message has feature {i % 97}.",
                 "rule": f"If the message mentions feature {i % 97}, then the label is "
                         f"{'yes' if i % 3 == 0 else 'no'}.",
                 "label": "yes" if i % 3 == 0 else "no", "status": "ok",
                 "flags": dumps(["copies_example"] if i % 11 == 0 else []), "created_at": stamp}
                for i, eid in enumerate(ids)), batch_size=1000)
    return path


def _page_ratio(small: int, big: int, renders: int, label: str) -> tuple[float, dict[str, Any]]:
    """Median render time of pages/extract.py with ``big`` rules ÷ with ``small``."""
    import streamlit.logger
    from streamlit.testing.v1 import AppTest

    # "missing ScriptRunContext" warnings from building the workspaces outside a script run.
    streamlit.logger.set_log_level("error")
    paths = {n: _big_task_ws(f"{label}-{n}.db", n, "Example message number {i}.",
                             with_rules=True) for n in (small, big)}
    page = str(REPO / "pages" / "extract.py")
    print(f"{label}: render {page} with {small} and {big} rules, median of {renders}",
          flush=True)

    def render(n: int) -> float:
        os.environ["PLD_WORKSPACE"] = str(paths[n])
        at = AppTest.from_file(page, default_timeout=300)
        at.session_state["task"] = "big"
        t0 = time.perf_counter()
        at.run()
        dt = time.perf_counter() - t0
        if at.exception:
            raise SystemExit(f"pages: the page raised: {at.exception[0].value}")
        shown = {m.label: m.value for m in at.metric}.get("Rules")
        if shown != f"{n:,}".replace(",", "") and shown != f"{n:,}":
            raise SystemExit(f"pages: the page shows {shown!r} rules, expected {n}")
        return dt

    warm = {n: render(n) for n in (small, big)}  # imports, caches: not timed
    times: dict[int, list[float]] = {small: [], big: []}
    for _ in range(renders):
        for n in (small, big):  # interleaved, so noise hits both sizes alike
            times[n].append(render(n))
    ratio = median(times[big]) / median(times[small])
    return ratio, {
        "rules_small": small, "rules_big": big, "renders_each": renders,
        "median_s_small": round(median(times[small]), 3),
        "median_s_big": round(median(times[big]), 3),
        "all_s": {str(k): [round(t, 3) for t in v] for k, v in times.items()},
        "warmup_s": {str(k): round(v, 3) for k, v in warm.items()},
        "page": "pages/extract.py (Micro-instructions), streamlit AppTest"}


def extract_rss(n: int) -> dict[str, Any]:
    """Peak RSS (MiB) and wall time of ``extract big --batch`` over ``n`` examples."""
    from tests.fakes.anthropic_server import FakeAnthropicBatches

    body = " ".join(FILLER * 2)  # about 300 characters per example
    path = _big_task_ws(f"rss-{n}.db", n, f"Message {{i}}: {body}", with_rules=False)
    with FakeAnthropicBatches(responder=scripted_reply(["no", "yes"])) as fake:
        env = child_env({"ANTHROPIC_BASE_URL": fake.base_url,
                         "ANTHROPIC_API_KEY": "sk-ant-bench", "PLD_BATCH_POLL_S": "0.5"})
        hwm = Path(tempfile.mkstemp(prefix="pld-bench-hwm-")[1])
        # The CLI itself, told to write its own peak resident memory (VmHWM) as it exits.
        # Not ru_maxrss: Linux carries the parent's peak into a child's across exec, and this
        # benchmark's process holds the embedding and tokenizer models by then.
        cmd = [sys.executable, "-c", HWM_AT_EXIT, str(hwm), "--workspace", str(path), "extract",
               "big", "--teacher", BATCH_TEACHER, "--batch", "--json"]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=3600)
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            raise SystemExit(f"scale: extract of {n} failed: {r.stderr[-2000:]}")
        creates, submitted = fake.book.creates, len(fake.book.submitted)
    peak_kib = int(hwm.read_text())
    hwm.unlink()
    done = json.loads(r.stdout)["done"]
    return {"examples": n, "peak_rss_mib": round(peak_kib / 1024, 1),
            "wall_s": round(wall, 1), "rules_done": done, "batches": creates,
            "requests_submitted": submitted}


def rss_ratio(small: int, big: int) -> tuple[float, dict[str, Any]]:
    """Peak memory of a ``big`` batch extraction ÷ a ``small`` one."""
    print(f"scale: peak memory of extract --batch, {big:,} vs {small:,} examples", flush=True)
    runs = {n: extract_rss(n) for n in (small, big)}
    ratio = runs[big]["peak_rss_mib"] / runs[small]["peak_rss_mib"]
    return ratio, {"examples_small": small, "examples_big": big,
                   "small": runs[small], "big": runs[big],
                   "how": "python -m pld extract big --teacher anthropic/… --batch against the "
                          "fake Message Batches API (in the benchmark's process); the CLI "
                          "process's own peak resident memory (VmHWM), read as it exits; "
                          "every example answered"}


def measure_pages(args: argparse.Namespace) -> dict[str, Any]:
    """Median render time of the micro-instructions page at 10,000 rules ÷ at 100."""
    ratio, detail = _page_ratio(args.rules_small, args.rules_big, args.renders, "pages")
    return {"ratio_10k_vs_100": entry("pages", "ratio_10k_vs_100", round(ratio, 2), detail)}


def measure_scale(args: argparse.Namespace) -> dict[str, Any]:
    """The same page at 100,000 rules ÷ at 100 (a workspace of a large extraction), and the
    peak memory of a batch extraction of 100,000 examples ÷ 10,000."""
    out = {}
    if "page" in args.scale_parts:
        ratio, detail = _page_ratio(args.rules_small, args.rules_huge, args.renders, "scale")
        out["page_100k_vs_100"] = entry("scale", "page_100k_vs_100", round(ratio, 2), detail)
    if "rss" in args.scale_parts:
        ratio, detail = rss_ratio(args.extract_small, args.extract_huge)
        out["rss_100k_vs_10k"] = entry("scale", "rss_100k_vs_10k", round(ratio, 2), detail)
    return out
