"""The Heuristics page: review through the app, as a named reviewer, with four-eyes, approver
lists and stale-edit protection."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from pld import jobs, preamble, review, review_rows, signoff
from pld.approvers import list_approvers
from pld.errors import BadInput
from pld.identity import Identity
from pld.pipeline.resolve import decisions
from pld.tasks import load_task
from pld.workspace import loads, open_workspace
from tests.fakes.openai_server import FakeOpenAI
from tests.pages.conftest import (
    SPOOF,
    TEACHER,
    Populated,
    assert_not_rendered,
    rendered,
    unescaped,
)
from tests.pipeline.resolve.test_decisions import add_proposal

OpenPage = Callable[..., AppTest]


def _texts(elements: Any) -> str:
    """What the elements say as a reader sees it (messages are shown escaped)."""
    return unescaped("\n".join(str(e.value) for e in elements))


def _frame(at: AppTest, column: str) -> Any:
    """The first dataframe on the page with ``column`` (the jobs panel has its own)."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def _row(pop: Populated, hid: int) -> dict[str, Any]:
    with pop.open() as ws:
        return ws.query("SELECT * FROM heuristics WHERE id = ?", [hid])[0]


def _reviews(pop: Populated, hid: int) -> list[dict[str, Any]]:
    with pop.open() as ws:
        return review.history(ws, hid)


def _open(open_page: OpenPage, pop: Populated, hid: int, reviewer: str = "ana") -> AppTest:
    """The page as ``reviewer`` with heuristic ``hid`` opened."""
    at = open_page("heuristics", task=pop.task, reviewer=reviewer)
    at.run()
    at.selectbox(key="h_selected").set_value(hid).run()
    assert not at.exception
    return at


def test_empty_workspace_says_to_load_a_task(open_page: OpenPage) -> None:
    at = open_page("heuristics")
    at.run()
    assert not at.exception
    assert [t.value for t in at.title] == ["Heuristics"]
    assert "No task is loaded" in _texts(at.info)


def test_task_without_heuristics_says_to_consolidate(open_page: OpenPage, app_ws: Path) -> None:
    with open_workspace(app_ws) as ws:
        load_task(ws, "demo")
    at = open_page("heuristics", task="demo", reviewer="ana")
    at.run()
    assert not at.exception
    assert "has no heuristics yet" in _texts(at.info)
    assert at.button(key="h_consolidate")


def test_populated_shows_table_sources_and_history(open_page: OpenPage,
                                                   populated_ws: Populated) -> None:
    hid = populated_ws.approved_heuristic_ids[0]
    at = _open(open_page, populated_ws, hid)
    assert len(at.selectbox(key="h_selected").options) == len(populated_ws.heuristic_ids)
    table = _frame(at, "written by")
    assert list(table["id"]) == populated_ws.heuristic_ids
    assert set(table["written by"]) == {"teacher " + TEACHER}
    assert list(table["status"]).count("approved") == len(populated_ws.approved_heuristic_ids)
    sources = _frame(at, "micro-instruction")
    assert list(sources["rule"]) == loads(_row(populated_ws, hid)["source_rule_ids"])
    assert set(sources["gold label"]) == {populated_ws.labels[0]}
    assert "**approve** by bea" in _texts(at.markdown)
    # The status filter narrows the list.
    at.selectbox(key="h_filter").set_value("draft").run()
    assert list(_frame(at, "written by")["status"]) == ["draft"]


def test_no_identity_disables_the_buttons(open_page: OpenPage, populated_ws: Populated) -> None:
    hid = populated_ws.heuristic_ids[3]
    at = open_page("heuristics", task=populated_ws.task)
    at.run()
    at.selectbox(key="h_selected").set_value(hid).run()
    assert not at.exception
    assert "Nobody is identified" in _texts(at.warning)
    assert at.button(key=f"h_approve_{hid}").disabled
    assert at.button(key=f"h_reject_{hid}").disabled
    assert at.button(key=f"h_open_edit_{hid}").disabled


def test_edit_bumps_version_and_audits(open_page: OpenPage, populated_ws: Populated) -> None:
    hid = populated_ws.heuristic_ids[3]
    at = _open(open_page, populated_ws, hid)
    at.button(key=f"h_open_edit_{hid}").click().run()
    at.text_area(key=f"h_edit_text_{hid}_ana").input("Answer routine for chequebooks.").run()
    assert "<ins" in _texts(at.get("html"))  # the live diff against version 1
    at.text_input(key=f"h_edit_comment_{hid}_ana").input("shorter")
    at.button(key=f"h_save_{hid}").click().run()
    assert not at.exception
    assert "as version 2" in _texts(at.success)
    row = _row(populated_ws, hid)
    assert (row["text"], row["version"], row["written_by"], row["status"]) == (
        "Answer routine for chequebooks.", 2, "ana", "draft")
    last = _reviews(populated_ws, hid)[-1]
    assert (last["action"], last["who"], last["identity_kind"], last["comment"]) == (
        "edit", "ana", "self-declared", "shorter")
    assert last["before"]["version"] == 1 and last["after"]["version"] == 2
    assert "Last text change: v1 → v2 by ana (self-declared, edit)" in _texts(at.caption)


def test_approve_as_named_reviewer(open_page: OpenPage, populated_ws: Populated) -> None:
    hid = populated_ws.heuristic_ids[3]
    at = _open(open_page, populated_ws, hid)
    at.text_input(key=f"h_comment_{hid}_ana").input("reads well")
    at.button(key=f"h_approve_{hid}").click().run()
    assert not at.exception
    assert "approved by ana" in _texts(at.success)
    row = _row(populated_ws, hid)
    assert (row["status"], row["approved_by"], row["identity_kind"]) == (
        "approved", "ana", "self-declared")
    last = _reviews(populated_ws, hid)[-1]
    assert (last["action"], last["comment"], last["identity_kind"]) == (
        "approve", "reads well", "self-declared")
    # The picker sends its choice again, so the browser no longer shows it as a draft.
    picker = at.selectbox(key="h_selected")
    assert picker.proto.set_value and picker.proto.raw_value.startswith(f"#{hid} · approved · ")
    at.run()
    assert not at.selectbox(key="h_selected").proto.set_value  # nothing changed: sent once


def test_approving_a_version_someone_changed_meanwhile_is_refused(
        open_page: OpenPage, populated_ws: Populated) -> None:
    hid = populated_ws.heuristic_ids[3]
    at = _open(open_page, populated_ws, hid)  # ana sees version 1
    with populated_ws.open() as ws:
        review.edit(ws, hid, "Bob changed it.", Identity("bob"), base_version=1)
    at.button(key=f"h_approve_{hid}").click().run()
    assert not at.exception
    refused = unescaped(_texts(at.error))
    assert "Not approved" in refused and "bob did 'edit'" in refused
    # Before: "redo yours on the current version", to a reviewer who had written nothing.
    assert "redo yours" not in refused
    assert "which changed its text" in refused and "It is now version 2, draft" in refused
    assert "You had written nothing" in refused and "review it, then approve it" in refused
    # The new version is there to review: its change marked, the buttons bound to it.
    assert "Last text change: v1 → v2 by bob" in unescaped(_texts(at.caption))
    row = _row(populated_ws, hid)
    assert (row["status"], row["version"], row["text"]) == ("draft", 2, "Bob changed it.")
    at.button(key=f"h_approve_{hid}").click().run()
    assert "approved by ana" in _texts(at.success)


def test_four_eyes_refusal(open_page: OpenPage, populated_ws: Populated) -> None:
    hid = populated_ws.heuristic_ids[3]
    with populated_ws.open() as ws:
        review.edit(ws, hid, "Ana's own wording.", Identity("ana"), base_version=1)
    at = _open(open_page, populated_ws, hid)
    assert "four-eyes rule" in _texts(at.warning)
    # Off before the click, with the reason; rejecting stays possible.
    approve = at.button(key=f"h_approve_{hid}")
    assert approve.disabled
    assert "four-eyes rule: someone else must approve it" in unescaped(approve.help)
    assert not at.button(key=f"h_reject_{hid}").disabled
    row = _row(populated_ws, hid)
    assert (row["status"], row["version"], row["approved_by"]) == ("draft", 2, None)


def test_stale_edit_is_refused_and_shown_side_by_side(open_page: OpenPage,
                                                      populated_ws: Populated) -> None:
    hid = populated_ws.heuristic_ids[3]
    at = _open(open_page, populated_ws, hid)
    original = _row(populated_ws, hid)["text"]
    at.button(key=f"h_open_edit_{hid}").click().run()
    with populated_ws.open() as ws:
        review.edit(ws, hid, "Bob's version of the rule.", Identity("bob"), base_version=1)
    at.text_area(key=f"h_edit_text_{hid}_ana").input("Ana's version of the rule.")
    at.button(key=f"h_save_{hid}").click().run()
    assert not at.exception
    # Said once, above the three texts (before: a second copy flashed above the page).
    assert [e.value.count("changed since your version 1") for e in at.error] == [1]
    # Base, theirs and mine, in front of the reviewer (above the tabs), nothing lost.
    html = _texts(at.get("html"))
    assert original in [c.value for c in at.code]
    assert "Bob&#x27;s version" in html or "Bob's version" in html
    assert "Ana&#x27;s version" in html or "Ana's version" in html
    assert "Your refused edit is shown above the tabs." in _texts(at.caption)
    row = _row(populated_ws, hid)
    assert (row["text"], row["version"], row["written_by"]) == (
        "Bob's version of the rule.", 2, "bob")
    # Before: "edit again" put Ana's old text on the new version, so saving silently undid
    # Bob's change. Now the editor starts from Bob's text, Ana's kept beside it.
    at.button(key=f"h_redo_{hid}").click().run()
    assert at.text_area(key=f"h_edit_text_{hid}_ana").value == "Bob's version of the rule."
    assert "Redoing your change on their version" in _texts(at.info)
    at.text_area(key=f"h_edit_text_{hid}_ana").input(
        "Bob's version of the rule, with Ana's exception.")
    at.button(key=f"h_save_{hid}").click().run()
    assert not at.exception
    row = _row(populated_ws, hid)
    assert (row["text"], row["version"], row["written_by"]) == (
        "Bob's version of the rule, with Ana's exception.", 3, "ana")


def test_unsaved_work_belongs_to_its_reviewer(open_page: OpenPage,
                                              populated_ws: Populated) -> None:
    hid = populated_ws.heuristic_ids[3]
    at = _open(open_page, populated_ws, hid, reviewer="bob")
    at.button(key=f"h_open_edit_{hid}").click().run()
    at.text_area(key=f"h_edit_text_{hid}_bob").input("bob's unsaved idea").run()
    at.sidebar.text_input(key="reviewer").input("alice").run()
    assert not at.exception
    assert f"h_edit_text_{hid}_alice" not in [t.key for t in at.text_area]
    at.sidebar.text_input(key="reviewer").input("bob").run()
    assert at.text_area(key=f"h_edit_text_{hid}_bob").value == "bob's unsaved idea"


def test_approver_list_limits_approval(open_page: OpenPage, populated_ws: Populated) -> None:
    hid = populated_ws.heuristic_ids[3]
    at = _open(open_page, populated_ws, hid, reviewer="bea")
    at.text_input(key="h_new_approver").input("bea")
    at.button(key="h_add_approver").click().run()
    assert not at.exception
    assert "bea is now an approver" in _texts(at.success)
    with populated_ws.open() as ws:
        assert list_approvers(ws, populated_ws.task) == ["bea"]

    other = _open(open_page, populated_ws, hid, reviewer="ana")
    assert "not on this task's approver list" in _texts(other.info)
    assert other.button(key="h_add_approver").disabled
    for action in ("approve", "reject"):
        button = other.button(key=f"h_{action}_{hid}")
        assert button.disabled
        assert (f"ana is not an approver of task 'demo', so cannot {action}"
                in unescaped(button.help))
    assert _row(populated_ws, hid)["status"] == "draft"
    # A non-approver may still edit.
    other.button(key=f"h_open_edit_{hid}").click().run()
    other.text_area(key=f"h_edit_text_{hid}_ana").input("Ana may still edit.")
    other.button(key=f"h_save_{hid}").click().run()
    assert _row(populated_ws, hid)["text"] == "Ana may still edit."


def test_consolidate_starts_a_background_job(open_page: OpenPage, populated_ws: Populated,
                                             fake_openai: FakeOpenAI) -> None:
    teacher = fake_openai.model_string()
    at = open_page("heuristics", task=populated_ws.task, reviewer="ana", teacher=teacher)
    at.run()
    at.button(key="h_consolidate").click().run()
    assert not at.exception
    assert "Consolidation started" in _texts(at.success)
    with populated_ws.open() as ws:
        started = jobs.list_jobs(ws, populated_ws.task, "consolidate")
    # The starter travels with the job, not on its command line: the drafts count as ana's
    # (four-eyes), and the start is audited.
    assert [j.args for j in started] == [["consolidate", populated_ws.task, "--teacher", teacher]]
    with populated_ws.open() as ws:
        audit = ws.query("SELECT who, after FROM reviews WHERE entity = 'job'")
    assert [(a["who"], loads(a["after"])["kind"]) for a in audit] == [("ana", "consolidate")]


def test_consolidate_with_another_merge_mode_passes_it(open_page: OpenPage,
                                                      populated_ws: Populated,
                                                      fake_openai: FakeOpenAI) -> None:
    teacher = fake_openai.model_string()
    at = open_page("heuristics", task=populated_ws.task, reviewer="ana", teacher=teacher)
    at.run()
    at.radio(key="h_merge_mode").set_value("medoid").run()
    at.checkbox(key="h_retry_failed").check().run()
    at.button(key="h_consolidate").click().run()
    assert not at.exception
    with populated_ws.open() as ws:
        started = jobs.list_jobs(ws, populated_ws.task, "consolidate")
    assert [j.args for j in started] == [
        ["consolidate", populated_ws.task, "--teacher", teacher, "--merge", "medoid",
         "--retry-failed"]]


def test_merge_two_heuristics_into_a_draft(open_page: OpenPage, populated_ws: Populated) -> None:
    a, b = populated_ws.heuristic_ids[2:4]  # one approved, one draft
    at = _open(open_page, populated_ws, a)
    at.multiselect(key="h_merge_ids").select(a).run()
    at.multiselect(key="h_merge_ids").select(b).run()
    # The merged text starts from theirs, one per line.
    assert at.text_area(key="h_merge_text").value == "\n".join(
        _row(populated_ws, i)["text"] for i in (a, b))
    at.text_area(key="h_merge_text").input("Complaints and routine requests, merged.")
    at.text_input(key="h_merge_comment").input("overlap")
    at.button(key="h_merge").click().run()
    assert not at.exception and not at.error
    assert "into draft #" in _texts(at.success)
    with populated_ws.open() as ws:
        new = ws.query("SELECT * FROM heuristics WHERE origin = 'merge'")
    assert len(new) == 1
    merged = new[0]
    assert (merged["text"], merged["status"], merged["created_by"]) == (
        "Complaints and routine requests, merged.", "draft", "ana")
    assert set(loads(merged["source_rule_ids"])) == set(
        loads(_row(populated_ws, a)["source_rule_ids"])) | set(
        loads(_row(populated_ws, b)["source_rule_ids"]))
    assert [_row(populated_ws, i)["status"] for i in (a, b)] == ["merged", "merged"]
    last = _reviews(populated_ws, a)[-1]
    assert (last["action"], last["who"], last["identity_kind"], last["comment"]) == (
        "merge", "ana", "self-declared", "overlap")
    # The page opens the new draft, and the merged ones are no longer offered.
    assert at.selectbox(key="h_selected").value == merged["id"]
    assert at.multiselect(key="h_merge_ids").value == []
    assert not any(f"#{a} " in o for o in at.multiselect(key="h_merge_ids").options)


def test_merge_of_a_heuristic_changed_meanwhile_is_refused(open_page: OpenPage,
                                                           populated_ws: Populated) -> None:
    a, b = populated_ws.heuristic_ids[2:4]
    at = _open(open_page, populated_ws, a)  # ana sees version 1 of b
    at.multiselect(key="h_merge_ids").select(a).select(b).run()
    with populated_ws.open() as ws:
        review.edit(ws, b, "Bob changed it.", Identity("bob"), base_version=1)
    at.button(key="h_merge").click().run()
    assert not at.exception
    assert "Not merged" in _texts(at.error) and "bob did 'edit'" in _texts(at.error)
    assert [_row(populated_ws, i)["status"] for i in (a, b)] == ["approved", "draft"]
    with populated_ws.open() as ws:
        assert not ws.query("SELECT id FROM heuristics WHERE origin = 'merge'")


def test_split_a_heuristic_in_two(open_page: OpenPage, populated_ws: Populated) -> None:
    hid = populated_ws.heuristic_ids[3]
    at = _open(open_page, populated_ws, hid)
    first, second = f"h_split_{hid}_v1_0", f"h_split_{hid}_v1_1"
    assert at.text_area(key=first).value == _row(populated_ws, hid)["text"]
    at.text_area(key=first).input("Chequebook orders are routine.")
    at.text_area(key=second).input("Address changes are routine.").run()
    at.button(key=f"h_split_{hid}").click().run()
    assert not at.exception and not at.error
    with populated_ws.open() as ws:
        parts = ws.query("SELECT * FROM heuristics WHERE origin = 'split' ORDER BY id")
    assert [p["text"] for p in parts] == ["Chequebook orders are routine.",
                                          "Address changes are routine."]
    assert all(p["status"] == "draft" and p["created_by"] == "ana" for p in parts)
    assert _row(populated_ws, hid)["status"] == "split"
    assert f"Split #{hid} into #{parts[0]['id']}, #{parts[1]['id']}" in _texts(at.success)
    assert at.selectbox(key="h_selected").value == parts[0]["id"]


def test_split_needs_two_texts_and_changes_nothing_otherwise(open_page: OpenPage,
                                                              populated_ws: Populated) -> None:
    hid = populated_ws.heuristic_ids[3]
    at = _open(open_page, populated_ws, hid)
    at.text_area(key=f"h_split_{hid}_v1_1").input("   ")
    at.button(key=f"h_split_{hid}").click().run()
    assert not at.exception
    assert "Not split: heuristic text is empty" in _texts(at.error)
    assert _row(populated_ws, hid)["status"] == "draft"


def test_write_a_new_heuristic(open_page: OpenPage, populated_ws: Populated) -> None:
    at = _open(open_page, populated_ws, populated_ws.heuristic_ids[0])
    at.text_area(key="h_new_text").input("If the message mentions a lost card, answer "
                                         "escalate-fraud.")
    at.button(key="h_new").click().run()
    assert not at.exception and not at.error
    with populated_ws.open() as ws:
        [new] = ws.query("SELECT * FROM heuristics WHERE origin = 'manual'")
    assert (new["status"], new["created_by"], new["written_by"]) == ("draft", "ana", "ana")
    assert at.selectbox(key="h_selected").value == new["id"]


def test_merge_split_and_new_are_disabled_without_identity(open_page: OpenPage,
                                                           populated_ws: Populated) -> None:
    hid = populated_ws.heuristic_ids[3]
    at = _open(open_page, populated_ws, hid, reviewer="")
    assert at.button(key="h_merge").disabled
    assert at.button(key=f"h_split_{hid}").disabled
    assert at.button(key="h_new").disabled


def test_remove_an_approver(open_page: OpenPage, populated_ws: Populated) -> None:
    with populated_ws.open() as ws:
        signoff.add_approver(ws, populated_ws.task, "bea", Identity("bea"))
        signoff.add_approver(ws, populated_ws.task, "cy", Identity("bea"))
    outsider = _open(open_page, populated_ws, populated_ws.heuristic_ids[3], reviewer="ana")
    assert outsider.button(key="h_remove_approver_btn").disabled
    at = _open(open_page, populated_ws, populated_ws.heuristic_ids[3], reviewer="bea")
    at.selectbox(key="h_remove_approver").set_value("cy")
    at.button(key="h_remove_approver_btn").click().run()
    assert not at.exception and not at.error
    assert "cy is no longer an approver" in _texts(at.success)
    with populated_ws.open() as ws:
        assert list_approvers(ws, populated_ws.task) == ["bea"]
    assert at.selectbox(key="h_remove_approver").options == ["bea"]
    # The last one may leave; then anyone may approve again.
    at.button(key="h_remove_approver_btn").click().run()
    assert "anyone may approve again" in _texts(at.success)
    with populated_ws.open() as ws:
        assert list_approvers(ws, populated_ws.task) == []
    assert "h_remove_approver_btn" not in [b.key for b in at.button]


def test_reject_as_a_non_approver_is_refused(open_page: OpenPage,
                                            populated_ws: Populated) -> None:
    hid = populated_ws.approved_heuristic_ids[0]
    with populated_ws.open() as ws:
        signoff.add_approver(ws, populated_ws.task, "bea", Identity("bea"))
    at = _open(open_page, populated_ws, hid, reviewer="ana")
    assert "not approve or reject" in _texts(at.info)
    reject = at.button(key=f"h_reject_{hid}")
    assert reject.disabled and "so cannot reject" in reject.help
    # The refusal itself still guards the write, whatever a page shows.
    with populated_ws.open() as ws, pytest.raises(BadInput, match="cannot reject"):
        review.reject(ws, hid, Identity("ana"))
    assert _row(populated_ws, hid)["status"] == "approved"


def test_reject_a_heuristic(open_page: OpenPage, populated_ws: Populated) -> None:
    hid = populated_ws.approved_heuristic_ids[0]
    at = _open(open_page, populated_ws, hid, reviewer="ana")
    at.text_input(key=f"h_comment_{hid}_ana").input("too broad")
    at.button(key=f"h_reject_{hid}").click().run()
    assert not at.exception and not at.error
    assert f"Heuristic #{hid} rejected by ana" in _texts(at.success)
    row = _row(populated_ws, hid)
    assert (row["status"], row["version"], row["approved_by"]) == ("rejected", 3, None)
    last = _reviews(populated_ws, hid)[-1]
    assert (last["action"], last["who"], last["identity_kind"], last["comment"]) == (
        "reject", "ana", "self-declared", "too broad")
    with populated_ws.open() as ws:
        assert hid not in [h["id"] for h in review.approved_heuristics(ws, populated_ws.task)]
    assert at.button(key=f"h_reject_{hid}").disabled  # nothing left to reject


def test_impact_of_each_heuristic_is_shown_harmful_first(
        open_page: OpenPage, populated_ws: Populated, fake_openai: FakeOpenAI) -> None:
    from pld.pipeline.resolve.impact import measure_impact

    first = populated_ws.approved_heuristic_ids[0]
    with populated_ws.open() as ws:
        first_text = review_rows.fetch(ws, first)["text"]

    def student(body: dict[str, Any]) -> str:
        # Misled by the first heuristic: with it, everything is that label.
        system = next(m["content"] for m in body["messages"] if m["role"] == "system")
        return populated_ws.labels[0] if first_text in system else populated_ws.labels[1]

    fake_openai.responder = student
    model = fake_openai.model_string("student")
    with populated_ws.open() as ws:
        report = measure_impact(ws, populated_ws.task, model)
    at = open_page("heuristics", task=populated_ws.task, reviewer="ana", student=model)
    at.run()
    assert not at.exception
    table = _frame(at, "effect")
    assert list(table["id"]) == [h["heuristic_id"] for h in report["heuristics"]]
    assert list(table["effect"]) == [h["effect"] for h in report["heuristics"]]
    assert list(table["effect"]) == sorted(table["effect"])
    assert "Measured on an earlier set" not in _texts(at.warning)

    at.button(key="h_impact").click().run()
    assert "Measuring each heuristic's effect" in _texts(at.success)
    with populated_ws.open() as ws:
        [job] = jobs.list_jobs(ws, populated_ws.task, "impact")
        assert job.args == ["review", "impact", populated_ws.task, "--student", model]
        # Once the approved set changes, the report says it is about an earlier set.
        review.reject(ws, first, Identity("ana"))
    at.run()
    assert "Measured on an earlier set" in _texts(at.warning)


def test_text_names_and_comments_are_shown_exactly_as_written(
        open_page: OpenPage, populated_ws: Populated) -> None:
    # Before: the heuristic above the Approve button was rendered as Markdown (fake badges,
    # links, hidden reference lines), and a comment could forge an "approve by alice" line.
    hid = populated_ws.heuristic_ids[3]
    with populated_ws.open() as ws:
        edited = review.edit(ws, hid, SPOOF, Identity("mallory_*x*"), base_version=1,
                             comment="ok\n**approve** by alice")
    at = _open(open_page, populated_ws, hid)
    assert SPOOF in [c.value for c in at.code]
    assert "comment: ok\n**approve** by alice" in _texts(at.text)
    assert_not_rendered(at)
    assert "<em>x</em>" not in rendered(at)  # the name is not italicised either
    assert edited["version"] == 2


def test_the_preamble_is_reviewed_like_a_heuristic(open_page: OpenPage,
                                                   populated_ws: Populated) -> None:
    # Before: the prompt began with the task description, which nobody approved.
    with populated_ws.open() as ws:
        row = preamble.get_preamble(ws, populated_ws.task)
    assert row is not None and row["status"] == "approved"
    at = open_page("heuristics", task=populated_ws.task, reviewer="dan")
    at.run()
    assert row["text"] in [c.value for c in at.code]
    key = f"pre_text_{populated_ws.task}_dan"
    at.text_area(key=key).input(row["text"].replace("Label it", "Always label it")).run()
    at.button(key=f"pre_save_{populated_ws.task}").click().run()
    assert not at.exception
    assert "Preamble saved as version" in _texts(at.success)
    # dan wrote it: his approval is refused before the click (disabled) and after it.
    assert at.button(key=f"pre_approve_{populated_ws.task}").disabled
    other = open_page("heuristics", task=populated_ws.task, reviewer="Eve")
    other.run()
    other.button(key=f"pre_approve_{populated_ws.task}").click().run()
    assert not other.exception and "Preamble approved by eve" in _texts(other.success)
    with populated_ws.open() as ws:
        now = preamble.get_preamble(ws, populated_ws.task)
        hist = preamble.preamble_history(ws, populated_ws.task)
    assert now is not None and (now["status"], now["approved_by"]) == ("approved", "eve")
    assert "Always label it" in now["text"]
    assert [(h["action"], h["who"]) for h in hist][-2:] == [("edit", "dan"), ("approve", "eve")]


def test_the_preamble_box_opens_with_the_current_text_on_every_visit(
        visit_pages: Callable[..., Callable[[str], AppTest]], populated_ws: Populated) -> None:
    # Before: it was filled on the first visit only; after another page it opened empty, and
    # saving the empty box was refused, so the reviewer retyped the whole preamble.
    with populated_ws.open() as ws:
        row = preamble.get_preamble(ws, populated_ws.task)
    assert row is not None
    key = f"pre_text_{populated_ws.task}_dan"
    visit = visit_pages(task=populated_ws.task, reviewer="dan")
    assert visit("heuristics").text_area(key=key).value == row["text"]
    visit("home")
    at = visit("heuristics")
    assert at.text_area(key=key).value == row["text"]
    # What the reviewer types stays while the page reruns.
    at.text_area(key=key).input(row["text"] + " Be brief.").run()
    at.run()
    assert at.text_area(key=key).value == row["text"] + " Be brief."


def test_an_accepted_proposal_says_whose_it_is(open_page: OpenPage,
                                                populated_ws: Populated) -> None:
    # Before: the page said "Original text, written by ana" of the teacher's text ana accepted.
    with populated_ws.open() as ws:
        decisions.decide_proposal(ws, add_proposal(ws, "carol", populated_ws.task), True,
                                  Identity("ana"))
        hid = max(h["id"] for h in review.list_heuristics(ws, populated_ws.task))
    at = _open(open_page, populated_ws, hid)
    says = "written by teacher openai/t in a job started by carol, accepted by ana"
    assert f"Original text, {says}." in _texts(at.caption)
    assert "written by ana" not in _texts(at.caption)
    assert (f"The current text was {says}: the four-eyes rule needs someone other than ana"
            in _texts(at.warning))
    assert at.button(key=f"h_approve_{hid}").disabled
    assert says in unescaped(at.button(key=f"h_approve_{hid}").help)
