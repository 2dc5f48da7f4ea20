"""Fixtures shared by the page tests (``streamlit.testing.v1.AppTest``).

* ``app_ws``: a workspace path with ``$PLD_WORKSPACE`` pointing at it (what the sidebar opens);
  jobs still running on it when the test ends are stopped.
* ``open_page``: ``open_page("extract", task="demo", reviewer="ana")`` -> an ``AppTest`` of
  ``pages/extract.py`` with the sidebar state set (not yet run).
* ``populated_ws``: ``app_ws`` filled with the demo task, its rules (ok, failed, flagged) with
  their calls and embeddings, an accepted and a proposed clustering, consolidated heuristics
  (three approved), prompt version 1 and two evaluations, written through pld functions or
  sqlite-utils. Built once per session and copied per test.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pytest
from markdown_it import MarkdownIt
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Block, Expander, Node

from pld import jobs, review
from pld.identity import Identity
from pld.metrics import score
from pld.pipeline.cluster.fit import auto_name
from pld.pipeline.student import build_prompt
from pld.tasks import load_task
from pld.tasks.store import examples
from pld.ui.escape import WORD_JOINER
from pld.workspace import Workspace, dumps, now, open_workspace
from tests.conftest import approve_seen
from tests.pipeline.test_student import approve_preamble

PAGES_DIR = Path(__file__).resolve().parents[2] / "pages"
TEACHER = "local/default"
STUDENT = "local/default"
EMBED_MODEL = "minilm"
DIM = 16

# Per label: three phrasings of a rule and the keywords its cluster gets.
RULE_PHRASES: dict[str, tuple[list[str], list[str]]] = {
    "escalate-fraud": (["reports an unauthorised transaction on the card",
                        "describes a scam caller asking for a card code",
                        "says someone else took over the account"],
                       ["unauthorised", "scam", "card"]),
    "data-privacy-request": (["asks for a copy of the personal data held",
                              "asks the bank to erase stored personal data",
                              "objects to marketing use of personal data"],
                             ["personal", "data", "erase"]),
    "complaint": (["complains about a fee or a staff decision",
                   "is unhappy with slow service at the branch",
                   "disputes a decision and wants it reviewed"],
                  ["fee", "unhappy", "service"]),
    "routine": (["asks how to order a new chequebook",
                 "wants to update a postal address",
                 "asks about branch opening hours"],
                ["order", "address", "hours"]),
}


@dataclass(frozen=True)
class Populated:
    """Ids of what ``populated_ws`` holds; :meth:`open` gives a handle on it."""

    path: Path
    task: str
    labels: list[str]
    rule_ids: list[int]                      # every micro-instruction, ok or failed
    ok_rule_ids: list[int]
    failed_rule_ids: list[int]
    flagged_rule_ids: list[int]
    accepted_clustering: int                 # has heuristics: structural edits are refused
    proposed_clustering: int                 # no heuristics: free to edit
    cluster_ids: dict[int, list[int]] = field(default_factory=dict)  # clustering -> clusters
    noise_rule_ids: list[int] = field(default_factory=list)  # noise of the proposed one
    heuristic_ids: list[int] = field(default_factory=list)
    approved_heuristic_ids: list[int] = field(default_factory=list)
    prompt_version: int = 0
    evaluation_ids: list[int] = field(default_factory=list)

    def open(self) -> Workspace:
        """A new handle on the workspace (close it, or use it in a ``with`` block)."""
        return connect(self.path)


def connect(path: Path) -> Workspace:
    """A second handle on a workspace the page (or a job) may hold open too."""
    return open_workspace(path)


@pytest.fixture
def app_ws(ws_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The test's workspace path, also ``$PLD_WORKSPACE`` (the sidebar's default)."""
    monkeypatch.setenv("PLD_WORKSPACE", str(ws_path))
    yield ws_path
    jobs.stop_jobs(ws_path, timeout_s=5)


@pytest.fixture
def open_page(app_ws: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., AppTest]:
    """A factory of ``AppTest`` objects for one page file, sidebar state preset.

    ``teacher``/``student`` go through ``$PLD_TEACHER``/``$PLD_STUDENT`` (the sidebar's
    defaults), ``task`` and ``reviewer`` through session state. ``timeout`` is per run.
    """

    def _open(page: str, *, task: str | None = None, reviewer: str = "",
              teacher: str | None = None, student: str | None = None,
              timeout: float = 60.0) -> AppTest:
        if teacher:
            monkeypatch.setenv("PLD_TEACHER", teacher)
        if student:
            monkeypatch.setenv("PLD_STUDENT", student)
        name = page if page.endswith(".py") else f"{page}.py"
        at = AppTest.from_file(str(PAGES_DIR / name), default_timeout=timeout)
        if task:
            at.session_state["task"] = task
        if reviewer:
            at.session_state["reviewer"] = reviewer
        return at

    return _open


def _unit(rng: np.random.Generator, centre: np.ndarray | None) -> np.ndarray:
    v = rng.normal(0, 1, DIM) if centre is None else centre + rng.normal(0, 0.15, DIM)
    return (v / np.linalg.norm(v)).astype(np.float32)


def build_populated(path: Path) -> Populated:
    """Write what ``populated_ws`` holds to a new workspace at ``path``."""
    rng = np.random.default_rng(0)
    ws = open_workspace(path)
    load_task(ws, "demo")
    task = "demo"
    labels = list(RULE_PHRASES)
    train = examples(ws, task, "train")
    stamp = now()
    with ws.write() as db:
        run_id = int(db["runs"].insert({
            "task": task, "kind": "extract", "params": dumps({"teacher": TEACHER}),
            "status": "done", "done": len(train), "total": len(train), "started_at": stamp,
            "updated_at": stamp, "finished_at": stamp, "pid": 0}).last_pk)
    rule_ids, ok_ids, failed_ids, flagged_ids = [], [], [], []
    rule_label: dict[int, str] = {}
    with ws.write() as db:
        for i, ex in enumerate(train):
            phrases, _ = RULE_PHRASES[ex["label"]]
            failed = i in (3, 17)
            flags = ["copies_example"] if i % 7 == 0 and not failed else []
            rule = (None if failed
                    else f"If the message {phrases[i % 3]}, the label is {ex['label']}.")
            reasoning = None if failed else f"The message {phrases[i % 3]}."
            reply = "Sure! The rule is..." if failed else dumps(
                {"reasoning": reasoning, "rule": rule})
            call_id = int(db["llm_calls"].insert({
                "created_at": stamp, "model": TEACHER, "stage": "extract", "run_id": run_id,
                "cache_key": hashlib.sha256(f"{ex['id']}".encode()).hexdigest(),
                "messages": dumps([{"role": "user", "content": f"Example: {ex['text']}"}]),
                "params": dumps({"max_tokens": 400}), "response": reply, "input_tokens": 120,
                "output_tokens": 30, "cached_tokens": 0, "latency_s": 0.4, "cost_usd": 0.0,
                "cache_hit": 0, "attempt": 1, "error": None}).last_pk)
            rid = int(db["micro_instructions"].insert({
                "task": task, "example_id": ex["id"], "run_id": run_id, "teacher": TEACHER,
                "reasoning": reasoning, "rule": rule, "label": ex["label"],
                "status": "failed" if failed else "ok", "flags": dumps(flags),
                "raw": reply if failed else None,
                "error": "invalid JSON twice: first reply: Expecting value" if failed else None,
                "call_id": call_id, "created_at": stamp}).last_pk)
            rule_ids.append(rid)
            (failed_ids if failed else ok_ids).append(rid)
            if flags:
                flagged_ids.append(rid)
            rule_label[rid] = ex["label"]
        centres = {lab: np.eye(DIM)[4 * k] * 3 for k, lab in enumerate(labels)}
        noise_ids = ok_ids[-2:]
        db["embeddings"].insert_all({
            "rule_id": rid, "model": EMBED_MODEL, "dim": DIM, "created_at": stamp,
            "vector": _unit(rng, None if rid in noise_ids else centres[rule_label[rid]]).tobytes(),
        } for rid in ok_ids)
    accepted = _clustering(ws, task, ok_ids, rule_label, labels, "kmeans", {"k": 4}, [], rng)
    proposed = _clustering(ws, task, ok_ids, rule_label, labels, "dbscan",
                           {"eps": 0.4, "eps_method": "given", "min_samples": 3}, noise_ids, rng)
    clusters = {cid: [r["id"] for r in ws.query(
        "SELECT id FROM clusters WHERE clustering_id = ? ORDER BY label", [cid])]
        for cid in (accepted, proposed)}
    with ws.write() as db:
        db["clusterings"].update(accepted, {"status": "accepted", "accepted_by": "ana",
                                            "accepted_at": now()})
    heuristic_ids = []
    for cluster_id, label in zip(clusters[accepted], labels, strict=True):
        members = [r["rule_id"] for r in ws.query(
            "SELECT rule_id FROM cluster_members WHERE cluster_id = ? ORDER BY rule_id",
            [cluster_id])]
        phrases, _ = RULE_PHRASES[label]
        text = f"If the message {phrases[0]} or {phrases[1]}, answer {label}."
        with ws.write() as db:
            heuristic_ids.append(review.insert_row(
                db, {"task": task, "cluster_id": cluster_id, "clustering_id": accepted,
                     "text": text, "source_rule_ids": members, "origin": "consolidate"},
                who=Identity.teacher(TEACHER), comment=None))
    approved = heuristic_ids[:3]
    for hid in approved:
        approve_seen(ws, hid, Identity("bea"))
    approve_preamble(ws, task, Identity("bea"))
    prompt = build_prompt(ws, task)
    evaluation_ids = [_evaluation(ws, task, labels, "pld", prompt.version, prompt.sha256, 5),
                      _evaluation(ws, task, labels, "zero-shot", None, None, 3)]
    ws.close()
    return Populated(
        path=path, task=task, labels=labels, rule_ids=rule_ids, ok_rule_ids=ok_ids,
        failed_rule_ids=failed_ids, flagged_rule_ids=flagged_ids, accepted_clustering=accepted,
        proposed_clustering=proposed, cluster_ids=clusters, noise_rule_ids=noise_ids,
        heuristic_ids=heuristic_ids, approved_heuristic_ids=approved,
        prompt_version=prompt.version, evaluation_ids=evaluation_ids)


def _clustering(ws: Workspace, task: str, rule_ids: list[int], rule_label: dict[int, str],
                labels: list[str], method: str, params: dict[str, object],
                noise: list[int], rng: np.random.Generator) -> int:
    """A clustering with one cluster per gold label (``noise`` rules in none)."""
    sizes = Counter(rule_label[r] for r in rule_ids if r not in noise)
    metrics = {"n_rules": len(rule_ids), "n_clusters": len(sizes), "n_noise": len(noise),
               "noise_share": len(noise) / len(rule_ids), "silhouette": 0.61,
               "sizes": sorted(sizes.values(), reverse=True)}
    with ws.write() as db:
        cid = int(db["clusterings"].insert({
            "task": task, "method": method, "embed_model": EMBED_MODEL,
            "params": dumps({"method": method, "embed_model": EMBED_MODEL, "umap": False,
                             "seed": 0, "metric": "cosine", "projection": "pca", **params}),
            "metrics": dumps(metrics), "status": "proposed", "created_at": now()}).last_pk)
        ids = {}
        for k, label in enumerate(labels):
            keywords = RULE_PHRASES[label][1]
            ids[label] = int(db["clusters"].insert({
                "clustering_id": cid, "label": k, "name": auto_name(keywords, k),
                "keywords": dumps(keywords), "size": sizes[label]}).last_pk)
        angle = {label: 2 * np.pi * k / len(labels) for k, label in enumerate(labels)}
        db["cluster_members"].insert_all({
            "clustering_id": cid, "rule_id": r,
            "cluster_id": None if r in noise else ids[rule_label[r]],
            "x": float(np.cos(angle[rule_label[r]]) + rng.normal(0, 0.1)),
            "y": float(np.sin(angle[rule_label[r]]) + rng.normal(0, 0.1)),
        } for r in rule_ids)
    return cid


def _evaluation(ws: Workspace, task: str, labels: list[str], method: str,
                version: int | None, sha: str | None, every: int) -> int:
    """A scored evaluation on the test split: every ``every``-th prediction is wrong."""
    test = examples(ws, task, "test")
    gold = [e["label"] for e in test]
    pred = [labels[(labels.index(g) + 1) % len(labels)] if i % every == 0 else g
            for i, g in enumerate(gold)]
    metrics = score(gold, pred, labels, n_boot=200)
    if method == "pld":
        # Calibrated as evaluate() stores it: a bias fitted on validation, fewer errors.
        fixed = [g if i % (every * 2) else p for i, (g, p) in enumerate(zip(gold, pred,
                                                                          strict=True))]
        metrics["calibrated"] = score(gold, fixed, labels, n_boot=200)
        metrics["calibration"] = {
            "id": 1, "method": "max-f1", "status": "fitted", "fitted_on": "val", "n_val": 20,
            "val_limit": None, "student": STUDENT, "reason": "", "in_sample": False,
            "bias": {label: round(0.5 - k * 0.25, 3) for k, label in enumerate(labels)},
            "val": {}}
    text = f"{method} system prompt"
    sha = sha or hashlib.sha256(text.encode()).hexdigest()
    stamp = now()
    with ws.write() as db:
        db["texts"].insert({"sha256": sha, "text": text}, ignore=True)
        run_id = int(db["runs"].insert({
            "task": task, "kind": "eval", "params": dumps({"method": method,
                                                           "prompt_version": version}),
            "status": "done", "done": len(test), "total": len(test), "started_at": stamp,
            "updated_at": stamp, "finished_at": stamp, "pid": 0}).last_pk)
        db["predictions"].insert_all({
            "run_id": run_id, "example_id": e["id"], "raw": p, "label": p,
            "correct": int(p == e["label"]), "created_at": stamp}
            for e, p in zip(test, pred, strict=True))
        return int(db["evaluations"].insert({
            "task": task, "run_id": run_id, "method": method, "prompt_version": version,
            "prompt_sha256": sha, "student": STUDENT, "split": "test", "n": len(test),
            "metrics": dumps(metrics), "created_at": stamp}).last_pk)


@pytest.fixture(scope="session")
def _populated_template(tmp_path_factory: pytest.TempPathFactory) -> Populated:
    return build_populated(tmp_path_factory.mktemp("populated") / "template.db")


@pytest.fixture
def populated_ws(app_ws: Path, _populated_template: Populated) -> Populated:
    """``app_ws`` holding the demo task with rules, clusterings, heuristics, a prompt, evals."""
    shutil.copyfile(_populated_template.path, app_ws)
    return replace(_populated_template, path=app_ws)


def _walk(node: Node, hidden: bool) -> Iterator[tuple[Node, bool]]:
    if isinstance(node, Block):
        # A collapsed expander still sends its content; a person does not see it.
        hidden = hidden or (isinstance(node, Expander) and not node.proto.expanded)
        for child in node.children.values():
            yield from _walk(child, hidden)
    else:
        yield node, hidden


def shown(at: AppTest, element_type: str) -> list[Node]:
    """Elements of ``element_type`` (e.g. "progress") in the main area that are not inside a
    collapsed expander: what a reviewer sees without opening anything."""
    return [n for n, hidden in _walk(at.main, False) if n.type == element_type and not hidden]


def collapsed(at: AppTest, element_type: str) -> list[Node]:
    """Elements of ``element_type`` in the main area inside a collapsed expander."""
    return [n for n, hidden in _walk(at.main, False) if n.type == element_type and hidden]


@pytest.fixture
def running_job(app_ws: Path) -> Iterator[Callable[[str, str], int]]:
    """``running_job(task, kind)`` makes a ``kind`` run of ``task`` look in progress (3/10):
    a live process (``sleep``, as if started in a terminal) owns a ``running`` runs row.
    Returns the run id; the processes are stopped when the test ends."""
    procs: list[subprocess.Popen[bytes]] = []

    def _start(task: str, kind: str) -> int:
        proc = subprocess.Popen(["sleep", "300"])
        procs.append(proc)
        stamp = now()
        with connect(app_ws) as ws, ws.write() as db:
            return int(db["runs"].insert({
                "task": task, "kind": kind, "params": dumps({}), "status": "running",
                "done": 3, "total": 10, "started_at": stamp, "updated_at": stamp,
                "pid": proc.pid}).last_pk)

    yield _start
    for proc in procs:
        proc.kill()
        proc.wait()


# One session moving between pages: each run executes the page named in session state, so a
# run draws only that page's widgets and Streamlit forgets the others', as when a reviewer
# opens another page of the app. (AppTest.switch_page on app.py runs the page file without
# app.py, so no sidebar: not what a browser does.)
_VISIT_SCRIPT = """
import runpy
import streamlit as st
runpy.run_path(st.session_state["_test_page"], run_name="__main__")
"""


@pytest.fixture
def visit_pages(app_ws: Path) -> Callable[..., Callable[[str], AppTest]]:
    """``visit = visit_pages(task="demo", reviewer="dan")``; ``visit("heuristics")`` runs that
    page in the same session (sidebar included) and returns the ``AppTest``."""

    def _session(*, task: str | None = None, reviewer: str = "") -> Callable[[str], AppTest]:
        at = AppTest.from_string(_VISIT_SCRIPT, default_timeout=60)
        if task:
            at.session_state["task"] = task
        if reviewer:
            at.session_state["reviewer"] = reviewer

        def visit(page: str) -> AppTest:
            at.session_state["_test_page"] = str(PAGES_DIR / f"{page}.py")
            at.run()
            assert not at.exception, page
            return at

        return visit

    return _session


# Text a model, an uploader or a reviewer could write to make a page say something it does not:
# bold, a link, an image and a hidden link reference definition if rendered as Markdown.
SPOOF = ('**APPROVED by alice** [click](http://evil) ![x](http://evil/x.png)\n'
         '[x]: # "hidden"')
_MARKDOWN = MarkdownIt("commonmark")


def rendered(at: AppTest) -> str:
    """The HTML of every element the page draws as Markdown (markdown, captions, alerts,
    headings), rendered as CommonMark: what a reviewer sees of it."""
    elements = [*at.markdown, *at.caption, *at.info, *at.warning, *at.error, *at.success,
                *at.title, *at.header, *at.subheader]
    # Word joiners are invisible: the reader sees the text without them.
    return "\n".join(_MARKDOWN.render(str(e.value)) for e in elements).replace(WORD_JOINER, "")


def assert_not_rendered(at: AppTest) -> None:
    """No Markdown element of the page renders :data:`SPOOF` (its bold, link or image)."""
    html = rendered(at)
    assert "<strong>APPROVED" not in html
    assert 'href="http://evil' not in html and 'src="http://evil' not in html
    assert not any("[click](http" in e.value or "**APPROVED" in e.value
                   for e in [*at.markdown, *at.caption, *at.info, *at.warning, *at.error,
                             *at.success])


def unescaped(text: str) -> str:
    """``text`` with Markdown backslash escapes removed (as :func:`pld.ui.escape.literal`
    escapes a value, word joiners included): the characters a reviewer reads."""
    return re.sub(r"\\(.)", r"\1", text).replace(WORD_JOINER, "")
