"""Batch mode through the real SDKs against fake Message Batches / Batch API servers: answers
land in the call log at the batch price, faults lose nothing, nothing is submitted twice."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from pld.errors import BadInput
from pld.llm import batch, budget, calls, registry
from pld.llm.batch_store import list_batches
from pld.llm.pricing import estimate_cost
from pld.pipeline import student
from pld.pipeline.extract import stage as ex
from pld.pipeline.extract.browse import get_rule
from pld.workspace import Workspace
from tests.fakes.anthropic_server import FakeAnthropicBatches
from tests.fakes.openai_server import FakeOpenAIBatches
from tests.pipeline.extract.test_stage import LABELS, make_task

CLAUDE = "anthropic/claude-sonnet-4-6"
GPT = "openai/gpt-4.1-mini"


def scripted(body: dict[str, Any]) -> str:
    """A teacher's rule for the gold label in the prompt, or the student's first label."""
    user = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
    gold = re.search(r"Gold label: (\S+)", str(user))
    if gold is None:
        return LABELS[0]
    return json.dumps({"reasoning": "The message names what decides it.",
                       "rule": f"If the message is like this one, then the label is "
                               f"{gold.group(1)}."})


@pytest.fixture(autouse=True)
def _quick_polls(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("PLD_BATCH_POLL_S", "0.01")
    registry.reset()
    yield
    registry.reset()


@pytest.fixture
def claude(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAnthropicBatches]:
    with FakeAnthropicBatches(responder=scripted) as fake:
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-batch-secret")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.base_url)
        yield fake


@pytest.fixture
def gpt(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAIBatches]:
    with FakeOpenAIBatches(responder=scripted) as fake:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-batch-secret")
        monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
        yield fake


def _extract(ws: Workspace, model: str, lines: list[str] | None = None) -> ex.ExtractSummary:
    with batch.mode(True, (model,), say=(lines.append if lines is not None else None)):
        return ex.extract(ws, "tickets", model, concurrency=2)


def _calls(ws: Workspace) -> list[dict[str, Any]]:
    return ws.query("SELECT * FROM llm_calls ORDER BY id")


def test_extract_in_one_batch_lands_every_answer_at_the_batch_price(
        ws: Workspace, claude: FakeAnthropicBatches) -> None:
    make_task(ws, 10)
    said: list[str] = []
    s = _extract(ws, CLAUDE, said)
    assert (s.done, s.failed) == (10, 0)
    assert claude.book.creates == 1 and len(claude.book.submitted) == 10
    # No request went to /v1/messages: every answer came from the batch, then the cache.
    assert claude.requests == []
    rows = _calls(ws)
    answers = [r for r in rows if r["batch_id"] is not None]
    assert len(answers) == 10 and all(r["cache_hit"] == 0 and r["error"] is None
                                      for r in answers)
    assert sum(r["cache_hit"] for r in rows) == 10  # the stage's own calls, all cached
    a = answers[0]
    assert a["cost_usd"] > 0
    assert a["cost_usd"] == pytest.approx(
        estimate_cost(CLAUDE, a["input_tokens"], a["output_tokens"]) / 2)
    assert {r["run_id"] for r in rows} == {s.run_id}
    [b] = list_batches(ws)
    assert (b["status"], b["n_requests"], b["succeeded"], b["run_id"]) == (
        "landed", 10, 10, s.run_id)
    # A rule's call is the stage's cache hit; it says which answer it served, from which batch.
    rule_id = ws.query("SELECT id FROM micro_instructions ORDER BY id LIMIT 1")[0]["id"]
    source = get_rule(ws, rule_id)["call"]["answered_by"]
    assert source["batch_id"] == b["id"] and source["id"] in {r["id"] for r in answers}
    assert any("submitted 10" in line for line in said)
    assert any("landed 10 answers" in line for line in said)
    # Again: everything is cached, so nothing is submitted.
    _extract(ws, CLAUDE)
    assert claude.book.creates == 1


# Per provider: the model, its fake's fixture, and how its error rows read for a request that
# expired, and one that errored, inside a batch.
PROVIDERS = {"anthropic": (CLAUDE, "claude", "expired inside the batch", "errored: api_error"),
             "openai": (GPT, "gpt", "batch_expired", "HTTP 500")}


@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_requests_that_fail_inside_a_batch_are_retried_synchronously(
        ws: Workspace, provider: str, request: pytest.FixtureRequest) -> None:
    model, fixture, expired, errored_text = PROVIDERS[provider]
    fake = request.getfixturevalue(fixture)
    make_task(ws, 10)
    fake.book.expire_after = 7  # the batch expires with 3 requests never run
    first: list[str] = []

    def errored(cid: str) -> bool:
        if not first:
            first.append(cid)
        return cid == first[0]

    fake.book.errored = errored
    fake.book.malformed_line = True  # and one result line cannot be read
    s = _extract(ws, model)
    assert (s.done, s.failed) == (10, 0)
    rows = _calls(ws)
    failed = [r for r in rows if r["batch_id"] is not None and r["error"]]
    errors = sorted(r["error"] for r in failed)
    # One errored, three expired, and the unreadable line's request: each logged once.
    assert len(failed) == 5, errors
    assert sum(expired in r["error"] for r in failed) == 3, errors
    assert sum(errored_text in r["error"] for r in failed) == 1, errors
    assert sum("could not be read" in r["error"] for r in failed) == 1, errors
    # Exactly those five were asked synchronously, once each; nothing was submitted twice.
    assert len(fake.requests) == 5 and fake.book.creates == 1
    retried = {r["cache_key"] for r in rows if r["batch_id"] is None and not r["cache_hit"]}
    assert retried == {r["cache_key"] for r in failed}
    assert all(r["cost_usd"] == 0 for r in failed)


def test_429_on_create_is_retried_and_the_batch_made_once(
        ws: Workspace, claude: FakeAnthropicBatches) -> None:
    make_task(ws, 4)
    claude.book.create_faults.extend([429, 429])
    assert _extract(ws, CLAUDE).done == 4
    assert claude.book.creates == 1 and len(claude.book.submitted) == 4


def test_openai_batch_uploads_a_file_and_lands_label_scores(
        ws: Workspace, gpt: FakeOpenAIBatches) -> None:
    make_task(ws, 8, split="val")
    gpt.responder = lambda body: LABELS[0]
    gpt.first_token_logprobs = lambda body: [(LABELS[0], -0.1), (LABELS[1], -2.5)]
    with batch.mode(True, (GPT,)):
        r = student.predict(ws, "tickets", GPT, system_prompt="Sort it.", split="val",
                            concurrency=2)
    assert len(r.pred) == 8 and gpt.book.creates == 1
    assert gpt.requests == []
    [upload] = [v for v in gpt.files.values() if b'"custom_id"' in v and b'"url"' in v]
    lines = [json.loads(line) for line in upload.decode().splitlines()]
    assert {line["url"] for line in lines} == {"/v1/chat/completions"}
    assert all(line["body"]["logprobs"] and line["body"]["max_completion_tokens"] == 16
               for line in lines)
    answers = [c for c in _calls(ws) if c["batch_id"] is not None]
    assert len(answers) == 8 and all(json.loads(c["label_logprobs"]) for c in answers)
    [b] = gpt.book.batches.values()
    assert b.metadata == {"pld_batch": ws.query("SELECT tag FROM batches")[0]["tag"]}


def test_a_batch_created_but_never_recorded_is_found_not_resubmitted(
        ws: Workspace, gpt: FakeOpenAIBatches) -> None:
    """The process died between the provider's create and storing the id: the next run finds
    the batch by its tag and polls it."""
    make_task(ws, 3)
    planned = list(ex.planned_calls(ws, "tickets", GPT))
    provider = batch.provider_for(GPT)
    keys = [calls.cache_key(p.model, p.system, p.messages, p.params) for p in planned]
    lines = [provider.request_line(k, p.system, p.messages, p.params)
             for k, p in zip(keys, planned, strict=True)]
    # What the dead process left: the rows, and a batch at the provider.
    with ws.write() as db:
        local = db["batches"].insert({"tag": "deadbeef", "model": GPT, "provider": "openai",
                                      "status": "submitting", "n_requests": 3, "pid": 999999,
                                      "created_at": "2026-12-06T00:00:00+00:00"}).last_pk
        db["batch_requests"].insert_all(
            {"batch_id": local, "custom_id": k, "cache_key": k, "stage": "extract",
             "messages": json.dumps(p.messages), "params": json.dumps(p.params, sort_keys=True),
             "status": "pending"} for k, p in zip(keys, planned, strict=True))
    provider.submit("deadbeef", lines, lambda fields: None)
    assert gpt.book.creates == 1
    assert _extract(ws, GPT).done == 3
    assert gpt.book.creates == 1 and gpt.requests == []
    assert list_batches(ws)[0]["status"] == "landed"


def test_max_cost_submits_what_fits_then_stops(
        ws: Workspace, claude: FakeAnthropicBatches) -> None:
    make_task(ws, 10)
    with budget.limit(0.03, (CLAUDE,)), pytest.raises(budget.BudgetReached):
        _extract(ws, CLAUDE)
    assert claude.book.creates == 1
    n = len(claude.book.submitted)
    assert 0 < n < 10
    # A higher limit goes on with the rest, in a new batch; nothing goes twice.
    with budget.limit(5.0, (CLAUDE,)):
        assert _extract(ws, CLAUDE).done == 10
    assert len(claude.book.submitted) == len(set(claude.book.submitted)) == 10


def test_local_models_have_no_batch_api(ws: Workspace) -> None:
    with pytest.raises(BadInput, match="no batch API"), batch.mode(True, ("local/default",)):
        pass
