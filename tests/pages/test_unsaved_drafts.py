"""Unsaved work on the Heuristics page kept as the reviewer's private draft (pld.drafts): typed
text and comment survive a reload and are offered back to their author only, until saved or
discarded; a draft older than the heuristic says so, and saving it is refused as stale."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streamlit.testing.v1 import AppTest

from pld import review
from pld.identity import Identity
from tests.pages.conftest import Populated

OpenPage = Callable[..., AppTest]
TEXT = "Answer routine for chequebooks and address changes."


def _texts(elements: Any) -> str:
    return "\n".join(str(e.value) for e in elements)


def _open(open_page: OpenPage, pop: Populated, hid: int, reviewer: str) -> AppTest:
    """A new session (a reload) as ``reviewer`` with heuristic ``hid`` opened."""
    at = open_page("heuristics", task=pop.task, reviewer=reviewer).run()
    at.selectbox(key="h_selected").set_value(hid).run()
    assert not at.exception
    return at


def _type_edit(at: AppTest, hid: int, who: str, text: str, comment: str) -> None:
    at.button(key=f"h_open_edit_{hid}").click().run()
    at.text_area(key=f"h_edit_text_{hid}_{who}").input(text).run()
    at.text_input(key=f"h_edit_comment_{hid}_{who}").input(comment).run()
    assert not at.exception


def _drafts(pop: Populated) -> list[dict[str, Any]]:
    with pop.open() as ws:
        return ws.query("SELECT who, entity, entity_id, field, text, base_version FROM drafts "
                        "ORDER BY field")


def test_typed_edit_survives_a_reload_for_its_author_only(
        open_page: OpenPage, populated_ws: Populated) -> None:
    # Before: bob's open edit and its comment vanished on reload.
    hid = populated_ws.heuristic_ids[3]
    _type_edit(_open(open_page, populated_ws, hid, "bob"), hid, "bob", TEXT, "covers addresses")
    assert [(d["who"], d["field"], d["text"], d["base_version"]) for d in _drafts(populated_ws)
            ] == [("bob", "comment", "covers addresses", 1), ("bob", "text", TEXT, 1)]
    other = _open(open_page, populated_ws, hid, "carol")
    assert "unsaved draft" not in _texts(other.info) and TEXT not in _texts(other.code)
    assert not other.button(key=f"h_open_edit_{hid}").disabled
    at = _open(open_page, populated_ws, hid, "bob")
    assert f"You have an unsaved draft of heuristic #{hid} from " in _texts(at.info)
    assert TEXT in [c.value for c in at.code] and "comment: covers addresses" in _texts(at.text)
    assert "changed since" not in _texts(at.warning)
    at.button(key=f"h_draft_{hid}_restore").click().run()
    assert at.text_area(key=f"h_edit_text_{hid}_bob").value == TEXT
    assert at.text_input(key=f"h_edit_comment_{hid}_bob").value == "covers addresses"
    at.button(key=f"h_save_{hid}").click().run()
    assert not at.exception and "as version 2" in _texts(at.success)
    with populated_ws.open() as ws:
        last = review.history(ws, hid)[-1]
    assert (last["who"], last["comment"], last["after"]["text"]) == ("bob", "covers addresses",
                                                                     TEXT)
    assert _drafts(populated_ws) == []  # saved: the draft is gone
    assert "unsaved draft" not in _texts(_open(open_page, populated_ws, hid, "bob").info)


def test_a_draft_can_be_discarded_from_the_offer_or_by_cancelling(
        open_page: OpenPage, populated_ws: Populated) -> None:
    hid = populated_ws.heuristic_ids[3]
    _type_edit(_open(open_page, populated_ws, hid, "bob"), hid, "bob", TEXT, "why")
    at = _open(open_page, populated_ws, hid, "bob")
    at.button(key=f"h_draft_{hid}_discard").click().run()
    assert _drafts(populated_ws) == [] and "unsaved draft" not in _texts(at.info)
    assert not at.button(key=f"h_open_edit_{hid}").disabled
    _type_edit(at, hid, "bob", TEXT, "why")
    assert _drafts(populated_ws)
    at.button(key=f"h_cancel_{hid}").click().run()
    assert _drafts(populated_ws) == []
    assert "unsaved draft" not in _texts(_open(open_page, populated_ws, hid, "bob").info)


def test_an_edit_refused_as_stale_is_kept_as_a_draft(open_page: OpenPage,
                                                     populated_ws: Populated) -> None:
    # Typed and saved in one go (the browser sends both together): the refused text is the
    # draft, offered back after a reload.
    hid = populated_ws.heuristic_ids[3]
    at = _open(open_page, populated_ws, hid, "bob")
    at.button(key=f"h_open_edit_{hid}").click().run()
    with populated_ws.open() as ws:
        review.edit(ws, hid, "Carol's wording.", Identity("carol"), base_version=1)
    at.text_area(key=f"h_edit_text_{hid}_bob").input(TEXT)
    at.button(key=f"h_save_{hid}").click().run()
    assert "changed since your version 1" in _texts(at.error)
    assert [(d["text"], d["base_version"]) for d in _drafts(populated_ws)] == [(TEXT, 1)]
    reloaded = _open(open_page, populated_ws, hid, "bob")
    assert "unsaved draft" in _texts(reloaded.info) and "changed since" in _texts(reloaded.warning)


def test_a_draft_older_than_the_heuristic_says_so_and_is_not_saved_over_it(
        open_page: OpenPage, populated_ws: Populated) -> None:
    hid = populated_ws.heuristic_ids[3]
    _type_edit(_open(open_page, populated_ws, hid, "bob"), hid, "bob", TEXT, "why")
    with populated_ws.open() as ws:
        review.edit(ws, hid, "Carol's wording.", Identity("carol"), base_version=1)
    at = _open(open_page, populated_ws, hid, "bob")
    assert "unsaved draft" in _texts(at.info)
    assert "The text changed since: your draft was typed on version 1, it is now version 2" \
        in _texts(at.warning)
    at.button(key=f"h_draft_{hid}_restore").click().run()
    assert at.text_area(key=f"h_edit_text_{hid}_bob").value == TEXT
    at.button(key=f"h_save_{hid}").click().run()
    assert not at.exception
    assert "changed since your version 1" in _texts(at.error)  # refused, shown side by side
    with populated_ws.open() as ws:
        assert review.get_heuristic(ws, hid)["text"] == "Carol's wording."
    assert [d["text"] for d in _drafts(populated_ws)] == ["why", TEXT]  # kept until chosen
    at.button(key=f"h_discard_{hid}").click().run()
    assert _drafts(populated_ws) == []
