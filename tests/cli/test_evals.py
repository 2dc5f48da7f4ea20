"""``python -m pld evals list|compare``: the Evaluate page's table and comparison, headless.

Two real evaluations (zero-shot, then prompt v1) by a fake OpenAI-compatible student that only
knows the keywords its system prompt mentions, so v1 fixes exactly the good/bad items.
"""

from __future__ import annotations

import json

from pld.pipeline.student import build_prompt
from pld.workspace import Workspace
from tests.cli.test_contract import pld
from tests.fakes.openai_server import FakeOpenAI
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
