"""The clustering maths on plain vectors: k-distances, eps at the knee, cover clusters."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from pld.errors import BadInput
from pld.pipeline.cluster.fit import (
    class_keywords,
    cover_labels,
    eps_auto,
    fit_bertopic,
    kdistances,
)


def test_cover_labels_adds_a_cluster_only_for_labels_wholly_in_noise() -> None:
    labels = np.array([0, 0, -1, 1, -1, -1, -1])
    rule_labels = ["a", "a", "a", "b", "c", "d", "c"]
    out, added = cover_labels(labels, rule_labels)
    # "a" keeps its noise rule in noise (it has a cluster); "c" and "d" get one cluster each.
    assert out.tolist() == [0, 0, -1, 1, 2, 3, 2]
    assert added == {2: "c", 3: "d"}
    assert labels.tolist() == [0, 0, -1, 1, -1, -1, -1]  # the input is left alone
    assert cover_labels(np.array([-1, -1]), ["x", "x"])[0].tolist() == [0, 0]


def test_kdistances_match_nearest_neighbours() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 8))
    for metric in ("cosine", "euclidean"):
        nn = NearestNeighbors(n_neighbors=4, metric=metric).fit(x)
        expected = nn.kneighbors(x)[0][:, 3]
        assert np.allclose(kdistances(x, 4, metric), expected, atol=1e-6)


def test_eps_auto_finds_the_knee_between_dense_and_sparse() -> None:
    rng = np.random.default_rng(0)
    centres = np.eye(16)[:3]
    dense = np.concatenate([c + rng.normal(scale=0.05, size=(40, 16)) for c in centres])
    sparse = rng.normal(size=(6, 16))
    eps, info = eps_auto(np.concatenate([dense, sparse]), 5)
    within = np.sort(kdistances(dense, 5))
    # Past the dense points' k-distances (those points are core) and well below the far ones.
    assert np.quantile(within, 0.8) <= eps < 0.5
    assert info["k"] == 5 and info["n"] == 126 and 0 <= info["knee_index"] < 126
    with pytest.raises(BadInput, match="at least 2"):
        eps_auto(dense[:1], 5)


def test_keywords_keep_hyphenated_words_whole() -> None:
    # Before: BERTopic's cleaning glued "account-access" into the keyword "accountaccess".
    from sklearn.cluster import KMeans

    docs = ["The customer reports an account-access problem after the reset.",
            "Answer account-access when login fails twice.",
            "A refund request for a duplicate charge.",
            "The charge was taken twice; a refund is asked."]
    space = np.array([[0.0, 1.0], [0.1, 1.0], [1.0, 0.0], [1.0, 0.1]])
    labels, keywords, note = fit_bertopic(docs, space, KMeans(n_clusters=2, n_init=1,
                                                               random_state=0))
    assert note is None and labels.tolist() in ([0, 0, 1, 1], [1, 1, 0, 0])
    words = [w for ws in keywords.values() for w in ws]
    assert "account-access" in words and "accountaccess" not in words
    ids = {0: docs[:2], 1: docs[2:]}
    assert "account-access" in class_keywords(ids)[0]
