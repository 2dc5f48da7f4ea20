"""``review queue``: what waits for one reviewer, and nothing that does not."""

from __future__ import annotations

import json

from pld import review, signoff
from pld.authorship import Authorship
from pld.identity import Identity
from pld.pipeline.runs import stage_run
from pld.pipeline.student import build_prompt
from pld.preamble import ensure_preamble
from pld.review_queue import reviewer_queue
from pld.workspace import Workspace
from tests.cli.test_contract import pld
from tests.pipeline.test_student import RULES, TASK, add_heuristic, load_reviews


def _kinds(q: dict, kind: str) -> list[tuple[str, int | None]]:
    return [(i["what"], i["id"]) for i in q["items"] if i["kind"] == kind]


def test_the_queue_follows_edits_and_approvals(ws: Workspace) -> None:
    load_reviews(ws)
    approved = add_heuristic(ws, RULES[0])  # approves the preamble too
    draft = add_heuristic(ws, RULES[1], status="draft")  # bob's draft
    build_prompt(ws, TASK)

    alice, bob = reviewer_queue(ws, Identity("alice")), reviewer_queue(ws, Identity("Bob"))
    assert _kinds(alice, "approve") == [("heuristic", draft)]
    assert _kinds(bob, "approve") == []  # four-eyes: his own text
    assert _kinds(bob, "others-sign") == [("heuristic", draft)]
    assert "--base-version 1 --as alice" in alice["items"][0]["command"]

    edited = review.edit(ws, approved, RULES[0] + " Mostly.", Identity("alice"), base_version=2)
    alice = reviewer_queue(ws, Identity("alice"))
    assert _kinds(alice, "others-sign") == [("heuristic", approved)]
    assert _kinds(alice, "export-blocked") == [("prompt", 1)]
    assert "status is draft" in alice["items"][-1]["summary"]
    assert _kinds(reviewer_queue(ws, Identity("bob")), "approve") == [("heuristic", approved)]

    review.approve(ws, approved, Identity("bob"), base_version=edited["version"])
    review.approve(ws, draft, Identity("alice"), base_version=1)
    build_prompt(ws, TASK)
    assert reviewer_queue(ws, Identity("alice"))["items"] == []
    assert reviewer_queue(ws, Identity("bob"))["items"] == []


def test_approver_lists_failed_jobs_and_the_preamble(ws: Workspace) -> None:
    load_reviews(ws)
    add_heuristic(ws, RULES[0], status="draft")
    signoff.add_approver(ws, TASK, "carol", Identity("carol"))
    assert _kinds(reviewer_queue(ws, Identity("dave")), "approve") == []  # not an approver
    carol = reviewer_queue(ws, Identity("carol"))
    assert [w for w, _ in _kinds(carol, "approve")] == ["heuristic"]
    try:
        with stage_run(ws, TASK, "extract", {}):
            raise RuntimeError("the teacher is down")
    except RuntimeError:
        pass
    failed = _kinds(reviewer_queue(ws, Identity("dave")), "failed-job")
    assert len(failed) == 1
    ensure_preamble(ws, TASK)  # a draft from the template: anyone on the list may sign it
    carol = reviewer_queue(ws, Identity("carol"))
    assert ("preamble", ensure_preamble(ws, TASK)["id"]) in _kinds(carol, "approve")


def test_review_queue_cli(ws: Workspace) -> None:
    load_reviews(ws)
    draft = add_heuristic(ws, RULES[1], status="draft")
    r = pld("review", "queue", "--as", "alice", "--json", ws=ws.path)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["who"] == "alice" and data["counts"]["approve"] == 1
    assert data["items"][0]["id"] == draft
    text = pld("review", "queue", "--as", "bob", ws=ws.path).stdout
    assert "[others-sign]" in text and f"heuristic #{draft}" in text


def test_a_runs_drafts_name_their_run_until_a_person_rewrites_one(ws: Workspace) -> None:
    from pld.tasks.store import save_task
    from tests.test_review import TASK as CLAIMS
    from tests.test_review import teacher_draft

    save_task(ws, name=CLAIMS, kind="custom", labels=["true", "false"], description="",
              source="test", params={}, examples=[])
    with stage_run(ws, CLAIMS, "consolidate", {}) as run:
        first = teacher_draft(ws, "rule one", run_id=run.id)
        second = teacher_draft(ws, "rule two", run_id=run.id)
    review.edit(ws, second, "bob's rule two", Identity("bob"), base_version=1)
    items = {i["id"]: i for i in reviewer_queue(ws, Identity("alice"))["items"]
             if i["what"] == "heuristic"}
    assert items[first]["run"]["id"] == run.id
    # Before: bob's rewrite was shown among the run's drafts, as if the job had written it.
    assert items[second]["run"] is None


def test_teacher_text_of_a_job_she_started_is_not_hers(ws: Workspace) -> None:
    # Before: the Home page told ana "you wrote it" of the teacher's text her job wrote.
    load_reviews(ws)
    add_heuristic(ws, RULES[0])  # approves the preamble too
    teacher = Identity.teacher("local/default")
    with ws.write() as db:
        hid = review.insert_row(db, {"task": TASK, "text": RULES[1], "origin": "consolidate"},
                                who=teacher, comment=None,
                                authorship=Authorship(teacher, Identity("ana")))
    ana, bob = reviewer_queue(ws, Identity("ana")), reviewer_queue(ws, Identity("bob"))
    assert _kinds(ana, "approve") == [] and _kinds(ana, "others-sign") == [("heuristic", hid)]
    (mine,) = [i for i in ana["items"] if i["kind"] == "others-sign"]
    assert "you wrote it" not in mine["summary"]
    assert mine["summary"].startswith(
        f"heuristic #{hid} v1: written by teacher local/default in a job started by ana; "
        "someone else must approve it")
    (theirs,) = [i for i in bob["items"] if i["kind"] == "approve"]
    assert theirs["summary"].startswith(
        f"heuristic #{hid} v1 by teacher local/default in a job started by ana: ")
