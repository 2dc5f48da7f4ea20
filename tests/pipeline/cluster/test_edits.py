"""Reviewer edits of a clustering: accept, rename, move, merge, split, each audited."""

from __future__ import annotations

import pytest

from pld.errors import BadInput
from pld.identity import Identity
from pld.pipeline.cluster.edits import (
    accept_clustering,
    edit_refusal,
    last_renames,
    merge_clusters,
    move_rule,
    move_rules,
    rename_cluster,
    split_cluster,
)
from pld.pipeline.cluster.read import (
    cluster_summary,
    current_clustering,
    get_clustering,
    list_clusterings,
    members,
    points,
)
from pld.pipeline.cluster.stage import cluster
from pld.workspace import Workspace, loads
from tests.pipeline.cluster.conftest import TASK
from tests.pipeline.cluster.test_stage import TOPIC_WORDS, sizes_consistent
from tests.pipeline.test_embed import TOPICS


def test_accept_supersedes_previous(ws: Workspace, rules: dict[int, str]) -> None:
    assert current_clustering(ws, TASK) is None
    first = cluster(ws, TASK, method="kmeans", k=3)
    second = cluster(ws, TASK, method="kmeans", k=2)
    assert current_clustering(ws, TASK)["id"] == second
    assert [c["id"] for c in list_clusterings(ws, TASK)] == [second, first]

    accept_clustering(ws, first, Identity("ana"))
    cur = current_clustering(ws, TASK)
    assert cur["id"] == first and cur["status"] == "accepted" and cur["accepted_by"] == "ana"
    cluster(ws, TASK, method="kmeans", k=4)
    assert current_clustering(ws, TASK)["id"] == first

    accept_clustering(ws, second, Identity("bo"))
    assert get_clustering(ws, first)["status"] == "superseded"
    assert get_clustering(ws, second)["status"] == "accepted"
    assert len(ws.query("SELECT id FROM clusterings WHERE status = 'accepted'")) == 1
    reviews = ws.query("SELECT * FROM reviews WHERE action = 'accept' ORDER BY id")
    assert [(r["who"], r["entity"], r["entity_id"]) for r in reviews] == [
        ("ana", "clustering", first), ("bo", "clustering", second)]
    assert loads(reviews[1]["after"])["superseded"] == [first]
    with pytest.raises(BadInput, match="reviewer name"):
        accept_clustering(ws, first, Identity(" "))
    with pytest.raises(BadInput, match="not found"):
        accept_clustering(ws, 999, Identity("ana"))
    with pytest.raises(BadInput, match="superseded"):
        rename_cluster(ws, ws.query("SELECT id FROM clusters WHERE clustering_id = ?",
                                    [first])[0]["id"], "x", Identity("ana"))
    assert edit_refusal(ws, first, structural=False) == (
        f"clustering {first} is superseded; edit the current one")
    assert edit_refusal(ws, second, structural=True) is None


def test_reviewer_edits_keep_members_and_sizes(ws: Workspace, rules: dict[int, str]) -> None:
    cid = cluster(ws, TASK, method="kmeans", k=3)
    summary = [e for e in cluster_summary(ws, cid) if not e["noise"]]
    by_topic = {max(e["labels"], key=e["labels"].get): e["id"] for e in summary}

    auto_name = next(e["name"] for e in summary if e["id"] == by_topic["billing"])
    assert last_renames(ws, cid) == {}
    rename_cluster(ws, by_topic["billing"], "Billing & refunds", Identity("ana"))
    assert any(e["name"] == "Billing & refunds" for e in cluster_summary(ws, cid))
    renamed = last_renames(ws, cid)
    assert list(renamed) == [by_topic["billing"]]
    assert (renamed[by_topic["billing"]]["who"], renamed[by_topic["billing"]]["before_name"]) \
        == ("ana", auto_name)

    rule = members(ws, cid, by_topic["shipping"])[0]["id"]
    move_rule(ws, cid, rule, None, Identity("ana"))
    assert rule in {m["id"] for m in members(ws, cid, None)}
    assert get_clustering(ws, cid)["metrics"]["n_noise"] == 1
    move_rule(ws, cid, rule, by_topic["account"], Identity("ana"))
    assert rule in {m["id"] for m in members(ws, cid, by_topic["account"])}
    sizes_consistent(ws, cid)

    merged = merge_clusters(ws, cid, by_topic["billing"], by_topic["shipping"], Identity("bo"))
    assert merged == by_topic["billing"]
    assert not ws.query("SELECT id FROM clusters WHERE id = ?", [by_topic["shipping"]])
    merged_members = members(ws, cid, merged)
    assert len(merged_members) == len(TOPICS["billing"]) + len(TOPICS["shipping"]) - 1
    # The reviewer's name survives the merge; keywords now cover both topics.
    row = next(e for e in cluster_summary(ws, cid) if e["id"] == merged)
    assert row["name"] == "Billing & refunds"
    assert set(row["keywords"]) & TOPIC_WORDS["shipping"]
    sizes_consistent(ws, cid)

    parts = split_cluster(ws, cid, merged, 2, who=Identity("cy"))
    assert parts[0] == merged and len(parts) == 2
    part_topics = [{m["gold_label"] for m in members(ws, cid, p)} for p in parts]
    assert sorted(len(m) for p in parts for m in [members(ws, cid, p)]) == sorted(
        [len(TOPICS["billing"]), len(TOPICS["shipping"]) - 1])
    assert all(len(t) == 1 for t in part_topics)
    new = next(e for e in cluster_summary(ws, cid) if e["id"] == parts[1])
    assert new["name"] == " · ".join(new["keywords"][:3]) and new["keywords"]
    sizes_consistent(ws, cid)
    assert len(points(ws, cid)) == len(rules)

    reviews = ws.query("SELECT * FROM reviews WHERE entity = 'clustering' AND entity_id = ? "
                       "ORDER BY id", [cid])
    assert [(r["action"], r["who"]) for r in reviews] == [
        ("rename_cluster", "ana"), ("move_rule", "ana"), ("move_rule", "ana"),
        ("merge_clusters", "bo"), ("split_cluster", "cy")]
    assert loads(reviews[1]["before"])["cluster_id"] == by_topic["shipping"]
    assert loads(reviews[1]["after"])["cluster_id"] is None
    assert loads(reviews[0]["after"])["name"] == "Billing & refunds"
    assert len(loads(reviews[4]["after"])["clusters"]) == 2


def test_moving_several_rules_is_all_or_nothing(ws: Workspace, rules: dict[int, str]) -> None:
    cid = cluster(ws, TASK, method="kmeans", k=3)
    a, b = [e["id"] for e in cluster_summary(ws, cid) if not e["noise"]][:2]
    two = [m["id"] for m in members(ws, cid, a)][:2]
    before = {m["id"] for m in members(ws, cid, b)}

    with pytest.raises(BadInput, match=r"rules not in clustering \d+: 10000; nothing was moved"):
        move_rules(ws, cid, [*two, 10_000], b, Identity("ana"))
    assert {m["id"] for m in members(ws, cid, b)} == before
    assert ws.query("SELECT count(*) AS n FROM reviews")[0]["n"] == 0

    assert move_rules(ws, cid, [*two, *two], b, Identity("ana")) == 2  # a repeated id moves once
    assert {m["id"] for m in members(ws, cid, b)} == before | set(two)
    assert move_rules(ws, cid, two, b, Identity("ana")) == 0  # already there: nothing to record
    assert [loads(r["after"])["rule_id"] for r in ws.query(
        "SELECT after FROM reviews WHERE action = 'move_rule' ORDER BY id")] == two
    sizes_consistent(ws, cid)


def test_edit_validation(ws: Workspace, rules: dict[int, str]) -> None:
    cid = cluster(ws, TASK, method="kmeans", k=3)
    a, b = [e["id"] for e in cluster_summary(ws, cid) if not e["noise"]][:2]
    other = cluster(ws, TASK, method="kmeans", k=2)
    foreign = next(e["id"] for e in cluster_summary(ws, other) if not e["noise"])
    with pytest.raises(BadInput, match="itself"):
        merge_clusters(ws, cid, a, a, Identity("ana"))
    with pytest.raises(BadInput, match=f"cluster {foreign} is not in clustering {cid}"):
        merge_clusters(ws, cid, a, foreign, Identity("ana"))
    with pytest.raises(BadInput, match="cannot split"):
        split_cluster(ws, cid, a, 99, who=Identity("ana"))
    with pytest.raises(BadInput, match="k >= 2"):
        split_cluster(ws, cid, a, 1, who=Identity("ana"))
    with pytest.raises(BadInput, match="not in clustering"):
        move_rule(ws, cid, 10_000, b, Identity("ana"))
    with pytest.raises(BadInput, match="must not be empty"):
        rename_cluster(ws, a, "  ", Identity("ana"))
    with pytest.raises(BadInput, match="reviewer name"):
        move_rule(ws, cid, next(iter(rules)), None, Identity(""))
    assert ws.query("SELECT count(*) AS n FROM reviews")[0]["n"] == 0
    sizes_consistent(ws, cid)
