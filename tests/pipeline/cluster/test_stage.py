"""Clustering stage on real MiniLM embeddings of synthetic rules in three clear topics."""

from __future__ import annotations

import pytest
from sklearn.metrics import adjusted_rand_score

from pld.errors import BadInput, NotReady
from pld.identity import Identity
from pld.pipeline.cluster.edits import accept_clustering
from pld.pipeline.cluster.read import (
    cluster_summary,
    get_clustering,
    list_clusterings,
    members,
    points,
)
from pld.pipeline.cluster.stage import cluster
from pld.pipeline.runs import list_runs
from pld.workspace import Workspace
from tests.pipeline.cluster.conftest import TASK
from tests.pipeline.test_embed import OUTLIERS, add_rules, topic_rules

# Calibrated on MiniLM for these rules: 4th-nearest same-topic neighbours lie at 0.32-0.54
# cosine distance, other topics at >= 0.6 (5th percentile); at 0.5 two topics chain together.
EPS = 0.45
MIN_SAMPLES = 4
TOPIC_WORDS = {
    "billing": {"refund", "charged", "charge", "invoice", "card", "credit", "billing", "payment",
                "fee"},
    "shipping": {"delivery", "parcel", "package", "shipping", "tracking", "courier", "box",
                 "address", "order"},
    "account": {"password", "login", "account", "log", "sign", "reset", "profile", "user"},
}


def _labels(ws: Workspace, clustering_id: int, rule_ids: list[int]) -> list[int]:
    got = {r["rule_id"]: r["cluster_id"] for r in ws.query(
        "SELECT rule_id, cluster_id FROM cluster_members WHERE clustering_id = ?",
        [clustering_id])}
    return [-1 if got[i] is None else got[i] for i in rule_ids]


def sizes_consistent(ws: Workspace, clustering_id: int) -> None:
    for c in ws.query("SELECT id, size FROM clusters WHERE clustering_id = ?", [clustering_id]):
        n = ws.query("SELECT count(*) AS n FROM cluster_members WHERE cluster_id = ?",
                     [c["id"]])[0]["n"]
        assert c["size"] == n
    metrics = get_clustering(ws, clustering_id)["metrics"]
    sizes = sorted((c["size"] for c in ws.query(
        "SELECT size FROM clusters WHERE clustering_id = ?", [clustering_id])), reverse=True)
    assert metrics["sizes"] == sizes and metrics["n_clusters"] == len(sizes)


def _assert_keywords_match_topics(ws: Workspace, clustering_id: int,
                                  rules: dict[int, str]) -> None:
    for entry in cluster_summary(ws, clustering_id):
        if entry["noise"]:
            continue
        topic = max(entry["labels"], key=entry["labels"].get)
        assert set(entry["keywords"][:5]) & TOPIC_WORDS[topic], (topic, entry["keywords"])
        assert entry["name"] == " · ".join(entry["keywords"][:3])


def test_dbscan_recovers_topics(ws: Workspace, rules: dict[int, str]) -> None:
    seen: list[tuple[int, int]] = []
    cid = cluster(ws, TASK, method="dbscan", eps=EPS, min_samples=MIN_SAMPLES,
                  on_progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (4, 4)
    run = list_runs(ws, task=TASK, kind="cluster")[0]
    assert run["status"] == "done" and run["params"]["eps"] == EPS
    ids = list(rules)
    labels = _labels(ws, cid, ids)
    gold = [rules[i] for i in ids]
    assert adjusted_rand_score(gold, labels) > 0.8
    c = get_clustering(ws, cid)
    assert c["status"] == "proposed" and c["method"] == "dbscan" and c["embed_model"] == "minilm"
    assert c["params"]["eps"] == EPS and c["params"]["eps_method"] == "given"
    assert c["params"]["metric"] == "cosine" and c["params"]["projection"] == "pca"
    assert c["metrics"]["n_clusters"] == 3
    assert c["metrics"]["silhouette"] is not None and 0 < c["metrics"]["silhouette"] <= 1
    _assert_keywords_match_topics(ws, cid, rules)
    sizes_consistent(ws, cid)
    assert all(p["x"] is not None and p["y"] is not None for p in points(ws, cid))
    assert len(points(ws, cid)) == len(rules)


def test_umap_reduction_then_hdbscan(ws: Workspace, rules: dict[int, str]) -> None:
    # Slow on a fresh process (numba compiles UMAP, ~20 s of CPU); the one test of this path.
    cid = cluster(ws, TASK, method="hdbscan", min_samples=MIN_SAMPLES, umap=True)
    c = get_clustering(ws, cid)
    assert c["params"]["umap"] is True and c["params"]["metric"] == "euclidean"
    assert c["params"]["projection"] == "umap"
    ids = list(rules)
    assert adjusted_rand_score([rules[i] for i in ids], _labels(ws, cid, ids)) > 0.8
    sizes_consistent(ws, cid)


def test_kmeans_recovers_topics_without_reembedding(ws: Workspace, rules: dict[int, str]) -> None:
    first = cluster(ws, TASK, method="dbscan", eps=EPS, min_samples=MIN_SAMPLES)
    stamps = ws.query("SELECT rule_id, created_at FROM embeddings ORDER BY rule_id")
    cid = cluster(ws, TASK, method="kmeans", k=3, seed=1)
    assert cid != first
    assert ws.query("SELECT rule_id, created_at FROM embeddings ORDER BY rule_id") == stamps
    assert len(list_runs(ws, task=TASK, kind="embed")) == 1
    ids = list(rules)
    assert adjusted_rand_score([rules[i] for i in ids], _labels(ws, cid, ids)) > 0.9
    c = get_clustering(ws, cid)
    assert c["params"]["k"] == 3 and "eps" not in c["params"]
    assert c["metrics"]["n_noise"] == 0 and c["metrics"]["noise_share"] == 0
    _assert_keywords_match_topics(ws, cid, rules)
    # Gold-label mix per cluster sums to its size.
    for entry in cluster_summary(ws, cid):
        assert sum(entry["labels"].values()) == entry["size"]


def test_hdbscan_runs_through_bertopic(ws: Workspace, rules: dict[int, str]) -> None:
    cid = cluster(ws, TASK, method="hdbscan", min_samples=3)
    c = get_clustering(ws, cid)
    assert c["params"]["min_samples"] == 3 and c["metrics"]["n_rules"] == len(rules)
    assert c["metrics"]["n_clusters"] >= 2
    sizes_consistent(ws, cid)


def test_noise_rules_are_kept_as_null_members(ws: Workspace, rules: dict[int, str]) -> None:
    noise_ids = add_rules(ws, TASK, [(text, "billing") for text in OUTLIERS])
    cid = cluster(ws, TASK, method="dbscan", eps=EPS, min_samples=MIN_SAMPLES)
    noise = members(ws, cid, None)
    assert set(noise_ids) <= {m["id"] for m in noise}
    assert all(m["cluster_id"] is None and m["x"] is not None for m in noise)
    total = len(rules) + len(OUTLIERS)
    assert len(points(ws, cid)) == total
    metrics = get_clustering(ws, cid)["metrics"]
    assert metrics["n_noise"] == len(noise)
    assert metrics["noise_share"] == pytest.approx(len(noise) / total)
    entry = cluster_summary(ws, cid)[-1]
    assert entry["noise"] and entry["id"] is None and entry["size"] == len(noise)
    assert sum(entry["labels"].values()) == len(noise)


def test_cover_keeps_a_label_that_fell_into_noise(ws: Workspace, rules: dict[int, str]) -> None:
    odd_ids = add_rules(ws, TASK, [(text, "off-topic") for text in OUTLIERS])
    plain = cluster(ws, TASK, method="dbscan", eps=EPS, min_samples=MIN_SAMPLES)
    assert set(odd_ids) <= {m["id"] for m in members(ws, plain, None)}

    cid = cluster(ws, TASK, method="dbscan", eps=EPS, min_samples=MIN_SAMPLES, cover=True)
    c = get_clustering(ws, cid)
    assert c["params"]["cover_labels"] is True and c["params"]["label_clusters"] == ["off-topic"]
    assert c["metrics"]["n_clusters"] == get_clustering(ws, plain)["metrics"]["n_clusters"] + 1
    (kept,) = [e for e in cluster_summary(ws, cid) if e["name"].startswith("off-topic: ")]
    assert kept["labels"] == {"off-topic": len(OUTLIERS)} and kept["keywords"]
    assert "kept from noise" in kept["name"]
    assert sorted(m["id"] for m in members(ws, cid, kept["id"])) == sorted(odd_ids)
    sizes_consistent(ws, cid)


def test_all_noise_gives_zero_clusters(ws: Workspace, rules: dict[int, str]) -> None:
    cid = cluster(ws, TASK, method="dbscan", eps=0.001, min_samples=MIN_SAMPLES)
    metrics = get_clustering(ws, cid)["metrics"]
    assert metrics["n_clusters"] == 0 and metrics["noise_share"] == 1.0
    assert metrics["silhouette"] is None and metrics["sizes"] == []
    assert len(members(ws, cid, None)) == len(rules)
    with pytest.raises(BadInput, match="no clusters"):
        accept_clustering(ws, cid, Identity("ana"))


def test_eps_auto_is_chosen_and_stored(ws: Workspace, rules: dict[int, str]) -> None:
    cid = cluster(ws, TASK, method="dbscan", eps="auto", min_samples=MIN_SAMPLES)
    params = get_clustering(ws, cid)["params"]
    assert params["eps_method"] == "auto"
    assert 0 < params["eps"] < 1
    info = params["eps_auto"]
    assert info["k"] == MIN_SAMPLES and info["n"] == len(rules) and info["eps"] == params["eps"]
    assert info["kdist_min"] <= params["eps"] <= info["kdist_max"]


def test_same_seed_gives_the_same_clustering(ws: Workspace, rules: dict[int, str]) -> None:
    def snapshot(cid: int) -> tuple[object, ...]:
        pts = [(p["id"], p["x"], p["y"]) for p in points(ws, cid)]
        summary = [(e["name"], e["keywords"], e["size"]) for e in cluster_summary(ws, cid)]
        return pts, summary, _labels(ws, cid, list(rules)), get_clustering(ws, cid)["metrics"]

    a = cluster(ws, TASK, method="kmeans", k=3, seed=7)
    b = cluster(ws, TASK, method="kmeans", k=3, seed=7)
    sa, sb = snapshot(a), snapshot(b)
    assert sa[0] == sb[0] and sa[1] == sb[1] and sa[3] == sb[3]
    assert adjusted_rand_score(sa[2], sb[2]) == 1.0
    c = cluster(ws, TASK, method="dbscan", eps="auto", min_samples=MIN_SAMPLES)
    d = cluster(ws, TASK, method="dbscan", eps="auto", min_samples=MIN_SAMPLES)
    assert get_clustering(ws, c)["params"] == get_clustering(ws, d)["params"]
    assert snapshot(c)[1] == snapshot(d)[1]


def test_bad_options_are_one_line_bad_input(ws: Workspace, rules: dict[int, str]) -> None:
    cases = [
        ({"method": "spectral"}, "unknown --method 'spectral'"),
        ({"method": "dbscan", "eps": 0}, r"--eps must be in \(0, 2\]"),
        ({"method": "dbscan", "eps": 2.5}, r"--eps must be in \(0, 2\]"),
        ({"method": "dbscan", "eps": "wide"}, "--eps must be a number or 'auto'"),
        ({"k": 3}, "--k goes with --method kmeans"),
        ({"min_samples": 0}, "--min-samples must be an integer >= 1"),
        ({"method": "kmeans"}, "needs --k"),
        ({"method": "kmeans", "k": 1}, "--k must be an integer >= 2"),
        ({"method": "kmeans", "k": len(rules) + 1}, "more than the number of rules"),
        ({"embed_model": "word2vec"}, "unknown embedding model"),
    ]
    for kwargs, message in cases:
        with pytest.raises(BadInput, match=message) as err:
            cluster(ws, TASK, **kwargs)
        assert "\n" not in str(err.value)
    with pytest.raises(BadInput, match="not loaded"):
        cluster(ws, "nope")
    assert list_clusterings(ws, TASK) == []
    assert ws.query("SELECT count(*) AS n FROM embeddings")[0]["n"] == 0


def test_eps_accepts_numeric_strings(ws: Workspace, rules: dict[int, str]) -> None:
    cid = cluster(ws, TASK, method="dbscan", eps=str(EPS), min_samples=MIN_SAMPLES)
    assert get_clustering(ws, cid)["params"]["eps"] == EPS


def test_umap_needs_enough_rules_and_positive_eps(ws: Workspace) -> None:
    add_rules(ws, TASK, topic_rules()[:5])
    with pytest.raises(BadInput, match="--umap needs at least 10 rules"):
        cluster(ws, TASK, umap=True)
    with pytest.raises(BadInput, match="--eps must be > 0"):
        cluster(ws, TASK, method="dbscan", eps=-1, umap=True)


@pytest.mark.parametrize("last", ["she has been here", "she has been here, ones"])
def test_rules_of_stop_words_keep_clusters_without_keywords(ws: Workspace, last: str) -> None:
    # Only stop words: an empty vocabulary. With "ones": a one-word vocabulary, which BERTopic's
    # c-TF-IDF cannot handle either.
    add_rules(ws, TASK, [(text, "billing") for text in
                         ["the and of it", "it is the one", "of the and", "we are the",
                          "he was not there", last]])
    cid = cluster(ws, TASK, method="kmeans", k=2)
    c = get_clustering(ws, cid)
    assert "no c-TF-IDF keywords" in c["params"]["representation_note"]
    summary = [e for e in cluster_summary(ws, cid) if not e["noise"]]
    assert sorted(e["name"] for e in summary) == ["cluster 0", "cluster 1"]
    assert all(e["keywords"] == [] for e in summary)
    assert sum(e["size"] for e in summary) == 6


def test_no_ok_rules_is_not_ready(ws: Workspace) -> None:
    add_rules(ws, TASK, topic_rules()[:3], status="failed")
    with pytest.raises(NotReady, match="run extract first"):
        cluster(ws, TASK)
