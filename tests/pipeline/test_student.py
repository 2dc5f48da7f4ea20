"""Stage 5: prompt versions from approved heuristics, and student predictions."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest

from pld import preamble, review, review_rows
from pld.errors import BadInput, NotReady
from pld.identity import Identity
from pld.llm.calls import CallFailed
from pld.pipeline import student as st
from pld.tasks.store import Example, save_task
from pld.workspace import Workspace, loads
from tests.fakes.openai_server import FakeOpenAI

TASK = "reviews"
LABELS = ["pos", "neg", "neutral"]
DESCRIPTION = "Decide the sentiment of a short product review."
RULES = ["If the review says good, then the label is pos.",
         "If the review says bad, then the label is neg."]


def load_reviews(ws: Workspace, n_train: int = 12, n_val: int = 6, n_test: int = 9) -> None:
    """A toy task whose items cycle good/bad/plain; every 4th test item is 'weird'."""
    words = {"pos": "good", "neg": "bad", "neutral": "okay"}
    rows = []
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        for i in range(n):
            label = LABELS[i % 3]
            text = f"{split} review {i}: the product is {words[label]}"
            if split == "test" and i % 4 == 3:
                text += " and weird"
            rows.append(Example(f"{split}-{i}", split, text, label, {}))
    save_task(ws, name=TASK, kind="custom", labels=LABELS, description=DESCRIPTION,
              source="test", params={}, examples=rows)


def add_heuristic(ws: Workspace, text: str, *, status: str = "approved",
                  approved_by: str | None = "alice", source_rule_ids: list[int] | None = None,
                  task: str = TASK) -> int:
    """A heuristic as review leaves it: bob's draft, approved (or rejected) by ``approved_by``,
    every step through :mod:`pld.review` so the trail holds it. Approving also approves the
    task's preamble (as carol, its first reviewer) when it is still a draft."""
    with ws.write() as db:
        hid = review.insert_row(db, {"task": task, "text": text, "origin": "consolidate",
                                     "source_rule_ids": source_rule_ids or []},
                                who=Identity("bob"), comment=None)
    if status == "approved":
        review.approve(ws, hid, Identity(approved_by or "alice"), base_version=1)
        approve_preamble(ws, task)
    elif status == "rejected":
        review.reject(ws, hid, Identity(approved_by or "alice"), base_version=1)
    return hid


def approve_preamble(ws: Workspace, task: str = TASK, who: Identity | None = None) -> None:
    """Approve ``task``'s preamble as ``who`` (carol by default) unless it already is."""
    row = preamble.ensure_preamble(ws, task)
    if row["status"] != review_rows.APPROVED:
        preamble.approve_preamble(ws, task, who or Identity("carol"),
                                  base_version=row["version"])


def first_user(body: dict[str, Any]) -> str:
    return next(m["content"] for m in body["messages"] if m["role"] == "user")


def system_of(body: dict[str, Any]) -> str:
    return "".join(m["content"] for m in body["messages"] if m["role"] == "system")


def keyword_student(body: dict[str, Any]) -> str:
    """Answers from the example text, but only knows a keyword the system prompt mentions."""
    user, system = first_user(body), system_of(body)
    if "weird" in user:
        return "I cannot tell"
    for word, label in (("good", "pos"), ("bad", "neg")):
        if word in user and word in system:
            return label
    return "neutral"


def test_render_numbers_heuristics_then_labels_and_format() -> None:
    text = st.render_student_prompt(
        ["First rule.", "Second rule\nwith an edge case."], LABELS, DESCRIPTION)
    assert text.startswith(DESCRIPTION)
    assert "1. First rule.\n2. Second rule\n   with an edge case." in text
    assert text.endswith("Answer with the label only: one of pos, neg, neutral")
    assert text.index("1. First rule.") < text.index("Answer with the label only")
    assert "step by step" not in text.lower()
    assert st.render_student_prompt(["a"], ["x", "y"], "") == st.render_student_prompt(
        ["a"], ["x", "y"], "  ")
    assert not st.render_student_prompt(["a"], ["x", "y"], "").startswith("\n")


def test_build_prompt_stores_version_with_sha_and_ids(ws: Workspace) -> None:
    load_reviews(ws)
    h1 = add_heuristic(ws, RULES[0])
    add_heuristic(ws, "A draft rule.", status="draft")
    add_heuristic(ws, "A rejected rule.", status="rejected")
    h2 = add_heuristic(ws, RULES[1])
    p = st.build_prompt(ws, TASK)
    assert (p.task, p.version, p.heuristic_ids, p.origin) == (TASK, 1, [h1, h2], "review")
    assert p.text == st.render_student_prompt(RULES, LABELS, DESCRIPTION)
    assert p.sha256 == hashlib.sha256(p.text.encode("utf-8")).hexdigest()
    assert "draft" not in p.text and "rejected" not in p.text
    row = ws.query("SELECT * FROM prompts WHERE id = ?", [p.id])[0]
    assert row["text"] == p.text and row["sha256"] == p.sha256
    assert loads(row["heuristic_ids"]) == [h1, h2]


def test_same_text_returns_existing_version(ws: Workspace) -> None:
    load_reviews(ws)
    add_heuristic(ws, RULES[0])
    first = st.build_prompt(ws, TASK)
    again = st.build_prompt(ws, TASK, origin="resolve", parent_version=1)
    assert again == first
    assert ws.query("SELECT count(*) AS n FROM prompts")[0]["n"] == 1
    add_heuristic(ws, RULES[1])
    second = st.build_prompt(ws, TASK, origin="resolve", parent_version=first.version)
    assert (second.version, second.parent_version, second.origin) == (2, 1, "resolve")
    assert [p.version for p in st.list_prompts(ws, TASK)] == [1, 2]
    assert st.get_prompt(ws, TASK) == second
    assert st.get_prompt(ws, TASK, 1) == first


def test_no_approved_heuristics_is_not_ready(ws: Workspace) -> None:
    load_reviews(ws)
    add_heuristic(ws, "Only a draft.", status="draft")
    with pytest.raises(NotReady, match=f"no approved heuristics for task {TASK}.*review approve"):
        st.build_prompt(ws, TASK)
    assert ws.query("SELECT count(*) AS n FROM prompts")[0]["n"] == 0


def test_get_prompt_missing_is_bad_input(ws: Workspace) -> None:
    load_reviews(ws)
    with pytest.raises(BadInput, match="no prompt versions"):
        st.get_prompt(ws, TASK)
    add_heuristic(ws, RULES[0])
    st.build_prompt(ws, TASK)
    with pytest.raises(BadInput, match=re.escape("no prompt version 7 (versions: 1)")):
        st.get_prompt(ws, TASK, 7)


def test_predict_writes_one_row_per_example(ws: Workspace, fake_openai: FakeOpenAI) -> None:
    load_reviews(ws)
    add_heuristic(ws, RULES[0])
    add_heuristic(ws, RULES[1])
    prompt = st.build_prompt(ws, TASK)
    fake_openai.responder = keyword_student
    seen: list[tuple[int, int]] = []
    res = st.predict(ws, TASK, fake_openai.model_string(), system_prompt=prompt.text,
                     split="test", kind="student", on_progress=lambda d, t: seen.append((d, t)))
    test_rows = ws.query("SELECT * FROM examples WHERE split = 'test' ORDER BY id")
    assert res.example_ids == [r["id"] for r in test_rows]
    assert res.gold == [r["label"] for r in test_rows]
    weird = [r["id"] for r in test_rows if "weird" in r["text"]]
    assert weird
    for ex_id, gold, pred in zip(res.example_ids, res.gold, res.pred, strict=True):
        assert pred == (None if ex_id in weird else gold)
    rows = ws.query("SELECT * FROM predictions WHERE run_id = ? ORDER BY example_id",
                    [res.run_id])
    assert [r["example_id"] for r in rows] == res.example_ids
    for r in rows:
        if r["example_id"] in weird:
            assert (r["label"], r["raw"], r["correct"]) == (None, "I cannot tell", 0)
        else:
            assert r["correct"] == 1 and r["raw"] == r["label"]
    assert [r["call_id"] for r in rows] == res.call_ids
    run = ws.query("SELECT * FROM runs WHERE id = ?", [res.run_id])[0]
    assert (run["kind"], run["status"], run["done"], run["total"]) == ("student", "done", 9, 9)
    assert seen[-1] == (9, 9)
    # The fixed system prompt first, the example alone and last, no room for reasoning.
    body = fake_openai.requests[0]
    assert body["messages"][0] == {"role": "system", "content": prompt.text}
    assert body["messages"][-1]["content"] in {r["text"] for r in test_rows}
    assert body["max_tokens"] == st.STUDENT_MAX_TOKENS
    calls = ws.query("SELECT DISTINCT stage, run_id FROM llm_calls")
    assert calls == [{"stage": "student", "run_id": res.run_id}]


def test_predict_limit_and_example_ids(ws: Workspace, fake_openai: FakeOpenAI) -> None:
    load_reviews(ws)
    fake_openai.responder = keyword_student
    model = fake_openai.model_string()
    first = st.predict(ws, TASK, model, system_prompt="S", split="val", limit=4)
    val_ids = [r["id"] for r in ws.query(
        "SELECT id FROM examples WHERE split = 'val' ORDER BY id")]
    assert first.example_ids == val_ids[:4]
    chosen = [val_ids[5], val_ids[1]]
    picked = st.predict(ws, TASK, model, system_prompt="S", example_ids=chosen)
    assert picked.example_ids == sorted(chosen)
    with pytest.raises(BadInput, match="no examples with ids"):
        st.predict(ws, TASK, model, system_prompt="S", example_ids=[10_000])


def test_rerun_of_a_run_id_skips_done_rows(ws: Workspace, fake_openai: FakeOpenAI) -> None:
    load_reviews(ws)
    fake_openai.responder = keyword_student
    model = fake_openai.model_string()
    for _ in range(3):
        fake_openai.add_fault("delay", 0)
    fake_openai.add_fault("status", 400, {}, {"error": {"message": "bad item"}})
    with pytest.raises(CallFailed):
        st.predict(ws, TASK, model, system_prompt="S", split="test", concurrency=1)
    run_id = ws.query("SELECT max(id) AS id FROM runs")[0]["id"]
    run = ws.query("SELECT status, done FROM runs WHERE id = ?", [run_id])[0]
    assert (run["status"], run["done"]) == ("failed", 3)
    assert ws.query("SELECT count(*) AS n FROM predictions WHERE run_id = ?",
                    [run_id])[0]["n"] == 3
    asked = len(fake_openai.requests)

    res = st.predict(ws, TASK, model, system_prompt="S", split="test", run_id=run_id)
    assert res.run_id == run_id and len(res.example_ids) == 9
    # Only the six missing items went out (weird ones twice: calls re-asks once); the three
    # done rows were skipped.
    texts = [r["text"] for r in ws.query(
        "SELECT text FROM examples WHERE split = 'test' ORDER BY id")]
    sent = [first_user(b) for b in fake_openai.requests[asked:]]
    assert sorted(set(sent)) == sorted(texts[3:])
    assert len(sent) == 6 + sum("weird" in t for t in texts[3:])
    rows = ws.query("SELECT example_id FROM predictions WHERE run_id = ?", [run_id])
    assert sorted(r["example_id"] for r in rows) == res.example_ids
    run = ws.query("SELECT status, done, total FROM runs WHERE id = ?", [run_id])[0]
    assert (run["status"], run["done"], run["total"]) == ("done", 9, 9)
    assert ws.query("SELECT count(*) AS n FROM runs")[0]["n"] == 1

    again = st.predict(ws, TASK, model, system_prompt="S", split="test", run_id=run_id)
    assert again == res
    with pytest.raises(BadInput, match="prompt_sha256"):
        st.predict(ws, TASK, model, system_prompt="other", split="test", run_id=run_id)


def test_thread_pool_keeps_order_and_writes_every_row(ws: Workspace,
                                                      fake_openai: FakeOpenAI) -> None:
    load_reviews(ws, n_test=30)
    fake_openai.responder = keyword_student
    res = st.predict(ws, TASK, fake_openai.model_string(), system_prompt="good bad",
                     split="test", concurrency=4)
    ids = [r["id"] for r in ws.query("SELECT id FROM examples WHERE split='test' ORDER BY id")]
    assert res.example_ids == ids
    rows = ws.query("SELECT example_id, label FROM predictions WHERE run_id = ?", [res.run_id])
    assert {r["example_id"]: r["label"] for r in rows} == dict(
        zip(res.example_ids, res.pred, strict=True))
    assert sum(p is None for p in res.pred) == 7


def test_bad_model_string_is_bad_input(ws: Workspace) -> None:
    load_reviews(ws)
    with pytest.raises(BadInput, match="unknown provider"):
        st.predict(ws, TASK, "nope/model", system_prompt="S")


@pytest.mark.model
def test_local_student_is_constrained_to_labels(ws: Workspace) -> None:
    """The real embedded model: every answer is one of the labels, one call at a time."""
    load_reviews(ws, n_train=0, n_val=0, n_test=3)
    prompt = st.render_student_prompt(RULES, LABELS, DESCRIPTION)
    res = st.predict(ws, TASK, "local/small", system_prompt=prompt, split="test")
    assert len(res.pred) == 3
    assert all(p in LABELS for p in res.pred)
    rows = ws.query("SELECT raw, label FROM predictions WHERE run_id = ?", [res.run_id])
    assert all(r["raw"].strip() == r["label"] for r in rows)
