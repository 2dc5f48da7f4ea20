"""``python -m pld evals list|compare|errors``: the Evaluate page's table, comparison and wrong
items, headless.

Two real evaluations (zero-shot, then prompt v1) by a fake OpenAI-compatible student that only
knows the keywords its system prompt mentions, so v1 fixes exactly the good/bad items.
"""

from __future__ import annotations

import json

from pld.pipeline import evaluate as ev
from pld.pipeline.student import build_prompt
from pld.workspace import Workspace
from tests.cli.test_contract import pld
from tests.fakes.openai_server import FakeOpenAI
from tests.pipeline.test_calibrate import lazy_student
from tests.pipeline.test_eval_errors import stubborn_scores
from tests.pipeline.test_student import RULES, TASK, add_heuristic, keyword_student, load_reviews


def test_evals_list_and_compare(ws: Workspace) -> None:
    load_reviews(ws, n_val=3, n_test=9)
    for rule in RULES:
        add_heuristic(ws, rule)
    build_prompt(ws, TASK)
    r = pld("evals", "list", TASK, ws=ws.path)
    assert r.returncode == 0 and "no evaluations" in r.stdout

    with FakeOpenAI(responder=keyword_student) as fake:
        for method in (["--zero-shot"], ["--version", "1"]):
            r = pld("eval", TASK, "--student", fake.model_string(), *method, "--concurrency",
                    "1", ws=ws.path)
            assert r.returncode == 0, r.stderr

    r = pld("evals", "list", TASK, "--json", ws=ws.path)
    assert r.returncode == 0, r.stderr
    evals = json.loads(r.stdout)["evaluations"]
    assert [(e["method"], e["prompt_version"], e["n"]) for e in evals] == [
        ("zero-shot", None, 9), ("pld", 1, 9)]
    a, b = (e["id"] for e in evals)
    assert f"#{b} pld v1" in pld("evals", "list", TASK, ws=ws.path).stdout

    r = pld("evals", "compare", str(a), str(b), "--json", ws=ws.path)
    assert r.returncode == 0, r.stderr
    cmp = json.loads(r.stdout)
    # Test items cycle good/bad/okay; every 4th is 'weird' (unanswerable). v1 fixes the
    # good and bad items that are not weird, and breaks none.
    gold = {row["id"]: row for row in ws.query(
        "SELECT id, text FROM examples WHERE task = ? AND split = 'test'", [TASK])}
    fixed = sorted(i for i, row in gold.items()
                   if ("good" in row["text"] or "bad" in row["text"])
                   and "weird" not in row["text"])
    assert cmp["common"] == 9 and cmp["right_to_wrong"] == []
    assert sorted(cmp["wrong_to_right"]) == fixed and cmp["delta_macro_f1"] > 0
    assert all(f"+{n}. {rule}" in cmp["diff"] for n, rule in enumerate(RULES, 1))
    text = pld("evals", "compare", str(a), str(b), ws=ws.path).stdout
    assert "B - A: macro-F1 +" in text and "broken by B (right -> wrong): none" in text

    for args, says in ((["compare", str(a), str(a)], "two different"),
                       (["compare", str(a), "999"], "evaluation 999 not found"),
                       (["list", "no-such-task"], "no-such-task")):
        r = pld("evals", *args, ws=ws.path)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and says in r.stderr, r.stderr


def _calibrated_and_val_evaluations(ws: Workspace, fake: FakeOpenAI) -> tuple[int, int, int]:
    """Zero-shot on test (calibrated: only the weird items stay wrong), few-shot on test, and
    zero-shot on validation, written through the real code with a fake student."""
    load_reviews(ws)
    fake.responder = lazy_student
    fake.first_token_logprobs = stubborn_scores
    model = fake.model_string()
    return (ev.evaluate(ws, TASK, model, zero_shot=True).evaluation_id,
            ev.evaluate(ws, TASK, model, few_shot=2).evaluation_id,
            ev.evaluate(ws, TASK, model, zero_shot=True, split="val").evaluation_id)


def test_evals_errors_lists_the_wrong_items(ws: Workspace, fake_openai: FakeOpenAI) -> None:
    zero, _few, _val = _calibrated_and_val_evaluations(ws, fake_openai)
    weird = ws.query("SELECT id, ext_id, label FROM examples WHERE split = 'test' AND "
                     "text LIKE '%weird%' ORDER BY id")

    r = pld("evals", "errors", str(zero), "--json", ws=ws.path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["evaluation"], out["split"], out["judged_by"], out["n"]) == (
        zero, "test", "calibrated", 9)
    assert [(e["example_id"], e["item"], e["gold"], e["raw"], e["calibrated"])
            for e in out["errors"]] == [(w["id"], w["ext_id"], w["label"], "neutral", "neutral")
                                        for w in weird]
    assert out["errors"][0]["scores"] == {"pos": -6.0, "neg": -6.0, "neutral": -0.05}

    text = pld("evals", "errors", str(zero), ws=ws.path).stdout
    assert "2 wrong of 9 items (judged by the calibrated answers)" in text
    assert f"#{weird[0]['id']} {weird[0]['ext_id']}  gold pos  raw neutral  calibrated " \
           "neutral  test review 3: the product is good and weird" in text
    assert "    scores: pos -6.00, neg -6.00, neutral -0.05" in text

    r = pld("evals", "errors", str(zero), "--gold", "neg", "--answer", "neutral", "--json",
            ws=ws.path)
    assert [e["example_id"] for e in json.loads(r.stdout)["errors"]] == [weird[1]["id"]]

    for args, says in ((["999"], "evaluation 999 not found"),
                       ([str(zero), "--gold", "happy"], "gold label 'happy'")):
        r = pld("evals", "errors", *args, ws=ws.path)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and says in r.stderr, r.stderr


def test_evals_compare_defaults_to_the_latest_comparable_pair(
        ws: Workspace, fake_openai: FakeOpenAI) -> None:
    zero, few, val = _calibrated_and_val_evaluations(ws, fake_openai)

    r = pld("evals", "compare", "--task", TASK, "--json", ws=ws.path)
    assert r.returncode == 0, r.stderr
    cmp = json.loads(r.stdout)
    assert (cmp["a"]["id"], cmp["b"]["id"], cmp["common"], cmp["comparable"]) == (
        zero, few, 9, True)

    # A validation run against a test run: no shared item, and no difference is printed.
    r = pld("evals", "compare", str(val), str(few), ws=ws.path)
    assert r.returncode == 0, r.stderr
    assert "no items both scored" in r.stdout and "B - A" not in r.stdout
    cmp = json.loads(pld("evals", "compare", str(val), str(few), "--json", ws=ws.path).stdout)
    assert cmp["common"] == 0 and cmp["delta_macro_f1"] is None

    for args in ([str(zero)], [str(zero), str(few), "--task", TASK], []):
        r = pld("evals", "compare", *args, ws=ws.path)
        assert r.returncode == 2 and "give EVAL_A EVAL_B" in r.stderr, r.stderr


def test_nearest_goes_with_few_shot(ws: Workspace) -> None:
    # Before: there was no --nearest; now without --few-shot K it is bad input (exit 2).
    load_reviews(ws, n_val=3, n_test=3)
    for method in ([], ["--zero-shot"]):
        r = pld("eval", TASK, "--student", "openai/gpt-4.1-mini", *method, "--nearest",
                ws=ws.path)
        assert r.returncode == 2, r.stderr
        assert "--nearest goes with --few-shot K" in r.stderr
    assert not ws.query("SELECT 1 FROM runs")
