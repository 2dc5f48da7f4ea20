"""What the Conflicts and Export pages say of the conflict loop's evidence and outcome: the
paired CI beside a measured proposal and beside an iteration's comparison with the best version,
and, when the loop ended at the prompt without heuristics, the plain statement that no heuristic
helped, instead of an error."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from pld.pipeline import student
from pld.pipeline.resolve import loop, state
from pld.workspace import now
from tests.fakes.openai_server import FakeOpenAI
from tests.pages.conftest import Populated, unescaped
from tests.pages.test_conflicts_page import _responder

OpenPage = Callable[..., AppTest]
HELD = {"change": 0.036, "ci": [-0.05, 0.12], "n": 40, "metric": "calibrated",
        "verdict": "not distinguishable"}


def _texts(elements: Any) -> str:
    return unescaped("\n".join(str(e.value) for e in elements))


@pytest.fixture
def one_iteration(populated_ws: Populated, fake_openai: FakeOpenAI) -> Populated:
    """``populated_ws`` after one interactive iteration of the loop."""
    fake_openai.responder = _responder
    model = fake_openai.model_string()
    with populated_ws.open() as ws:
        loop.resolve(ws, populated_ws.task, model, model, iterations=1, attribution="tfidf")
    return populated_ws


def test_the_ci_shows_beside_a_measured_proposal_and_an_iteration(
        open_page: OpenPage, one_iteration: Populated) -> None:
    # Before: a measured removal showed its numbers only inside its rationale, and nothing
    # said whether an iteration's difference from the best version was more than noise.
    pop = one_iteration
    target = pop.approved_heuristic_ids[0]
    with pop.open() as ws:
        run_id = ws.query("SELECT run_id FROM proposals LIMIT 1")[0]["run_id"]
        with ws.write() as db:
            db["proposals"].insert({
                "task": pop.task, "run_id": run_id, "iteration": 1, "heuristic_id": target,
                "kind": "remove", "text": "", "rationale": "Measured, not proposed.",
                "evidence": state.stored_evidence([], HELD), "status": "pending",
                "created_at": now()})
        state.update_record(ws, pop.task, 1, comparison={
            "delta": -0.02, "ci": [-0.11, 0.07], "n": 40, "verdict": "not distinguishable"})
    at = open_page("conflicts", task=pop.task, reviewer="ana").run()
    assert not at.exception
    warned = _texts(at.warning)
    assert ("removing it changes validation macro-F1 by +0.036, paired 95% CI [-0.050, +0.120] "
            "on 40 validation items: not distinguishable from zero") in warned
    assert "people decide" in warned
    assert ("Iteration 1 against the best version before it: macro-F1 -0.020, paired 95% CI "
            "[-0.110, +0.070] on 40 validation items: not distinguishable from zero"
            in _texts(at.info))
    table = next(d.value for d in at.dataframe if "adopted" in d.value.columns)
    assert list(table["paired 95% CI vs best"]) == ["[-0.110, +0.070] not distinguishable"]


def test_a_loop_that_ended_without_heuristics_is_stated_not_refused(
        open_page: OpenPage, one_iteration: Populated) -> None:
    # Before: the Export page showed the zero-shot version as an error ("Refused: ... it has
    # no heuristics") and the Conflicts page said nothing of it.
    pop = one_iteration
    with pop.open() as ws:
        zero = student.store_prompt(ws, pop.task, student.prompt_text(ws, pop.task, []), [],
                                    origin="resolve")
        state.update_record(ws, pop.task, 1, best_version=zero.version)
    statement = "No heuristic helped on validation: the best prompt is the zero-shot baseline"
    conflicts = open_page("conflicts", task=pop.task, reviewer="ana").run()
    assert not conflicts.exception
    assert statement in _texts(conflicts.info)
    export = open_page("export", task=pop.task).run()
    assert not export.exception
    assert statement in _texts(export.info)
    export.selectbox(key="x_version").set_value(zero.version).run()
    assert not export.error
    assert "it is the zero-shot baseline, which is not exported" in _texts(export.caption)
