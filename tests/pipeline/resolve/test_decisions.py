"""Decisions on the conflict loop's proposals: an accepted proposal is the teacher's text,
accepted by the person who decided, and neither of the people involved may approve it."""

from __future__ import annotations

import pytest

from pld import review, review_rows
from pld.authorship import Authorship
from pld.identity import Identity
from pld.pipeline.resolve import decisions
from pld.signoff import FourEyes
from pld.workspace import Workspace, dumps, now
from tests.test_review import TASK, task  # noqa: F401  (the fixture that loads TASK)

pytestmark = pytest.mark.usefixtures("task")


def add_proposal(ws: Workspace, started_by: str | None, of: str = TASK) -> int:
    """A pending ``add`` for task ``of`` of a resolve run that ``started_by`` started, teacher
    openai/t."""
    with ws.write() as db:
        run = db["runs"].insert({"task": of, "kind": "resolve", "status": "done",
                                 "params": dumps({"teacher": "openai/t"}),
                                 "started_by": started_by,
                                 "started_by_kind": started_by and "self-declared"}).last_pk
        return int(db["proposals"].insert({
            "task": of, "run_id": run, "iteration": 1, "heuristic_id": None, "kind": "add",
            "text": "Claims quoting a number are true.", "rationale": "fixes 3 errors",
            "evidence": "[]", "status": "pending", "created_at": now()}).last_pk)


def test_an_accepted_proposal_is_the_teachers_text_and_not_the_acceptors_to_approve(
        ws: Workspace) -> None:
    # Before: accepting made alice the text's creator and last editor ("Original text, written
    # by alice", created_by alice in the manifest); the teacher and the job's starter vanished.
    accepted = decisions.decide_proposal(ws, add_proposal(ws, "carol"), True, Identity("alice"))
    (created,) = ws.query("SELECT entity_id FROM reviews WHERE entity = 'heuristic' "
                          "AND action = 'create'")
    hid = created["entity_id"]
    row = review_rows.fetch(ws, hid)
    authorship = Authorship.from_row(row)
    assert accepted["status"] == "accepted"
    assert (row["created_by"], authorship.sentence()) == (
        "teacher:openai/t",
        "written by teacher openai/t in a job started by carol, accepted by alice")
    assert review.history(ws, hid)[0]["who"] == "alice"  # she made the change
    for person in ("alice", "carol"):
        with pytest.raises(FourEyes, match=f"accepted by alice.*{person} cannot approve"):
            review.approve(ws, hid, Identity(person), base_version=row["version"])
    assert review.approve(ws, hid, Identity("bob"), base_version=row["version"])["status"] \
        == "approved"
