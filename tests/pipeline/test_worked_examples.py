"""The worked-examples variant: each heuristic followed by its most typical source example."""

from __future__ import annotations

import numpy as np
import pytest

from pld.errors import BadInput
from pld.pipeline import evaluate as ev
from pld.pipeline.student import build_prompt
from pld.pipeline.worked_examples import typical_example, worked_examples_prompt
from pld.workspace import Workspace, now
from tests.fakes.openai_server import FakeOpenAI
from tests.pipeline.test_student import RULES, TASK, add_heuristic, keyword_student, load_reviews


def _rule(ws: Workspace, example_id: int, label: str, vector: list[float]) -> int:
    with ws.write() as db:
        rid = int(db["micro_instructions"].insert({
            "task": TASK, "example_id": example_id, "teacher": "t", "reasoning": "r",
            "rule": f"If ..., then the label is {label}.", "label": label, "status": "ok",
            "flags": "[]", "created_at": now()}).last_pk)
        v = np.array(vector, dtype=np.float32)
        db["embeddings"].insert({"rule_id": rid, "model": "minilm", "dim": len(v),
                                 "vector": (v / np.linalg.norm(v)).tobytes(),
                                 "created_at": now()})
    return rid


def test_the_typical_example_is_the_central_rule_of_the_majority_label(ws: Workspace) -> None:
    load_reviews(ws)
    train = ws.query("SELECT id, text, label FROM examples WHERE split = 'train' ORDER BY id")
    pos = [e for e in train if e["label"] == "pos"]
    neg = next(e for e in train if e["label"] == "neg")
    ids = [_rule(ws, pos[0]["id"], "pos", [1, 0.6, 0]), _rule(ws, pos[1]["id"], "pos", [1, 0, 0]),
           _rule(ws, pos[2]["id"], "pos", [1, -0.6, 0]), _rule(ws, neg["id"], "neg", [0, 0, 1])]
    ex = typical_example(ws, ids)
    assert ex is not None and ex["label"] == "pos" and ex["text"] == pos[1]["text"]
    assert typical_example(ws, []) is None


def test_worked_examples_are_evaluated_beside_plain_pld(ws: Workspace,
                                                        fake_openai: FakeOpenAI) -> None:
    load_reviews(ws)
    train = ws.query("SELECT id, text FROM examples WHERE split = 'train' AND label = 'pos' "
                     "ORDER BY id LIMIT 1")[0]
    rid = _rule(ws, train["id"], "pos", [1, 0, 0])
    add_heuristic(ws, RULES[0], source_rule_ids=[rid])
    add_heuristic(ws, RULES[1])  # hand-written: no example
    prompt = build_prompt(ws, TASK)
    text = worked_examples_prompt(ws, prompt)
    assert f"1. {RULES[0]}\n   Example: {train['text']}\n   Label: pos\n2. {RULES[1]}\n" in text
    fake_openai.responder = keyword_student
    model = fake_openai.model_string()
    plain = ev.evaluate(ws, TASK, model, version=1, limit=6)
    worked = ev.evaluate(ws, TASK, model, version=1, worked_examples=True, limit=6)
    assert (plain.method, worked.method) == ("pld", "pld-worked")
    assert worked.prompt_sha256 != prompt.sha256 and worked.prompt_version == 1
    with pytest.raises(BadInput, match="--worked-examples"):
        ev.evaluate(ws, TASK, model, zero_shot=True, worked_examples=True)
