"""The teacher and student models chosen in the sidebar (pld.ui.sidebar): kept in the page
address like the reviewer name, so a reload keeps them; a model string from the address is
checked first, and a refused one is never shown past its provider or host."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from pld.llm.registry import DEFAULT_MODEL
from pld.tasks.store import Example, save_task
from pld.workspace import open_workspace
from tests.pages.conftest import Populated, unescaped

OpenPage = Callable[..., AppTest]
TEACHER, STUDENT = "anthropic/claude-sonnet-4-5", "openai/gpt-4o-mini"


def _texts(elements: Any) -> str:
    return "\n".join(str(e.value) for e in elements)


def _everything(at: AppTest) -> str:
    """Every text the page and its sidebar show, input values included."""
    return "\n".join(_texts(getattr(where, kind)) for where in (at, at.sidebar)
                     for kind in ("error", "warning", "info", "success", "caption", "markdown",
                                  "text", "text_input", "code"))


def _param(at: AppTest, name: str) -> str | None:
    value = at.query_params.get(name)
    return value[-1] if isinstance(value, list) else value


def test_the_chosen_models_survive_a_reload_through_the_address(
        open_page: OpenPage, populated_ws: Populated) -> None:
    # Before: a reload put both back to local/default (only the reviewer name was kept), and
    # the next job ran on the slow embedded model without a word.
    at = open_page("heuristics", task=populated_ws.task, reviewer="ana").run()
    assert _param(at, "teacher") is None and _param(at, "student") is None  # defaults: none
    at.sidebar.text_input(key="teacher_model").input(TEACHER).run()
    at.sidebar.text_input(key="student_model").input(STUDENT).run()
    assert (_param(at, "teacher"), _param(at, "student")) == (TEACHER, STUDENT)
    reloaded = open_page("heuristics", task=populated_ws.task)
    for name in ("reviewer", "teacher", "student"):
        reloaded.query_params[name] = _param(at, name)
    reloaded.run()
    assert not reloaded.exception and not reloaded.sidebar.error
    assert reloaded.sidebar.text_input(key="teacher_model").value == TEACHER
    assert reloaded.sidebar.text_input(key="student_model").value == STUDENT
    assert f"The teacher {TEACHER} merges" in unescaped(_texts(reloaded.markdown))
    # Back to the default: it leaves the address.
    reloaded.sidebar.text_input(key="teacher_model").input(DEFAULT_MODEL).run()
    assert _param(reloaded, "teacher") is None and _param(reloaded, "student") == STUDENT


def test_a_model_typed_in_this_session_wins_over_the_address(
        open_page: OpenPage, populated_ws: Populated) -> None:
    at = open_page("heuristics", task=populated_ws.task).run()
    at.sidebar.text_input(key="teacher_model").input(TEACHER).run()
    at.query_params["teacher"] = STUDENT  # another tab's address, say
    at.run()
    assert at.sidebar.text_input(key="teacher_model").value == TEACHER
    assert _param(at, "teacher") == TEACHER


@pytest.mark.parametrize("bad", [
    "openai-compatible/m@http://u:sk-SECRET@llm.example/v1",
    "openai-compatible/m@https://llm.example/v1?api_key=sk-SECRET",
    "sk-SECRET/gpt-4o",
    "local/sk-SECRET",
    "sk-SECRET",
])
def test_a_bad_model_in_the_address_is_refused_without_echoing_it(
        open_page: OpenPage, populated_ws: Populated, bad: str) -> None:
    at = open_page("heuristics", task=populated_ws.task, reviewer="ana")
    at.query_params["teacher"] = bad
    at.run()
    assert not at.exception
    assert at.sidebar.text_input(key="teacher_model").value == DEFAULT_MODEL
    errors = unescaped(_texts(at.sidebar.error))
    assert "The teacher model in the page address was refused: " in errors
    assert f"Using {DEFAULT_MODEL} instead." in errors
    assert "SECRET" not in _everything(at)
    assert _param(at, "teacher") is None  # dropped from the address
    # Choosing a model answers it: the message goes.
    at.sidebar.text_input(key="teacher_model").input(TEACHER).run()
    assert not at.sidebar.error and _param(at, "teacher") == TEACHER


def test_the_chosen_task_survives_a_reload_through_the_address(
        open_page: OpenPage, populated_ws: Populated) -> None:
    # Before: a reload kept the reviewer and the models but put the sidebar back on the first
    # task, so the analyst found herself on another task's page.
    ws = open_workspace(populated_ws.path)
    save_task(ws, name="aaa-first", kind="custom", labels=["x", "y"], source="test",
              description="A second task, first in name order.", params={},
              examples=[Example(split=s, ext_id=f"{s}{i}", text=f"text {s} {i}", label=lab,
                                meta={})
                        for s in ("train", "val", "test") for i, lab in enumerate(("x", "y"))])
    at = open_page("heuristics", task=populated_ws.task, reviewer="ana").run()
    assert _param(at, "task") == populated_ws.task
    reloaded = open_page("heuristics")
    reloaded.query_params["task"] = populated_ws.task
    reloaded.run()
    assert not reloaded.exception
    assert reloaded.sidebar.selectbox(key="task").value == populated_ws.task
    stranger = open_page("heuristics")
    stranger.query_params["task"] = "no-such-task"
    stranger.run()
    assert stranger.sidebar.selectbox(key="task").value == "aaa-first"
