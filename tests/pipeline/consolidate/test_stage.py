"""Stage 3, consolidate: real workspaces, the teacher is the fake OpenAI-compatible server."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Sequence
from typing import Any

import pytest

from pld.errors import BadInput, NotReady
from pld.pipeline.consolidate.stage import consolidate
from pld.pipeline.runs import get_run
from pld.tasks.store import save_task
from pld.workspace import Workspace, loads, now
from tests.fakes.openai_server import FakeOpenAI

TASK = "claims"
LABELS = ["true", "false"]


def load_task(ws: Workspace, name: str = TASK) -> None:
    save_task(ws, name=name, kind="custom", labels=LABELS, description="Is the claim true?",
              source="test", params={}, examples=[])


def add_rules(ws: Workspace, specs: list[tuple[str, str]], task: str = TASK) -> list[int]:
    """One example and one ok micro-instruction per (rule text, gold label); returns rule ids."""
    ids = []
    with ws.write() as db:
        for text, label in specs:
            n = db.execute("SELECT count(*) FROM examples").fetchone()[0]
            ex = db["examples"].insert({"task": task, "split": "train", "ext_id": f"e{n}",
                                        "text": f"example {n}", "label": label,
                                        "meta": "{}", "created_at": now()}).last_pk
            ids.append(int(db["micro_instructions"].insert({
                "task": task, "example_id": ex, "run_id": None, "teacher": "t", "reasoning": "r",
                "rule": text, "label": label, "status": "ok", "created_at": now(),
            }).last_pk))
    return ids


def add_clustering(ws: Workspace, groups: list[list[int]], noise: Sequence[int] = (),
                   status: str = "proposed", task: str = TASK) -> tuple[int, list[int]]:
    """A clustering whose clusters hold ``groups`` of rule ids; returns (id, cluster ids)."""
    with ws.write() as db:
        cid = int(db["clusterings"].insert({"task": task, "method": "dbscan", "params": "{}",
                                            "metrics": "{}", "status": status,
                                            "created_at": now()}).last_pk)
        cluster_ids = []
        for label, rule_ids in enumerate(groups):
            k = int(db["clusters"].insert({"clustering_id": cid, "label": label,
                                           "name": f"c{label}", "keywords": "[]",
                                           "size": len(rule_ids)}).last_pk)
            cluster_ids.append(k)
            db["cluster_members"].insert_all(
                {"clustering_id": cid, "rule_id": r, "cluster_id": k} for r in rule_ids)
        db["cluster_members"].insert_all(
            {"clustering_id": cid, "rule_id": r, "cluster_id": None} for r in noise)
    return cid, cluster_ids


def prompt_of(body: dict[str, Any]) -> str:
    return body["messages"][0]["content"]


def rule_ids_in(prompt: str) -> list[int]:
    return [int(x) for x in re.findall(r"\[rule (\d+)\]", prompt)]


def echo_responder(body: dict[str, Any]) -> str:
    """A valid reply naming the rule ids it saw (or 'merged' for a merge call)."""
    prompt = prompt_of(body)
    text = ("merged " if "Partial heuristic" in prompt else "rules ") + " ".join(
        map(str, rule_ids_in(prompt)))
    return json.dumps({"heuristic": text, "labels_covered": LABELS})


@pytest.fixture
def three_clusters(ws: Workspace) -> dict[str, Any]:
    load_task(ws)
    a = add_rules(ws, [("If the claim cites a study, answer true.", "true")] * 3)
    b = add_rules(ws, [("If the claim is an absolute, answer false.", "false")] * 4)
    c = add_rules(ws, [("If the claim is hedged, answer true.", "true"),
                       ("If the hedge hides a falsehood, answer false.", "false")])
    noise = add_rules(ws, [("Odd rule.", "true"), ("Other odd rule.", "false")])
    cid, clusters = add_clustering(ws, [a, b, c], noise)
    return {"clustering": cid, "clusters": clusters, "groups": [a, b, c], "noise": noise}


def test_three_clusters_give_three_drafts(ws: Workspace, fake_openai: FakeOpenAI,
                                          three_clusters: dict[str, Any]) -> None:
    fake_openai.responder = lambda body: "```json\n" + echo_responder(body) + "\n```"
    teacher = fake_openai.model_string()
    summary = consolidate(ws, TASK, teacher)

    assert (summary.created, summary.skipped, summary.failed) == (3, 0, 0)
    assert summary.clustering_id == three_clusters["clustering"]
    assert len(fake_openai.requests) == 3
    rows = ws.query("SELECT * FROM heuristics ORDER BY cluster_id")
    assert [r["cluster_id"] for r in rows] == three_clusters["clusters"]
    for row, group in zip(rows, three_clusters["groups"], strict=True):
        assert loads(row["source_rule_ids"]) == group
        assert sorted(map(int, row["text"].split()[1:])) == group  # fences stripped
        assert (row["status"], row["version"], row["origin"]) == ("draft", 1, "consolidate")
        assert row["created_by"] == f"teacher:{teacher}"
        assert row["clustering_id"] == three_clusters["clustering"]
        # No person started the job: the teacher is the author, so anyone may approve.
        assert row["written_by"] == f"teacher:{teacher}" and row["run_id"] == summary.run_id
    noise_in_prompts = [r for b in fake_openai.requests for r in rule_ids_in(prompt_of(b))
                        if r in three_clusters["noise"]]
    assert noise_in_prompts == []
    audit = ws.query("SELECT * FROM reviews WHERE action = 'create' ORDER BY entity_id")
    assert [a["entity_id"] for a in audit] == summary.heuristic_ids
    assert loads(audit[0]["after"])["method"] == "direct"
    run = get_run(ws, summary.run_id)
    assert (run["kind"], run["status"], run["done"], run["total"]) == ("consolidate", "done", 3, 3)
    assert run["params"]["max_rules_per_call"] == 30


def test_prompt_keeps_minority_label_visible(ws: Workspace, fake_openai: FakeOpenAI) -> None:
    load_task(ws)
    majority = add_rules(ws, [("If the claim quotes an official source, answer true.", "true")] * 5)
    minority = add_rules(ws, [("Unless the official source is satirical: then answer false.",
                               "false")])
    _, (cluster,) = add_clustering(ws, [majority + minority])
    fake_openai.responder = lambda body: json.dumps(
        {"heuristic": "Official sources mean true.", "labels_covered": ["true"]})

    summary = consolidate(ws, TASK, fake_openai.model_string())

    prompt = prompt_of(fake_openai.requests[0])
    assert "Unless the official source is satirical" in prompt
    assert "true: 5, false: 1" in prompt
    assert "Minority labels, whose conditions must stay explicit in the heuristic: false (1)" \
        in prompt
    minority_block = prompt.split('Rules leading to "false"')[1]
    assert f"[rule {minority[0]}]" in minority_block
    assert "minority label" in minority_block.splitlines()[0]
    assert "silently drops" in prompt  # the template names the known failure
    # The reply claimed only the majority label: the run says which label was dropped.
    assert summary.dropped_labels == {cluster: ["false"]}
    schema = fake_openai.requests[0]["response_format"]["json_schema"]["schema"]
    assert schema["required"] == ["heuristic", "labels_covered"]


def test_by_label_merges_each_label_apart_and_keeps_every_label(
        ws: Workspace, fake_openai: FakeOpenAI) -> None:
    load_task(ws)
    majority = add_rules(ws, [(f"If the claim quotes official source {i}, answer true.", "true")
                              for i in range(3)])
    minority = add_rules(ws, [(f"If the source is satirical ({i}), answer false.", "false")
                              for i in range(2)])
    lone = add_rules(ws, [("If the claim is a rumour, answer false.", "false")])
    _, (mixed, single) = add_clustering(ws, [majority + minority, lone])
    # A teacher that always drops the minority label when merging several labels at once.
    fake_openai.responder = lambda body: json.dumps(
        {"heuristic": "merged " + " ".join(map(str, rule_ids_in(prompt_of(body)))),
         "labels_covered": ["true"]})

    summary = consolidate(ws, TASK, fake_openai.model_string(), merge="by-label")

    prompts = [prompt_of(b) for b in fake_openai.requests]
    # One call per label group of the mixed cluster; the lone rule needs none.
    assert sorted(sorted(rule_ids_in(p)) for p in prompts) == [majority, minority]
    texts = {r["cluster_id"]: r for r in ws.query("SELECT * FROM heuristics")}
    assert texts[mixed]["text"] == ("merged " + " ".join(map(str, majority)) + " merged "
                                    + " ".join(map(str, minority)))
    assert loads(texts[mixed]["source_rule_ids"]) == majority + minority
    assert texts[single]["text"] == "If the claim is a rumour, answer false."
    assert summary.dropped_labels == {}
    audits = [loads(r["after"])["method"] for r in ws.query("SELECT after FROM reviews")]
    assert "by-label" in audits
    (run,) = ws.query("SELECT params FROM runs WHERE kind = 'consolidate'")
    assert loads(run["params"])["merge"] == "by-label"


def add_vectors(ws: Workspace, vectors: dict[int, list[float]], model: str = "toy") -> None:
    """Stored embeddings of rules (the clustering names ``model`` as its embedder)."""
    import numpy as np

    with ws.write() as db:
        db["embeddings"].insert_all(
            {"rule_id": rid, "model": model, "dim": len(v),
             "vector": np.asarray(v, dtype=np.float32).tobytes(), "created_at": now()}
            for rid, v in vectors.items())
        db.execute("UPDATE clusterings SET embed_model = ?", [model])


def test_medoid_keeps_each_labels_most_central_rule_without_a_call(
        ws: Workspace, fake_openai: FakeOpenAI) -> None:
    load_task(ws)
    odd, typical, near = add_rules(ws, [("If the claim mentions pants, answer true.", "true"),
                                        ("If the claim cites a study, answer true.", "true"),
                                        ("If the claim cites research, answer true.", "true")])
    (minority,) = add_rules(ws, [("If the claim is satire, answer false.", "false")])
    add_clustering(ws, [[odd, typical, near, minority]])
    add_vectors(ws, {odd: [1.0, 0.0, 0.0], typical: [0.6, 0.8, 0.0], near: [0.0, 1.0, 0.0],
                     minority: [0.0, 0.0, 1.0]})

    summary = consolidate(ws, TASK, fake_openai.model_string(), merge="medoid")

    assert fake_openai.requests == []
    (row,) = ws.query("SELECT * FROM heuristics")
    # The majority label's central rule first, then the minority label's only rule.
    assert row["text"] == ("If the claim cites a study, answer true. "
                           "If the claim is satire, answer false.")
    assert loads(row["source_rule_ids"]) == [odd, typical, near, minority]
    assert (summary.created, summary.dropped_labels) == (1, {})
    (audit,) = ws.query("SELECT after FROM reviews")
    assert loads(audit["after"])["method"] == "medoid"


def test_medoid_needs_the_embeddings_and_a_known_mode(ws: Workspace,
                                                      fake_openai: FakeOpenAI) -> None:
    load_task(ws)
    rules = add_rules(ws, [("If the claim cites a study, answer true.", "true")] * 2)
    add_clustering(ws, [rules])
    add_vectors(ws, {rules[0]: [1.0, 0.0]})  # the second rule was never embedded

    # A setup problem of the whole stage, not a failed cluster: exit 2 with what to do.
    with pytest.raises(NotReady, match="embed first"):
        consolidate(ws, TASK, fake_openai.model_string(), merge="medoid")
    assert ws.query("SELECT count(*) AS n FROM heuristics")[0]["n"] == 0
    with pytest.raises(BadInput, match="--merge must be one of all, by-label, medoid"):
        consolidate(ws, TASK, fake_openai.model_string(), merge="vote")


def test_large_cluster_is_consolidated_hierarchically(ws: Workspace,
                                                      fake_openai: FakeOpenAI) -> None:
    load_task(ws)
    rules = add_rules(ws, [(f"Rule number {i}.", "true") for i in range(7)]
                      + [(f"Exception number {i}.", "false") for i in range(3)])
    _, (cluster,) = add_clustering(ws, [rules])
    fake_openai.responder = echo_responder

    summary = consolidate(ws, TASK, fake_openai.model_string(), max_rules_per_call=4)

    prompts = [prompt_of(b) for b in fake_openai.requests]
    chunk_prompts = [p for p in prompts if "Partial heuristic" not in p]
    merge_prompts = [p for p in prompts if "Partial heuristic" in p]
    assert len(chunk_prompts) == 3 and len(merge_prompts) == 1
    assert all(len(rule_ids_in(p)) <= 4 for p in chunk_prompts)
    assert sorted(r for p in chunk_prompts for r in rule_ids_in(p)) == rules
    # The three minority rules stay together in one chunk rather than one per chunk.
    minority_chunks = [p for p in chunk_prompts if "Exception number" in p]
    assert len(minority_chunks) == 1
    assert "true: 7, false: 3" in merge_prompts[0]
    (row,) = ws.query("SELECT * FROM heuristics")
    assert row["text"] == "merged"
    assert loads(row["source_rule_ids"]) == rules
    assert summary.hierarchical == [cluster]
    (audit,) = ws.query("SELECT after FROM reviews")
    assert loads(audit["after"])["method"] == "hierarchical"


def test_many_partials_are_merged_level_by_level(ws: Workspace, fake_openai: FakeOpenAI) -> None:
    load_task(ws)
    rules = add_rules(ws, [(f"Rule {i}.", "true") for i in range(10)])
    add_clustering(ws, [rules])
    fake_openai.responder = echo_responder

    consolidate(ws, TASK, fake_openai.model_string(), max_rules_per_call=2)

    prompts = [prompt_of(b) for b in fake_openai.requests]
    merges = [p for p in prompts if "Partial heuristic" in p]
    assert len(prompts) - len(merges) == 5  # 10 rules in chunks of 2
    assert all(p.count("Partial heuristic") <= 2 for p in merges)
    assert "true: 10" in merges[-1]  # the last merge covers every rule
    (row,) = ws.query("SELECT source_rule_ids FROM heuristics")
    assert loads(row["source_rule_ids"]) == rules


def test_rerun_makes_no_llm_call(ws: Workspace, fake_openai: FakeOpenAI,
                                 three_clusters: dict[str, Any]) -> None:
    fake_openai.responder = echo_responder
    consolidate(ws, TASK, fake_openai.model_string())
    requests = len(fake_openai.requests)
    calls = ws.query("SELECT count(*) AS n FROM llm_calls")[0]["n"]

    again = consolidate(ws, TASK, fake_openai.model_string())

    assert (again.created, again.skipped, again.failed) == (0, 3, 0)
    assert len(fake_openai.requests) == requests
    assert ws.query("SELECT count(*) AS n FROM llm_calls")[0]["n"] == calls
    assert ws.query("SELECT count(*) AS n FROM heuristics")[0]["n"] == 3


def test_invalid_json_twice_fails_cluster_kept_on_rerun_retried_when_asked(
        ws: Workspace, fake_openai: FakeOpenAI) -> None:
    load_task(ws)
    good = add_rules(ws, [("If the claim cites a study, answer true.", "true")] * 2)
    bad = add_rules(ws, [("If the claim is sarcastic, answer false.", "false")] * 2)
    _, (good_cluster, bad_cluster) = add_clustering(ws, [good, bad])

    def responder(body: dict[str, Any]) -> str:
        return "Sure! The heuristic is: sarcasm." if "sarcastic" in prompt_of(body) \
            else echo_responder(body)

    fake_openai.responder = responder
    summary = consolidate(ws, TASK, fake_openai.model_string())

    assert (summary.created, summary.failed) == (1, 1)
    assert list(summary.errors) == [bad_cluster]
    assert "not valid JSON" in summary.errors[bad_cluster]
    bad_requests = [b for b in fake_openai.requests if "sarcastic" in prompt_of(b)]
    assert len(bad_requests) == 2
    assert "not valid JSON" in bad_requests[1]["messages"][-1]["content"]
    assert [r["cluster_id"] for r in ws.query("SELECT cluster_id FROM heuristics")] \
        == [good_cluster]

    fake_openai.responder = echo_responder
    before = len(fake_openai.requests)
    calls_before = ws.query("SELECT count(*) AS n FROM llm_calls WHERE cache_hit = 0")[0]["n"]
    rerun = consolidate(ws, TASK, fake_openai.model_string())

    # A plain rerun asks nothing: the failed cluster stays failed, with its earlier error.
    assert (rerun.created, rerun.skipped, rerun.failed, rerun.failed_before) == (0, 1, 0, 1)
    assert "not valid JSON" in rerun.errors[bad_cluster]
    assert len(fake_openai.requests) == before
    assert ws.query("SELECT count(*) AS n FROM llm_calls WHERE cache_hit = 0")[0]["n"] \
        == calls_before
    assert get_run(ws, rerun.run_id)["done"] == 2

    retry = consolidate(ws, TASK, fake_openai.model_string(), retry_failed=True)

    assert (retry.created, retry.skipped, retry.failed, retry.failed_before) == (1, 1, 0, 0)
    assert len(fake_openai.requests) == before + 1  # the cached bad reply was asked afresh
    assert ws.query("SELECT count(*) AS n FROM consolidate_failures")[0]["n"] == 0
    assert {r["cluster_id"] for r in ws.query("SELECT cluster_id FROM heuristics")} \
        == {good_cluster, bad_cluster}


def test_clusters_are_consolidated_concurrently(ws: Workspace, fake_openai: FakeOpenAI,
                                                three_clusters: dict[str, Any]) -> None:
    # Each request waits until all three are in flight: only concurrent calls get past it.
    barrier = threading.Barrier(3, timeout=4)

    def responder(body: dict[str, Any]) -> str:
        barrier.wait()
        return echo_responder(body)

    fake_openai.responder = responder
    summary = consolidate(ws, TASK, fake_openai.model_string(), concurrency=3)
    assert summary.created == 3


def test_accepted_clustering_is_preferred_to_latest(ws: Workspace,
                                                   fake_openai: FakeOpenAI) -> None:
    load_task(ws)
    rules = add_rules(ws, [("If the claim cites a study, answer true.", "true")] * 2)
    accepted, _ = add_clustering(ws, [rules], status="accepted")
    latest, _ = add_clustering(ws, [rules[:1], rules[1:]])
    fake_openai.responder = echo_responder

    assert consolidate(ws, TASK, fake_openai.model_string()).clustering_id == accepted
    explicit = consolidate(ws, TASK, fake_openai.model_string(), clustering_id=latest)
    assert (explicit.clustering_id, explicit.created) == (latest, 2)


def test_not_ready_and_bad_input(ws: Workspace, fake_openai: FakeOpenAI) -> None:
    teacher = fake_openai.model_string()
    with pytest.raises(BadInput, match="not loaded"):
        consolidate(ws, TASK, teacher)
    load_task(ws)
    with pytest.raises(NotReady, match="no clustering"):
        consolidate(ws, TASK, teacher)
    noise = add_rules(ws, [("Odd rule.", "true")])
    cid, _ = add_clustering(ws, [], noise)
    with pytest.raises(NotReady, match="no clusters"):
        consolidate(ws, TASK, teacher)
    with pytest.raises(BadInput, match="clustering 999 not found"):
        consolidate(ws, TASK, teacher, clustering_id=999)
    with pytest.raises(BadInput) as bad_model:
        consolidate(ws, TASK, "nosuch/model", clustering_id=cid)
    assert not isinstance(bad_model.value, NotReady)
    with pytest.raises(BadInput, match="max_rules_per_call"):
        consolidate(ws, TASK, teacher, max_rules_per_call=1)
    assert fake_openai.requests == []
    assert ws.query("SELECT count(*) AS n FROM runs")[0]["n"] == 0
