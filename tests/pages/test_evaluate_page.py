"""The Evaluate page: stored scores with CI, per-label table and confusion matrix, comparing
two evaluations, and running one in the background."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streamlit.testing.v1 import AppTest

from pld import jobs
from pld.number_format import delta_text, score, score_text
from pld.pipeline import evaluate, student
from pld.tasks import load_task
from pld.workspace import open_workspace
from tests.conftest import approve_seen
from tests.fakes.openai_server import FakeOpenAI
from tests.pages.conftest import Populated, _evaluation

OpenPage = Callable[..., AppTest]


def _texts(elements: Any) -> str:
    return "\n".join(str(e.value) for e in elements)


def _frame(at: AppTest, column: str) -> Any:
    """The first dataframe on the page with ``column`` (the jobs panel has its own)."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def _evaluations(pop: Populated) -> list[dict[str, Any]]:
    with pop.open() as ws:
        return evaluate.list_evaluations(ws, pop.task)


def test_empty_workspace_says_to_load_a_task(open_page: OpenPage) -> None:
    at = open_page("evaluate")
    at.run()
    assert not at.exception
    assert [t.value for t in at.title] == ["Evaluate"]
    assert "No task is loaded" in _texts(at.info)


def test_task_without_evaluations_offers_only_baselines(open_page: OpenPage,
                                                        app_ws: Path) -> None:
    with open_workspace(app_ws) as ws:
        load_task(ws, "demo")
    at = open_page("evaluate", task="demo")
    at.run()
    assert not at.exception
    assert "No evaluation of task demo yet" in _texts(at.info)
    assert at.radio(key="e_method").options == ["Zero-shot baseline", "Few-shot baseline"]


def test_scores_of_the_latest_evaluation(open_page: OpenPage, populated_ws: Populated) -> None:
    at = open_page("evaluate", task=populated_ws.task)
    at.run()
    assert not at.exception
    evals = _evaluations(populated_ws)
    table = _frame(at, "macro-F1")
    assert list(table["id"]) == [e["id"] for e in reversed(evals)]
    latest = evals[-1]["metrics"]
    assert at.metric[0].value == score_text(latest['macro_f1'])
    lo, hi = latest["ci"]["macro_f1"]
    assert f"Macro-F1 95% CI [{score_text(lo)}, {score_text(hi)}]" in _texts(at.caption)
    per_label = _frame(at, "recall")
    assert list(per_label["label"]) == populated_ws.labels
    assert list(per_label["support"]) == [latest["per_label"][lab]["support"]
                                          for lab in populated_ws.labels]
    assert len(at.get("plotly_chart")) == 1  # the confusion matrix
    # Choosing the other evaluation shows its scores.
    first = evals[0]
    at.selectbox(key="e_selected").set_value(first["id"]).run()
    assert at.metric[0].value == score_text(first["metrics"]["macro_f1"])


def test_raw_and_calibrated_side_by_side(open_page: OpenPage, populated_ws: Populated) -> None:
    pld_eval = _evaluations(populated_ws)[0]
    m, cal = pld_eval["metrics"], pld_eval["metrics"]["calibrated"]
    at = open_page("evaluate", task=populated_ws.task)
    at.run()
    table = _frame(at, "calibrated macro-F1")
    row = table[table["id"] == pld_eval["id"]].iloc[0]
    assert row["calibrated macro-F1"] == score(cal["macro_f1"])  # rounded once, half up
    assert row["top answer share"] == m["top_answer_share"]
    at.selectbox(key="e_selected").set_value(pld_eval["id"]).run()
    assert not at.exception
    assert [x.value for x in at.metric[:2]] == [score_text(m["macro_f1"]),
                                                score_text(cal["macro_f1"])]
    bias = _frame(at, "bias")
    assert dict(zip(bias["label"], bias["bias"], strict=True)) == \
        {k: score(v) for k, v in m["calibration"]["bias"].items()}
    assert "fitted on 20 validation items" in _texts(at.caption)
    # The confusion matrix and per-label table follow the chosen answers.
    at.radio(key=f"e_view_{pld_eval['id']}").set_value("Calibrated").run()
    recall = _frame(at, "recall")
    assert list(recall["f1"]) == [score(cal["per_label"][lab]["f1"])
                                  for lab in populated_ws.labels]
    # An evaluation without calibration says so and offers raw answers only.
    zero = _evaluations(populated_ws)[1]
    at.selectbox(key="e_selected").set_value(zero["id"]).run()
    assert at.metric[1].value == "—"
    assert at.radio(key=f"e_view_{zero['id']}").options == ["Raw"]


def test_compare_two_evaluations(open_page: OpenPage, populated_ws: Populated) -> None:
    a, b = populated_ws.evaluation_ids
    at = open_page("evaluate", task=populated_ws.task)
    at.run()
    assert (at.selectbox(key="e_cmp_a").value, at.selectbox(key="e_cmp_b").value) == (a, b)
    assert not at.exception
    with populated_ws.open() as ws:
        cmp = evaluate.compare(ws, a, b)
    assert f"macro-F1 **{delta_text(cmp['delta_macro_f1'])}**" in _texts(at.markdown)
    low, high = cmp["paired"]["ci"]
    assert (f"Paired on the same {cmp['paired']['n']} items: macro-F1 "
            f"{delta_text(cmp['paired']['delta'])}, 95% CI {delta_text(low)} to "
            f"{delta_text(high)}") \
        in _texts(at.caption)
    assert f"Broken by B (right → wrong)** ({len(cmp['right_to_wrong'])})" in _texts(at.markdown)
    fixed = _frame(at, "example")
    assert sorted(fixed["example"]) in (sorted(cmp["wrong_to_right"]),
                                        sorted(cmp["right_to_wrong"]))
    assert cmp["diff"] in [c.value for c in at.code]
    at.selectbox(key="e_cmp_b").set_value(a).run()
    assert "Choose two different evaluations." in _texts(at.info)


def test_run_a_baseline_in_the_background(open_page: OpenPage, populated_ws: Populated,
                                          fake_openai: FakeOpenAI) -> None:
    fake_openai.responder = lambda body: "routine"
    model = fake_openai.model_string("student")
    at = open_page("evaluate", task=populated_ws.task, student=model)
    at.run()
    at.radio(key="e_method").set_value("Zero-shot baseline").run()
    at.number_input(key="e_limit").set_value(4).run()
    at.button(key="e_run").click().run()
    assert not at.exception
    assert "Evaluation started" in _texts(at.success)
    with populated_ws.open() as ws:
        [job] = jobs.list_jobs(ws, populated_ws.task, "eval")
        assert job.args == ["eval", populated_ws.task, "--student", model, "--split", "test",
                            "--zero-shot", "--limit", "4", "--calibration", "max-f1"]
        for _ in range(600):  # the child process imports pld and makes four fake calls
            if jobs.job_status(ws, job) != "running":
                break
            time.sleep(0.2)
        assert jobs.job_status(ws, job) == "done", jobs.job_log(job)
    new = _evaluations(populated_ws)[-1]
    assert (new["method"], new["student"], new["n"]) == ("zero-shot", model, 4)
    at.run()
    assert not at.exception
    assert new["id"] in list(_frame(at, "macro-F1")["id"])


def test_a_new_evaluation_and_a_new_version_are_chosen_when_they_appear(
        open_page: OpenPage, populated_ws: Populated) -> None:
    at = open_page("evaluate", task=populated_ws.task)
    at.run()
    first, second = populated_ws.evaluation_ids
    assert at.selectbox(key="e_selected").value == second
    at.selectbox(key="e_selected").set_value(first).run()
    at.radio(key="e_method").set_value("Prompt version").run()
    assert at.selectbox(key="e_version").value == populated_ws.prompt_version
    at.run()
    assert at.selectbox(key="e_selected").value == first  # the reviewer's choice is kept
    # An evaluation finishes and a new prompt version is built (another tab, a job).
    with populated_ws.open() as ws:
        newest = _evaluation(ws, populated_ws.task, populated_ws.labels, "few-shot", None,
                             None, 2)
        approve_seen(ws, populated_ws.heuristic_ids[3], "bea")
        version = student.build_prompt(ws, populated_ws.task).version
    at.run()
    assert not at.exception
    assert at.selectbox(key="e_selected").value == newest
    assert at.selectbox(key="e_version").value == version > populated_ws.prompt_version
