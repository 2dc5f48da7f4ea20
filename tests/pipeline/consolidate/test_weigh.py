"""Consolidation weighs rules by their student-verified evidence: rules that hurt are left out,
the rest go to the teacher best first, and a cluster of restatements only gets no heuristic."""

from __future__ import annotations

import json

from pld.pipeline.consolidate.stage import consolidate, planned_calls
from pld.pipeline.consolidate.weigh import ALL_HURT, RESTATEMENTS_ONLY
from pld.pipeline.extract.flags import RESTATES_TASK
from pld.pipeline.rule_evidence import VERIFIED
from pld.pipeline.runs import get_run
from pld.workspace import Workspace, dumps, loads, now
from tests.fakes.openai_server import FakeOpenAI
from tests.pipeline.consolidate.test_stage import (
    TASK,
    add_clustering,
    add_rules,
    echo_responder,
    load_task,
    prompt_of,
    rule_ids_in,
)


def _evidence(ws: Workspace, effects: dict[int, float], student: str = "s") -> None:
    with ws.write() as db:
        db["rule_evidence"].insert_all(
            {"rule_id": rid, "student": student, "task": TASK, "status": VERIFIED,
             "effect": effect, "helped": int(effect > 0), "hurt": int(effect < 0), "n": 4,
             "items": "[]", "created_at": now()} for rid, effect in effects.items())


def _restates(ws: Workspace, rule_ids: list[int]) -> None:
    with ws.write() as db:
        for rid in rule_ids:
            db["micro_instructions"].update(rid, {"flags": dumps([RESTATES_TASK])})


def test_evidence_drops_hurting_rules_orders_the_rest_and_sets_restatements_aside(
        ws: Workspace, fake_openai: FakeOpenAI) -> None:
    load_task(ws)
    restating = add_rules(ws, [("If the claim is true, answer true.", "true"),
                               ("If the claim is not true, answer false.", "false")])
    mixed = add_rules(ws, [("If the claim cites a study, answer true.", "true"),
                           ("If the claim names a source, answer true.", "true"),
                           ("If the claim is long, answer false.", "false"),
                           ("If the claim is hedged, answer true.", "true")])
    hurting = add_rules(ws, [("If the claim is short, answer false.", "false")] * 2)
    unverified = add_rules(ws, [("If the claim is an absolute, answer false.", "false")] * 2)
    _restates(ws, restating)
    _evidence(ws, {restating[0]: 0.01, mixed[0]: 0.10, mixed[1]: 0.30, mixed[2]: -0.20,
                   hurting[0]: -0.05, hurting[1]: -0.15})
    cid, clusters = add_clustering(ws, [restating, mixed, hurting, unverified])
    fake_openai.responder = echo_responder
    teacher = fake_openai.model_string()
    assert len(planned_calls(ws, TASK, teacher)) == 2

    summary = consolidate(ws, TASK, teacher)

    assert (summary.created, summary.failed) == (2, 0)
    assert summary.set_aside == {clusters[0]: RESTATEMENTS_ONLY, clusters[2]: ALL_HURT}
    assert summary.dropped_rules == {clusters[1]: [mixed[2]]}
    asked = [rule_ids_in(prompt_of(b)) for b in fake_openai.requests]
    # The helping rules first, the most helpful first, then the unverified one; no hurting rule.
    assert sorted(asked) == sorted([[mixed[1], mixed[0], mixed[3]], unverified])
    rows = {r["cluster_id"]: sorted(loads(r["source_rule_ids"])) for r in ws.query(
        "SELECT cluster_id, source_rule_ids FROM heuristics WHERE clustering_id = ?", [cid])}
    assert rows == {clusters[1]: sorted([mixed[0], mixed[1], mixed[3]]),
                    clusters[3]: unverified}
    run = get_run(ws, summary.run_id)
    assert (run["status"], run["done"], run["total"]) == ("done", 4, 4)

    again = consolidate(ws, TASK, teacher)
    assert (again.created, again.skipped) == (0, 2)
    assert again.set_aside == summary.set_aside
    assert len(fake_openai.requests) == 2
    assert json.loads(json.dumps(again.to_dict()))["set_aside"]


def test_without_evidence_nothing_changes(ws: Workspace, fake_openai: FakeOpenAI) -> None:
    load_task(ws)
    rules = add_rules(ws, [("If the claim cites a study, answer true.", "true"),
                           ("If the claim is an absolute, answer false.", "false")])
    add_clustering(ws, [rules])
    fake_openai.responder = echo_responder
    summary = consolidate(ws, TASK, fake_openai.model_string())
    assert summary.created == 1 and summary.set_aside == {} and summary.dropped_rules == {}
    # Grouped by label as before (the larger label first, ties by name), not by evidence.
    assert rule_ids_in(prompt_of(fake_openai.requests[0])) == [rules[1], rules[0]]
