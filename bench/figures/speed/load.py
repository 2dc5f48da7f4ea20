"""``load.concurrent_writers`` — nothing lost under load: ``--processes`` (16) processes edit,
approve and reject the same few heuristics of one workspace for ``--seconds`` (60), each as its
own self-declared identity, through :mod:`pld.review` as the app and the CLI call it (no LLM).

Each process reads a heuristic, picks edit, approve or reject at random and acts on the version
it read, and records every change it was told succeeded (heuristic, new version, action).
Refusals a person would be shown and could act on are counted apart: a stale version
(:class:`~pld.review_rows.StaleEdit`, someone changed it first), four-eyes
(:class:`~pld.signoff.FourEyes`, its own edit) and other refusals (approving an approved
heuristic). Afterwards the workspace is checked against the records:

* ``lost_updates``: changes a process recorded that the trail does not hold (its heuristic,
  version, who and action), plus, per heuristic, recorded changes beyond the versions it gained;
* ``unrecorded_changes``: trail rows of the run that no process recorded as its change;
* ``locked_errors``: "database is locked" (or busy) errors that reached a caller;
* ``other_errors``: any other exception;
* ``trail_ok``: the hash chain of the whole trail holds (:func:`pld.trail.check_chain`).

The figure's value is the sum of those problems (a broken trail counts one); the target is 0.
``ops_per_s`` counts every completed operation (changes and refusals) per second of the run,
``changes_per_s`` the changes alone.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.figures.machine import cpu_model
from bench.figures.results import print_table
from bench.figures.speed.report import entry
from bench.figures.workspaces import fresh_path

TASK = "load"
HEURISTICS = 4
ACTIONS = ("edit", "approve", "reject")
FAILURES = ("stale", "four_eyes", "refused", "locked", "errors")
SAMPLE_ERRORS = 5
# A guard against a hung worker, not a measurement: how long past its run a worker may take.
GUARD_S = 120


def _seed(path: Path) -> dict[int, int]:
    """A task with a few draft heuristics written by ``seed``: their ids and versions."""
    from pld import review
    from pld.identity import Identity
    from pld.tasks.store import Example, save_task
    from pld.workspace import open_workspace

    with open_workspace(path) as ws:
        save_task(ws, name=TASK, kind="custom", labels=["yes", "no"],
                  description="Whether a text says yes.", source="bench", params={},
                  examples=[Example(f"{s}-{i}", s, f"{s} text {i}", ("yes", "no")[i % 2], {})
                            for s in ("train", "val", "test") for i in range(4)])
        ids = [review.create_heuristic(ws, TASK, f"Texts saying yes number {i} are yes.",
                                       Identity("seed")) for i in range(HEURISTICS)]
        return {i: review.get_heuristic(ws, i)["version"] for i in ids}


def _act(ws: Any, rng: random.Random, ids: list[int], me: Any, n: int) -> tuple[str, Any]:
    """One operation as ``me``: read a heuristic, then edit, approve or reject the version
    read. Returns (action, the new row)."""
    from pld import review

    hid = rng.choice(ids)
    row = review.get_heuristic(ws, hid)
    action = rng.choice(ACTIONS)
    if action == "edit":
        text = f"Texts saying yes number {hid} are yes (per {me.name}, edit {n})."
        return action, review.edit(ws, hid, text, me, base_version=row["version"])
    if action == "approve":
        return action, review.approve(ws, hid, me, base_version=row["version"])
    return action, review.reject(ws, hid, me, base_version=row["version"])


def _kind(e: BaseException) -> str:
    """Which count a failed operation goes to (see the module docstring)."""
    from pld.errors import BadInput
    from pld.review_rows import StaleEdit
    from pld.signoff import FourEyes

    text = str(e).lower()
    if "database is locked" in text or "database is busy" in text:
        return "locked"
    if isinstance(e, StaleEdit):
        return "stale"
    if isinstance(e, FourEyes):
        return "four_eyes"
    return "refused" if isinstance(e, BadInput) else "errors"


def _worker(index: int, path: str, ids: list[int], seconds: float, ready: Any, start: Any,
            results: Any) -> None:
    """One writer process: act until ``seconds`` after ``start`` is set; put its record."""
    from pld.identity import Identity
    from pld.workspace import open_workspace

    me = Identity(f"writer {index}")
    rng = random.Random(index)
    out: dict[str, Any] = {"who": me.name, "changes": [], "samples": [],
                           **dict.fromkeys(FAILURES, 0)}
    ws = open_workspace(path)
    ready.put(index)
    start.wait()
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < seconds:
        n += 1
        try:
            action, row = _act(ws, rng, ids, me, n)
        except Exception as e:  # every failure is counted; the unexpected ones kept to read
            kind = _kind(e)
            out[kind] += 1
            if kind in ("locked", "errors") and len(out["samples"]) < SAMPLE_ERRORS:
                out["samples"].append(f"{type(e).__name__}: {e}")
        else:
            out["changes"].append([row["id"], row["version"], action])
    out["elapsed_s"] = time.monotonic() - t0
    ws.close()
    results.put(out)


def _check(path: Path, seeded: dict[int, int], first_row: int,
           records: list[dict[str, Any]]) -> dict[str, Any]:
    """Compare what the processes recorded with the workspace (see the module docstring)."""
    from pld import trail
    from pld.workspace import open_workspace

    with open_workspace(path) as ws:
        rows = ws.query(
            "SELECT who, entity_id, action, json_extract(after, '$.version') AS version "
            "FROM reviews WHERE id >= ? AND entity = 'heuristic'", [first_row])
        versions = {h: ws.query("SELECT version FROM heuristics WHERE id = ?", [h])[0]["version"]
                    for h in seeded}
        broken = trail.check_chain(ws)
    in_trail = Counter((r["entity_id"], r["version"], r["who"], r["action"]) for r in rows)
    recorded = Counter((hid, version, rec["who"], action)
                       for rec in records for hid, version, action in rec["changes"])
    missing = sum((recorded - in_trail).values())
    per_heuristic = Counter(hid for hid, _, _, _ in recorded.elements())
    # Every change bumps the version by one.
    beyond = sum(max(0, per_heuristic[h] - (versions[h] - v)) for h, v in seeded.items())
    return {"lost_updates": missing + beyond,
            "unrecorded_changes": sum((in_trail - recorded).values()),
            "trail_ok": broken is None, "trail_break": None if broken is None else str(broken)}


def measure_load(args: argparse.Namespace) -> dict[str, Any]:
    """Run the writers on one fresh workspace and check what they recorded."""
    from pld.workspace import open_workspace

    n, seconds = args.processes, args.seconds
    print(f"load: {n} processes edit, approve and reject {HEURISTICS} heuristics of one "
          f"workspace for {seconds:g} s", flush=True)
    path = fresh_path("load-concurrent-writers.db")
    seeded = _seed(path)
    with open_workspace(path) as ws:
        first_row = ws.query("SELECT coalesce(max(id), 0) + 1 AS n FROM reviews")[0]["n"]
    ctx = mp.get_context("spawn")  # no SQLite connection inherited across a fork
    ready, results, start = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_worker,
                         args=(i, str(path), list(seeded), seconds, ready, start, results))
             for i in range(n)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=GUARD_S)
    start.set()
    records = [results.get(timeout=seconds + GUARD_S) for _ in procs]
    for p in procs:
        p.join(timeout=GUARD_S)
    check = _check(path, seeded, first_row, records)
    total = {k: sum(r[k] for r in records) for k in FAILURES}
    changes = sum(len(r["changes"]) for r in records)
    ops = changes + sum(total.values())
    elapsed = max(r["elapsed_s"] for r in records)
    problems = (check["lost_updates"] + check["unrecorded_changes"] + total["locked"]
                + total["errors"] + (0 if check["trail_ok"] else 1))
    detail = {
        "processes": n, "seconds": seconds, "heuristics": HEURISTICS, "cpu": cpu_model(),
        "ops_per_s": round(ops / elapsed, 1), "changes_per_s": round(changes / elapsed, 1),
        "operations": ops, "changes": changes,
        "changes_per_process": [len(r["changes"]) for r in records],
        "refused_stale": total["stale"], "refused_four_eyes": total["four_eyes"],
        "refused_other": total["refused"], "locked_errors": total["locked"],
        "other_errors": total["errors"], **check,
        "error_samples": [s for r in records for s in r["samples"]][:SAMPLE_ERRORS],
    }
    _print(detail)
    return {"concurrent_writers": entry("load", "concurrent_writers", problems, detail)}


def _print(d: dict[str, Any]) -> None:
    """The figure's own table on the console."""
    trail_ok = "yes" if d["trail_ok"] else f"NO: {d['trail_break']}"
    print_table(["load.concurrent_writers", "value"], [
        ["processes x seconds", f"{d['processes']} x {d['seconds']:g}"],
        ["operations per second", d["ops_per_s"]],
        ["changes per second", d["changes_per_s"]],
        ["refused: stale / four-eyes / other",
         f"{d['refused_stale']} / {d['refused_four_eyes']} / {d['refused_other']}"],
        ["lost updates", d["lost_updates"]],
        ["unrecorded changes", d["unrecorded_changes"]],
        ["'database is locked' errors", d["locked_errors"]],
        ["other errors", d["other_errors"]],
        ["trail verifies", trail_ok],
        ["CPU", d["cpu"]]])
    for sample in d["error_samples"]:
        print(f"  {sample}")
