"""A running job's progress is visible on a reopened page, even when the page's Start section
is a collapsed expander (it is once the stage has results)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from streamlit.testing.v1 import AppTest

from tests.pages.conftest import Populated, collapsed, connect, shown

# page -> (the job kind its panel follows, the key of its Start button)
PAGES = {
    "extract": ("extract", "x_start"),
    "clusters": ("cluster", "c_start"),
    "heuristics": ("consolidate", "h_consolidate"),
    "evaluate": ("eval", "e_run"),
}


@pytest.mark.parametrize("page", list(PAGES))
def test_running_job_is_shown_on_a_page_with_results(
        page: str, open_page: Callable[..., AppTest], populated_ws: Populated,
        running_job: Callable[[str, str], int]) -> None:
    kind, start_key = PAGES[page]
    running_job(populated_ws.task, kind)
    at = open_page(page, task=populated_ws.task, reviewer="ana").run()
    assert not at.exception
    # The Start section is collapsed (the stage has results) and Start is disabled...
    start = at.button(key=start_key)
    assert start.disabled and start in collapsed(at, "button")
    # ...but the progress of the running job is in plain sight, with its Cancel button.
    bars = shown(at, "progress")
    assert len(bars) == 1 and "3 of 10" in bars[0].proto.text
    assert "/min" in bars[0].proto.text and "left" in bars[0].proto.text  # rate and time left
    assert any(b.label == "Cancel" for b in shown(at, "button"))
    # What the job wrote so far is one click away while it runs.
    refresh = [b for b in shown(at, "button") if b.label == "Show the 3 done so far"]
    assert len(refresh) == 1
    refresh[0].click().run()
    assert not at.exception and len(shown(at, "progress")) == 1


@pytest.mark.parametrize("page", list(PAGES))
def test_no_progress_when_nothing_runs(page: str, open_page: Callable[..., AppTest],
                                       populated_ws: Populated) -> None:
    at = open_page(page, task=populated_ws.task, reviewer="ana").run()
    assert not at.exception
    assert not at.get("progress")


def test_a_running_batch_job_shows_each_batch(
        open_page: Callable[..., AppTest], populated_ws: Populated,
        running_job: Callable[[str, str], int]) -> None:
    run_id = running_job(populated_ws.task, "extract")
    with connect(populated_ws.path) as ws, ws.write() as db:
        db["batches"].insert({"model": "anthropic/claude-sonnet-4-6", "run_id": run_id,
                              "provider_batch_id": "msgbatch_7", "status": "open",
                              "provider_status": "in_progress", "n_requests": 500,
                              "succeeded": 120, "failed": 3})
    at = open_page("extract", task=populated_ws.task).run()
    assert not at.exception
    [table] = [d.value for d in at.dataframe if "provider id" in d.value.columns]
    assert table.to_dict("records") == [
        {"batch": 1, "provider id": "msgbatch_7", "model": "anthropic/claude-sonnet-4-6",
         "submitted": 500, "done": 120, "failed": 3, "status": "in_progress",
         "landed": False}]


@pytest.mark.parametrize(("page", "key", "model_role"), [
    ("extract", "x_batch", "teacher"),
    ("heuristics", "h_batch", "teacher"),
    ("conflicts", "c_batch", "student"),
    ("evaluate", "e_batch", "student"),
])
def test_batch_checkbox_only_for_models_with_a_batch_api(
        page: str, key: str, model_role: str,
        open_page: Callable[..., AppTest], populated_ws: Populated) -> None:
    local = open_page(page, task=populated_ws.task, reviewer="ana").run()
    assert not local.exception
    box = local.checkbox(key=key)
    assert box.disabled and "has no batch API" in box.help
    remote = open_page(page, task=populated_ws.task, reviewer="ana",
                       **{model_role: "anthropic/claude-sonnet-4-6"}).run()
    box = remote.checkbox(key=key)
    assert not box.disabled
    box.check().run()
    assert not remote.exception
