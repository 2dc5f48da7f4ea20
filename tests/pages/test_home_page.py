"""The app entry (``app.py`` with st.navigation) and its Home page, on an empty and on a
populated workspace."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from streamlit.testing.v1 import AppTest

from pld import review
from pld.identity import Identity
from tests.pages.conftest import PAGES_DIR, Populated

APP = PAGES_DIR.parent / "app.py"


def _app() -> AppTest:
    return AppTest.from_file(str(APP), default_timeout=60)


def _tasks_table(at: AppTest) -> list[dict[str, object]]:
    frames = [d.value for d in at.dataframe if "approved" in d.value.columns]
    assert len(frames) == 1
    return frames[0].to_dict("records")


def test_app_opens_home_on_an_empty_workspace(app_ws: Path) -> None:
    at = _app().run()
    assert not at.exception
    assert [t.value for t in at.title] == ["PLD Studio"]
    assert {m.label: m.value for m in at.metric} == {
        "Tasks loaded": "0", "LLM calls": "0", "Cache hits": "0"}
    assert any("No task loaded yet" in i.value for i in at.info)
    # The built-in tasks are listed, the demo among them.
    builtin = next(d.value for d in at.dataframe if "data found" in d.value.columns)
    assert "demo" in set(builtin["task"])
    # Notes are whole sentences (not cut off in a cell); the custom task is not a row that
    # tells a browser user to run a command, but points at the Data page.
    assert "custom" not in set(builtin["task"])
    notes = [t.value for t in at.text]
    assert any("in-house demo data shipped in data/demo/" in n for n in notes)
    assert any("upload a CSV or JSONL file on the Data page" in c.value for c in at.caption)
    assert not any("python -m pld load custom" in e.value
                   for e in [*at.caption, *at.text, *at.markdown])
    # app.py draws the sidebar once; the page does not draw it again.
    assert [t.label for t in at.sidebar.text_input].count("Workspace file") == 1
    assert at.sidebar.text_input(key="ws_path").value == str(app_ws)


def test_app_home_on_a_populated_workspace(populated_ws: Populated) -> None:
    at = _app().run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Tasks loaded"] == "1" and int(metrics["LLM calls"]) == len(
        populated_ws.rule_ids)
    [row] = _tasks_table(at)
    assert (row["task"], row["rules"], row["heuristics"], row["approved"],
            row["prompt versions"]) == ("demo", len(populated_ws.rule_ids),
                                        len(populated_ws.heuristic_ids),
                                        len(populated_ws.approved_heuristic_ids), 1)
    assert at.sidebar.selectbox(key="task").value == "demo"


def test_home_page_on_its_own(open_page: Callable[..., AppTest],
                              populated_ws: Populated) -> None:
    at = open_page("home").run()
    assert not at.exception
    assert [t.value for t in at.title] == ["PLD Studio"]
    assert _tasks_table(at)[0]["task"] == "demo"


def test_a_mistyped_workspace_path_is_not_created_until_asked(
        open_page: Callable[..., AppTest], populated_ws: Populated, tmp_path: Path) -> None:
    at = open_page("home").run()
    typo = tmp_path / "wrokspace.db"
    at.sidebar.text_input(key="ws_path").set_value(str(typo)).run()
    assert not at.exception
    assert any(f"no workspace file at {typo}" in w.value for w in at.sidebar.warning)
    assert not typo.exists()
    at.sidebar.button(key="ws_create").click().run()
    assert not at.exception and typo.exists()
    assert not at.sidebar.warning
    assert {m.label: m.value for m in at.metric}["Tasks loaded"] == "0"
    # An existing file opens at once, without asking.
    at.sidebar.text_input(key="ws_path").set_value(str(populated_ws.path)).run()
    assert not at.sidebar.warning
    assert {m.label: m.value for m in at.metric}["Tasks loaded"] == "1"


def test_the_queue_lists_what_waits_for_me_and_opens_it(
        open_page: Callable[..., AppTest], populated_ws: Populated) -> None:
    hid = populated_ws.heuristic_ids[3]
    with populated_ws.open() as ws:
        edited = review.edit(ws, hid, "If the message asks for a refund, answer complaint.",
                             Identity("bob"), base_version=1)
    bob = open_page("home", reviewer="bob").run()
    assert not bob.exception
    assert f"heuristic #{hid} v2: you wrote it" in "\n".join(t.value for t in bob.text)
    alice = open_page("home", reviewer="alice").run()
    assert any(f"heuristic #{hid} v2 by bob" in t.value for t in alice.text)
    alice.button(key="home_open_0").click().run()
    assert alice.session_state["_pld_open_heuristic"] == hid
    heuristics = open_page("heuristics", reviewer="alice", task=populated_ws.task)
    heuristics.session_state["_pld_open_heuristic"] = hid
    heuristics.run()
    assert heuristics.selectbox(key="h_selected").value == hid
    with populated_ws.open() as ws:
        review.approve(ws, hid, Identity("alice"), base_version=edited["version"])
    assert not any(f"heuristic #{hid}" in t.value
                   for t in open_page("home", reviewer="alice").run().text)
