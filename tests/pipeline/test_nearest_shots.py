"""Nearest-neighbour k-shot: which training examples each item is shown."""

from __future__ import annotations

import pytest

from pld.errors import BadInput, NotReady
from pld.pipeline.nearest_shots import NearestShots
from pld.tasks.store import Example, save_task
from pld.workspace import Workspace
from tests.pipeline.test_evaluate import NEWS_ITEM, NEWS_TRAIN


def _load(ws: Workspace, train: list[tuple[str, str]]) -> None:
    save_task(ws, name="news", kind="custom", labels=["sports", "finance", "other"],
              description="Classify a news snippet.", source="test", params={},
              examples=[Example(f"train-{i}", "train", text, label, {})
                        for i, (text, label) in enumerate(train)]
              + [Example("val-0", "val", NEWS_ITEM, "sports", {})])


def test_the_most_similar_come_last_and_an_items_own_text_is_never_shown(
        ws: Workspace) -> None:
    _load(ws, NEWS_TRAIN)
    shots = NearestShots(ws, "news", 3)
    picked = [d["text"] for d in shots.demos(NEWS_ITEM)]
    assert picked[-2:] == [NEWS_TRAIN[1][0], NEWS_TRAIN[0][0]]
    assert len(picked) == 3
    # A training example asked about itself is not its own demonstration.
    own = [d["text"] for d in shots.demos(NEWS_TRAIN[0][0])]
    assert NEWS_TRAIN[0][0] not in own and own[-1] == NEWS_TRAIN[1][0]
    assert len(NearestShots(ws, "news", 50).demos(NEWS_ITEM)) == len(NEWS_TRAIN)


def test_the_key_names_k_the_embedder_and_the_training_set(ws: Workspace) -> None:
    _load(ws, NEWS_TRAIN)
    key = NearestShots(ws, "news", 2).key()
    assert key.startswith("Nearest-neighbour 2-shot") and "minilm" in key
    assert NearestShots(ws, "news", 3).key() != key
    with pytest.raises(BadInput, match="at least 1"):
        NearestShots(ws, "news", 0)
    with pytest.raises(BadInput, match="unknown embedding model"):
        NearestShots(ws, "news", 2, embedder="word2vec")
    save_task(ws, name="empty", kind="custom", labels=["a", "b"], description="", source="test",
              params={}, examples=[Example("v", "val", "x", "a", {})])
    with pytest.raises(NotReady, match="no train examples"):
        NearestShots(ws, "empty", 2)


def test_ranked_orders_every_other_training_example_by_similarity(ws: Workspace) -> None:
    _load(ws, NEWS_TRAIN)
    shots = NearestShots(ws, "news", 1)
    ranked = shots.ranked(NEWS_TRAIN[0][0])
    texts = [r["text"] for r in ranked]
    assert texts[0] == NEWS_TRAIN[1][0]
    assert len(texts) == len(NEWS_TRAIN) - 1 and NEWS_TRAIN[0][0] not in texts
    # An input from outside the training set is embedded; its order agrees with the demos.
    assert [r["text"] for r in shots.ranked(NEWS_ITEM)][:3] == [
        d["text"] for d in reversed(NearestShots(ws, "news", 3).demos(NEWS_ITEM))]
