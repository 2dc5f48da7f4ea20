"""A scripted teacher and student for the fake provider servers (every role of the chain told
apart by the JSON schema it asks for, in either provider's wire format), the model string the
batch figures ask the fake for, and filler words that pad replies and examples."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from typing import Any

# The teacher of the batch figures: an Anthropic model, answered by the fake Message Batches API.
BATCH_TEACHER = "anthropic/claude-sonnet-4-6"

# Words that pad a scripted reply or a synthetic example to a length without changing its
# meaning.
FILLER_TEXT = ("the message names the feature that decides its label and the other details do "
               "not change it because the request is about the same matter as before")
FILLER = FILLER_TEXT.split(" ")


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return " ".join(block.get("text", "") for block in content or [])


def last_user(body: dict[str, Any]) -> str:
    """The text of the request's last user message ("" for a request without one: a killed
    client's request can arrive without a body)."""
    users = [m.get("content", "") for m in body.get("messages", []) if m.get("role") == "user"]
    return _text(users[-1]) if users else ""


def schema_keys(body: dict[str, Any]) -> set[str]:
    """Property names of the requested JSON schema: OpenAI's ``response_format`` or Anthropic's
    forced tool call."""
    if body.get("tools"):
        return set(body["tools"][0].get("input_schema", {}).get("properties") or {})
    fmt = body.get("response_format") or {}
    schema = (fmt.get("json_schema") or {}).get("schema") or fmt.get("schema") or {}
    return set(schema.get("properties") or {})


def scripted_reply(labels: Sequence[str]) -> Callable[[dict[str, Any]], str]:
    """A deterministic responder that plays every role of the chain, told apart by the JSON
    schema asked for: extract (a rule ending in the gold label), consolidate (one heuristic
    covering the labels named), resolve (one ``add`` proposal, so the loop really builds and
    evaluates a new prompt version) and the student (a stable pseudo-random label)."""
    labels = list(labels)

    def reply(body: dict[str, Any]) -> str:
        keys = schema_keys(body)
        user = last_user(body)
        if {"reasoning", "rule"} <= keys:
            m = re.search(r"Gold label: (\S+)", user)
            gold = m.group(1) if m else labels[0]
            return json.dumps({"reasoning": "The message shows the deciding feature.",
                               "rule": f"If the message is mainly about {gold} matters, then "
                                       f"the label is {gold}."})
        if "heuristic" in keys:
            found = [lab for lab in labels if lab in user] or labels[:1]
            text = " ".join(f"If the message is mainly about {lab} matters, answer {lab}."
                            for lab in found)
            return json.dumps({"heuristic": text, "labels_covered": found})
        if "proposals" in keys:
            focus = re.search(r"rule #?(\d+)", user)
            n = focus.group(1) if focus else "0"
            return json.dumps({"proposals": [{
                "kind": "add", "text": f"If the message repeats a request already made "
                                       f"(see rule {n}), keep the label of the first request.",
                "rationale": "Repeated requests were misread.", "evidence": []}]})
        digest = hashlib.sha256(user.encode("utf-8")).digest()[0]
        return labels[digest % len(labels)]

    return reply
