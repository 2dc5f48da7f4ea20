"""The Calls page: totals, filters by stage/model/errors, paging, and one call in full."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from pld.llm import calls
from pld.number_format import seconds_text
from tests.fakes.openai_server import FakeOpenAI
from tests.pages.conftest import Populated

OpenPage = Callable[..., AppTest]


def _texts(elements: Any) -> str:
    return "\n".join(str(e.value) for e in elements)


def _log(at: AppTest) -> Any:
    """The call-log table (the one with an ``attempt`` column)."""
    return next(d.value for d in at.dataframe if "attempt" in d.value.columns)


@pytest.fixture
def logged(populated_ws: Populated, fake_openai: FakeOpenAI) -> tuple[Populated, str]:
    """``populated_ws`` (extract calls of local/default) plus real calls to the fake server:
    two answered ``consolidate`` calls, a cache hit, and an ``ask`` whose answer is not one of
    the choices (logged with an error, then re-asked)."""
    model = fake_openai.model_string("judge")
    fake_openai.responder = lambda body: f"echo: {body['messages'][-1]['content']}"
    with populated_ws.open() as ws:
        for text in ("merge these rules", "merge those rules", "merge these rules"):
            calls.complete(ws, model, [{"role": "user", "content": text}],
                           system="You merge rules.", stage="consolidate")
        calls.complete(ws, model, [{"role": "user", "content": "yes or no?"}],
                       choices=["yes", "no"], stage="ask")
    return populated_ws, model


def test_empty_workspace_has_no_calls(open_page: OpenPage) -> None:
    at = open_page("calls")
    at.run()
    assert not at.exception
    assert "No LLM call in this workspace yet" in _texts(at.info)
    assert at.metric[0].value == "0"


def test_totals_and_groups(open_page: OpenPage, logged: tuple[Populated, str]) -> None:
    pop, model = logged
    at = open_page("calls")
    at.run()
    assert not at.exception
    with pop.open() as ws:
        total = calls.summarize_calls(ws)["total"]
    assert [m.value for m in at.metric[:3]] == [
        str(total["calls"]), str(total["cache_hits"]), str(total["errors"])]
    assert total["cache_hits"] == 1 and total["errors"] >= 1
    metrics = {m.label: m.value for m in at.metric}
    # Whole numbers in their own boxes, seconds to one decimal.
    assert metrics["Tokens in"] == f"{total['input_tokens']:,}"
    assert metrics["Tokens out"] == f"{total['output_tokens']:,}"
    # Seconds to one decimal, rounded half up like every number the app shows (a 20.15 s sum
    # reads 20.2 s, where Python's format would say 20.1).
    assert metrics["Latency"] == seconds_text(total["latency_s"])
    groups = next(d.value for d in at.dataframe if "cost $" in d.value.columns
                  and "stage" in d.value.columns and "attempt" not in d.value.columns)
    assert set(zip(groups["model"], groups["stage"], strict=True)) == {
        ("local/default", "extract"), (model, "consolidate"), (model, "ask")}


def test_filters_and_paging(open_page: OpenPage, logged: tuple[Populated, str]) -> None:
    pop, model = logged
    at = open_page("calls")
    at.run()
    with pop.open() as ws:
        n_all = calls.summarize_calls(ws)["total"]["calls"]
    assert n_all > 25
    assert len(_log(at)) == 25
    pages = -(-n_all // 25)
    assert f"Calls 1–25 of {n_all}, newest first · page 1 of {pages}." in _texts(at.caption)
    assert at.number_input(key="k_page").label == f"Page (of {pages})"
    assert at.number_input(key="k_page").max == pages
    at.number_input(key="k_page").set_value(2).run()
    assert not at.exception
    assert len(_log(at)) == min(25, n_all - 25)
    # Every latency shown is rounded to one decimal.
    assert all(round(v, 1) == v for v in _log(at)["latency s"].dropna())

    at.number_input(key="k_page").set_value(1)
    at.selectbox(key="k_stage").set_value("consolidate").run()
    assert not at.exception
    table = _log(at)
    assert set(table["stage"]) == {"consolidate"} and len(table) == 3
    assert list(table["cache hit"]) == [True, False, False]  # newest first

    at.selectbox(key="k_stage").set_value("(all)")
    at.selectbox(key="k_model").set_value(model)
    at.checkbox(key="k_errors").check().run()
    table = _log(at)
    assert set(table["stage"]) == {"ask"} and all(table["error"].str.contains("not in choices"))

    at.selectbox(key="k_model").set_value("local/default").run()
    assert "No call matches these filters." in _texts(at.info)


def test_a_call_in_full(open_page: OpenPage, logged: tuple[Populated, str]) -> None:
    pop, _model = logged
    at = open_page("calls")
    at.run()
    at.selectbox(key="k_stage").set_value("consolidate").run()
    with pop.open() as ws:
        rows = calls.list_calls(ws, stage="consolidate")
    oldest = rows[-1]
    at.selectbox(key="k_call").set_value(oldest["id"]).run()
    assert not at.exception
    shown = [c.value for c in at.code]
    assert shown == ["You merge rules.", "merge these rules", "echo: merge these rules"]
    assert f"Call #{oldest['id']}" in _texts(at.caption)
    # A call with an error shows it.
    at.selectbox(key="k_stage").set_value("ask").run()
    assert "answer not in choices" in _texts(at.error)


def test_list_calls_filters_cache_hits_in_sql(logged: tuple[Populated, str]) -> None:
    pop, model = logged
    with pop.open() as ws:
        every = calls.list_calls(ws, limit=1000)
        assert calls.count_calls(ws) == len(every)
        assert calls.count_calls(ws, cache_hit=True, model=model) == 1
        assert calls.count_calls(ws, stage="consolidate") == 3
        hits = calls.list_calls(ws, cache_hit=True, limit=1000)
        misses = calls.list_calls(ws, cache_hit=False, limit=1000)
        assert [r["id"] for r in hits] == [r["id"] for r in every if r["cache_hit"]]
        assert [r["id"] for r in misses] == [r["id"] for r in every if not r["cache_hit"]]
        assert len(hits) == 1 and hits[0]["model"] == model
        assert calls.list_calls(ws, cache_hit=True, stage="ask") == []


def test_cache_filter(open_page: OpenPage, logged: tuple[Populated, str]) -> None:
    _pop, model = logged
    at = open_page("calls")
    at.run()
    at.selectbox(key="k_cache").set_value("cache hits").run()
    assert not at.exception
    table = _log(at)
    assert list(table["cache hit"]) == [True] and list(table["model"]) == [model]
    at.selectbox(key="k_cache").set_value("model calls").run()
    table = _log(at)
    assert len(table) == 25 and not any(table["cache hit"])


def test_a_new_filter_starts_from_the_first_page(open_page: OpenPage,
                                                logged: tuple[Populated, str]) -> None:
    at = open_page("calls")
    at.run()
    at.number_input(key="k_page").set_value(3).run()
    # Only 3 consolidate calls: page 3 of them would be empty.
    at.selectbox(key="k_stage").set_value("consolidate").run()
    assert not at.exception
    assert at.number_input(key="k_page").value == 1
    assert len(_log(at)) == 3
    at.number_input(key="k_page").set_value(2).run()
    at.selectbox(key="k_cache").set_value("cache hits").run()
    assert at.number_input(key="k_page").value == 1 and len(_log(at)) == 1


def test_batch_answers_and_the_batches_they_came_in(
        open_page: OpenPage, app_ws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from pld.llm import batch
    from pld.pipeline.estimate import Planned
    from pld.workspace import open_workspace
    from tests.fakes.openai_server import FakeOpenAIBatches

    monkeypatch.setenv("PLD_BATCH_POLL_S", "0.01")
    with FakeOpenAIBatches(responder=lambda body: "merged") as fake, \
            open_workspace(app_ws) as ws, batch.mode(True, (fake.model_string(),)):
        params = calls.call_params(max_tokens=64)
        batch.prefetch(ws, [Planned(fake.model_string(), "consolidate", "You merge rules.",
                                    [{"role": "user", "content": f"rules {i}"}], params)
                            for i in range(3)], run_id=None)
    at = open_page("calls").run()
    assert not at.exception
    [table] = [d.value for d in at.dataframe if "provider id" in d.value.columns]
    assert table[["submitted", "done", "failed", "landed"]].to_dict("records") == [
        {"submitted": 3, "done": 3, "failed": 0, "landed": True}]
    at.selectbox(key="k_call").set_value(_log(at)["id"].iloc[0]).run()
    assert "provider batch 1" in _texts(at.caption)
