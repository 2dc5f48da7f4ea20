"""What waits for one reviewer: the queue on the Home page and ``review queue --as NAME``.

Per loaded task, in this order:

* ``approve``: drafts (heuristics and the preamble) this person may sign: they are not in its
  authorship (:class:`~pld.authorship.Authorship`: they did not write it, start the job that
  wrote it or accept the proposal that wrote it), and they are on the approver list when the
  task has one; a draft nobody named wrote is listed to be saved under a name first;
* ``decide``: conflict-loop proposals still pending;
* ``others-sign``: drafts this person is an author of, which someone else must approve;
* ``failed-job``: the latest run of a stage that failed, and was not run again successfully;
* ``export-blocked``: the latest prompt version, when it may not be exported, and why.

Each item names the page where it is resolved (``page``), what to open there (``open``: the
heuristic or proposal id) and the command that resolves it headless. A draft a job wrote
(``consolidate``, the conflict loop) names that run (``run``: id, kind, who started it and
when), so a page can show one run's drafts together.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from pld import review, signoff
from pld.approvers import list_approvers
from pld.authorship import Authorship
from pld.identity import OIDC, Identity, normalize_name
from pld.pipeline.export import refusal
from pld.pipeline.resolve import view
from pld.pipeline.runs import FAILED, list_runs
from pld.pipeline.student import list_prompts
from pld.preamble import get_preamble
from pld.review_rows import DRAFT
from pld.tasks.store import loaded_tasks
from pld.workspace import Workspace, dumps

APPROVE, DECIDE, OTHERS_SIGN = "approve", "decide", "others-sign"
FAILED_JOB, EXPORT_BLOCKED = "failed-job", "export-blocked"
KINDS = (APPROVE, DECIDE, OTHERS_SIGN, FAILED_JOB, EXPORT_BLOCKED)
PAGES = {"heuristic": "heuristics", "preamble": "heuristics", "proposal": "conflicts",
         "run": "home", "prompt": "export"}


def _short(text: str, n: int = 90) -> str:
    one = " ".join((text or "").split())
    return one if len(one) <= n else one[: n - 1] + "…"


def _item(kind: str, task: str, what: str, item_id: int | None, summary: str,
          command: str, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "task": task, "what": what, "id": item_id, "summary": summary,
            "page": PAGES[what], "command": command, **extra}


def _runs_of(ws: Workspace, rows: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """The runs that wrote ``rows`` (heuristics), by id: id, kind, started_by, started_at."""
    ids = sorted({r["run_id"] for r in rows if r.get("run_id") is not None})
    if not ids:
        return {}
    return {r["id"]: r for r in ws.query(
        "SELECT id, kind, started_by, started_at FROM runs "
        "WHERE id IN (SELECT value FROM json_each(?))", [dumps(ids)])}


def _run_of(row: dict[str, Any], runs: dict[int, dict[str, Any]]) -> dict[str, Any] | None:
    """The run that wrote the draft's current text, if a run did: its first version, or a later
    one a model or PLD Studio wrote. A person's edit makes the text theirs, not the run's."""
    if row["version"] == 1 or not Authorship.from_row(row).written_by.is_person:
        return runs.get(row.get("run_id"))
    return None


def _drafts(ws: Workspace, task: str, who: Identity, may_sign: bool) -> list[dict[str, Any]]:
    out = []
    rows = [("heuristic", h) for h in review.list_heuristics(ws, task, DRAFT)]
    runs = _runs_of(ws, [h for _, h in rows])
    pre = get_preamble(ws, task)
    if pre is not None and pre["status"] == DRAFT:
        rows.insert(0, ("preamble", pre))
    for what, row in rows:
        authorship = Authorship.from_row(row)
        name = "the preamble" if what == "preamble" else f"heuristic #{row['id']}"
        show = (f"python -m pld review show {row['id']}" if what == "heuristic" else
                f"python -m pld review preamble show {task}")
        cmd = (f"python -m pld review preamble approve {task}" if what == "preamble"
               else f"python -m pld review approve {row['id']}")
        if who.name in authorship.persons():
            wrote = ("you wrote it" if authorship.written_by.name == who.name
                     else authorship.sentence())
            out.append(_item(OTHERS_SIGN, task, what, row["id"],
                             f"{name} v{row['version']}: {wrote}; someone else must "
                             f"approve it: {_short(row['text'])}", show,
                             version=row["version"], run=_run_of(row, runs)))
        elif not authorship.identified:
            out.append(_item(APPROVE, task, what, row["id"],
                             f"{name} v{row['version']} was {authorship.sentence()}: save it "
                             f"under your name first, then someone else approves it: "
                             f"{_short(row['text'])}", show,
                             version=row["version"], run=_run_of(row, runs)))
        elif may_sign:
            out.append(_item(APPROVE, task, what, row["id"],
                             f"{name} v{row['version']} by {authorship.by}: "
                             f"{_short(row['text'])}",
                             f"{cmd} --base-version {row['version']} --as {who.name}",
                             version=row["version"], run=_run_of(row, runs)))
    return out


def _proposals(ws: Workspace, task: str, who: Identity) -> list[dict[str, Any]]:
    return [_item(DECIDE, task, "proposal", p["id"],
                  f"proposal #{p['id']} (iteration {p['iteration']}): {p['kind']} "
                  + (f"heuristic #{p['heuristic_id']}" if p["heuristic_id"] else "a new one")
                  + (f": {_short(p['rationale'])}" if p["rationale"] else ""),
                  f"python -m pld review decide {p['id']} accept|reject --as {who.name}",
                  iteration=p["iteration"])
            for p in view.list_proposals(ws, task, status="pending")]


def _failed_jobs(ws: Workspace, task: str) -> list[dict[str, Any]]:
    latest: dict[str, dict[str, Any]] = {}
    for run in list_runs(ws, task=task, limit=200):  # newest first
        latest.setdefault(run["kind"], run)
    return [_item(FAILED_JOB, task, "run", run["id"],
                  f"{run['kind']} run {run['id']} failed at {run['finished_at'] or '?'}: "
                  f"{_short(run['error'] or 'no reason recorded', 160)}",
                  f"python -m pld {run['kind']} {task} … (run it again to resume)")
            for run in latest.values() if run["status"] == FAILED]


def _blocked_export(ws: Workspace, task: str) -> list[dict[str, Any]]:
    prompts = list_prompts(ws, task)
    if not prompts:
        return []
    latest = prompts[-1]
    why = refusal(ws, latest)
    if why is None:
        return []
    return [_item(EXPORT_BLOCKED, task, "prompt", latest.version,
                  f"prompt v{latest.version} cannot be exported: {why}",
                  f"python -m pld prompts list {task}")]


def reviewer_queue(ws: Workspace, who: Identity) -> dict[str, Any]:
    """Everything that waits for ``who`` across the workspace's tasks: ``items`` (see the
    module docstring) and ``counts`` per kind."""
    items: list[dict[str, Any]] = []
    for info in loaded_tasks(ws):
        approvers = {normalize_name(a) for a in list_approvers(ws, info.name)}
        identity_ok = who.kind == OIDC or not signoff.requires_oidc(ws, info.name)
        may_sign = (not approvers or who.name in approvers) and identity_ok
        drafts = _drafts(ws, info.name, who, may_sign)
        items += [d for d in drafts if d["kind"] == APPROVE]
        items += _proposals(ws, info.name, who)
        items += [d for d in drafts if d["kind"] == OTHERS_SIGN]
        items += _failed_jobs(ws, info.name)
        items += _blocked_export(ws, info.name)
    counts = Counter(i["kind"] for i in items)
    return {"who": who.name, "items": items, "counts": {k: counts.get(k, 0) for k in KINDS}}
