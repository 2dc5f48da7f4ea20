"""A reviewer's private drafts (pld.drafts) on a real workspace: kept per person and field,
replaced as they type, removed when emptied, saved or discarded; nobody else reads them."""

from __future__ import annotations

import pytest

from pld import drafts
from pld.errors import BadInput
from pld.identity import OIDC, Identity
from pld.workspace import Workspace

BOB, CAROL = Identity("bob"), Identity("carol")


def test_a_draft_is_kept_replaced_and_read_back_by_its_author(ws: Workspace) -> None:
    drafts.save_draft(ws, BOB, "heuristic", 4, drafts.TEXT, "If late, say so.", 2)
    drafts.save_draft(ws, BOB, "heuristic", 4, drafts.COMMENT, "shorter", 2)
    drafts.save_draft(ws, BOB, "heuristic", 4, drafts.TEXT, "If late, say late.", 3)
    kept = drafts.get_drafts(ws, Identity(" Bob "), "heuristic", 4)  # the same person
    assert {f: (d["text"], d["base_version"]) for f, d in kept.items()} == {
        drafts.TEXT: ("If late, say late.", 3), drafts.COMMENT: ("shorter", 2)}
    assert drafts.base_version(kept) == 3
    assert drafts.last_saved(kept) == max(d["updated_at"] for d in kept.values())
    assert ws.query("SELECT count(*) AS n FROM drafts")[0]["n"] == 2


def test_drafts_are_private_to_their_author(ws: Workspace) -> None:
    drafts.save_draft(ws, BOB, "heuristic", 4, drafts.TEXT, "bob's text", 2)
    assert drafts.get_drafts(ws, CAROL, "heuristic", 4) == {}
    # The same name under another kind of identity is someone else.
    assert drafts.get_drafts(ws, Identity("bob", OIDC), "heuristic", 4) == {}
    assert drafts.get_drafts(ws, BOB, "heuristic", 5) == {}
    assert drafts.get_drafts(ws, BOB, "preamble", 4) == {}
    drafts.discard_drafts(ws, CAROL, "heuristic", 4)  # removes only carol's (none)
    assert drafts.get_drafts(ws, BOB, "heuristic", 4)[drafts.TEXT]["text"] == "bob's text"


def test_an_emptied_or_discarded_draft_is_gone(ws: Workspace) -> None:
    drafts.save_draft(ws, BOB, "heuristic", 4, drafts.TEXT, "text", 2)
    drafts.save_draft(ws, BOB, "heuristic", 4, drafts.COMMENT, "why", 2)
    drafts.save_draft(ws, BOB, "heuristic", 4, drafts.COMMENT, "  ", 2)
    assert set(drafts.get_drafts(ws, BOB, "heuristic", 4)) == {drafts.TEXT}
    drafts.save_draft(ws, BOB, "heuristic", 5, drafts.TEXT, "other item", 1)
    drafts.discard_drafts(ws, BOB, "heuristic", 4)
    assert drafts.get_drafts(ws, BOB, "heuristic", 4) == {}
    assert drafts.get_drafts(ws, BOB, "heuristic", 5) != {}


def test_drafts_are_not_in_the_audit_trail(ws: Workspace) -> None:
    drafts.save_draft(ws, BOB, "heuristic", 4, drafts.TEXT, "text", 2)
    drafts.discard_drafts(ws, BOB, "heuristic", 4)
    assert ws.query("SELECT count(*) AS n FROM reviews")[0]["n"] == 0


def test_only_a_person_keeps_drafts(ws: Workspace) -> None:
    with pytest.raises(BadInput, match="only a person"):
        drafts.save_draft(ws, Identity.teacher("local/default"), "heuristic", 4, drafts.TEXT,
                          "text", 1)
