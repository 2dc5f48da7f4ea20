"""Unsaved work on the Heuristics page kept as the reviewer's private draft (pld.drafts): typed
text and comment, of a heuristic or of the preamble, survive a reload and are offered back to
their author only, until saved or discarded; a draft older than the item says so, and saving
it is refused as stale."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streamlit.testing.v1 import AppTest

from pld import preamble, review
from pld.identity import Identity
from tests.pages.conftest import Populated, unescaped

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


def _preamble(pop: Populated) -> dict[str, Any]:
    with pop.open() as ws:
        return preamble.ensure_preamble(ws, pop.task)


def _type_preamble(at: AppTest, pop: Populated, who: str, text: str, comment: str) -> None:
    at.text_area(key=f"pre_text_{pop.task}_{who}").input(text).run()
    at.text_input(key=f"pre_comment_{pop.task}_{who}").input(comment).run()
    assert not at.exception


def _boxes(at: AppTest) -> list[str]:
    return [t.key for t in at.text_area]


def test_a_typed_preamble_edit_survives_a_reload_for_its_author_only(
        open_page: OpenPage, populated_ws: Populated) -> None:
    # Before: a reload showed the current preamble again; what dan typed was gone.
    pop, row = populated_ws, _preamble(populated_ws)
    mine = row["text"] + " Be brief."
    _type_preamble(open_page("heuristics", task=pop.task, reviewer="dan").run(), pop, "dan",
                   mine, "shorter answers")
    assert [(d["who"], d["entity"], d["field"], d["text"], d["base_version"])
            for d in _drafts(pop)] == [
        ("dan", "preamble", "comment", "shorter answers", row["version"]),
        ("dan", "preamble", "text", mine, row["version"])]
    other = open_page("heuristics", task=pop.task, reviewer="eve").run()
    assert "unsaved draft" not in _texts(other.info)
    assert other.text_area(key=f"pre_text_{pop.task}_eve").value == row["text"]
    at = open_page("heuristics", task=pop.task, reviewer="dan").run()
    assert "You have an unsaved draft of the preamble from " in _texts(at.info)
    assert mine in [c.value for c in at.code] and "comment: shorter answers" in _texts(at.text)
    assert f"pre_text_{pop.task}_dan" not in _boxes(at)  # the box waits for the choice
    at.button(key=f"pre_draft_{pop.task}_restore").click().run()
    assert at.text_area(key=f"pre_text_{pop.task}_dan").value == mine
    assert at.text_input(key=f"pre_comment_{pop.task}_dan").value == "shorter answers"
    at.button(key=f"pre_save_{pop.task}").click().run()
    assert not at.exception and "Preamble saved as version" in _texts(at.success)
    with pop.open() as ws:
        last = preamble.preamble_history(ws, pop.task)[-1]
    assert (last["who"], last["comment"], last["after"]["text"]) == ("dan", "shorter answers",
                                                                     mine)
    assert _drafts(pop) == []
    again = open_page("heuristics", task=pop.task, reviewer="dan").run()
    assert "unsaved draft" not in _texts(again.info)
    assert again.text_area(key=f"pre_text_{pop.task}_dan").value == mine


def test_a_typed_preamble_edit_stays_in_the_box_across_pages(
        visit_pages: Callable[..., Callable[[str], AppTest]], populated_ws: Populated) -> None:
    pop, row = populated_ws, _preamble(populated_ws)
    visit = visit_pages(task=pop.task, reviewer="dan")
    _type_preamble(visit("heuristics"), pop, "dan", row["text"] + " Be brief.", "why")
    visit("home")
    at = visit("heuristics")
    assert "unsaved draft" not in _texts(at.info)  # this session still has it in the box
    assert at.text_area(key=f"pre_text_{pop.task}_dan").value == row["text"] + " Be brief."
    assert at.text_input(key=f"pre_comment_{pop.task}_dan").value == "why"


def test_a_preamble_draft_can_be_discarded_from_the_offer_or_the_box(
        open_page: OpenPage, populated_ws: Populated) -> None:
    pop, row = populated_ws, _preamble(populated_ws)
    _type_preamble(open_page("heuristics", task=pop.task, reviewer="dan").run(), pop, "dan",
                   row["text"] + " Be brief.", "why")
    at = open_page("heuristics", task=pop.task, reviewer="dan").run()
    at.button(key=f"pre_draft_{pop.task}_discard").click().run()
    assert _drafts(pop) == [] and "unsaved draft" not in _texts(at.info)
    assert at.text_area(key=f"pre_text_{pop.task}_dan").value == row["text"]
    _type_preamble(at, pop, "dan", row["text"] + " Be brief.", "why")
    assert _drafts(pop)
    at.button(key=f"pre_discard_{pop.task}").click().run()
    assert _drafts(pop) == []
    assert at.text_area(key=f"pre_text_{pop.task}_dan").value == row["text"]
    assert at.text_input(key=f"pre_comment_{pop.task}_dan").value == ""


def test_a_preamble_draft_older_than_the_preamble_is_redone_on_the_current_text(
        open_page: OpenPage, populated_ws: Populated) -> None:
    pop, row = populated_ws, _preamble(populated_ws)
    mine, eves = row["text"] + " Be brief.", row["text"] + " Never guess."
    _type_preamble(open_page("heuristics", task=pop.task, reviewer="dan").run(), pop, "dan",
                   mine, "why")
    with pop.open() as ws:
        preamble.edit_preamble(ws, pop.task, eves, Identity("eve"), base_version=row["version"])
    at = open_page("heuristics", task=pop.task, reviewer="dan").run()
    assert (f"The text changed since: your draft was typed on version {row['version']}, it is "
            f"now version {row['version'] + 1}") in _texts(at.warning)
    at.button(key=f"pre_draft_{pop.task}_restore").click().run()
    at.button(key=f"pre_save_{pop.task}").click().run()
    assert not at.exception and "Preamble not saved" in _texts(at.error)
    assert _preamble(pop)["text"] == eves  # eve's change is not undone
    assert len(_drafts(pop)) == 2 and "changed since you started" in _texts(at.warning)
    at.button(key=f"pre_redo_{pop.task}").click().run()
    assert at.text_area(key=f"pre_text_{pop.task}_dan").value == eves
    assert mine in [c.value for c in at.code]  # beside the box, to carry the change over
    at.text_area(key=f"pre_text_{pop.task}_dan").input(eves + " Be brief.").run()
    at.button(key=f"pre_save_{pop.task}").click().run()
    assert not at.exception and "Preamble saved as version" in _texts(at.success)
    assert _preamble(pop)["text"] == eves + " Be brief." and _drafts(pop) == []


def test_a_reload_opens_the_heuristic_her_draft_waits_on(
        open_page: OpenPage, populated_ws: Populated) -> None:
    # Before: a reload opened heuristic #1 and nothing said a draft waited on another one.
    hid = populated_ws.heuristic_ids[3]
    _type_edit(_open(open_page, populated_ws, hid, "bob"), hid, "bob", TEXT, "covers addresses")
    at = open_page("heuristics", task=populated_ws.task, reviewer="bob").run()
    assert not at.exception
    assert at.selectbox(key="h_selected").value == hid
    assert f"You have an unsaved draft of heuristic #{hid}" in _texts(at.info)
    first = populated_ws.heuristic_ids[0]
    at.selectbox(key="h_selected").set_value(first).run()
    assert f"You also have unsaved drafts on heuristic #{hid}" in unescaped(_texts(at.info))
    carol = open_page("heuristics", task=populated_ws.task, reviewer="carol").run()
    assert carol.selectbox(key="h_selected").value != hid or hid == populated_ws.heuristic_ids[0]
    assert "unsaved drafts on heuristic" not in unescaped(_texts(carol.info))
