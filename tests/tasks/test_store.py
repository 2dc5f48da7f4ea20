"""The task store: a changed description reaches the preamble the same way, whoever changed it;
the preamble a load drafts is written by whoever supplied the description; a reload that changes
a task is a change like any other."""

from __future__ import annotations

from typing import Any

import pytest

from pld import preamble, review, signoff, trail
from pld.approvers import NotApprover
from pld.authorship import TEMPLATE, UNNAMED_UPLOAD, Authorship
from pld.identity import Identity
from pld.tasks.store import Example, save_task
from pld.workspace import Workspace

TASK = "mail"


def _load(ws: Workspace, description: str, author: Authorship | None = None,
          n: int = 0) -> None:
    examples = [Example(f"e{i}", "train", f"mail {i}", "spam", {}) for i in range(n)]
    save_task(ws, name=TASK, kind="custom", labels=["spam", "ham"], description=description,
              source="test", params={}, examples=examples, author=author)


def _last_edit(ws: Workspace) -> dict[str, Any]:
    row = preamble.get_preamble(ws, TASK)
    assert row is not None
    return review.history(ws, row["id"], "preamble")[-1]


def test_a_reload_and_a_person_carry_the_description_the_same_way(ws: Workspace) -> None:
    _load(ws, "Sort mail.", Authorship(UNNAMED_UPLOAD))
    _load(ws, "Sort incoming mail.", Authorship(UNNAMED_UPLOAD))
    reloaded = _last_edit(ws)
    preamble.set_description(ws, TASK, "Sort incoming bank mail.", Identity("ana"))
    edited = _last_edit(ws)

    assert (reloaded["who"], reloaded["identity_kind"], reloaded["action"]) \
        == (UNNAMED_UPLOAD.name, "auto", "edit")
    assert (edited["who"], edited["identity_kind"], edited["action"]) \
        == ("ana", "self-declared", "edit")
    # One audited change: the whole row before and after, the version bumped by one.
    for row, old, new in ((reloaded, "Sort mail.", "Sort incoming mail."),
                          (edited, "Sort incoming mail.", "Sort incoming bank mail.")):
        assert old in row["before"]["text"] and new in row["after"]["text"]
        assert row["after"]["version"] == row["before"]["version"] + 1
        assert row["after"]["status"] == "draft"
    assert (reloaded["after"]["written_by"], edited["after"]["written_by"]) \
        == (UNNAMED_UPLOAD.name, "ana")
    assert trail.check_chain(ws) is None


def test_a_rewritten_preamble_keeps_its_wording(ws: Workspace) -> None:
    _load(ws, "Sort mail.")
    row = preamble.ensure_preamble(ws, TASK)
    mine = row["text"].replace("Sort mail.", "Decide whether a message is spam.")
    preamble.edit_preamble(ws, TASK, mine, Identity("bo"), base_version=row["version"])
    _load(ws, "Sort incoming mail.")
    after = preamble.get_preamble(ws, TASK)
    assert after is not None
    assert (after["text"], after["version"], after["written_by"]) == (mine, 2, "bo")


def test_the_preamble_a_load_drafts_is_written_by_who_supplied_the_description(
        ws: Workspace) -> None:
    # Before: the first preamble was always pld:template's, so the analyst who typed the
    # description could approve it herself.
    _load(ws, "Sort mail.", Authorship(Identity("ana")))
    row = preamble.get_preamble(ws, TASK)
    assert row is not None and "Sort mail." in row["text"]
    assert Authorship.from_row(row) == Authorship(Identity("ana"))
    (created,) = review.history(ws, row["id"], "preamble")
    assert (created["who"], created["action"], created["after"]["written_by"]) \
        == ("ana", "create", "ana")
    with pytest.raises(signoff.FourEyes, match="written by ana"):
        preamble.approve_preamble(ws, TASK, Identity("ana"), base_version=1)
    assert preamble.approve_preamble(ws, TASK, Identity("bo"), base_version=1)["status"] \
        == "approved"


def test_a_built_in_description_loaded_by_a_person_is_the_templates(ws: Workspace) -> None:
    save_task(ws, name="demo", kind="demo", labels=["a", "b"], description="Sort it.",
              source="test", params={}, examples=[], author=Authorship(TEMPLATE, Identity("ana")))
    row = preamble.get_preamble(ws, "demo")
    assert row is not None
    authorship = Authorship.from_row(row)
    assert authorship.sentence() == "written by PLD Studio's template, loaded by ana"
    assert authorship.persons() == {"ana"}  # she loaded it: someone else approves


def test_a_reload_that_changes_the_task_needs_an_approver(ws: Workspace) -> None:
    # Before: a reload replaced the description as pld:upload, whoever did it, approver
    # list or not, and new examples arrived with no trace in the trail.
    _load(ws, "Sort mail.", Authorship(Identity("ana")), n=2)
    signoff.add_approver(ws, TASK, "bo", Identity("bo"))
    head = trail.head(ws).id
    for author in (Authorship(Identity("carol")), Authorship(UNNAMED_UPLOAD)):
        with pytest.raises(NotApprover, match="cannot reload it"):
            _load(ws, "Always say spam.", author, n=2)
        with pytest.raises(NotApprover, match="cannot reload it"):
            _load(ws, "Sort mail.", author, n=3)
    assert trail.head(ws).id == head  # nothing written
    _load(ws, "Sort mail.", Authorship(Identity("carol")), n=2)  # the same file: no change
    _load(ws, "Sort incoming mail.", Authorship(Identity("bo")), n=3)
    rows = ws.query("SELECT who, action FROM reviews WHERE id > ? ORDER BY id", [head])
    assert [(r["who"], r["action"]) for r in rows] \
        == [("bo", "reload"), ("bo", "describe"), ("bo", "edit")]
    assert preamble.get_preamble(ws, TASK)["written_by"] == "bo"  # type: ignore[index]


def test_a_description_kept_before_the_preamble_exists_is_its_keepers_draft(
        ws: Workspace) -> None:
    # Before: the preamble drafted later from the template carried ana's description as
    # pld:template's, so she could approve her own words.
    _load(ws, "Sort mail.")
    assert preamble.get_preamble(ws, TASK) is None
    preamble.set_description(ws, TASK, "Decide whether a message is spam.", Identity("ana"))
    row = preamble.ensure_preamble(ws, TASK)
    assert "Decide whether a message is spam." in row["text"] and row["written_by"] == "ana"
    with pytest.raises(signoff.FourEyes):
        preamble.approve_preamble(ws, TASK, Identity("ana"), base_version=row["version"])
