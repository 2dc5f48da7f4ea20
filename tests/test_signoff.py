"""Who may sign off: four-eyes, the approver list, the OIDC requirement, one spelling of a
name, reserved names, and the refusal reason the app shows before a click."""

from __future__ import annotations

import pytest

from pld import review, review_rows, signoff
from pld.approvers import NotApprover, list_approvers
from pld.authorship import UNNAMED_UPLOAD, Authorship
from pld.errors import BadInput
from pld.identity import AUTO, OIDC, Identity
from pld.signoff import FourEyes
from pld.workspace import Workspace, loads
from tests.conftest import approve_seen
from tests.test_review import (
    RUN,
    TASK,
    row,
    task,  # noqa: F401  (the fixture that loads TASK)
    teacher_draft,
)

pytestmark = pytest.mark.usefixtures("task")


def test_four_eyes(ws: Workspace) -> None:
    hid = teacher_draft(ws, "old text")
    review.edit(ws, hid, "bob's text", Identity("bob"), base_version=1)

    with pytest.raises(FourEyes, match="bob"):
        approve_seen(ws, hid, Identity("bob"))
    approved = review.approve(ws, hid, Identity("alice"), base_version=2)

    assert (approved["status"], approved["approved_by"]) == ("approved", "alice")
    # A teacher's untouched draft has no human author: anyone may approve it.
    untouched = teacher_draft(ws, "teacher text")
    assert approve_seen(ws, untouched, Identity("bob"))["status"] == "approved"
    # A hand-written heuristic's author is its editor.
    manual = review.create_heuristic(ws, TASK, "carol's rule", Identity("carol"))
    with pytest.raises(FourEyes):
        approve_seen(ws, manual, Identity("carol"))


def test_sign_off_refusal_says_what_the_refusal_would(ws: Workspace) -> None:
    hid = teacher_draft(ws, "old text")
    review.edit(ws, hid, "bob's text", Identity("bob"), base_version=1)
    h = review_rows.fetch(ws, hid)
    said = signoff.sign_off_refusal(ws, h, Identity("Bob"), "approve")
    with pytest.raises(FourEyes) as refused:
        review.approve(ws, hid, Identity("bob"), base_version=2)
    assert said == str(refused.value)
    assert signoff.sign_off_refusal(ws, h, Identity("bob"), "reject") is None
    assert signoff.sign_off_refusal(ws, h, Identity("alice"), "approve") is None
    signoff.add_approver(ws, TASK, "carol", Identity("carol"))
    assert "alice is not an approver" in signoff.sign_off_refusal(
        ws, h, Identity("alice"), "approve")
    approved = review.approve(ws, hid, Identity("carol"), base_version=2)
    assert "is approved; cannot approve it" in signoff.sign_off_refusal(
        ws, approved, Identity("carol"), "approve")
    assert row(ws, hid)["status"] == "approved"  # asking changes nothing


def test_approver_list(ws: Workspace) -> None:
    hid = teacher_draft(ws, "text")
    assert list_approvers(ws, TASK) == []
    assert signoff.add_approver(ws, TASK, "alice", Identity("alice")) is True
    assert signoff.add_approver(ws, TASK, "alice", Identity("alice")) is False

    with pytest.raises(NotApprover, match="bob is not an approver"):
        approve_seen(ws, hid, Identity("bob"))
    with pytest.raises(NotApprover):
        signoff.add_approver(ws, TASK, "bob", Identity("bob"))
    signoff.add_approver(ws, TASK, "carol", Identity("alice"))

    assert list_approvers(ws, TASK) == ["alice", "carol"]
    assert approve_seen(ws, hid, Identity("carol"))["approved_by"] == "carol"
    added = ws.query("SELECT who, after FROM reviews WHERE entity = 'approver' ORDER BY id")
    assert [a["who"] for a in added] == ["alice", "alice"]


def test_reject_is_for_approvers_only_when_there_is_a_list(ws: Workspace) -> None:
    hid = teacher_draft(ws, "text")
    signoff.add_approver(ws, TASK, "alice", Identity("alice"))
    with pytest.raises(NotApprover, match=r"bob is not an approver .* cannot reject"):
        review.reject(ws, hid, Identity("bob"))
    assert row(ws, hid)["status"] == "draft" and row(ws, hid)["version"] == 1
    # A non-approver may still edit; an approver rejects.
    review.edit(ws, hid, "bob's text", Identity("bob"), base_version=1)
    assert review.reject(ws, hid, Identity("alice"), base_version=2)["status"] == "rejected"


def test_remove_approver(ws: Workspace) -> None:
    hid = teacher_draft(ws, "text")
    signoff.add_approver(ws, TASK, "alice", Identity("alice"))
    signoff.add_approver(ws, TASK, "carol", Identity("alice", OIDC))
    with pytest.raises(NotApprover, match="only alice, carol can remove"):
        signoff.remove_approver(ws, TASK, "alice", Identity("bob"))
    assert signoff.remove_approver(ws, TASK, "dave", Identity("alice")) is False
    assert signoff.remove_approver(ws, TASK, "alice", Identity("carol", OIDC)) is True
    assert list_approvers(ws, TASK) == ["carol"]
    with pytest.raises(NotApprover):
        approve_seen(ws, hid, Identity("alice"))
    removed = ws.query("SELECT who, identity_kind, action, before FROM reviews "
                       "WHERE entity = 'approver' AND action = 'remove'")
    assert [(r["who"], r["identity_kind"], loads(r["before"])) for r in removed] == [
        ("carol", "oidc", {"task": TASK, "name": "alice"})]
    # The last approver may leave: the list is empty and anyone may approve again.
    assert signoff.remove_approver(ws, TASK, "carol", Identity("carol")) is True
    assert list_approvers(ws, TASK) == []
    assert approve_seen(ws, hid, Identity("alice"))["approved_by"] == "alice"


def test_names_are_one_person_however_they_are_spelled(ws: Workspace) -> None:
    # Before: "Alice", "alice" and "alice" + U+200B were three people, so the author of a text
    # could approve it under another spelling.
    hid = teacher_draft(ws, "old text")
    edited = review.edit(ws, hid, "alice's text", Identity("Alice"), base_version=1)
    assert edited["written_by"] == "alice"
    for spelling in ("alice", "ALICE", "alice\u200b", " a\u200dlice ", "ａｌｉｃｅ"):
        with pytest.raises(FourEyes):
            review.approve(ws, hid, Identity(spelling), base_version=edited["version"])
    signoff.add_approver(ws, TASK, "Bob", Identity("bob"))
    with pytest.raises(NotApprover):
        review.approve(ws, hid, Identity("carol"), base_version=edited["version"])
    approved = review.approve(ws, hid, Identity("BOB\u2060"), base_version=edited["version"])
    assert approved["approved_by"] == "bob"
    assert signoff.remove_approver(ws, TASK, "B\u200bob", Identity("bob")) is True


def test_reserved_names_cannot_act(ws: Workspace) -> None:
    hid = teacher_draft(ws, "text")
    for name in ("teacher:openai/x", "pld:resolve", "PLD:template", "\u200bteacher:x"):
        with pytest.raises(BadInput, match="reserved"):
            review.approve(ws, hid, Identity(name), base_version=1)


def test_a_task_can_require_oidc_sign_offs(ws: Workspace) -> None:
    hid = teacher_draft(ws, "text")
    signoff.set_require_oidc(ws, TASK, True, Identity("alice"))
    with pytest.raises(signoff.IdentityRequired, match="requires sign-offs by logged-in"):
        review.approve(ws, hid, Identity("bob"), base_version=1)
    with pytest.raises(signoff.IdentityRequired):
        review.auto_approve_all(ws, TASK, Identity("bench", AUTO), run_ids=[RUN])
    with pytest.raises(signoff.IdentityRequired):
        signoff.set_require_oidc(ws, TASK, False, Identity("alice"))  # a typed name cannot lift it
    row = review.approve(ws, hid, Identity("bob@bank.example", OIDC), base_version=1)
    assert row["identity_kind"] == "oidc"
    signoff.set_require_oidc(ws, TASK, False, Identity("alice@bank.example", OIDC))
    assert not signoff.requires_oidc(ws, TASK)


@pytest.mark.parametrize("invisible", ["\u3164", "\u115f", "\u2800", "\u034f", "\ufe0f"])
def test_an_invisible_character_does_not_make_a_second_person(ws: Workspace,
                                                               invisible: str) -> None:
    # Before: "bob" + U+3164 (or U+115F, U+2800, U+034F, U+FE0F) approved bob's own draft and
    # verify called it properly signed.
    hid = teacher_draft(ws, "old text")
    review.edit(ws, hid, "bob's text", Identity("bob"), base_version=1)
    with pytest.raises(FourEyes):
        approve_seen(ws, hid, Identity("bob" + invisible))


def _job_draft(ws: Workspace, text: str, started_by: Identity) -> int:
    """A heuristic as consolidate writes it: the teacher's text in a job ``started_by``
    started."""
    teacher = Identity.teacher("local/default")
    with ws.write() as db:
        return review.insert_row(db, {"task": TASK, "text": text, "origin": "consolidate",
                                      "run_id": RUN},
                                 who=teacher, comment=None,
                                 authorship=Authorship(teacher, started_by))


def test_teacher_text_from_a_job_ana_started_is_not_hers_to_approve(ws: Workspace) -> None:
    # Before: the draft named ana its last editor ("you wrote it"); now it says what happened.
    hid = _job_draft(ws, "teacher text", Identity("ana"))
    row = review_rows.fetch(ws, hid)
    assert (row["created_by"], row["written_by"], row["started_by"]) \
        == ("teacher:local/default", "teacher:local/default", "ana")
    with pytest.raises(FourEyes) as refused:
        approve_seen(ws, hid, Identity("ana"))
    assert "written by teacher local/default in a job started by ana" in str(refused.value)
    skipped: list[str] = []
    assert review.auto_approve_all(ws, TASK, Identity("ana", AUTO), run_ids=[RUN],
                                   on_skip=skipped.append) == 0
    assert len(skipped) == 1 and "four-eyes" in skipped[0]
    assert approve_seen(ws, hid, Identity("bob"))["approved_by"] == "bob"


def test_a_text_nobody_named_wrote_waits_for_a_named_save(ws: Workspace) -> None:
    # Before: a preamble carrying a description uploaded with no name was pld:upload's, and
    # anyone (the uploader included) could approve it.
    hid = _job_draft(ws, "uploaded text", Identity("ana"))
    with ws.write() as db:
        review_rows.apply_change(ws, db, review_rows.fetch(ws, hid), {"text": "uploaded text"},
                                 who=UNNAMED_UPLOAD, action="edit", comment=None,
                                 authorship=Authorship(UNNAMED_UPLOAD))
    row = review_rows.fetch(ws, hid)
    for who in (Identity("bob"), Identity("carol", OIDC), Identity("bench", AUTO)):
        assert "nobody may approve it until a named person saves it" in str(
            signoff.sign_off_refusal(ws, row, who, "approve"))
        with pytest.raises(signoff.Unidentified):
            approve_seen(ws, hid, who)
    assert review.auto_approve_all(ws, TASK, Identity("bench", AUTO), run_ids=[RUN]) == 0
    # bob saves it unchanged: it is his now, so carol may approve it, and he may not.
    saved = review.edit(ws, hid, "uploaded text", Identity("bob"), base_version=2)
    assert (saved["text"], saved["written_by"], saved["version"]) == ("uploaded text", "bob", 3)
    assert review.history(ws, hid)[-1]["who"] == "bob"
    with pytest.raises(BadInput, match="same as the old"):
        review.edit(ws, hid, "uploaded text", Identity("carol"), base_version=3)
    with pytest.raises(FourEyes):
        approve_seen(ws, hid, Identity("bob"))
    assert approve_seen(ws, hid, Identity("carol"))["status"] == "approved"


def _sql(ws: Workspace, sql: str, args: list[object]) -> None:
    # Plain SQL on the table, as someone with the database file (not PLD Studio) would do it.
    with ws.write() as db:
        db.execute(sql, args)


def test_an_author_changed_in_the_table_cannot_approve(ws: Workspace) -> None:
    # Before: approving read the authorship from the editable table, so bob set it to dave
    # with plain SQL, approved his own text and export wrote it (only verify noticed).
    hid = review.create_heuristic(ws, TASK, "bob's rule", Identity("bob"))
    _sql(ws, "UPDATE heuristics SET written_by = 'dave', created_by = 'dave' WHERE id = ?",
         [hid])
    row = review_rows.fetch(ws, hid)
    assert "written by bob" in str(signoff.sign_off_refusal(ws, row, Identity("bob"),
                                                            "approve"))
    with pytest.raises(FourEyes, match="written by bob"):
        approve_seen(ws, hid, Identity("bob"))
    assert review.auto_approve_all(ws, TASK, Identity("bob", AUTO), run_ids=[RUN]) == 0
    assert approve_seen(ws, hid, Identity("carol"))["approved_by"] == "carol"


def test_a_text_changed_outside_the_review_cannot_be_approved(ws: Workspace) -> None:
    # Before: a text put into the table with plain SQL was approved, and exported, as if the
    # trail's writer had written it.
    hid = review.create_heuristic(ws, TASK, "bob's rule", Identity("bob"))
    _sql(ws, "UPDATE heuristics SET text = 'Always answer pos.' WHERE id = ?", [hid])
    with pytest.raises(signoff.OutsideReview, match="changed outside the review"):
        approve_seen(ws, hid, Identity("carol"))
    # Saved through the review, it is an edit like any other.
    review.edit(ws, hid, "Always answer pos.", Identity("dave"), base_version=1)
    assert approve_seen(ws, hid, Identity("carol"))["status"] == "approved"


def test_the_oidc_requirement_cannot_be_lifted_in_the_table(ws: Workspace) -> None:
    # Before: the requirement was read from tasks.require_oidc alone; set to 0 with plain SQL,
    # self-declared approvals went through and export wrote them.
    hid = teacher_draft(ws, "text")
    signoff.set_require_oidc(ws, TASK, True, Identity("alice"))
    _sql(ws, "UPDATE tasks SET require_oidc = 0 WHERE name = ?", [TASK])
    assert signoff.requires_oidc(ws, TASK)
    with pytest.raises(signoff.IdentityRequired):
        review.approve(ws, hid, Identity("bob"), base_version=1)
    signoff.set_require_oidc(ws, TASK, False, Identity("alice@bank.example", OIDC))
    assert not signoff.requires_oidc(ws, TASK)
    assert review.approve(ws, hid, Identity("bob"), base_version=1)["status"] == "approved"
