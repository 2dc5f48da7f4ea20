"""``--method auto``: no clustering that puts most rules in one cluster, unless a person chose it.

Real workspaces, real MiniLM embeddings. The collapsing rule set is what a weak teacher writes
for a relevance task: one sentence restating the task, reworded a dozen times for each label
(one dense blob, with the labels as the only structure), plus a few rules that say something.
DBSCAN with eps from the k-distance knee (the default before auto) puts it in one cluster.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import adjusted_rand_score

from pld.identity import Identity
from pld.pipeline.cluster.choose import MAX_SHARE, bisect_largest, choose
from pld.pipeline.cluster.read import (
    choice_words,
    cluster_summary,
    get_clustering,
    list_clusterings,
)
from pld.pipeline.cluster.stage import cluster
from pld.workspace import Workspace
from tests.pipeline.cluster.conftest import TASK
from tests.pipeline.cluster.test_stage import _labels, sizes_consistent
from tests.pipeline.test_embed import BILLING, SHIPPING, add_rules

RESTATEMENTS = [
    "If the ticket does not address the question, then the label is {l}.",
    "If the message does not concern the request, then the label is {l}.",
    "When the ticket is not about the issue asked, the label is {l}.",
    "If the text does not address the user's question, label it {l}.",
    "If the ticket does not mention the topic of the question, the label is {l}.",
    "When the message does not address what was asked, then the label is {l}.",
    "If the request is not addressed by the ticket, then the label is {l}.",
    "If the ticket fails to address the question, the label should be {l}.",
    "When the text is unrelated to the question, then the label is {l}.",
    "If the ticket does not answer the question asked, then it is {l}.",
    "If nothing in the ticket addresses the question, then the label is {l}.",
    "Where the message does not address the question, the label is {l}.",
]


def collapsing_rules() -> list[tuple[str, str]]:
    """36 rewordings of one restatement (12 per label) and 6 rules with content."""
    blob = [(t.format(l=label), label) for label in ("billing", "shipping", "account")
            for t in RESTATEMENTS]
    return blob + [(t, "billing") for t in BILLING[:3]] + [(t, "shipping") for t in SHIPPING[:3]]


def test_auto_never_keeps_a_collapse_but_a_persons_choice_stands(ws: Workspace) -> None:
    add_rules(ws, TASK, collapsing_rules())

    # Before: the earlier default, DBSCAN with eps auto, collapses. Chosen explicitly by a
    # reviewer, it is kept as chosen and marked as theirs.
    chosen = cluster(ws, TASK, method="dbscan", eps="auto", started_by=Identity("ana"))
    c = get_clustering(ws, chosen)
    assert c["metrics"]["largest_share"] > MAX_SHARE
    assert c["params"]["choice"] == "explicit"
    assert c["params"]["chosen_by"] == {"name": "ana", "kind": "self-declared"}
    assert "kept because dbscan was chosen explicitly" in c["params"]["over_max_share"]
    assert choice_words(c["params"]).startswith("dbscan chosen explicitly by ana")

    cid = cluster(ws, TASK)  # auto is the default
    c = get_clustering(ws, cid)
    assert c["method"] == "auto" and c["params"]["choice"] == "auto"
    assert c["metrics"]["n_clusters"] >= 2
    assert c["metrics"]["largest_share"] <= MAX_SHARE
    assert max(c["metrics"]["sizes"]) <= MAX_SHARE * len(collapsing_rules())
    assert "over_max_share" not in c["params"]
    auto = c["params"]["auto"]
    names = [x["name"] for x in auto["candidates"]]
    assert auto["chosen"] in names and len(names) >= 5
    (dbscan,) = [x for x in auto["candidates"] if x["method"] == "dbscan"]
    assert dbscan["largest_share"] > MAX_SHARE or dbscan["n_clusters"] < 2
    assert dbscan["why"] != "chosen"
    (won,) = [x for x in auto["candidates"] if x["why"] == "chosen"]
    assert won["largest_share"] <= MAX_SHARE and "silhouette" in auto["why"]
    assert choice_words(c["params"]).startswith(f"auto kept {auto['chosen']} of {len(names)}")
    sizes_consistent(ws, cid)
    assert all(e["keywords"] for e in cluster_summary(ws, cid) if not e["noise"])
    assert [x["id"] for x in list_clusterings(ws, TASK)] == [cid, chosen]


def test_auto_keeps_clear_topics_apart(ws: Workspace, rules: dict[int, str]) -> None:
    cid = cluster(ws, TASK, seed=3)
    ids = list(rules)
    assert adjusted_rand_score([rules[i] for i in ids], _labels(ws, cid, ids)) > 0.8
    assert get_clustering(ws, cid)["metrics"]["largest_share"] <= MAX_SHARE


def test_with_no_fitting_candidate_the_largest_cluster_is_cut() -> None:
    # Three rules of one label: k-means k=2 leaves two of three together (67%), the label's
    # own cluster holds all three, and too few rules for a dense region.
    space = np.array([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0]])
    labels, info = choose(space, ["a", "a", "a"], min_samples=6, seed=0)
    assert info["bisected"] >= 1 and "cut in two" in info["why"]
    assert sorted(np.bincount(labels)) == [1, 1, 1]
    assert all(x["why"] != "chosen" or x["largest_share"] > MAX_SHARE
               for x in info["candidates"])


def test_identical_vectors_are_halved() -> None:
    same = np.ones((5, 3))
    labels, cuts = bisect_largest(same, np.zeros(5, dtype=int), seed=0)
    assert cuts >= 1 and max(np.bincount(labels)) <= MAX_SHARE * 5
