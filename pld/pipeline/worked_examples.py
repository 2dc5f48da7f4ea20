"""A prompt variant for measurement: each heuristic followed by its most typical source example.

A small student may apply a rule better when it sees one case of it. For each heuristic of a
prompt version the *most typical* source example is the one whose rule lies closest (cosine) to
the mean embedding of the heuristic's rules, among the rules of the label most of them lead to;
without embeddings, the first such rule. The variant is evaluated beside plain PLD and k-shot
(method ``pld-worked``), never exported: the examples are training data that no reviewer
approved as part of the prompt.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from pld.errors import NotReady
from pld.pipeline.embed import load_vectors
from pld.pipeline.student import PromptVersion, prompt_text
from pld.workspace import Workspace, dumps, loads

EXAMPLE_CHARS = 600  # a long example is cut: the variant must stay a prompt, not a dataset


def _embed_model(ws: Workspace, rule_ids: list[int]) -> str | None:
    rows = ws.query(
        "SELECT model, count(*) AS n FROM embeddings WHERE rule_id IN "
        "(SELECT value FROM json_each(?)) GROUP BY model ORDER BY n DESC, model LIMIT 1",
        [dumps(rule_ids)])
    return rows[0]["model"] if rows and rows[0]["n"] == len(rule_ids) else None


def typical_example(ws: Workspace, source_rule_ids: list[int]) -> dict[str, Any] | None:
    """The most typical source example of a heuristic (``text`` and ``label``), or None when
    it has no source rule (a hand-written heuristic)."""
    rules = ws.query(
        "SELECT m.id, m.label, e.text FROM micro_instructions m JOIN examples e "
        "ON e.id = m.example_id WHERE m.id IN (SELECT value FROM json_each(?)) "
        "AND m.status = 'ok' AND e.split = 'train' ORDER BY m.id", [dumps(source_rule_ids)])
    if not rules:
        return None
    top = Counter(r["label"] for r in rules).most_common(1)[0][0]
    mine = [r for r in rules if r["label"] == top]
    model = _embed_model(ws, [r["id"] for r in rules])
    if model is None:
        return mine[0]
    vectors = load_vectors(ws, [r["id"] for r in rules], model).astype(np.float64)
    centre = vectors.mean(axis=0)
    index = {r["id"]: i for i, r in enumerate(rules)}
    sims = [float(vectors[index[r["id"]]] @ centre) for r in mine]
    return mine[int(np.argmax(sims))]


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= EXAMPLE_CHARS else text[:EXAMPLE_CHARS].rstrip() + " [...]"


def worked_examples_prompt(ws: Workspace, prompt: PromptVersion) -> str:
    """``prompt``'s heuristics, each followed by its most typical source example and label."""
    rows = {r["id"]: r for r in ws.query(
        "SELECT id, text, source_rule_ids FROM heuristics WHERE id IN "
        "(SELECT value FROM json_each(?))", [dumps(prompt.heuristic_ids)])}
    missing = [h for h in prompt.heuristic_ids if h not in rows]
    if missing:
        raise NotReady(f"prompt v{prompt.version} names heuristics that no longer exist: "
                       f"{missing}")
    items = []
    for hid in prompt.heuristic_ids:
        row = rows[hid]
        ex = typical_example(ws, [int(i) for i in loads(row["source_rule_ids"], [])])
        text = row["text"].strip()
        if ex is not None:
            text += f"\nExample: {_clip(ex['text'])}\nLabel: {ex['label']}"
        items.append(text)
    return prompt_text(ws, prompt.task, items)
