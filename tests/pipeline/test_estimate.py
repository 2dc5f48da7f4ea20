"""The calls each stage plans for ``--estimate-only`` are the calls it then makes: the same
prompts, byte for byte, and nothing for work already done."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from pld import review
from pld.identity import Identity
from pld.llm import budget
from pld.pipeline import estimate
from pld.pipeline.cluster.edits import accept_clustering
from pld.pipeline.cluster.stage import cluster
from pld.pipeline.consolidate import stage as consolidate
from pld.pipeline.extract import stage as extract
from pld.pipeline.resolve import loop as resolve
from pld.tasks import load_task
from pld.workspace import Workspace
from tests.fakes.openai_server import FakeOpenAI
from tests.pipeline.test_chain import scripted


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(responder=scripted) as f:
        yield f


def _users(bodies: list[dict[str, Any]]) -> list[str]:
    return sorted(b["messages"][-1]["content"] for b in bodies)


def _planned_users(planned: list[estimate.Planned]) -> list[str]:
    return sorted(p.messages[-1]["content"] for p in planned)


def test_extract_and_consolidate_plan_the_prompts_they_send(ws: Workspace,
                                                            fake: FakeOpenAI) -> None:
    teacher = fake.model_string()
    load_task(ws, "demo")
    planned = list(extract.planned_calls(ws, "demo", teacher, limit=12))
    extract.extract(ws, "demo", teacher, limit=12)
    assert _planned_users(planned) == _users(fake.requests) and len(planned) == 12
    assert list(extract.planned_calls(ws, "demo", teacher, limit=12)) == []  # all done

    accept_clustering(ws, cluster(ws, "demo", method="kmeans", k=3), Identity("ana"))
    planned = consolidate.planned_calls(ws, "demo", teacher)
    before = len(fake.requests)
    consolidate.consolidate(ws, "demo", teacher)
    assert _planned_users(planned) == _users(fake.requests[before:]) and len(planned) == 3
    assert consolidate.planned_calls(ws, "demo", teacher) == []
    # No teacher call when each label's central rule is taken as it is.
    assert consolidate.planned_calls(ws, "demo", teacher, merge="medoid",
                                     retry_failed=True) == []


def test_a_large_cluster_plans_its_partial_merges(ws: Workspace, fake: FakeOpenAI) -> None:
    teacher = fake.model_string()
    load_task(ws, "demo")
    extract.extract(ws, "demo", teacher, limit=20)
    accept_clustering(ws, cluster(ws, "demo", method="kmeans", k=2), Identity("ana"))
    planned = consolidate.planned_calls(ws, "demo", teacher, max_rules_per_call=4)
    before = len(fake.requests)
    consolidate.consolidate(ws, "demo", teacher, max_rules_per_call=4)
    sent = fake.requests[before:]
    # Same number of calls; the chunks' prompts are exact, the merges of partial heuristics
    # (whose text comes from replies) are counted at a typical size.
    assert len(planned) == len(sent)
    exact = [p for p in planned if p.input_tokens is None]
    assert set(_planned_users(exact)) <= set(_users(sent))
    assert all(p.input_tokens and p.input_tokens > 0 for p in planned if p not in exact)


def test_resolve_plans_student_and_teacher_calls_per_version(ws: Workspace,
                                                            fake: FakeOpenAI) -> None:
    teacher = fake.model_string()
    load_task(ws, "demo")
    for text in ("If the text is about fraud matters, the label is escalate-fraud.",
                 "If the text is about data matters, the label is data-privacy-request."):
        hid = review.create_heuristic(ws, "demo", text, Identity("bob"))
        review.approve(ws, hid, Identity("ana"), base_version=1)
    planned = resolve.planned_calls(ws, "demo", teacher, teacher, iterations=2, val_limit=5)
    stages = [p.stage for p in planned]
    # 3 versions x 5 validation items; 2 iterations x 2 heuristics; 2 left-out prompts x 5.
    assert stages.count("resolve-predict") == 15 and stages.count("resolve") == 4
    assert stages.count("impact") == 10
    summary = estimate.summarize(ws, planned)
    assert summary["calls"] == 29 and summary["usd"] == 0  # a self-hosted server is free
    assert summary["input_tokens"] > 0


def test_budget_text_tokens_are_about_four_characters_each() -> None:
    assert budget.text_tokens("x" * 40, [{"content": "y" * 40}]) == 21
