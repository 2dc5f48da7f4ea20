"""The Evaluate page: stored scores with CI, per-label table and confusion matrix, the wrong
items a click on the matrix selects, comparing two evaluations, and running one in the
background."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest

from pld import jobs
from pld.identity import Identity
from pld.number_format import delta_text, score, score_text
from pld.pipeline import evaluate, student
from pld.pipeline.eval_errors import wrong_items
from pld.tasks import load_task
from pld.ui.escape import hover
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
    assert at.radio(key="e_method").options == ["Zero-shot baseline", "Few-shot baseline",
                                                "Nearest k-shot baseline"]


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
    fixed = next(d.value for d in at.dataframe  # not the Scores tab's wrong items
                 if "example" in d.value.columns and "reply" not in d.value.columns)
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


def test_nearest_k_shot_is_a_method_of_its_own(open_page: OpenPage, populated_ws: Populated,
                                               fake_openai: FakeOpenAI) -> None:
    # Before: the page offered random k-shot only.
    model = fake_openai.model_string("student")
    at = open_page("evaluate", task=populated_ws.task, student=model)
    at.run()
    at.radio(key="e_method").set_value("Nearest k-shot baseline").run()
    at.number_input(key="e_k").set_value(5).run()
    at.button(key="e_run").click().run()
    assert not at.exception
    with populated_ws.open() as ws:
        [job] = jobs.list_jobs(ws, populated_ws.task, "eval")
    assert job.args == ["eval", populated_ws.task, "--student", model, "--split", "test",
                        "--few-shot", "5", "--nearest", "--calibration", "max-f1"]


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
        approve_seen(ws, populated_ws.heuristic_ids[3], Identity("bea"))
        version = student.build_prompt(ws, populated_ws.task).version
    at.run()
    assert not at.exception
    assert at.selectbox(key="e_selected").value == newest
    assert at.selectbox(key="e_version").value == version > populated_ws.prompt_version


def _click_cell(at: AppTest, key: str, labels: list[str], gold: str, answer: str) -> AppTest:
    """Click the (gold, answer) cell of the confusion matrix with ``key`` as the browser
    reports it: the cell's marker, its customdata (row, column, count). AppTest has no Plotly
    widget, so the selection is sent as the chart's widget state."""
    chart = next(c for c in at.get("plotly_chart") if c.key == key)
    i, j = labels.index(gold), labels.index(answer)
    states = at._tree.get_widget_states()
    state = states.widgets.add()
    state.id = chart.proto.id
    state.string_value = json.dumps({"selection": {
        "points": [{"x": hover(answer), "y": hover(gold), "curve_number": 1,
                    "point_number": i * len(labels) + j, "customdata": [i, j, 1]}],
        "point_indices": [i * len(labels) + j], "box": [], "lasso": []}})
    return at._run(states)


def _wrong(pop: Populated, eval_id: int, **filters: Any) -> list[int]:
    with pop.open() as ws:
        return [e["example_id"] for e in wrong_items(ws, eval_id, **filters).errors]


def test_wrong_items_filtered_by_a_click_on_the_confusion_matrix(
        open_page: OpenPage, populated_ws: Populated) -> None:
    zero = populated_ws.evaluation_ids[1]  # the latest: raw answers, every third one wrong
    first, second = populated_ws.labels[:2]
    at = open_page("evaluate", task=populated_ws.task)
    at.run()
    assert not at.exception
    table = _frame(at, "reply")
    assert list(table["example"]) == _wrong(populated_ws, zero) != []
    assert list(table.columns[:5]) == ["example", "item", "gold", "raw", "text"]
    assert f"score {first}" in table.columns
    assert f"{len(table)} wrong item(s) of the" in _texts(at.caption)

    at.selectbox(key=f"e_err_gold_{zero}").set_value(first).run()
    assert list(_frame(at, "reply")["gold"]) == [first] * len(_wrong(populated_ws, zero,
                                                                      gold=first))
    at.selectbox(key=f"e_err_gold_{zero}").set_value(None).run()

    # A click on an off-diagonal cell selects its gold label and answer.
    at = _click_cell(at, f"e_cm_{zero}_raw", populated_ws.labels, first, second)
    assert not at.exception
    assert at.selectbox(key=f"e_err_gold_{zero}").value == first
    assert at.selectbox(key=f"e_err_answer_{zero}").value == second
    table = _frame(at, "reply")
    assert list(table["example"]) == _wrong(populated_ws, zero, gold=first, answer=second)
    assert set(table["raw"]) == {second}
    # A cell on the diagonal holds right answers only.
    at = _click_cell(at, f"e_cm_{zero}_raw", populated_ws.labels, first, first)
    assert "those items are right" in _texts(at.info)


def test_a_click_anywhere_in_a_cell_lands_on_that_cells_marker(
        open_page: OpenPage, populated_ws: Populated) -> None:
    # Before (seen in Chromium): the invisible click markers were 60 px wide, so the axes were
    # padded for them (the matrix shrank to a strip) and neighbouring markers overlapped: a
    # click in one cell could select the next. The nearest marker must be the cell's own.
    at = open_page("evaluate", task=populated_ws.task).run()
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    n = len(populated_ws.labels)
    heatmap, markers = spec["data"]
    assert (heatmap["type"], markers["type"]) == ("heatmap", "scatter")
    assert markers["marker"]["size"] <= 8 and markers["marker"]["opacity"] == 0
    layout = spec["layout"]
    assert (layout["xaxis"]["range"], layout["xaxis"]["autorange"]) == ([-0.5, n - 0.5], False)
    assert (layout["yaxis"]["range"], layout["yaxis"]["autorange"]) == ([n - 0.5, -0.5], False)
    assert layout["hoverdistance"] >= 1000  # the heatmap is never nearer than a marker


def test_calibrated_evaluation_lists_both_answers(open_page: OpenPage,
                                                  populated_ws: Populated) -> None:
    calibrated = populated_ws.evaluation_ids[0]
    at = open_page("evaluate", task=populated_ws.task)
    at.run()
    at.selectbox(key="e_selected").set_value(calibrated).run()
    # The raw view is shown first: items its raw answers got wrong, with both answers.
    table = _frame(at, "reply")
    assert list(table.columns[:6]) == ["example", "item", "gold", "raw", "calibrated", "text"]
    assert list(table["example"]) == _wrong(populated_ws, calibrated, judged_by="raw")
    assert "judged by the raw answers" in _texts(at.caption)
    at.radio(key=f"e_view_{calibrated}").set_value("Calibrated").run()
    assert not at.exception
    table = _frame(at, "reply")
    assert list(table["example"]) == _wrong(populated_ws, calibrated, judged_by="calibrated")
    assert "judged by the calibrated answers" in _texts(at.caption)
    assert at.selectbox(key=f"e_err_answer_{calibrated}").label == "Answer (calibrated)"


def test_wrong_items_download_as_csv_without_formulas(
        open_page: OpenPage, populated_ws: Populated, monkeypatch: pytest.MonkeyPatch) -> None:
    zero = populated_ws.evaluation_ids[1]
    wrong = _wrong(populated_ws, zero)
    with populated_ws.open() as ws, ws.write() as db:
        db["examples"].update(wrong[0], {"text": '=HYPERLINK("http://evil","x")'})
    saved: list[tuple[str | None, bytes | str]] = []
    add = MediaFileManager.add

    def spy(self: MediaFileManager, data: bytes | str, mimetype: str, *args: Any,
            **kwargs: Any) -> str:
        if mimetype.startswith("text/csv"):
            saved.append((kwargs.get("file_name", args[1] if len(args) > 1 else None), data))
        return add(self, data, mimetype, *args, **kwargs)

    monkeypatch.setattr(MediaFileManager, "add", spy)
    at = open_page("evaluate", task=populated_ws.task)
    at.run()
    assert not at.exception
    assert at.get("download_button")
    [data] = [d for name, d in saved if name == f"evaluation-{zero}-wrong-items.csv"]
    rows = list(csv.reader(io.StringIO(data if isinstance(data, str) else data.decode())))
    assert rows[0][:4] == ["example", "item", "gold", "raw"]
    assert [int(r[0]) for r in rows[1:]] == wrong
    text = rows[0].index("text")
    assert rows[1][text] == '\'=HYPERLINK("http://evil","x")'
    # The dataframe shows the text as it is: a cell, never a formula or Markdown.
    assert _frame(at, "reply")["text"].iloc[0] == '=HYPERLINK("http://evil","x")'


def test_compare_defaults_to_the_latest_comparable_pair(
        open_page: OpenPage, populated_ws: Populated, fake_openai: FakeOpenAI) -> None:
    a, b = populated_ws.evaluation_ids
    fake_openai.responder = lambda body: "routine"
    with populated_ws.open() as ws:
        val = evaluate.evaluate(ws, populated_ws.task, fake_openai.model_string(),
                                zero_shot=True, split="val", limit=4,
                                calibration=None).evaluation_id
    at = open_page("evaluate", task=populated_ws.task)
    at.run()
    assert not at.exception
    # The newest evaluation is on validation: the two test runs are compared.
    assert (at.selectbox(key="e_cmp_a").value, at.selectbox(key="e_cmp_b").value) == (a, b)
    at.selectbox(key="e_cmp_a").set_value(val).run()
    assert not at.exception
    assert "share no items" in _texts(at.warning)
    assert "B − A" not in _texts(at.markdown)
