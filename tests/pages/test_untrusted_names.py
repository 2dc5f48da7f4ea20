"""A reviewer's self-declared name is shown as text on every page, never as Markdown: a name
written as a link and an image stays those characters, in captions, alerts, the approver list,
the buttons' tooltips and the refusals that quote it (issue 23, finding 2)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from google.protobuf.message import Message
from markdown_it import MarkdownIt
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Block, Node

from pld import preamble, review, review_rows, signoff
from pld.identity import Identity
from pld.pipeline.cluster import edits
from pld.pipeline.resolve import decisions, loop, state, view
from pld.pipeline.student import build_prompt
from pld.workspace import Workspace
from tests.fakes.openai_server import FakeOpenAI
from tests.pages.conftest import Populated, unescaped
from tests.pages.test_conflicts_page import _responder

OpenPage = Callable[..., AppTest]

EVIL = ('<a href="https://evil.example/x">re-login here</a>'
        '![i](https://evil.example/i.png)')
SHOWN = "re-login here"  # part of EVIL a reader sees once it is shown as text
OTHER = "carl"  # on no approver list: his refusals list the approvers, EVIL among them
PAGES = ("home", "data", "extract", "clusters", "heuristics", "conflicts", "evaluate",
         "export", "calls")

# Protobuf messages whose ``body`` Streamlit renders as Markdown; every widget's label and
# tooltip (``help``) and a radio's options and captions are Markdown too.
_MARKDOWN_BODIES = {"Markdown", "Alert", "Toast", "Heading", "Metric"}
_MARKDOWN_FIELDS = {"label", "help", "captions"}
_MD = MarkdownIt("commonmark")  # raw HTML passes through, as it would with unsafe HTML on


def _strings(msg: Message) -> Iterator[tuple[str, str]]:
    """``(kind, text)`` for every string of ``msg`` (recursively) a browser renders:
    ``markdown`` or ``html``."""
    kind = msg.DESCRIPTOR.name
    for field, value in msg.ListFields():
        if isinstance(value, (str, bytes, int, float, Message)):
            values = [value]
        else:  # a repeated field or a map
            values = list(value.values()) if hasattr(value, "values") else list(value)
        if field.message_type is not None:
            for item in values:
                if isinstance(item, Message):
                    yield from _strings(item)
        elif field.type == field.TYPE_STRING:
            if field.name == "body" and kind == "Html":
                yield from (("html", v) for v in values)
            elif (field.name in _MARKDOWN_FIELDS
                  or (field.name == "body" and kind in _MARKDOWN_BODIES)
                  or (field.name == "options" and kind == "Radio")):
                yield from (("markdown", v) for v in values)


def _nodes(node: Node) -> Iterator[Node]:
    yield node
    if isinstance(node, Block):
        for child in node.children.values():
            yield from _nodes(child)


def live_markup(at: AppTest) -> list[str]:
    """Every rendered text of the page (main area and sidebar) that draws a link or an image
    to evil.example: as HTML, as Markdown, or as a bare URL GitHub Markdown links by itself."""
    found = []
    for node in _nodes(at._tree):
        proto = getattr(node, "proto", None)
        if not isinstance(proto, Message):
            continue
        for kind, text in _strings(proto):
            html = text if kind == "html" else _MD.render(text)
            # What GFM's autolinker reads: escapes undone, word joiners kept.
            bare = re.sub(r"\\(.)", r"\1", text)
            if ("<a " in html or "<img" in html
                    or (kind == "markdown" and "://evil.example" in bare)):
                found.append(text)
    return found


def markdown_text(at: AppTest) -> str:
    """All Markdown-rendered text of the page as a reader sees it (escapes undone)."""
    return "\n".join(unescaped(text) for node in _nodes(at._tree)
                     if isinstance(getattr(node, "proto", None), Message)
                     for kind, text in _strings(node.proto) if kind == "markdown")


def assert_shown_as_text(at: AppTest) -> None:
    """The page ran, and nothing on it renders EVIL's link or image."""
    assert not at.exception, [e.value for e in at.exception]
    assert not live_markup(at), live_markup(at)


@dataclass(frozen=True)
class Scene:
    """``populated_ws`` where EVIL wrote, approved, rejected, commented and decided."""

    pop: Populated
    hers: int  # a draft EVIL wrote (four-eyes refuses her approval)


def _v(ws: Workspace, hid: int) -> int:
    return int(review_rows.fetch(ws, hid)["version"])


@pytest.fixture
def scene(populated_ws: Populated, fake_openai: FakeOpenAI) -> Scene:
    """EVIL (self-declared) decided a proposal, is on the approver list (and put bob there),
    approved bob's edit, rejected a heuristic, wrote a draft heuristic and the draft
    preamble, built a prompt, renamed a cluster and accepted a clustering."""
    pop = populated_ws
    evil, bob = Identity(EVIL), Identity("bob")
    assert evil.name == EVIL  # nothing in the name is folded away
    fake_openai.responder = _responder
    model = fake_openai.model_string()
    h0, h1, _h2, h3 = pop.heuristic_ids
    with pop.open() as ws:
        # A conflict-loop iteration whose proposals EVIL decides.
        summary = loop.resolve(ws, pop.task, model, model, iterations=1, attribution="tfidf")
        assert summary.stop_reason == state.AWAITING_REVIEW
        proposals = view.list_proposals(ws, pop.task)
        decisions.decide_proposal(ws, proposals[-1]["id"], False, evil, comment="no")
        signoff.add_approver(ws, pop.task, EVIL, evil)
        signoff.add_approver(ws, pop.task, "bob", evil)
        review.edit(ws, h0, "Bob's wording of rule one.", bob, base_version=_v(ws, h0))
        review.approve(ws, h0, evil, base_version=_v(ws, h0), comment="fine by me")
        review.reject(ws, h1, evil, base_version=_v(ws, h1), comment="too broad")
        review.edit(ws, h3, "Her wording of rule four.", evil, base_version=_v(ws, h3),
                    comment="mine")
        build_prompt(ws, pop.task, who=evil)
        row = preamble.ensure_preamble(ws, pop.task)
        preamble.edit_preamble(ws, pop.task, row["text"] + "\nBe brief.", evil,
                               base_version=row["version"])
        cluster = pop.cluster_ids[pop.proposed_clustering][0]
        name = ws.query("SELECT name FROM clusters WHERE id = ?", [cluster])[0]["name"]
        edits.rename_cluster(ws, cluster, f"named by {EVIL}", evil, expected_name=name)
        with ws.write() as db:
            db["clusterings"].update(pop.accepted_clustering, {"accepted_by": EVIL})
    return Scene(pop, hers=h3)


@pytest.mark.parametrize("reviewer", [EVIL, OTHER], ids=["her", "other"])
@pytest.mark.parametrize("name", PAGES)
def test_every_page_shows_her_name_as_text(open_page: OpenPage, scene: Scene, name: str,
                                           reviewer: str) -> None:
    at = open_page(name, task=scene.pop.task, reviewer=reviewer).run()
    assert_shown_as_text(at)
    if name == "heuristics":
        with scene.pop.open() as ws:
            ids = [h["id"] for h in review.list_heuristics(ws, scene.pop.task)]
        for hid in ids:
            at.selectbox(key="h_selected").set_value(hid).run()
            assert_shown_as_text(at)
            assert SHOWN in markdown_text(at)  # there, as text
    if name == "clusters":
        for cid in (scene.pop.accepted_clustering, scene.pop.proposed_clustering):
            at.selectbox(key="c_clustering").set_value(cid).run()
            assert_shown_as_text(at)
        assert SHOWN in markdown_text(at)  # "Named by ...", as text


def _heuristic(open_page: OpenPage, scene: Scene, hid: int, reviewer: str) -> AppTest:
    at = open_page("heuristics", task=scene.pop.task, reviewer=reviewer).run()
    at.selectbox(key="h_selected").set_value(hid).run()
    assert_shown_as_text(at)
    return at


def _said(at: AppTest, words: str) -> None:
    """The page ran, shows ``words`` and nothing of EVIL as a link or an image."""
    assert_shown_as_text(at)
    assert words in markdown_text(at)


def test_refusals_quoting_her_name_show_it_as_text(open_page: OpenPage, scene: Scene) -> None:
    task, hid, evil = scene.pop.task, scene.hers, Identity(EVIL)
    # Four-eyes, before the click: the Approve button of her own draft says why it is off.
    at = _heuristic(open_page, scene, hid, EVIL)
    assert at.button(key=f"h_approve_{hid}").disabled
    assert SHOWN in unescaped(at.button(key=f"h_approve_{hid}").help)
    assert f"You ({EVIL}) wrote the current text" in markdown_text(at)
    # Adding herself again: "... is already an approver".
    at.text_input(key="h_new_approver").input(EVIL)
    at.button(key="h_add_approver").click().run()
    _said(at, f"{EVIL} is already an approver")
    # Saving an edit: someone other than her must approve it.
    at.button(key=f"h_open_edit_{hid}").click().run()
    at.text_area(key=f"h_edit_text_{hid}_{EVIL}").input("Her second wording.")
    at.button(key=f"h_save_{hid}").click().run()
    _said(at, f"someone other than {EVIL} must approve it")
    # Stale: bob approves, and saves an edit of, a version she changed meanwhile.
    at = _heuristic(open_page, scene, hid, "bob")
    at.button(key=f"h_open_edit_{hid}").click().run()
    with scene.pop.open() as ws:
        review.edit(ws, hid, "Her third wording.", evil, base_version=_v(ws, hid))
    at.button(key=f"h_approve_{hid}").click().run()
    _said(at, f"{EVIL} did 'edit'")
    at.text_area(key=f"h_edit_text_{hid}_bob").input("Bob's wording.")
    at.button(key=f"h_save_{hid}").click().run()
    _said(at, f"Your edit was not saved: heuristic {hid} changed since your version")
    # Not an approver: carl saw no approver list, she made one meanwhile; the refusal
    # names the approvers.
    with scene.pop.open() as ws:
        signoff.remove_approver(ws, task, "bob", evil)
        signoff.remove_approver(ws, task, EVIL, evil)
    at = _heuristic(open_page, scene, hid, OTHER)
    with scene.pop.open() as ws:
        signoff.add_approver(ws, task, EVIL, evil)
    at.button(key=f"h_approve_{hid}").click().run()
    _said(at, f"approvers: {EVIL})")
    # Her decisions: the preamble rejected, a proposal accepted, a cluster renamed.
    at = open_page("heuristics", task=task, reviewer=EVIL).run()
    at.button(key=f"pre_reject_{task}").click().run()
    _said(at, f"Preamble rejected by {EVIL}")
    at = open_page("conflicts", task=task, reviewer=EVIL).run()
    next(b for b in at.button if b.label == "Accept" and not b.disabled).click().run()
    # Refused as stale (she rejected the heuristic since), or accepted as her draft.
    _said(at, f"{EVIL} did" if "not decided" in markdown_text(at) else f"a draft by {EVIL}")
    at = open_page("clusters", task=task, reviewer=EVIL).run()
    at.selectbox(key="c_clustering").set_value(scene.pop.proposed_clustering).run()
    cluster = at.selectbox(key="c_cluster").value
    at.text_input(key=f"c_name_{cluster}").input(f"{EVIL} again").run()
    at.button(key="c_rename").click().run()
    _said(at, f"renamed to '{EVIL} again'")
    at.button(key="c_accept").click().run()
    _said(at, f"accepted by {EVIL} (self-declared)")
