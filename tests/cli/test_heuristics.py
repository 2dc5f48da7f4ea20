"""``python -m pld review new|merge|split|approvers``: the Heuristics page's actions, headless.

Real subprocesses on real workspaces, as in tests/cli/test_contract.py; the rows they leave are
read back with SQL, so a command that printed success but wrote nothing fails here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pld.tasks.store import save_task
from pld.workspace import Workspace, loads
from tests.cli.test_contract import pld
from tests.test_review import TASK, add_rules, row, teacher_draft


@pytest.fixture
def task(ws: Workspace) -> str:
    """The empty ``claims`` task of tests/test_review.py, whose helpers fill it."""
    save_task(ws, name=TASK, kind="custom", labels=["true", "false"], description="",
              source="test", params={}, examples=[])
    return TASK


def _bad(r: Any, *needles: str) -> None:
    """Exit 2 with one line on stderr that names the problem."""
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
    for needle in needles:
        assert needle in r.stderr, r.stderr


def _count(ws: Workspace) -> int:
    return int(ws.query("SELECT count(*) AS n FROM heuristics")[0]["n"])


def test_review_new_writes_a_draft_its_author_cannot_approve(
    ws: Workspace, task: str, tmp_path: Path
) -> None:
    rules = add_rules(ws, [("If the claim cites a source, it is true.", "true")])
    r = pld("review", "new", TASK, "--text", "Claims that cite a source are true.",
            "--source-rule", str(rules[0]), "--comment", "from the workshop", "--as", "bob",
            "--json", ws=ws.path)
    assert r.returncode == 0, r.stderr
    [hid] = json.loads(r.stdout)["ids"]
    h = row(ws, hid)
    assert (h["text"], h["status"], h["created_by"], h["written_by"]) == (
        "Claims that cite a source are true.", "draft", "bob", "bob")
    assert loads(h["source_rule_ids"]) == rules

    # Approving needs the version the reviewer read.
    _bad(pld("review", "approve", str(hid), "--as", "alice", ws=ws.path),
         "--base-version is required")
    _bad(pld("review", "approve", str(hid), "--base-version", "1", "--as", "bob", ws=ws.path),
         "four-eyes")
    _bad(pld("review", "approve", str(hid), "--base-version", "1", "--as", "Bob\u200b",
             ws=ws.path), "four-eyes")  # one person however spelled
    assert pld("review", "approve", str(hid), "--base-version", "1", "--as", "alice",
               ws=ws.path).returncode == 0

    f = tmp_path / "h.txt"
    f.write_text("Claims without a date are false.\n", encoding="utf-8")
    r = pld("review", "new", TASK, "--file", str(f), "--as", "bob", ws=ws.path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("wrote draft #") and "someone else must approve it" in r.stdout
    assert _count(ws) == 2

    before = _count(ws)
    _bad(pld("review", "new", TASK, "--text", "x", "--source-rule", "9999", "--as", "bob",
             ws=ws.path), "source rules not found", "9999")
    _bad(pld("review", "new", TASK, "--as", "bob", ws=ws.path), "exactly one of --text or --file")
    _bad(pld("review", "new", TASK, "--text", "   ", "--as", "bob", ws=ws.path), "empty")
    _bad(pld("review", "new", "no-such-task", "--text", "x", "--as", "bob", ws=ws.path),
         "no-such-task")
    assert _count(ws) == before


def test_review_merge_needs_the_versions_read_and_unions_sources(
    ws: Workspace, task: str
) -> None:
    r1, r2, r3 = add_rules(ws, [("a", "true"), ("b", "false"), ("c", "true")])
    a = teacher_draft(ws, "Sourced claims are true.", [r1, r2])
    b = teacher_draft(ws, "Claims citing a study are true.", [r3])
    merged = "Claims that cite a source or a study are true."

    _bad(pld("review", "merge", str(a), str(b), "--text", merged, "--as", "bob", ws=ws.path),
         "--base-version is required")
    assert pld("review", "edit", str(b), "--text", "Claims citing a paper are true.",
               "--base-version", "1", "--as", "carol", ws=ws.path).returncode == 0
    _bad(pld("review", "merge", str(a), str(b), "--text", merged, "--base-version", "1",
             "--base-version", "1", "--as", "bob", ws=ws.path), "changed since your version 1")
    _bad(pld("review", "merge", str(a), str(b), "--text", merged, "--base-version", "1",
             "--as", "bob", ws=ws.path), "one --base-version per heuristic id")
    _bad(pld("review", "merge", str(a), "--text", merged, "--base-version", "1", "--as", "bob",
             ws=ws.path), "at least two")
    assert (row(ws, a)["status"], row(ws, b)["status"], _count(ws)) == ("draft", "draft", 2)

    r = pld("review", "merge", str(a), str(b), "--text", merged, "--base-version", "1",
            "--base-version", "2", "--as", "bob", "--json", ws=ws.path)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["from"] == [a, b] and len(data["ids"]) == 1
    new = row(ws, data["ids"][0])
    assert (new["text"], new["status"], new["written_by"]) == (merged, "draft", "bob")
    assert loads(new["source_rule_ids"]) == [r1, r2, r3]
    assert row(ws, a)["status"] == row(ws, b)["status"] == "merged"


def test_review_split_makes_one_draft_per_text(ws: Workspace, task: str, tmp_path: Path) -> None:
    (r1,) = add_rules(ws, [("a", "true")])
    hid = teacher_draft(ws, "Sourced or dated claims are true.", [r1])
    parts = ["Sourced claims are true.", "Dated claims are true."]
    args = ["review", "split", str(hid), "--text", parts[0], "--text", parts[1], "--as", "bob"]

    _bad(pld(*args, ws=ws.path), "--base-version is required", f"review show {hid}")
    _bad(pld("review", "split", str(hid), "--text", parts[0], "--base-version", "1",
             "--as", "bob", ws=ws.path), "at least two texts")
    f = tmp_path / "part.txt"
    f.write_text(parts[1], encoding="utf-8")
    _bad(pld("review", "split", str(hid), "--text", parts[0], "--file", str(f),
             "--base-version", "1", "--as", "bob", ws=ws.path), "all as --text or all as --file")
    _bad(pld(*args, "--base-version", "2", ws=ws.path), "is at version 1, not 2")
    assert row(ws, hid)["status"] == "draft" and _count(ws) == 1

    r = pld(*args, "--base-version", "1", "--json", ws=ws.path)
    assert r.returncode == 0, r.stderr
    ids = json.loads(r.stdout)["ids"]
    assert [row(ws, i)["text"] for i in ids] == parts
    assert all(loads(row(ws, i)["source_rule_ids"]) == [r1] for i in ids)
    assert row(ws, hid)["status"] == "split"

    # --file parts keep their order too, and a split draft can be split again.
    g = tmp_path / "other.txt"
    g.write_text("Dated claims from this year are true.", encoding="utf-8")
    r = pld("review", "split", str(ids[1]), "--file", str(f), "--file", str(g),
            "--base-version", "1", "--as", "carol", ws=ws.path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"split #{ids[1]} into drafts #")
    texts = [h["text"] for h in ws.query("SELECT text FROM heuristics WHERE status = 'draft' "
                                         "ORDER BY id")]
    assert texts == [parts[0], parts[1], "Dated claims from this year are true."]


def _approvers(ws: Workspace) -> list[str]:
    r = pld("review", "approvers", TASK, "--json", ws=ws.path)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["approvers"]


def test_review_approvers_lists_adds_and_removes(ws: Workspace, task: str) -> None:
    hid = teacher_draft(ws, "Sourced claims are true.")
    assert _approvers(ws) == []
    r = pld("review", "approvers", TASK, ws=ws.path)
    assert r.returncode == 0 and "no approver list" in r.stdout

    _bad(pld("review", "approvers", TASK, "--add", "alice", ws=ws.path), "--as NAME is required")
    _bad(pld("review", "approvers", TASK, "--add", "alice", "--remove", "bob", "--as", "alice",
             ws=ws.path), "not both")
    _bad(pld("review", "approvers", "no-such-task", ws=ws.path), "no-such-task")
    assert _approvers(ws) == []

    r = pld("review", "approvers", TASK, "--add", "alice", "--as", "alice", "--json", ws=ws.path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"task": TASK, "action": "add", "name": "alice",
                                    "changed": True, "approvers": ["alice"]}
    r = pld("review", "approvers", TASK, "--add", "alice", "--as", "alice", ws=ws.path)
    assert r.returncode == 0 and "alice was already an approver" in r.stdout
    # Once there is a list, only its members change it, and only they approve.
    _bad(pld("review", "approvers", TASK, "--add", "bob", "--as", "bob", ws=ws.path),
         "bob is not an approver")
    _bad(pld("review", "approve", str(hid), "--base-version", "1", "--as", "bob", ws=ws.path),
         "bob is not an approver")
    assert pld("review", "approvers", TASK, "--add", "carol", "--as", "alice",
               ws=ws.path).returncode == 0
    assert _approvers(ws) == ["alice", "carol"]
    audit = ws.query("SELECT who, action, after FROM reviews WHERE entity = 'approver' "
                     "ORDER BY id")
    assert [(a["who"], a["action"], loads(a["after"])["name"]) for a in audit] == [
        ("alice", "add", "alice"), ("alice", "add", "carol")]

    r = pld("review", "approvers", TASK, "--remove", "dave", "--as", "carol", ws=ws.path)
    assert r.returncode == 0 and "dave was not an approver" in r.stdout
    r = pld("review", "approvers", TASK, "--remove", "alice", "--as", "carol", ws=ws.path)
    assert r.returncode == 0 and r.stdout.splitlines() == [
        f"alice is no longer an approver of {TASK}", f"approvers of {TASK}: carol"]
    _bad(pld("review", "approve", str(hid), "--base-version", "1", "--as", "alice",
             ws=ws.path), "not an approver")
    assert pld("review", "approvers", TASK, "--remove", "carol", "--as", "carol",
               ws=ws.path).returncode == 0
    assert _approvers(ws) == []
    assert pld("review", "approve", str(hid), "--base-version", "1", "--as", "bob",
               ws=ws.path).returncode == 0
