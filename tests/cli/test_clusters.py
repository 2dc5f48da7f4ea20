"""``python -m pld clusters …``: the Clusters page's actions (accept, rename, move, merge, split),
headless.

The rules are the three support topics of tests/pipeline/test_embed.py. Their vectors are
stored as the embedder's rows would be, one clear direction per topic, so k-means finds the
topics without loading the embedding model; clustering, c-TF-IDF keywords and every edit are
the real ones. The commands run through click's CliRunner in this process: merge and split
import BERTopic, which a subprocess per command would pay for again and again.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result

from pld.cli import cli
from pld.pipeline.cluster import read, stage
from pld.pipeline.embed import DEFAULT_EMBEDDER
from pld.workspace import Workspace, loads, now
from tests.pipeline.test_embed import TOPICS, add_rules, topic_rules

TASK = "support"
DIM = 16


@pytest.fixture
def rules(ws: Workspace) -> dict[int, str]:
    """The 39 topic rules with stored vectors near their topic's axis: rule id -> topic."""
    ids = add_rules(ws, TASK, topic_rules())
    topics = [label for _, label in topic_rules()]
    axis = {t: i for i, t in enumerate(sorted(TOPICS))}
    rng = np.random.default_rng(0)
    with ws.write() as db:
        for rid, topic in zip(ids, topics, strict=True):
            v = rng.normal(0, 0.05, DIM)
            v[axis[topic]] += 1.0
            v /= np.linalg.norm(v)
            db["embeddings"].insert({"rule_id": rid, "model": DEFAULT_EMBEDDER, "dim": DIM,
                                     "vector": v.astype(np.float32).tobytes(),
                                     "created_at": now()})
    return dict(zip(ids, topics, strict=True))


def run(ws: Workspace, *args: str) -> Result:
    """``python -m pld --workspace WS ARGS`` in this process."""
    return CliRunner().invoke(cli, ["--workspace", str(ws.path), *args])


def ok(ws: Workspace, *args: str) -> Result:
    r = run(ws, *args)
    assert r.exit_code == 0, (r.output, r.stderr, r.exception)
    return r


def bad(ws: Workspace, *args: str, says: str) -> None:
    """Exit 2 with one line on stderr that names the problem, and no traceback."""
    r = run(ws, *args)
    assert r.exit_code == 2, (r.output, r.exception)
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
    assert says in r.stderr, r.stderr


def _json(r: Result) -> Any:
    import json

    return json.loads(r.stdout)


def _by_topic(ws: Workspace, clustering_id: int) -> dict[str, int]:
    """Cluster id of each topic (the majority gold label of the cluster)."""
    return {max(s["labels"], key=s["labels"].get): s["id"]
            for s in read.cluster_summary(ws, clustering_id) if not s["noise"]}


def _cluster_of(ws: Workspace, clustering_id: int) -> dict[int, int | None]:
    return {r["rule_id"]: r["cluster_id"] for r in ws.query(
        "SELECT rule_id, cluster_id FROM cluster_members WHERE clustering_id = ?",
        [clustering_id])}


def _audit(ws: Workspace, clustering_id: int) -> list[tuple[str, str]]:
    return [(r["action"], r["who"]) for r in ws.query(
        "SELECT action, who FROM reviews WHERE entity = 'clustering' AND entity_id = ? "
        "ORDER BY id", [clustering_id])]


def test_cluster_cover_labels_keeps_a_label_lost_in_noise(ws: Workspace,
                                                          rules: dict[int, str]) -> None:
    rare = add_rules(ws, TASK, [("If the caller mentions a lawsuit, escalate.", "legal"),
                                ("If a lawyer writes in, escalate to legal.", "legal")])
    with ws.write() as db:
        for rid in rare:
            v = np.zeros(DIM)
            v[DIM - 1] = 1.0
            db["embeddings"].insert({"rule_id": rid, "model": DEFAULT_EMBEDDER, "dim": DIM,
                                     "vector": v.astype(np.float32).tobytes(),
                                     "created_at": now()})
    args = ["cluster", TASK, "--method", "dbscan", "--eps", "0.3", "--min-samples", "4", "--json"]
    plain = _json(ok(ws, *args))
    assert plain["metrics"]["n_clusters"] == 3 and "label_clusters" not in plain["params"]
    covered = _json(ok(ws, *args, "--cover-labels"))
    assert covered["params"]["label_clusters"] == ["legal"]
    assert covered["metrics"]["n_clusters"] == 4
    (legal,) = [c for c in covered["clusters"] if c.get("labels") == {"legal": 2}]
    assert legal["name"].startswith("legal: kept from noise")
    assert "kept from noise" in ok(ws, *args[:-1], "--cover-labels").stdout


def test_cluster_defaults_to_auto_and_says_what_it_tried(ws: Workspace,
                                                         rules: dict[int, str]) -> None:
    out = ok(ws, "cluster", TASK).stdout
    assert "auto kept " in out and "tried kmeans k=2: " in out and "largest " in out
    c = read.current_clustering(ws, TASK)
    assert c["method"] == "auto" and c["metrics"]["largest_share"] <= 0.6
    assert "auto kept" in ok(ws, "clusters", "show", str(c["id"])).stdout
    # A value auto would ignore is refused rather than silently dropped.
    bad(ws, "cluster", TASK, "--eps", "0.3", says="--eps goes with --method dbscan")
    bad(ws, "cluster", TASK, "--k", "3", says="--k goes with --method kmeans")
    explicit = _json(ok(ws, "cluster", TASK, "--method", "kmeans", "--k", "2", "--as", "ana",
                        "--json"))
    assert explicit["params"]["choice"] == "explicit"
    assert explicit["params"]["chosen_by"] == {"name": "ana", "kind": "self-declared"}


def test_clusters_list_show_and_accept(ws: Workspace, rules: dict[int, str]) -> None:
    empty = ok(ws, "clusters", "list", TASK)
    assert "no clusterings" in empty.stdout
    first = stage.cluster(ws, TASK, method="kmeans", k=3)
    second = stage.cluster(ws, TASK, method="kmeans", k=2)

    listed = _json(ok(ws, "clusters", "list", TASK, "--json"))
    assert [c["id"] for c in listed["clusterings"]] == [second, first]
    assert listed["current"] == second
    assert [c["metrics"]["n_clusters"] for c in listed["clusterings"]] == [2, 3]

    shown = _json(ok(ws, "clusters", "show", str(first), "--json"))
    assert shown["status"] == "proposed" and shown["task"] == TASK
    clusters = [c for c in shown["clusters"] if not c["noise"]]
    assert sorted(c["size"] for c in clusters) == [13, 13, 13]
    assert all(len(c["labels"]) == 1 for c in clusters)  # one topic per cluster
    one = clusters[0]
    members = _json(ok(ws, "clusters", "show", str(first), "--cluster", str(one["id"]),
                       "--json"))["rules"]
    assert len(members) == 13 and {m["gold_label"] for m in members} == set(one["labels"])
    assert _json(ok(ws, "clusters", "show", str(first), "--cluster", "noise",
                    "--json"))["rules"] == []
    text = ok(ws, "clusters", "show", str(first)).stdout
    assert f"clustering #{first} of {TASK} (proposed)" in text and one["name"] in text
    foreign = next(iter(_by_topic(ws, second).values()))
    bad(ws, "clusters", "show", str(first), "--cluster", str(foreign),
        says=f"not a cluster of clustering {first}")
    bad(ws, "clusters", "show", str(first), "--cluster", "big", says="'noise'")
    bad(ws, "clusters", "show", "999", says="clustering 999 not found")

    ok(ws, "clusters", "accept", str(first), "--as", "ana")
    c = read.get_clustering(ws, first)
    assert (c["status"], c["accepted_by"]) == ("accepted", "ana")
    listed = _json(ok(ws, "clusters", "list", TASK, "--json"))
    assert listed["current"] == first
    assert f"*#{first}" in ok(ws, "clusters", "list", TASK).stdout

    bad(ws, "clusters", "accept", str(second), "--as", "  ", says="reviewer name")
    bad(ws, "clusters", "accept", "999", "--as", "bo", says="clustering 999 not found")
    assert read.get_clustering(ws, second)["status"] == "proposed"
    ok(ws, "clusters", "accept", str(second), "--as", "bo")
    assert read.get_clustering(ws, first)["status"] == "superseded"
    assert _audit(ws, first) == [("accept", "ana")] and _audit(ws, second) == [("accept", "bo")]


def test_clusters_rename_refuses_a_name_changed_since(
    ws: Workspace, rules: dict[int, str]
) -> None:
    cid = stage.cluster(ws, TASK, method="kmeans", k=3)
    billing = _by_topic(ws, cid)["billing"]
    seen = next(s["name"] for s in read.cluster_summary(ws, cid) if s["id"] == billing)

    ok(ws, "clusters", "rename", str(billing), "Billing & refunds", "--expected-name", seen,
       "--as", "ana")
    # A second reviewer still looking at the generated name is refused, not applied.
    bad(ws, "clusters", "rename", str(billing), "Payments", "--expected-name", seen,
        "--as", "bo", says="is now named 'Billing & refunds' by ana")
    name = ws.query("SELECT name FROM clusters WHERE id = ?", [billing])[0]["name"]
    assert name == "Billing & refunds"
    bad(ws, "clusters", "rename", str(billing), "   ", "--as", "bo", says="must not be empty")
    bad(ws, "clusters", "rename", "999", "x", "--as", "bo", says="cluster 999 not found")

    ok(ws, "clusters", "rename", str(billing), "Payments", "--as", "bo")  # no check asked for
    assert ws.query("SELECT name FROM clusters WHERE id = ?", [billing])[0]["name"] == "Payments"
    assert _audit(ws, cid) == [("rename_cluster", "ana"), ("rename_cluster", "bo")]


def test_clusters_move_merge_and_split(ws: Workspace, rules: dict[int, str]) -> None:
    cid = stage.cluster(ws, TASK, method="kmeans", k=3)
    topic = _by_topic(ws, cid)
    shipping = [r for r, t in rules.items() if t == "shipping"]

    # A bad id anywhere in the list moves nothing, not the ids before it.
    bad(ws, "clusters", "move", str(cid), str(shipping[0]), "99999", "--to", "noise",
        "--as", "ana", says="rules not in clustering")
    bad(ws, "clusters", "move", str(cid), str(shipping[0]), "--to", "elsewhere", "--as", "ana",
        says="--to: expected a cluster id or 'noise'")
    assert _cluster_of(ws, cid)[shipping[0]] == topic["shipping"]

    ok(ws, "clusters", "move", str(cid), str(shipping[0]), str(shipping[1]), "--to", "noise",
       "--as", "ana")
    where = _cluster_of(ws, cid)
    assert where[shipping[0]] is None and where[shipping[1]] is None
    assert read.get_clustering(ws, cid)["metrics"]["n_noise"] == 2
    ok(ws, "clusters", "move", str(cid), str(shipping[1]), "--to", str(topic["account"]),
       "--as", "ana")
    assert _cluster_of(ws, cid)[shipping[1]] == topic["account"]

    bad(ws, "clusters", "merge", str(cid), str(topic["billing"]), str(topic["shipping"]), "999",
        "--as", "bo", says="cluster 999 is not in clustering")
    bad(ws, "clusters", "merge", str(cid), str(topic["billing"]), str(topic["billing"]),
        "--as", "bo", says="with itself")
    assert len(_by_topic(ws, cid)) == 3
    ok(ws, "clusters", "merge", str(cid), str(topic["billing"]), str(topic["shipping"]),
       "--as", "bo")
    sizes = {s["id"]: s["size"] for s in read.cluster_summary(ws, cid) if not s["noise"]}
    assert sizes == {topic["billing"]: 13 + 11, topic["account"]: 14}

    parts = _json(ok(ws, "clusters", "split", str(cid), str(topic["billing"]), "--k", "2",
                     "--as", "cy", "--json"))["parts"]
    assert parts[0] == topic["billing"] and len(parts) == 2
    mixes = [{m["gold_label"] for m in read.members(ws, cid, p)} for p in parts]
    assert mixes == [{"billing"}, {"shipping"}]
    bad(ws, "clusters", "split", str(cid), str(parts[1]), "--k", "1", "--as", "cy",
        says="k >= 2")
    assert _audit(ws, cid) == [("move_rule", "ana"), ("move_rule", "ana"), ("move_rule", "ana"),
                               ("merge_clusters", "bo"), ("split_cluster", "cy")]

    # Once heuristics come from a clustering, its clusters stay as they were.
    with ws.write() as db:
        db["heuristics"].insert({"task": TASK, "clustering_id": cid, "cluster_id": parts[0],
                                 "text": "x", "status": "draft", "version": 1,
                                 "source_rule_ids": "[]", "created_at": now()})
    bad(ws, "clusters", "move", str(cid), str(shipping[1]), "--to", "noise", "--as", "ana",
        says="already has heuristics")
    assert loads(ws.query("SELECT metrics FROM clusterings WHERE id = ?",
                          [cid])[0]["metrics"])["n_noise"] == 1
