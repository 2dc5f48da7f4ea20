"""Stage 7, evaluate: every method on the same items, stored with model, split and sha."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pld.errors import BadInput, NotReady
from pld.pipeline import evaluate as ev
from pld.pipeline.student import build_prompt
from pld.tasks.store import Example, save_task, task_info
from pld.workspace import Workspace, loads
from tests.fakes.openai_server import FakeOpenAI
from tests.pipeline.test_student import (
    LABELS,
    RULES,
    TASK,
    add_heuristic,
    first_user,
    keyword_student,
    load_reviews,
    system_of,
)


def _items(ws: Workspace, eval_id: int) -> list[int]:
    run_id = ws.query("SELECT run_id FROM evaluations WHERE id = ?", [eval_id])[0]["run_id"]
    return [r["example_id"] for r in ws.query(
        "SELECT example_id FROM predictions WHERE run_id = ? ORDER BY example_id", [run_id])]


def test_all_methods_score_the_same_items(ws: Workspace, fake_openai: FakeOpenAI,
                                          tmp_path: Path) -> None:
    load_reviews(ws)
    add_heuristic(ws, RULES[0])
    add_heuristic(ws, RULES[1])
    prompt = build_prompt(ws, TASK)
    fake_openai.responder = keyword_student
    model = fake_openai.model_string()
    file = tmp_path / "prompt.md"
    file.write_bytes(prompt.text.encode("utf-8"))

    results = [
        ev.evaluate(ws, TASK, model, version=1, limit=6),
        ev.evaluate(ws, TASK, model, zero_shot=True, limit=6),
        ev.evaluate(ws, TASK, model, few_shot=3, limit=6),
        ev.evaluate(ws, TASK, model, prompt_file=file, limit=6),
    ]
    assert [r.method for r in results] == ["pld", "zero-shot", "few-shot-3", "file"]
    first_six = [r["id"] for r in ws.query(
        "SELECT id FROM examples WHERE split = 'test' ORDER BY id LIMIT 6")]
    for r in results:
        assert _items(ws, r.evaluation_id) == first_six
        assert r.metrics["n"] == 6 and (r.student, r.split, r.n) == (model, "test", 6)

    pld, zero, few, from_file = results
    # Item 3 of the test split is unparseable for every method; the rest is keyword-driven.
    assert pld.metrics["accuracy"] == pytest.approx(5 / 6)
    assert pld.metrics["n_unparseable"] == 1
    assert zero.metrics["accuracy"] == pytest.approx(2 / 6)
    assert few.metrics["accuracy"] == pytest.approx(5 / 6)
    assert pld.prompt_sha256 == prompt.sha256 and pld.prompt_version == 1
    assert from_file.prompt_sha256 == prompt.sha256 and from_file.prompt_version == 1
    assert from_file.metrics == pld.metrics

    rows = ev.list_evaluations(ws, TASK)
    assert [r["id"] for r in rows] == [r.evaluation_id for r in results]
    for row, res in zip(rows, results, strict=True):
        assert (row["method"], row["student"], row["split"], row["n"]) == (
            res.method, model, "test", 6)
        assert row["prompt_sha256"] == res.prompt_sha256
        assert row["metrics"]["macro_f1"] == pytest.approx(res.metrics["macro_f1"])
        assert row["metrics"]["ci"]["macro_f1"][0] <= res.metrics["macro_f1"]
        assert row["prompt_version"] == res.prompt_version
    kinds = {r["kind"] for r in ws.query("SELECT kind FROM runs")}
    # The fake sends no label scores, so calibration ran the validation split and found none.
    assert kinds == {"eval", "calibrate"}
    assert pld.metrics["calibration"]["status"] == "unavailable" and "calibrated" not in pld.metrics
    assert few.metrics["confusion"]["columns"][-1] == "(unparseable)"


def test_zero_shot_prompt_has_description_labels_and_answer_format(
        ws: Workspace, fake_openai: FakeOpenAI) -> None:
    load_reviews(ws)
    fake_openai.responder = keyword_student
    res = ev.evaluate(ws, TASK, fake_openai.model_string(), zero_shot=True, limit=2)
    system = system_of(fake_openai.requests[0])
    assert system == ev.zero_shot_prompt(task_info(ws, TASK))
    assert "Decide the sentiment" in system
    assert "Answer with the label only: one of pos, neg, neutral" in system
    assert res.prompt_sha256 == hashlib.sha256(system.encode("utf-8")).hexdigest()
    assert res.prompt_version is None


def test_few_shot_demos_are_stratified_seeded_and_in_the_system_prompt(
        ws: Workspace, fake_openai: FakeOpenAI) -> None:
    load_reviews(ws, n_train=30)
    train = {r["id"]: r for r in ws.query("SELECT * FROM examples WHERE split = 'train'")}
    for k in (3, 4, 6, 8):
        demos = ev.few_shot_examples(ws, TASK, k, seed=0)
        assert len(demos) == k == len({d["id"] for d in demos})
        assert all(d["id"] in train for d in demos)
        counts = Counter(d["label"] for d in demos)
        per_label = [counts.get(label, 0) for label in LABELS]
        assert max(per_label) - min(per_label) <= 1
    six = [d["id"] for d in ev.few_shot_examples(ws, TASK, 6, seed=0)]
    assert [d["id"] for d in ev.few_shot_examples(ws, TASK, 6, seed=0)] == six
    assert {d["id"] for d in ev.few_shot_examples(ws, TASK, 6, seed=1)} != set(six)
    assert len(ev.few_shot_examples(ws, TASK, 100)) == 30

    fake_openai.responder = keyword_student
    res = ev.evaluate(ws, TASK, fake_openai.model_string(), few_shot=6, limit=3)
    system = system_of(fake_openai.requests[0])
    for d in ev.few_shot_examples(ws, TASK, 6, seed=0):
        assert f"{d['text']}\nLabel: {d['label']}" in system
    assert fake_openai.requests[0]["messages"][-1]["role"] == "user"
    assert all(len(b["messages"]) == 2 for b in fake_openai.requests)
    run = ws.query("SELECT params FROM runs WHERE id = ?", [res.run_id])[0]
    assert loads(run["params"])["demo_ids"] == six


def test_few_shot_needs_train_examples(ws: Workspace, fake_openai: FakeOpenAI) -> None:
    load_reviews(ws, n_train=0)
    with pytest.raises(NotReady, match="no train examples"):
        ev.evaluate(ws, TASK, fake_openai.model_string(), few_shot=2)
    with pytest.raises(BadInput, match="at least 1"):
        ev.few_shot_examples(ws, TASK, 0)


@pytest.mark.parametrize("kwargs", [
    {},
    {"version": 1, "zero_shot": True},
    {"few_shot": 2, "prompt_file": "x.md"},
])
def test_exactly_one_method(ws: Workspace, kwargs: dict[str, object]) -> None:
    load_reviews(ws)
    with pytest.raises(BadInput, match="exactly one of"):
        ev.evaluate(ws, TASK, "local/small", **kwargs)  # type: ignore[arg-type]


def test_missing_or_bad_prompt_file_names_the_path(ws: Workspace, tmp_path: Path) -> None:
    load_reviews(ws)
    missing = tmp_path / "nowhere" / "prompt.md"
    with pytest.raises(BadInput, match=re.escape(f"{missing}: prompt file not found")):
        ev.evaluate(ws, TASK, "local/small", prompt_file=missing)
    latin = tmp_path / "latin1.md"
    latin.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(BadInput, match=re.escape(f"{latin}: prompt file is not UTF-8")):
        ev.evaluate(ws, TASK, "local/small", prompt_file=latin)


def test_missing_version_is_bad_input(ws: Workspace) -> None:
    load_reviews(ws)
    with pytest.raises(BadInput, match="no prompt version"):
        ev.evaluate(ws, TASK, "local/small", version=3)


def test_compare_lists_flipped_items_and_prompt_diff(ws: Workspace,
                                                     fake_openai: FakeOpenAI) -> None:
    load_reviews(ws)
    add_heuristic(ws, RULES[0])
    add_heuristic(ws, RULES[1])
    build_prompt(ws, TASK)
    fake_openai.responder = keyword_student
    model = fake_openai.model_string()
    zero = ev.evaluate(ws, TASK, model, zero_shot=True)
    pld = ev.evaluate(ws, TASK, model, version=1)
    out = ev.compare(ws, zero.evaluation_id, pld.evaluation_id)
    test = ws.query("SELECT id, text, label FROM examples WHERE split = 'test' ORDER BY id")
    fixed = [r["id"] for r in test if r["label"] != "neutral" and "weird" not in r["text"]]
    assert out["wrong_to_right"] == fixed
    assert out["right_to_wrong"] == []
    assert out["common"] == 9
    assert out["a"]["method"] == "zero-shot" and out["b"]["method"] == "pld"
    assert out["delta_macro_f1"] == pytest.approx(
        pld.metrics["macro_f1"] - zero.metrics["macro_f1"])
    assert f"+1. {RULES[0]}" in out["diff"]
    assert out["diff"].startswith(f"--- evaluation {zero.evaluation_id} (zero-shot)")
    # Whether the difference is more than noise: a paired bootstrap on the same items.
    paired = out["paired"]
    assert paired["n"] == 9 and paired["delta"] == pytest.approx(out["delta_macro_f1"])
    low, high = paired["ci"]
    assert low <= paired["delta"] <= high
    assert paired["beyond_noise"] == (low > 0 or high < 0)
    back = ev.compare(ws, pld.evaluation_id, zero.evaluation_id)
    assert back["right_to_wrong"] == fixed and back["wrong_to_right"] == []
    with pytest.raises(BadInput, match="evaluation 999 not found"):
        ev.compare(ws, 999, zero.evaluation_id)


def test_same_evaluation_again_returns_the_stored_one(ws: Workspace,
                                                      fake_openai: FakeOpenAI) -> None:
    load_reviews(ws)
    fake_openai.responder = keyword_student
    model = fake_openai.model_string()
    first = ev.evaluate(ws, TASK, model, zero_shot=True, limit=6)
    requests = len(fake_openai.requests)
    rows = {t: ws.query(f"SELECT count(*) AS n FROM {t}")[0]["n"]
            for t in ("runs", "predictions", "evaluations", "llm_calls")}

    again = ev.evaluate(ws, TASK, model, zero_shot=True, limit=6)

    assert again == first
    assert len(fake_openai.requests) == requests
    assert rows == {t: ws.query(f"SELECT count(*) AS n FROM {t}")[0]["n"] for t in rows}
    # Another bootstrap seed or another limit is another evaluation.
    assert ev.evaluate(ws, TASK, model, zero_shot=True, limit=6, seed=1).evaluation_id \
        != first.evaluation_id
    assert ev.evaluate(ws, TASK, model, zero_shot=True, limit=5).evaluation_id \
        != first.evaluation_id


def test_interrupted_evaluation_resumes_its_run(ws: Workspace, fake_openai: FakeOpenAI) -> None:
    load_reviews(ws)
    items = ws.query("SELECT text FROM examples WHERE split = 'test' ORDER BY id LIMIT 6")
    broken = {"on": True}

    def flaky(body: dict[str, object]) -> str:
        # The fourth item cannot be answered until the "server" is fixed.
        if broken["on"] and items[3]["text"] in str(body["messages"]):
            raise RuntimeError("server down")
        return keyword_student(body)

    fake_openai.responder = flaky
    model = fake_openai.model_string()
    # No calibration: the point is which test items are asked again.
    with pytest.raises(Exception, match="fake-model"):
        ev.evaluate(ws, TASK, model, zero_shot=True, limit=6, concurrency=1, calibration=None)
    (run,) = ws.query("SELECT * FROM runs WHERE kind = 'eval'")
    assert run["status"] == "failed"
    assert ws.query("SELECT count(*) AS n FROM predictions")[0]["n"] == 3
    assert ws.query("SELECT count(*) AS n FROM evaluations")[0]["n"] == 0

    broken["on"] = False
    before = len(fake_openai.requests)
    result = ev.evaluate(ws, TASK, model, zero_shot=True, limit=6, concurrency=1,
                         calibration=None)

    assert result.run_id == run["id"] and result.n == 6
    # Only the items the first try lacked were asked (an unparseable one is re-asked once).
    asked = {next(m for m in b["messages"] if m["role"] == "user")["content"]
             for b in fake_openai.requests[before:]}
    assert asked == {r["text"] for r in items[3:]}
    assert ws.query("SELECT count(*) AS n FROM predictions")[0]["n"] == 6
    assert ws.query("SELECT count(*) AS n FROM runs")[0]["n"] == 1


def test_latest_comparable_pair_scored_the_same_split_and_items(
        ws: Workspace, fake_openai: FakeOpenAI) -> None:
    load_reviews(ws)
    fake_openai.responder = keyword_student
    model = fake_openai.model_string()
    assert ev.latest_comparable(ws, TASK) is None
    first = ev.evaluate(ws, TASK, model, zero_shot=True, calibration=None).evaluation_id
    second = ev.evaluate(ws, TASK, model, few_shot=3, calibration=None).evaluation_id
    assert ev.latest_comparable(ws, TASK) == (first, second)
    # Newer evaluations on validation and on fewer test items compare with neither.
    val = ev.evaluate(ws, TASK, model, zero_shot=True, split="val",
                      calibration=None).evaluation_id
    fewer = ev.evaluate(ws, TASK, model, few_shot=3, limit=4, calibration=None).evaluation_id
    assert ev.latest_comparable(ws, TASK) == (first, second)
    third = ev.evaluate(ws, TASK, model, few_shot=2, limit=4, calibration=None).evaluation_id
    assert ev.latest_comparable(ws, TASK) == (fewer, third)
    assert ev.compare(ws, first, second)["comparable"]
    assert not ev.compare(ws, second, third)["comparable"]

    # A validation run against a test run: no item in common, so no difference either.
    cross = ev.compare(ws, val, second)
    assert cross["common"] == 0 and not cross["comparable"]
    assert cross["delta_macro_f1"] is None and cross["delta_accuracy"] is None
    assert cross["paired"] is None


NEWS_TRAIN = [
    ("The striker scored a late goal to win the football match.", "sports"),
    ("The goalkeeper saved a penalty in the final minute of the cup final.", "sports"),
    ("The central bank raised interest rates for the third time this year.", "finance"),
    ("Stock markets fell sharply as investors sold their shares.", "finance"),
    ("Bake the bread slowly in a low oven until the crust is golden.", "other"),
    ("Stir the soup and add fresh basil just before serving.", "other"),
]
NEWS_ITEM = "Their forward scored twice and the team won the football final."


def nearest_student(body: dict[str, Any]) -> str:
    """Leans to "other" whatever it reads (its answer)."""
    return "other"


def nearest_scores(body: dict[str, Any]) -> list[tuple[str, float]]:
    """Label scores: "other" on top, the label of the last (most similar) demonstration second,
    so a calibrated answer copies the nearest neighbour."""
    copied = re.findall(r"^Label: (\S+)$", system_of(body), re.M)[-1]
    scores = {"other": -0.2, "sports": -3.0, "finance": -3.0}
    scores[copied] = max(scores[copied], -1.0)
    return sorted(scores.items(), key=lambda kv: -kv[1])


def test_nearest_k_shot_shows_each_item_its_most_similar_training_examples(
        ws: Workspace, fake_openai: FakeOpenAI) -> None:
    # Before: k-shot drew the same K random demonstrations for every item.
    val = [("A defender headed the ball into the net in stoppage time.", "sports"),
           ("Bond yields climbed after the inflation report.", "finance"),
           ("Roast the vegetables with olive oil and garlic.", "other")]
    test = [(NEWS_ITEM, "sports"), ("Shares of the bank dropped on weak earnings.", "finance")]
    save_task(ws, name="news", kind="custom", labels=["sports", "finance", "other"],
              description="Classify a news snippet.", source="test", params={},
              examples=[Example(f"{split}-{i}", split, text, label, {})
                        for split, rows in (("train", NEWS_TRAIN), ("val", val), ("test", test))
                        for i, (text, label) in enumerate(rows)])
    fake_openai.responder = nearest_student
    fake_openai.first_token_logprobs = nearest_scores
    model = fake_openai.model_string()

    res = ev.evaluate(ws, "news", model, few_shot=2, nearest=True, concurrency=1)

    assert res.method == "few-shot-2-nearest"
    asked = {first_user(b): system_of(b) for b in fake_openai.requests}
    system = asked[NEWS_ITEM]
    # The two football examples, the closest last; no other training example.
    shown = sorted((text for text, _ in NEWS_TRAIN if text in system), key=system.index)
    assert shown == [NEWS_TRAIN[1][0], NEWS_TRAIN[0][0]]
    assert "Stock markets" in asked[test[1][0]] and "striker" not in asked[test[1][0]]
    # Calibrated like the others: fitted on validation items, each under its own prompt.
    assert all(text in asked for text, _ in val)
    assert res.metrics["calibration"]["status"] == "fitted"
    assert res.metrics["calibrated"]["accuracy"] == 1.0 and res.metrics["accuracy"] == 0.0
    [cal] = ws.query("SELECT prompt_sha256 FROM calibrations")
    assert cal["prompt_sha256"] == res.prompt_sha256
    key = ws.query("SELECT text FROM texts WHERE sha256 = ?", [res.prompt_sha256])[0]["text"]
    assert key.startswith("Nearest-neighbour 2-shot")
    # Stored like any evaluation: asked again, it is the same one, with no new call.
    n = len(fake_openai.requests)
    again = ev.evaluate(ws, "news", model, few_shot=2, nearest=True)
    assert again.evaluation_id == res.evaluation_id and len(fake_openai.requests) == n
    random_k = ev.evaluate(ws, "news", model, few_shot=2, concurrency=1)
    assert random_k.method == "few-shot-2" and random_k.prompt_sha256 != res.prompt_sha256
    with pytest.raises(BadInput, match="--nearest goes with --few-shot K"):
        ev.evaluate(ws, "news", model, zero_shot=True, nearest=True)
