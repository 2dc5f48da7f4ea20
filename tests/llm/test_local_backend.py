"""The embedded llama.cpp backend on the real weights (mostly local/small, the 0.5B).

Every call here goes to a real model process (``python -m pld.llm.local_server``); a runtime that
crashes on this CPU fails these tests instead of being skipped.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from pld.llm.base import ConfigError, LLMError, Reply
from pld.llm.calls import complete
from pld.llm.local_backend import (
    LocalBackend,
    choice_grammar_text,
    loaded_models,
)
from pld.workspace import Workspace

LABELS = ["billing", "technical", "other"]
ROUTER = (
    "You route customer support tickets. Answer with one label: billing (invoices, charges, "
    "refunds), technical (errors, crashes, login problems) or other."
)
# A student-style system prompt: many fixed rules first, the example last.
RULES = "You classify support tickets into billing, technical or other.\n" + "\n".join(
    f"Rule {i}: if the ticket mentions {topic}, the label is {label}."
    for i, (topic, label) in enumerate(
        [
            ("an invoice", "billing"), ("a refund", "billing"), ("a double charge", "billing"),
            ("a credit card", "billing"), ("a subscription price", "billing"),
            ("an error message", "technical"), ("a crash", "technical"),
            ("a login problem", "technical"), ("a slow page", "technical"),
            ("an API timeout", "technical"), ("a password reset", "technical"),
            ("office hours", "other"), ("a job application", "other"),
            ("a compliment", "other"), ("a partnership offer", "other"),
        ]
        * 2,
        start=1,
    )
)


@pytest.mark.model
def test_default_model_answers_a_short_question() -> None:
    reply = LocalBackend("default").complete(
        [{"role": "user", "content": "What is the capital of France? One word."}],
        max_tokens=8,
    )
    assert "paris" in reply.text.lower()
    assert reply.model == "local/default"
    assert reply.input_tokens > 0 and reply.output_tokens > 0
    loaded = [m for m in loaded_models() if m["model"] == "local/default"]
    # The weights live in a process of their own, not in the caller's.
    assert loaded and loaded[0]["load_s"] > 0 and loaded[0]["pid"] not in (None, os.getpid())


@pytest.mark.model
def test_choices_constrain_the_answer_to_one_label() -> None:
    backend = LocalBackend("small", role="student")
    reply = backend.complete(
        [{"role": "user", "content": "I was charged twice on my last invoice, please refund."}],
        system=ROUTER, choices=LABELS,
    )
    assert reply.text in LABELS
    assert backend.constrains_choices is True


@pytest.mark.model
def test_choices_come_with_a_score_per_label() -> None:
    backend = LocalBackend("default", role="student")
    assert backend.scores_choices is True
    answers = {}
    for text in ("I was charged twice on my last invoice, please refund.",
                 "The app crashes with an error whenever I log in."):
        reply = backend.complete([{"role": "user", "content": text}], system=ROUTER,
                                 choices=LABELS)
        scores = reply.label_logprobs
        assert scores is not None and set(scores) == set(LABELS)
        # Log-probabilities of the model's own first-token distribution (before the grammar).
        assert all(v <= 1e-6 for v in scores.values())
        answers[reply.text] = max(scores, key=scores.__getitem__)
    assert answers == {"billing": "billing", "technical": "technical"}
    ids = backend.first_token_ids(LABELS)
    assert set(ids) == set(LABELS) and len(set(ids.values())) == len(LABELS)
    assert all(isinstance(i, int) and i >= 0 for i in ids.values())


@pytest.mark.model
def test_labels_with_quotes_and_backslashes_are_escaped() -> None:
    labels = ['say "yes"', "back\\slash"]
    assert choice_grammar_text(tuple(labels)) == 'root ::= "say \\"yes\\"" | "back\\\\slash"'
    reply = LocalBackend("small", role="student").complete(
        [{"role": "user", "content": "Pick one."}], choices=labels
    )
    assert reply.text in labels


@pytest.mark.model
def test_json_schema_reply_parses_with_required_keys() -> None:
    schema = {
        "type": "object",
        "properties": {"reasoning": {"type": "string"}, "rule": {"type": "string"}},
        "required": ["reasoning", "rule"],
    }
    reply = LocalBackend("small", role="teacher").complete(
        [{"role": "user", "content": "Ticket: 'The app crashes when I log in.' Label: technical. "
          "Give a one-sentence reasoning and a one-sentence rule for this label."}],
        system="You write short labelling rules. Answer in JSON.",
        max_tokens=200, json_schema=schema,
    )
    data = json.loads(reply.text)
    assert isinstance(data["reasoning"], str) and isinstance(data["rule"], str)


@pytest.mark.model
def test_second_call_with_same_system_prompt_reuses_the_prefix() -> None:
    backend = LocalBackend("small", role="student")
    system = "Prefix test.\n" + RULES  # seen by no other test, so nothing of it is cached yet
    first = backend.complete(
        [{"role": "user", "content": "Ticket: my invoice shows the wrong amount."}],
        system=system, choices=LABELS,
    )
    # A teacher call in between lands in another slot and does not evict the rule prompt.
    LocalBackend("small", role="teacher").complete(
        [{"role": "user", "content": "Name a colour."}], max_tokens=4)
    second = backend.complete(
        [{"role": "user", "content": "Ticket: the page crashes after login."}],
        system=system, choices=LABELS,
    )
    # At most the chat template's first tokens can match an earlier prompt.
    assert first.cached_tokens < 10
    assert first.input_tokens > 300
    # Everything up to the example is shared: well over half of the prompt.
    assert second.input_tokens // 2 < second.cached_tokens < second.input_tokens


@pytest.mark.model
def test_prefix_reuse_can_be_turned_off() -> None:
    backend = LocalBackend("small", role="bench", reuse_prefix=False)
    msgs = [{"role": "user", "content": "Ticket: refund please."}]
    backend.complete(msgs, system=RULES, choices=LABELS)
    again = backend.complete(msgs, system=RULES, choices=LABELS)
    assert again.cached_tokens == 0 and again.input_tokens > 300


@pytest.mark.model
def test_roles_share_one_model_process() -> None:
    teacher = LocalBackend("small", role="teacher").process()
    student = LocalBackend("small", role="student").process()
    assert teacher is student and teacher.alive()
    assert len([m for m in loaded_models() if m["model"] == "local/small"]) == 1


TICKETS = ["Refund my subscription, I was charged twice.", "Error 500 on the dashboard.",
           "What are your office hours?", "The invoice total is wrong.",
           "The app crashes when I log in.", "I want to apply for a job with you."]


@pytest.mark.model
def test_concurrent_calls_give_the_labels_of_sequential_ones() -> None:
    backend = LocalBackend("small", role="student")

    def ask(text: str) -> Reply:
        return backend.complete([{"role": "user", "content": text}], system=ROUTER,
                                choices=LABELS)

    sequential = [ask(t).text for t in TICKETS]
    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = [r.text for r in pool.map(ask, TICKETS)]
    assert all(label in LABELS for label in sequential)
    assert concurrent == sequential


@pytest.mark.model
def test_concurrent_json_calls_all_parse() -> None:
    backend = LocalBackend("small", role="teacher")
    schema = {"type": "object", "properties": {"label": {"type": "string"},
                                               "why": {"type": "string"}},
              "required": ["label", "why"]}

    def ask(text: str) -> dict[str, str]:
        reply = backend.complete(
            [{"role": "user", "content": f"Ticket: {text} Give its label and why, in JSON."}],
            system=ROUTER, max_tokens=120, json_schema=schema)
        return json.loads(reply.text)

    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(ask, TICKETS[:4]))
    assert all(set(a) >= {"label", "why"} for a in answers)


@pytest.mark.model
def test_over_long_prompt_is_an_llm_error_and_the_instance_still_works() -> None:
    backend = LocalBackend("small", role="student")
    with pytest.raises(LLMError, match=r"prompt is \d+ tokens but the context window is \d+") \
            as info:
        backend.complete([{"role": "user", "content": "word " * 9000}], max_tokens=4)
    assert info.value.transient is False
    reply = backend.complete([{"role": "user", "content": "Say hi."}], max_tokens=4)
    assert reply.text


def test_unknown_local_model_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown local model 'huge'"):
        LocalBackend("huge")


@pytest.mark.model
def test_calls_complete_logs_free_local_call_and_caches_it(ws: Workspace) -> None:
    msgs = [{"role": "user", "content": "The login page shows error 403."}]
    first = complete(ws, "local/small", msgs, system=ROUTER, choices=LABELS, role="student",
                     stage="test")
    again = complete(ws, "local/small", msgs, system=ROUTER, choices=LABELS, role="student",
                     stage="test")
    assert first.cached is False and first.text in LABELS
    assert again.cached is True and again.text == first.text
    rows = ws.query("SELECT model, cost_usd, cache_hit, error, input_tokens FROM llm_calls "
                    "ORDER BY id")
    assert [(r["model"], r["cost_usd"], r["cache_hit"], r["error"]) for r in rows] == [
        ("local/small", 0.0, 0, None), ("local/small", 0.0, 1, None),
    ]
    assert rows[0]["input_tokens"] > 0


@pytest.mark.model
def test_bad_thread_setting_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLD_LOCAL_THREADS", "two")
    with pytest.raises(ConfigError, match="PLD_LOCAL_THREADS='two'"):
        LocalBackend("small", role="bad-threads").process()
