"""The app entry (``app.py`` with st.navigation) and its Home page, on an empty and on a
populated workspace."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from streamlit.commands.page_config import _get_favicon_string
from streamlit.testing.v1 import AppTest

from pld import review
from pld.identity import Identity
from pld.workspace import dumps, now
from tests.pages.conftest import PAGES_DIR, Populated, unescaped

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
            row["prompts"]) == ("demo", len(populated_ws.rule_ids),
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
    assert any(f"no workspace file at {typo}" in unescaped(w.value) for w in at.sidebar.warning)
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


def test_the_tasks_table_fits_the_page(populated_ws: Populated) -> None:
    # Before: the label names in a cell and headings like "prompt versions" pushed the table
    # past a 1400 px window, cutting off its last columns.
    at = _app().run()
    [row] = _tasks_table(at)
    assert row["labels"] == len(populated_ws.labels)
    assert all(len(str(k)) <= 10 and len(str(v)) <= 10 for k, v in row.items())
    assert any(unescaped(c.value) == f"demo labels: {', '.join(populated_ws.labels)}"
               for c in at.caption)


def test_the_queue_groups_one_runs_drafts(open_page: Callable[..., AppTest],
                                          populated_ws: Populated) -> None:
    # Before: each draft a consolidate run wrote was its own card, fourteen in a row.
    with populated_ws.open() as ws:
        own = review.create_heuristic(ws, populated_ws.task, "If unsure, answer routine.",
                                      Identity("carol"))
        with ws.write() as db:
            run = int(db["runs"].insert({
                "task": populated_ws.task, "kind": "consolidate", "params": dumps({}),
                "status": "done", "started_at": now(), "updated_at": now(),
                "started_by": "bob"}).last_pk)
        drafts = [populated_ws.heuristic_ids[3], review.create_heuristic(
            ws, populated_ws.task, "If the message is a threat, answer escalate-fraud.",
            Identity.teacher("local/default"))]
        with ws.write() as db:
            db.execute("UPDATE heuristics SET run_id = ? WHERE id IN (?, ?)", [run, *drafts])
    at = open_page("home", reviewer="alice").run()
    assert not at.exception
    assert [m.value for m in at.markdown if "drafts from" in m.value] == [
        f"**2 drafts from consolidate run {run}**"]
    assert any("started by bob at" in unescaped(c.value) for c in at.caption)
    (group,) = [e for e in at.expander if e.label == f"The 2 drafts of run {run}"]
    inside = [t.value for t in group.text]
    assert [any(f"heuristic #{h} " in t for t in inside) for h in drafts] == [True, True]
    # A draft a person wrote stays on its own, outside the group; every draft still opens.
    assert not any(f"heuristic #{own} " in t for t in inside)
    assert any(f"heuristic #{own} " in t.value for t in at.text)
    opened = [b for b in group.button if b.label.startswith("Open heuristic")]
    assert [b.label for b in opened] == [f"Open heuristic #{h}" for h in drafts]


def test_the_app_asks_nothing_of_outside_servers(app_ws: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # Before: the page icon was a Material icon, which the browser fetches from Google's font
    # CDN (failing offline); the toolbar offered "Deploy"; usage statistics went to Streamlit.
    config = tomllib.loads((APP.parent / ".streamlit" / "config.toml").read_text())
    assert config["client"]["toolbarMode"] == "viewer"
    assert config["browser"]["gatherUsageStats"] is False
    seen: dict[str, Any] = {}
    real = st.set_page_config

    def record(**kw: Any) -> None:
        seen.update(kw)
        real(**kw)

    monkeypatch.setattr(st, "set_page_config", record)
    at = _app().run()
    assert not at.exception
    icon = _get_favicon_string(seen["page_icon"])
    assert icon.startswith("data:image/svg+xml;base64,")  # inline: nothing to fetch
