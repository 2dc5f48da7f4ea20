"""The embedded llama.cpp backend on the real weights (mostly local/small, the 0.5B)."""

from __future__ import annotations

import json
import threading

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


def test_default_model_answers_a_short_question() -> None:
    reply = LocalBackend("default").complete(
        [{"role": "user", "content": "What is the capital of France? One word."}],
        max_tokens=8,
    )
    assert "paris" in reply.text.lower()
    assert reply.model == "local/default"
    assert reply.input_tokens > 0 and reply.output_tokens > 0
    assert any(m["model"] == "local/default" and m["load_s"] > 0 for m in loaded_models())


def test_choices_constrain_the_answer_to_one_label() -> None:
    backend = LocalBackend("small", role="student")
    reply = backend.complete(
        [{"role": "user", "content": "I was charged twice on my last invoice, please refund."}],
        system=ROUTER, choices=LABELS,
    )
    assert reply.text in LABELS
    assert backend.constrains_choices is True


def test_labels_with_quotes_and_backslashes_are_escaped() -> None:
    labels = ['say "yes"', "back\\slash"]
    assert choice_grammar_text(tuple(labels)) == 'root ::= "say \\"yes\\"" | "back\\\\slash"'
    reply = LocalBackend("small", role="student").complete(
        [{"role": "user", "content": "Pick one."}], choices=labels
    )
    assert reply.text in labels


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


def test_second_call_with_same_system_prompt_reuses_the_prefix() -> None:
    backend = LocalBackend("small", role="student-prefix-test")  # a fresh instance
    first = backend.complete(
        [{"role": "user", "content": "Ticket: my invoice shows the wrong amount."}],
        system=RULES, choices=LABELS,
    )
    second = backend.complete(
        [{"role": "user", "content": "Ticket: the page crashes after login."}],
        system=RULES, choices=LABELS,
    )
    assert first.cached_tokens == 0
    assert first.input_tokens > 300
    # Everything up to the example is shared: well over half of the prompt.
    assert second.input_tokens // 2 < second.cached_tokens < second.input_tokens


def test_roles_get_distinct_instances_and_a_role_shares_one() -> None:
    teacher = LocalBackend("small", role="teacher").llama()
    student = LocalBackend("small", role="student").llama()
    assert teacher is not student
    assert LocalBackend("small", role="teacher").llama() is teacher
    roles = {m["role"] for m in loaded_models() if m["model"] == "local/small"}
    assert {"teacher", "student"} <= roles


def test_concurrent_calls_on_one_instance_are_serialised() -> None:
    backend = LocalBackend("small", role="student")
    replies: list[Reply] = []
    errors: list[Exception] = []

    def ask(text: str) -> None:
        try:
            replies.append(backend.complete(
                [{"role": "user", "content": text}], system=ROUTER, choices=LABELS,
            ))
        except Exception as err:  # surfaced by the assert below
            errors.append(err)

    threads = [threading.Thread(target=ask, args=(t,)) for t in
               ("Refund my subscription.", "Error 500 on the dashboard.")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(replies) == 2 and all(r.text in LABELS for r in replies)


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


def test_bad_thread_setting_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLD_LOCAL_THREADS", "two")
    with pytest.raises(ConfigError, match="PLD_LOCAL_THREADS='two'"):
        LocalBackend("small", role="bad-threads").llama()
    assert all(m["role"] != "bad-threads" for m in loaded_models())
