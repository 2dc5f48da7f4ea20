"""Clustering sign-offs in pld.pipeline.cluster, on the pages' populated workspace (its stored
vectors make edits cheap): every audit row names the identity kind, and a rename based on a
name someone else changed is refused."""

from __future__ import annotations

import pytest

from pld.errors import BadInput
from pld.identity import AUTO, OIDC, Identity
from pld.pipeline.cluster import edits, read
from pld.review_rows import StaleEdit
from tests.pages.conftest import Populated


def _kinds(p: Populated, clustering_id: int) -> list[tuple[str, str, str]]:
    with p.open() as ws:
        return [(r["action"], r["who"], r["identity_kind"]) for r in ws.query(
            "SELECT * FROM reviews WHERE entity = 'clustering' AND entity_id = ? ORDER BY id",
            [clustering_id])]


def test_every_clustering_action_records_the_identity_kind(populated_ws: Populated) -> None:
    cid = populated_ws.proposed_clustering
    a, b, c, _ = populated_ws.cluster_ids[cid]
    with populated_ws.open() as ws:
        edits.rename_cluster(ws, a, "Fraud", Identity("ana", OIDC))
        rule = read.members(ws, cid, b)[0]["id"]
        edits.move_rule(ws, cid, rule, None, Identity("ana", OIDC))
        edits.merge_clusters(ws, cid, a, b, Identity("bea"))  # self-declared unless told otherwise
        edits.split_cluster(ws, cid, a, 2, who=Identity("cy", OIDC))
        edits.accept_clustering(ws, cid, Identity("dan", AUTO))
        with pytest.raises(BadInput, match="identity kind 'sso'"):
            edits.rename_cluster(ws, c, "x", Identity("ana", "sso"))
    assert _kinds(populated_ws, cid) == [
        ("rename_cluster", "ana", "oidc"), ("move_rule", "ana", "oidc"),
        ("merge_clusters", "bea", "self-declared"), ("split_cluster", "cy", "oidc"),
        ("accept", "dan", "auto")]


def test_rename_with_a_stale_expected_name_is_refused(populated_ws: Populated) -> None:
    cid = populated_ws.proposed_clustering
    target = populated_ws.cluster_ids[cid][0]
    with populated_ws.open() as ws:
        seen = next(s["name"] for s in read.cluster_summary(ws, cid) if s["id"] == target)
        edits.rename_cluster(ws, target, "Fraud (bea)", Identity("bea"), expected_name=seen)
        with pytest.raises(StaleEdit) as refused:
            edits.rename_cluster(ws, target, "Fraud (ana)", Identity("ana"), expected_name=seen)
        assert refused.value.current["name"] == "Fraud (bea)"
        assert refused.value.theirs is not None and refused.value.theirs["who"] == "bea"
        assert refused.value.theirs["after"]["name"] == "Fraud (bea)"
        assert "'Fraud (bea)' by bea" in str(refused.value)
        name = next(s["name"] for s in read.cluster_summary(ws, cid) if s["id"] == target)
        assert name == "Fraud (bea)"
        # Based on the current name it goes through; without expected_name it is not checked.
        edits.rename_cluster(ws, target, "Fraud (ana)", Identity("ana"),
                             expected_name="Fraud (bea)")
        edits.rename_cluster(ws, target, "Fraud", Identity("cy"))
    assert [w for _, w, _ in _kinds(populated_ws, cid)] == ["bea", "ana", "cy"]
