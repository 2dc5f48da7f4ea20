"""``--estimate-only`` and ``--max-cost``: know the cost before a run, never pay more than a set
budget (real subprocesses, the real OpenAI SDK against the fake server standing in for
api.openai.com, so ``openai/gpt-4.1`` is priced)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from pld.workspace import open_workspace
from tests.cli.test_contract import pld
from tests.fakes.openai_server import FakeOpenAI
from tests.pipeline.test_chain import scripted

TEACHER = "openai/gpt-4.1"


@pytest.fixture
def priced(ws_path: Path) -> Iterator[tuple[FakeOpenAI, dict[str, str]]]:
    """The demo task loaded, and the fake answering ``openai/...`` calls like the chain test's
    teacher and student."""
    assert pld("load", "demo", ws=ws_path).returncode == 0
    with FakeOpenAI(responder=scripted) as fake:
        yield fake, {"OPENAI_BASE_URL": fake.base_url, "OPENAI_API_KEY": "sk-test-spend"}


def _json(r: object) -> dict[str, object]:
    assert r.returncode == 0, r.stderr  # type: ignore[attr-defined]
    return json.loads(r.stdout)  # type: ignore[attr-defined]


def test_estimate_only_calls_nothing_and_counts_what_is_left(
        ws_path: Path, priced: tuple[FakeOpenAI, dict[str, str]]) -> None:
    fake, env = priced
    est = _json(pld("extract", "demo", "--teacher", TEACHER, "--estimate-only", "--json",
                    ws=ws_path, env=env))
    assert fake.requests == []
    [model] = est["models"]
    assert (est["calls"], est["cached"], model["model"]) == (50, 0, TEACHER)
    assert model["output_basis"] == {"extract": "typical"}
    assert 0 < est["batch_usd"] < est["usd"] and est["batch_usd"] == pytest.approx(est["usd"] / 2)
    with open_workspace(ws_path) as ws:
        assert ws.query("SELECT count(*) AS n FROM llm_calls")[0]["n"] == 0
        assert ws.query("SELECT count(*) AS n FROM runs")[0]["n"] == 0

    assert pld("extract", "demo", "--teacher", TEACHER, "--limit", "10", ws=ws_path,
               env=env).returncode == 0
    again = _json(pld("extract", "demo", "--teacher", TEACHER, "--estimate-only", "--json",
                      ws=ws_path, env=env))
    assert again["calls"] == 40 and len(fake.requests) == 10
    assert again["models"][0]["output_basis"] == {"extract": "measured"}
    # The text form names the model, the calls and both prices.
    text = pld("extract", "demo", "--teacher", TEACHER, "--estimate-only", ws=ws_path, env=env)
    assert "openai/gpt-4.1: 40 calls (0 cached, free)" in text.stdout
    assert "through a batch API" in text.stdout


def test_eval_estimate_counts_cached_answers_as_free(
        ws_path: Path, priced: tuple[FakeOpenAI, dict[str, str]]) -> None:
    fake, env = priced
    args = ("eval", "demo", "--student", TEACHER, "--zero-shot", "--calibration", "none")
    est = _json(pld(*args, "--estimate-only", "--json", ws=ws_path, env=env))
    assert (est["calls"], est["cached"]) == (30, 0)  # the demo's 30 test items
    assert _json(pld(*args, "--limit", "12", "--json", ws=ws_path, env=env))["metrics"]["n"] == 12
    est = _json(pld(*args, "--estimate-only", "--json", ws=ws_path, env=env))
    assert (est["calls"], est["cached"]) == (30, 12)
    # With calibration, the validation items it is fitted on are counted too.
    est = _json(pld(*args[:-2], "--estimate-only", "--json", ws=ws_path, env=env))
    assert est["calls"] == 30 + 20
    assert len(fake.requests) == 12


def test_max_cost_stops_cleanly_and_a_higher_one_goes_on(
        ws_path: Path, priced: tuple[FakeOpenAI, dict[str, str]]) -> None:
    fake, env = priced
    limit = 0.006  # a few extraction calls of gpt-4.1 at list price
    r = pld("extract", "demo", "--teacher", TEACHER, "--concurrency", "1", "--max-cost",
            str(limit), ws=ws_path, env=env)
    assert r.returncode == 1, r.stderr
    assert "stopped before passing --max-cost $0.01" in r.stderr
    assert "run the same command with a higher --max-cost to go on" in r.stderr
    with open_workspace(ws_path) as ws:
        spent = ws.query("SELECT sum(cost_usd) AS usd, count(*) AS n FROM llm_calls")[0]
        rules = ws.query("SELECT count(*) AS n FROM micro_instructions WHERE status = 'ok'")
        [run] = ws.query("SELECT status, error FROM runs WHERE kind = 'extract'")
    assert 0 < spent["usd"] <= limit
    assert 0 < rules[0]["n"] == spent["n"] == len(fake.requests) < 50  # every paid call kept
    assert run["status"] == "interrupted" and "--max-cost" in run["error"]
    # The spend of each run is in the call log's summary.
    [by_run] = _json(pld("calls", "--json", ws=ws_path))["by_run"]
    assert (by_run["kind"], by_run["status"], by_run["calls"]) == (
        "extract", "interrupted", spent["n"])
    assert by_run["cost_usd"] == pytest.approx(spent["usd"], abs=1e-6)

    # A higher limit goes on from there: no example is asked twice.
    r = pld("extract", "demo", "--teacher", TEACHER, "--max-cost", "5", "--json", ws=ws_path,
            env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["done"] == 50 - rules[0]["n"]
    with open_workspace(ws_path) as ws:
        asked = ws.query("SELECT messages, count(*) AS n FROM llm_calls WHERE cache_hit = 0 "
                         "GROUP BY messages HAVING n > 1")
        assert asked == [] and len(fake.requests) == 50


def test_max_cost_refuses_what_it_cannot_hold_to_a_limit(
        ws_path: Path, priced: tuple[FakeOpenAI, dict[str, str]]) -> None:
    fake, env = priced
    r = pld("extract", "demo", "--teacher", "openai/some-unlisted-model", "--max-cost", "1",
            ws=ws_path, env=env)
    assert r.returncode == 2 and "no price is known for openai/some-unlisted-model" in r.stderr
    r = pld("extract", "demo", "--teacher", TEACHER, "--max-cost", "0", ws=ws_path, env=env)
    assert r.returncode == 2 and "--max-cost must be more than 0" in r.stderr
    assert fake.requests == []
    # A local or self-hosted model costs nothing: any limit holds.
    r = pld("extract", "demo", "--teacher", fake.model_string(), "--limit", "2", "--max-cost",
            "0.01", ws=ws_path, env=env)
    assert r.returncode == 0, r.stderr
