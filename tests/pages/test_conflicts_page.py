"""The Conflicts page: validation errors, the heuristics involved, the teacher's proposals and
decisions on them, after one real conflict-loop iteration against the fake OpenAI server."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from pld import jobs, review, review_rows
from pld.identity import Identity
from pld.pipeline import estimate, student
from pld.pipeline.resolve import decisions, loop, state, view
from pld.tasks import load_task
from pld.ui.escape import literal
from pld.workspace import open_workspace
from tests.conftest import approve_seen
from tests.fakes.openai_server import FakeOpenAI
from tests.pages.conftest import (
    SPOOF,
    Populated,
    assert_not_rendered,
    collapsed,
    rendered,
    shown,
    unescaped,
)

OpenPage = Callable[..., AppTest]


def _texts(elements: Any) -> str:
    """What the elements say as a reader sees it (messages are shown escaped)."""
    return unescaped("\n".join(str(e.value) for e in elements))


def _frame(at: AppTest, column: str) -> Any:
    """The first dataframe on the page with ``column`` (the jobs panel has its own)."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def _responder(body: dict[str, Any]) -> str:
    """Student: always 'routine'. Teacher: edit the focus rule, citing the errors shown."""
    content = body["messages"][-1]["content"]
    focus = re.search(r"closely related to rule (\d+)", content)
    if focus is None:
        return "routine"
    n = int(focus.group(1))
    cited = [int(i) for i in re.findall(r"#(\d+) \(correct label", content)]
    proposals = [{"kind": "edit", "text": f"Revised rule {n}: check the message's intent first.",
                  "rationale": f"rule {n} is too narrow", "evidence": cited}]
    if n == 1:
        proposals.append({"kind": "add", "text": "If nothing else applies, answer routine.",
                          "rationale": "a fallback", "evidence": cited[:1]})
    return json.dumps({"proposals": proposals})


@pytest.fixture
def looped(populated_ws: Populated, fake_openai: FakeOpenAI) -> Populated:
    """``populated_ws`` after one interactive iteration: scored, proposals pending."""
    fake_openai.responder = _responder
    model = fake_openai.model_string()
    with populated_ws.open() as ws:
        summary = loop.resolve(ws, populated_ws.task, model, model, iterations=1,
                               attribution="tfidf")
    assert summary.stop_reason == state.AWAITING_REVIEW and summary.pending > 0
    return populated_ws


def _proposals(pop: Populated) -> list[dict[str, Any]]:
    with pop.open() as ws:
        return view.list_proposals(ws, pop.task)


def test_empty_workspace_says_to_load_a_task(open_page: OpenPage) -> None:
    at = open_page("conflicts")
    at.run()
    assert not at.exception
    assert [t.value for t in at.title] == ["Conflicts"]
    assert "No task is loaded" in _texts(at.info)


def test_no_iteration_yet_and_the_loop_starts_as_a_job(open_page: OpenPage, app_ws: Path,
                                                      fake_openai: FakeOpenAI) -> None:
    with open_workspace(app_ws) as ws:
        load_task(ws, "demo")
    model = fake_openai.model_string()
    at = open_page("conflicts", task="demo", reviewer="ana", teacher=model, student=model)
    at.run()
    assert not at.exception
    assert "No conflict-loop iteration" in unescaped(_texts(at.info))
    at.button(key="c_run").click().run()
    assert not at.exception
    assert "Conflict loop started" in _texts(at.success)
    with open_workspace(app_ws) as ws:
        started = jobs.list_jobs(ws, "demo", "resolve")
    assert [j.args for j in started] == [
        ["resolve", "demo", "--student", model, "--teacher", model, "--iterations", "1"]]


def test_populated_without_loop_renders(open_page: OpenPage, populated_ws: Populated) -> None:
    at = open_page("conflicts", task=populated_ws.task, reviewer="ana")
    at.run()
    assert not at.exception
    assert "No conflict-loop iteration" in unescaped(_texts(at.info))
    # What a loop of these settings could cost, before it is started: the same count the
    # CLI's --estimate-only gives.
    at.button(key="c_estimate").click().run()
    assert not at.exception
    with populated_ws.open() as ws:
        expected = estimate.summarize(ws, loop.planned_calls(
            ws, populated_ws.task, "local/default", "local/default", iterations=1))
    assert expected["calls"] > 0
    assert any(t.value.startswith(f"Estimate: {expected['calls']:,} calls ("
                                  f"{expected['cached']:,} already cached") for t in at.text)


def test_errors_side_by_side_with_heuristics_and_proposals(open_page: OpenPage,
                                                          looped: Populated) -> None:
    at = open_page("conflicts", task=looped.task, reviewer="ana")
    at.run()
    assert not at.exception
    assert len(at.get("plotly_chart")) == 1
    history = _frame(at, "adopted")
    assert list(history["iteration"]) == [1]
    assert list(history["adopted"]) == ["first of its series"]
    assert list(history["Δ vs best"]) == [""]  # no best before the first: blank, not "None"
    with looped.open() as ws:
        errors = view.errors_for_iteration(ws, looped.task, 1)
    first = errors[0]
    markdown = _texts(at.markdown)
    assert f"**Example #{first['example_id']}**" in markdown
    assert f"Gold **{literal(first['gold'])}** · predicted **routine**" in markdown
    h = first["heuristics"][0]
    assert f"#{h['id']} v{h['version']} (similarity" in markdown
    assert first["text"] in _texts(at.text)
    # Errors come ten to a page.
    shown = sum("**Example #" in m.value for m in at.markdown)
    assert shown == min(10, len(errors))
    # Every pending proposal shows its change as a diff, with accept/reject buttons.
    pending = [p for p in _proposals(looped) if p["status"] == "pending"]
    assert "<ins" in _texts(at.get("html"))
    for p in pending:
        assert at.button(key=f"c_accept_{p['id']}")


def test_errors_can_be_narrowed_to_those_a_proposal_addresses(open_page: OpenPage,
                                                               looped: Populated) -> None:
    with looped.open() as ws:
        errors = view.errors_for_iteration(ws, looped.task, 1)
        kept = view.list_proposals(ws, looped.task, 1)[0]["id"]
        cited = [e["example_id"] for e in errors[:2]]
        with ws.write() as db:  # one proposal left: a new heuristic citing two of the errors
            db.execute("DELETE FROM proposals WHERE id != ?", [kept])
            db.execute("UPDATE proposals SET kind = 'add', heuristic_id = NULL, evidence = ? "
                       "WHERE id = ?", [json.dumps(cited), kept])
    addressed = [e for e in errors if e["example_id"] in cited]
    assert len(addressed) == 2 < len(errors)
    at = open_page("conflicts", task=looped.task, reviewer="ana").run()
    at.toggle(key="c_err_with_prop").set_value(True).run()
    assert not at.exception
    shown = [m.value for m in at.markdown if m.value.startswith("**Example #")]
    assert len(shown) == min(10, len(addressed))
    assert all(any(f"#{e['example_id']}**" in v for e in addressed) for v in shown)


def test_accept_an_edit_proposal(open_page: OpenPage, looped: Populated) -> None:
    edit = next(p for p in _proposals(looped) if p["kind"] == "edit")
    before = edit["heuristic"]
    at = open_page("conflicts", task=looped.task, reviewer="ana")
    at.run()
    at.text_input(key=f"c_comment_{edit['id']}_ana").input("good catch")
    at.button(key=f"c_accept_{edit['id']}").click().run()
    assert not at.exception
    assert f"Accepted proposal #{edit['id']}" in unescaped(_texts(at.success))
    after = next(p for p in _proposals(looped) if p["id"] == edit["id"])
    assert (after["status"], after["decided_by"]) == ("accepted", "ana")
    with looped.open() as ws:
        row = ws.query("SELECT * FROM heuristics WHERE id = ?", [edit["heuristic_id"]])[0]
        audit = ws.query("SELECT * FROM reviews WHERE entity = 'proposal' AND entity_id = ?",
                         [edit["id"]])
    assert (row["text"], row["status"], row["accepted_by"], row["version"]) == (
        edit["text"], "draft", "ana", before["version"] + 1)
    assert [(r["action"], r["who"], r["identity_kind"], r["comment"]) for r in audit] == [
        ("accept", "ana", "self-declared", "good catch")]
    # Decided proposals show who decided instead of buttons.
    assert not [b for b in at.button if b.key == f"c_accept_{edit['id']}"]
    # The errors still show the heuristic as the student and teacher saw it, and say it changed.
    with looped.open() as ws:
        cards = view.errors_for_iteration(ws, looped.task, 1)
        prompt = student.get_prompt(ws, looped.task, 1)
    shown = [h for e in cards for h in e["heuristics"] if h["id"] == edit["heuristic_id"]]
    assert shown
    assert all((h["text"], h["version"], h["text_now"], h["version_now"]) == (
        before["text"], before["version"], edit["text"], before["version"] + 1) for h in shown)
    assert before["text"] in prompt.text and edit["text"] not in prompt.text
    # The exact prompt of the iteration, byte for byte, not today's heuristics.
    assert prompt.text in [c.value for c in at.code]


def test_one_card_per_proposal_listing_its_examples(open_page: OpenPage,
                                                   looped: Populated) -> None:
    # Before: a proposal was drawn once in the Proposals tab and again in the card of every
    # error it addressed, each copy with its own Accept and Reject buttons.
    with looped.open() as ws:
        errors = view.errors_for_iteration(ws, looped.task, 1)
        proposals = view.list_proposals(ws, looped.task, 1)
    assert any(sum(view.addresses(p, e) for e in errors) > 1 for p in proposals)
    at = open_page("conflicts", task=looped.task, reviewer="ana")
    at.run()
    assert not at.exception
    for label in ("Accept", "Reject"):
        keys = [b.key for b in at.button if b.label == label]
        assert sorted(keys) == sorted(f"c_{label.lower()}_{p['id']}" for p in proposals)
    # Each card lists the examples it is about: the errors it addresses, the ones it cites.
    tables = [d.value for d in at.dataframe if "cited" in d.value.columns]
    assert len(tables) == len(proposals)
    for p, table in zip(proposals, tables, strict=True):
        addressed = {e["example_id"] for e in errors if view.addresses(p, e)}
        assert set(table["example"]) == addressed | set(p["evidence"])
        assert set(table.loc[table["cited"], "example"]) == set(p["evidence"])
    # The error cards name the proposals that address them, without buttons of their own.
    first = errors[0]
    related = [p["id"] for p in proposals if view.addresses(p, first)]
    assert any(f"#{related[0]} (" in c.value and "Proposals tab" in c.value
               for c in at.caption)
    target = next(p for p in proposals if p["id"] == related[0])
    at.button(key=f"c_reject_{target['id']}").click().run()
    assert not at.exception
    assert f"Rejected proposal #{target['id']}" in unescaped(_texts(at.success))
    assert next(p for p in _proposals(looped) if p["id"] == target["id"])["status"] == "rejected"


def test_errors_grouped_by_heuristic(open_page: OpenPage, looped: Populated) -> None:
    with looped.open() as ws:
        errors = view.errors_for_iteration(ws, looped.task, 1)
    groups = view.errors_by_heuristic(errors)
    assert sum(len(g) for _, g in groups) >= len(errors)
    assert [len(g) for h, g in groups if h is not None] == sorted(
        (len(g) for h, g in groups if h is not None), reverse=True)
    at = open_page("conflicts", task=looped.task, reviewer="ana").run()
    at.radio(key="c_err_arrange").set_value("by heuristic").run()
    assert not at.exception
    heads = [m.value for m in at.markdown if m.value.startswith("**Heuristic #")]
    assert heads == [f"**Heuristic #{h['id']}** · {len(g)} error(s)"
                     for h, g in groups[:10] if h is not None]
    tables = [d.value for d in at.dataframe if "similarity" in d.value.columns]
    assert [list(t["example"]) for t in tables] == [
        [e["example_id"] for e in g] for h, g in groups[:10] if h is not None]


def test_history_names_each_student_and_starts_a_series_per_student(
        open_page: OpenPage, looped: Populated, fake_openai: FakeOpenAI) -> None:
    # Before: iteration 2 (another student) was ticked "adopted" and drawn green on the same
    # line as iteration 1, under a legend saying "not below the best so far", with no student
    # column and a blank "stop" cell.
    fake_openai.responder = _responder
    first, second = fake_openai.model_string(), fake_openai.model_string("second-student")
    with looped.open() as ws:
        loop.resolve(ws, looped.task, second, first, iterations=1, attribution="tfidf")
        history = view.iteration_history(ws, looped.task)
    assert [(h["iteration"], h["student"], h["series"]) for h in history] == [
        (1, first, 1), (2, second, 2)]
    at = open_page("conflicts", task=looped.task, reviewer="ana").run()
    assert not at.exception
    table = _frame(at, "adopted")
    assert list(table.columns[:3]) == ["iteration", "student", "series"]
    assert list(table["student"]) == [first, second]
    assert list(table["series"]) == [1, 2]
    assert list(table["adopted"]) == ["first of its series"] * 2
    assert list(table["Δ vs best"]) == ["", ""]  # nothing before either to compare with
    assert list(table["stop"]) == ["awaiting review"] * 2
    # One line per series, named by its student; the legend names what each colour means,
    # the same words the table uses.
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    traces = spec["data"]
    assert [t["x"] for t in traces] == [[1], [2]]
    assert [t["name"] for t in traces] == [f"series 1: {first}", f"series 2: {second}"]
    caption = _texts(at.caption)
    assert "Each line is a series: one student on one set of validation items" in caption
    colours = {t["marker"]["color"][0] for t in traces}
    assert len(colours) == 1
    assert "Blue: the first iteration of a series" in caption
    assert colours == {"#1565c0"}
    assert "Green: adopted: better than its series' best beyond noise" in caption


def test_no_identity_disables_decisions(open_page: OpenPage, looped: Populated) -> None:
    pending = [p for p in _proposals(looped) if p["status"] == "pending"]
    at = open_page("conflicts", task=looped.task)
    at.run()
    assert not at.exception
    assert "Nobody is identified" in _texts(at.warning)
    assert all(at.button(key=f"c_accept_{p['id']}").disabled for p in pending)


def test_running_loop_is_shown_when_the_run_section_is_collapsed(
        open_page: OpenPage, looped: Populated, running_job: Callable[[str, str], int]) -> None:
    running_job(looped.task, "resolve")
    at = open_page("conflicts", task=looped.task, reviewer="ana").run()
    assert not at.exception
    assert at.button(key="c_run") in collapsed(at, "button")  # the loop has history
    bars = shown(at, "progress")
    assert len(bars) == 1 and "3 of 10" in bars[0].proto.text
    assert "/min" in bars[0].proto.text and "left" in bars[0].proto.text  # rate and time left


def test_iteration_choice_moves_to_a_new_iteration(open_page: OpenPage, looped: Populated,
                                                   fake_openai: FakeOpenAI) -> None:
    at = open_page("conflicts", task=looped.task, reviewer="ana")
    at.run()
    assert at.selectbox(key="c_iteration").value == 1
    model = fake_openai.model_string()
    with looped.open() as ws:
        for p in view.list_proposals(ws, looped.task, 1):
            decisions.decide_proposal(ws, p["id"], True, Identity("bea"))
        for h in review.list_heuristics(ws, looped.task, review_rows.DRAFT):
            approve_seen(ws, h["id"], Identity("carl"))
        loop.resolve(ws, looped.task, model, model, iterations=1, attribution="tfidf")
        newest = view.iteration_history(ws, looped.task)[-1]["iteration"]
    assert newest > 1
    at.run()
    assert not at.exception
    assert at.selectbox(key="c_iteration").value == newest
    # A reviewer's own choice of an older iteration is kept while no newer one appears.
    at.selectbox(key="c_iteration").set_value(1).run()
    at.run()
    assert at.selectbox(key="c_iteration").value == 1


def test_a_loop_whose_teacher_failed_says_so_and_retries(open_page: OpenPage,
                                                         populated_ws: Populated,
                                                         fake_openai: FakeOpenAI) -> None:
    def rambling(body: dict[str, Any]) -> str:
        if re.search(r"closely related to rule \d+", body["messages"][-1]["content"]):
            return "Let me think about every rule in turn."  # never the JSON asked for
        return "routine"

    fake_openai.responder = rambling
    model = fake_openai.model_string()
    with populated_ws.open() as ws:
        summary = loop.resolve(ws, populated_ws.task, model, model, iterations=1,
                               attribution="tfidf")
    assert summary.stop_reason == state.TEACHER_FAILED

    at = open_page("conflicts", task=populated_ws.task, reviewer="ana", teacher=model,
                   student=model)
    at.run()
    assert not at.exception
    warning = _texts(at.warning)
    assert "Every teacher call of iteration 1 failed" in warning and "UnusableReply" in warning
    assert "teacher-failed" in _frame(at, "stop")["stop"].tolist()
    at.button(key="c_run").click().run()
    with populated_ws.open() as ws:
        (job,) = jobs.list_jobs(ws, populated_ws.task, "resolve")
        jobs.cancel(ws, job)
    assert job.args[-1] == "--retry-failed"


def test_model_and_reviewer_text_is_shown_literally(open_page: OpenPage, looped: Populated) -> None:
    """Heuristic text, an example's id and a reviewer's name are never rendered as Markdown."""
    with looped.open() as ws:
        first = view.errors_for_iteration(ws, looped.task, 1)[0]
        with ws.write() as db:
            # As if the heuristics had read so when the loop ran: the cards show the text of
            # the version in the iteration's prompt, which the trail holds.
            db.execute("UPDATE heuristics SET text = ?", [SPOOF])
            db.execute("UPDATE reviews SET after = json_set(after, '$.text', ?) "
                       "WHERE entity = 'heuristic'", [SPOOF])
            db.execute("UPDATE examples SET ext_id = ? WHERE id = ?",
                       ["x_*y*` **APPROVED**`", first["example_id"]])
        decided = view.list_proposals(ws, looped.task, 1)[0]
        decisions.decide_proposal(ws, decided["id"], False, Identity("bob_*x*"))
    at = open_page("conflicts", task=looped.task, reviewer="ana")
    at.run()
    assert not at.exception
    assert SPOOF in [t.value for t in at.text]  # the heuristics involved, as written
    assert_not_rendered(at)
    html = rendered(at)
    assert any(unescaped(c.value).startswith("rejected by bob_*x* at ") for c in at.caption)
    assert "by bob_*x* at" in html and "bob_<em>" not in html
    assert "(x_*y*` **APPROVED**`)" in html and "<code>" not in html


def test_a_revert_says_which_heuristics_wait_for_people(open_page: OpenPage,
                                                        looped: Populated) -> None:
    draft = looped.heuristic_ids[3]
    with looped.open() as ws:
        state.update_record(ws, looped.task, 1, reverted_to_draft=[draft],
                            not_reverted=[looped.heuristic_ids[0]])
    at = open_page("conflicts", task=looped.task, reviewer="ana")
    at.run()
    assert not at.exception
    warned = _texts(at.warning)
    assert f"waiting for your approval on the Heuristics page: #{draft}" in warned
    assert f"left as they are: #{looped.heuristic_ids[0]}" in warned
    with looped.open() as ws:
        approve_seen(ws, draft, Identity("bea"))
    at.run()
    assert "waiting for your approval" not in _texts(at.warning)


def test_why_the_loop_stopped_and_what_was_dropped(open_page: OpenPage,
                                                   looped: Populated) -> None:
    # Before: a loop that stopped with 0 proposals did not say why.
    with looped.open() as ws:
        state.update_record(ws, looped.task, 1, dropped=[{
            "heuristic_id": looped.heuristic_ids[0], "kind": "edit", "text": "**same** text",
            "reason": "its text is already a current heuristic's, word for word"}])
    at = open_page("conflicts", task=looped.task, reviewer="ana")
    at.run()
    assert not at.exception
    info = _texts(at.info)
    assert "After iteration 1 the loop stopped because it waits for people" in info
    assert "1 proposal(s) of the teacher were dropped" in info
    assert "dropped because its text is already a current heuristic's" in _texts(at.caption)
    assert "**same** text" in [t.value for t in at.text]
