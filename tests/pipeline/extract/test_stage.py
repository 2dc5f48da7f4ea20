"""Stage 1, Extract, against the fake OpenAI-compatible server and a real workspace."""

from __future__ import annotations

import contextlib
import json
import re
import threading
from typing import Any

import pytest

from pld.errors import BadInput, NotReady
from pld.pipeline.extract import stage as ex
from pld.pipeline.runs import get_run
from pld.tasks.store import Example, save_task
from pld.workspace import Workspace
from tests.fakes.openai_server import FakeOpenAI

LABELS = ["billing", "technical", "other"]
TEXTS = [
    "I was charged twice for my March invoice.",
    "The app crashes whenever I open settings.",
    "Do you have an office near the station?",
    "Please refund the duplicate payment on my card.",
    "Login fails with error 500 after the update.",
    "Who won the company football match?",
    "My subscription price went up without notice.",
    "Export to PDF produces blank pages.",
    "Can I bring my dog to the open day?",
    "Why does my receipt show a different currency?",
]


def make_task(ws: Workspace, n: int = 10, name: str = "tickets", split: str = "train") -> None:
    """A 3-label task with ``n`` short examples (labels cycle billing, technical, other)."""
    save_task(
        ws, name=name, kind="custom", labels=LABELS, source="test", params={},
        description="Route a customer message to the team that handles it.",
        examples=[Example(f"t{i}", split, f"{TEXTS[i % len(TEXTS)]} (#{i})", LABELS[i % 3], {})
                  for i in range(n)],
    )


def first_user(body: dict[str, Any]) -> str:
    return next(m["content"] for m in body["messages"] if m["role"] == "user")


def gold(body: dict[str, Any]) -> str:
    match = re.search(r"Gold label: (\S+)", first_user(body))
    assert match, "the prompt must carry the gold label"
    return match.group(1)


def good_reply(body: dict[str, Any]) -> str:
    label = gold(body)
    return json.dumps({
        "reasoning": f"The message concerns what the {label} team handles.",
        "rule": f"If the message reports a problem of this kind, then the label is {label}.",
    })


def rows(ws: Workspace) -> list[dict[str, Any]]:
    return ws.query("SELECT * FROM micro_instructions ORDER BY example_id")


def test_happy_path_one_ok_row_per_example(ws: Workspace, fake_openai: FakeOpenAI) -> None:
    make_task(ws)
    fake_openai.responder = good_reply
    progress: list[tuple[int, int]] = []

    summary = ex.extract(ws, "tickets", fake_openai.model_string(),
                         on_progress=lambda d, t: progress.append((d, t)))

    got = rows(ws)
    examples = ws.query("SELECT * FROM examples ORDER BY id")
    assert [r["example_id"] for r in got] == [e["id"] for e in examples]
    for r, e in zip(got, examples, strict=True):
        assert r["status"] == "ok"
        assert r["label"] == e["label"]
        assert r["rule"].endswith(f"the label is {e['label']}.")
        assert r["reasoning"] and r["call_id"]
        assert json.loads(r["flags"]) == []
        assert r["run_id"] == summary.run_id and r["error"] is None
        call = ws.query("SELECT * FROM llm_calls WHERE id = ?", [r["call_id"]])[0]
        assert call["stage"] == "extract" and call["run_id"] == summary.run_id
    assert summary == ex.ExtractSummary(summary.run_id, total=10, done=10, skipped=0, failed=0,
                                        flagged=0, contrastive=True, contrasted=10)
    run = get_run(ws, summary.run_id)
    assert run["status"] == "done" and run["kind"] == "extract"
    assert run["done"] == run["total"] == 10
    assert progress[-1] == (10, 10)


def test_prompt_carries_task_labels_text_and_gold_label(ws: Workspace,
                                                        fake_openai: FakeOpenAI) -> None:
    make_task(ws, n=1)
    fake_openai.responder = good_reply
    ex.extract(ws, "tickets", fake_openai.model_string())
    prompt = first_user(fake_openai.requests[0])
    assert "Route a customer message to the team that handles it." in prompt
    assert all(f"- {label}" in prompt for label in LABELS)
    assert TEXTS[0] in prompt
    assert prompt.rstrip().endswith("Gold label: billing")
    assert "$" not in prompt
    assert fake_openai.requests[0]["response_format"]["type"] == "json_schema"


def test_limit_takes_first_examples_by_id(ws: Workspace, fake_openai: FakeOpenAI) -> None:
    make_task(ws)
    fake_openai.responder = good_reply
    summary = ex.extract(ws, "tickets", fake_openai.model_string(), limit=3)
    first3 = [e["id"] for e in ws.query("SELECT id FROM examples ORDER BY id LIMIT 3")]
    assert [r["example_id"] for r in rows(ws)] == first3
    assert summary.total == 3 and summary.done == 3


def test_invalid_json_then_valid_retry_is_ok(ws: Workspace, fake_openai: FakeOpenAI) -> None:
    make_task(ws, n=1)

    def responder(body: dict[str, Any]) -> str:
        return "Sure! The rule is" if len(body["messages"]) == 1 else good_reply(body)

    fake_openai.responder = responder

    summary = ex.extract(ws, "tickets", fake_openai.model_string())

    [row] = rows(ws)
    assert row["status"] == "ok" and summary.done == 1
    calls = ws.query("SELECT * FROM llm_calls ORDER BY id")
    assert len(calls) == 2 and row["call_id"] == calls[1]["id"]
    retry = fake_openai.requests[1]["messages"]
    assert [m["role"] for m in retry] == ["user", "assistant", "user"]
    assert retry[1]["content"] == "Sure! The rule is"
    assert retry[2]["content"].startswith("Your reply could not be used: not valid JSON: ")
    assert retry[2]["content"].endswith(
        'Reply again with only the JSON object {"reasoning": "...", "rule": "..."}, nothing else.')


def test_invalid_json_twice_is_a_failed_row_with_raw_reply(ws: Workspace,
                                                           fake_openai: FakeOpenAI) -> None:
    make_task(ws, n=1)
    fake_openai.responder = lambda b: '{"reasoning": "only this"}'

    summary = ex.extract(ws, "tickets", fake_openai.model_string())

    [row] = rows(ws)
    assert row["status"] == "failed" and row["rule"] is None
    assert row["raw"] == '{"reasoning": "only this"}'
    assert "missing key 'rule'" in row["error"]
    assert row["label"] == "billing" and row["call_id"] is not None
    assert summary.failed == 1 and summary.done == 0
    assert len(fake_openai.requests) == 2
    assert get_run(ws, summary.run_id)["status"] == "done"


def test_fenced_json_is_accepted(ws: Workspace, fake_openai: FakeOpenAI) -> None:
    make_task(ws, n=1)
    fake_openai.responder = lambda b: f"```json\n{good_reply(b)}\n```"
    ex.extract(ws, "tickets", fake_openai.model_string())
    [row] = rows(ws)
    assert row["status"] == "ok" and len(fake_openai.requests) == 1


def test_rule_that_restates_the_label_is_flagged(ws: Workspace, fake_openai: FakeOpenAI) -> None:
    make_task(ws, n=3)
    fake_openai.responder = lambda b: json.dumps(
        {"reasoning": "It is.", "rule": f"The label is {gold(b)}."})
    summary = ex.extract(ws, "tickets", fake_openai.model_string())
    # Nothing but a label reads like that label's name, too.
    assert all(json.loads(r["flags"]) == ["restates_label", "restates_task"] for r in rows(ws))
    assert all(r["status"] == "ok" for r in rows(ws))
    assert summary.flagged == 3


def test_rule_without_a_label_is_flagged(ws: Workspace, fake_openai: FakeOpenAI) -> None:
    make_task(ws, n=2)
    fake_openai.responder = lambda b: json.dumps(
        {"reasoning": "Money.", "rule": "If the message is about a payment, route it to finance."})
    ex.extract(ws, "tickets", fake_openai.model_string())
    assert [json.loads(r["flags"]) for r in rows(ws)] == [["no_label"], ["no_label"]]


def test_second_run_makes_no_requests_and_no_duplicates(ws: Workspace,
                                                        fake_openai: FakeOpenAI) -> None:
    make_task(ws)
    fake_openai.responder = good_reply
    ex.extract(ws, "tickets", fake_openai.model_string())
    before = [(r["id"], r["rule"]) for r in rows(ws)]
    sent = len(fake_openai.requests)

    again = ex.extract(ws, "tickets", fake_openai.model_string())

    assert len(fake_openai.requests) == sent
    assert [(r["id"], r["rule"]) for r in rows(ws)] == before
    assert (again.total, again.skipped, again.done, again.failed) == (10, 10, 0, 0)
    run = get_run(ws, again.run_id)
    assert run["status"] == "done" and run["done"] == run["total"] == 10


def test_failed_rows_are_kept_on_a_rerun_and_retried_in_place_when_asked(
        ws: Workspace, fake_openai: FakeOpenAI) -> None:
    make_task(ws, n=4)
    broken = TEXTS[1]
    fake_openai.responder = lambda b: "no json here" if broken in first_user(b) else good_reply(b)
    first = ex.extract(ws, "tickets", fake_openai.model_string())
    failed = [r for r in rows(ws) if r["status"] == "failed"]
    assert first.failed == 1 and len(failed) == 1

    fake_openai.responder = good_reply
    sent = len(fake_openai.requests)
    rerun = ex.extract(ws, "tickets", fake_openai.model_string())
    # A plain rerun asks nothing: the failed row stays failed and is counted as such.
    assert len(fake_openai.requests) == sent
    assert (rerun.skipped, rerun.done, rerun.failed, rerun.failed_before) == (3, 0, 0, 1)
    assert [r["status"] for r in rows(ws)].count("failed") == 1
    assert get_run(ws, rerun.run_id)["done"] == 4

    second = ex.extract(ws, "tickets", fake_openai.model_string(), retry_failed=True)

    # The cached bad reply is not replayed: one fresh request, for the failed example only.
    assert len(fake_openai.requests) == sent + 1
    assert broken in first_user(fake_openai.requests[-1])
    assert (second.skipped, second.done, second.failed, second.failed_before) == (3, 1, 0, 0)
    redone = ws.query("SELECT * FROM micro_instructions WHERE id = ?", [failed[0]["id"]])[0]
    assert redone["status"] == "ok" and redone["error"] is None and redone["raw"] is None
    assert redone["run_id"] == second.run_id
    assert len(rows(ws)) == 4


def test_call_failure_is_a_failed_row_and_the_run_goes_on(
        ws: Workspace, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLD_MAX_ATTEMPTS", "2")
    make_task(ws, n=3)
    fake_openai.responder = good_reply
    for _ in range(2):
        fake_openai.add_fault("status", 503, {}, {"error": {"message": "overloaded"}})

    summary = ex.extract(ws, "tickets", fake_openai.model_string(), concurrency=1)

    got = rows(ws)
    assert [r["status"] for r in got] == ["failed", "ok", "ok"]
    assert "call failed" in got[0]["error"] and "503" in got[0]["error"]
    call = ws.query("SELECT * FROM llm_calls WHERE id = ?", [got[0]["call_id"]])[0]
    assert call["error"] and "503" in call["error"]
    assert (summary.done, summary.failed) == (2, 1)
    assert get_run(ws, summary.run_id)["status"] == "done"

    retry = ex.extract(ws, "tickets", fake_openai.model_string(), concurrency=1,
                       retry_failed=True)
    assert (retry.done, retry.failed, retry.skipped) == (1, 0, 2)
    assert [r["status"] for r in rows(ws)] == ["ok", "ok", "ok"]


def test_calls_run_concurrently(ws: Workspace, fake_openai: FakeOpenAI) -> None:
    make_task(ws, n=8)
    lock = threading.Lock()
    state = {"in_flight": 0, "max": 0}
    # Each answer waits until all 8 requests are in the server at once (or gives up after
    # 10 s), so max in flight is 8 exactly when the stage really runs 8 calls in parallel.
    barrier = threading.Barrier(8, timeout=10)

    def responder(body: dict[str, Any]) -> str:
        with lock:
            state["in_flight"] += 1
            state["max"] = max(state["max"], state["in_flight"])
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait()
        with lock:
            state["in_flight"] -= 1
        return good_reply(body)

    fake_openai.responder = responder
    fake_openai.delay_s = 0.2
    summary = ex.extract(ws, "tickets", fake_openai.model_string())  # remote default: 8

    assert summary.done == 8 and len(rows(ws)) == 8
    assert state["max"] == 8
    assert get_run(ws, summary.run_id)["params"]["concurrency"] == 8


def test_unknown_task_bad_model_and_empty_split(ws: Workspace) -> None:
    with pytest.raises(BadInput, match="nope"):
        ex.extract(ws, "nope", "local/default")
    make_task(ws, n=2, split="test")
    with pytest.raises(BadInput, match="unknown provider"):
        ex.extract(ws, "tickets", "gpt/4")
    with pytest.raises(BadInput, match="concurrency"):
        ex.extract(ws, "tickets", "local/default", concurrency=0)
    with pytest.raises(NotReady, match="no 'train' examples"):
        ex.extract(ws, "tickets", "local/default")
    assert ws.query("SELECT count(*) AS n FROM runs")[0]["n"] == 0


def test_missing_api_key_is_bad_input_and_fails_the_run(
        ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    make_task(ws, n=3)
    with pytest.raises(BadInput, match="OPENAI_API_KEY"):
        ex.extract(ws, "tickets", "openai/gpt-test-model")
    [run] = ws.query("SELECT * FROM runs")
    assert run["status"] == "failed" and "OPENAI_API_KEY" in run["error"]
    assert rows(ws) == []


@pytest.mark.parametrize(("reply", "expected"), [
    ('{"reasoning": "r", "rule": "x"}', {"reasoning": "r", "rule": "x"}),
    ('```json\n{"reasoning": "r", "rule": "x"}\n```', {"reasoning": "r", "rule": "x"}),
    ('```\n{"reasoning": "r", "rule": "x"}```', {"reasoning": "r", "rule": "x"}),
    ('Here it is: {"reasoning": "r", "rule": "x"} Hope it helps.', {"reasoning": "r", "rule": "x"}),
    ('{"reasoning": " two\\n lines ", "rule": "x", "extra": 1}',
     {"reasoning": "two lines", "rule": "x"}),
])
def test_parse_reply_accepts(reply: str, expected: dict[str, str]) -> None:
    assert ex.parse_reply(reply) == expected


@pytest.mark.parametrize(("reply", "error"), [
    ("not json at all", "Expecting value"),
    ('{"reasoning": "r"', "Expecting"),
    ('["reasoning", "rule"]', "expected a JSON object"),
    ('{"rule": "x"}', "missing key 'reasoning'"),
    ('{"reasoning": "r", "rule": "  "}', "'rule' must be a non-empty string"),
    ('{"reasoning": "r", "rule": 3}', "'rule' must be a non-empty string"),
])
def test_parse_reply_rejects(reply: str, error: str) -> None:
    with pytest.raises(ValueError, match=re.escape(error)):
        ex.parse_reply(reply)
