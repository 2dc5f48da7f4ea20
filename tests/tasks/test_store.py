"""The task store: a changed description reaches the preamble the same way, whoever changed it."""

from __future__ import annotations

from typing import Any

from pld import preamble, review, trail
from pld.identity import Identity
from pld.tasks.store import RELOAD_ACTOR, save_task
from pld.workspace import Workspace

TASK = "mail"


def _load(ws: Workspace, description: str) -> None:
    save_task(ws, name=TASK, kind="custom", labels=["spam", "ham"], description=description,
              source="test", params={}, examples=[])


def _last_edit(ws: Workspace) -> dict[str, Any]:
    row = preamble.get_preamble(ws, TASK)
    assert row is not None
    return review.history(ws, row["id"], "preamble")[-1]


def test_a_reload_and_a_person_carry_the_description_the_same_way(ws: Workspace) -> None:
    _load(ws, "Sort mail.")
    preamble.ensure_preamble(ws, TASK)
    _load(ws, "Sort incoming mail.")
    reloaded = _last_edit(ws)
    preamble.set_description(ws, TASK, "Sort incoming bank mail.", Identity("ana"))
    edited = _last_edit(ws)

    assert (reloaded["who"], reloaded["identity_kind"], reloaded["action"]) \
        == (RELOAD_ACTOR.name, "auto", "edit")
    assert (edited["who"], edited["identity_kind"], edited["action"]) \
        == ("ana", "self-declared", "edit")
    # One audited change: the whole row before and after, the version bumped by one.
    for row, old, new in ((reloaded, "Sort mail.", "Sort incoming mail."),
                          (edited, "Sort incoming mail.", "Sort incoming bank mail.")):
        assert old in row["before"]["text"] and new in row["after"]["text"]
        assert row["after"]["version"] == row["before"]["version"] + 1
        assert row["after"]["status"] == "draft"
    assert edited["after"]["updated_by"] == "ana"
    assert trail.check_chain(ws) is None


def test_a_rewritten_preamble_keeps_its_wording(ws: Workspace) -> None:
    _load(ws, "Sort mail.")
    row = preamble.ensure_preamble(ws, TASK)
    mine = row["text"].replace("Sort mail.", "Decide whether a message is spam.")
    preamble.edit_preamble(ws, TASK, mine, Identity("bo"), base_version=row["version"])
    _load(ws, "Sort incoming mail.")
    after = preamble.get_preamble(ws, TASK)
    assert after is not None
    assert (after["text"], after["version"], after["updated_by"]) == (mine, 2, "bo")
