"""Task descriptions: the first thing teacher and student read.

A custom task loaded without ``--description`` only tells the models its file name and labels, so
the teacher writes rules that guess at the task and the student classifies blind. Here the
teacher drafts a description from a stratified sample of labelled training examples
(``pld/prompts/describe.md``); a person edits it and keeps it with
:func:`pld.preamble.set_description`. Drafting stores nothing but the call.
"""

from __future__ import annotations

import random
from typing import Any

from pld import prompts
from pld.errors import BadInput, NotReady
from pld.llm.base import ConfigError
from pld.llm.json_reply import loads_reply
from pld.llm.teacher_json import ask_json
from pld.tasks.store import task_info
from pld.workspace import Workspace

SCHEMA = {
    "type": "object",
    "properties": {"description": {"type": "string"}},
    "required": ["description"],
    "additionalProperties": False,
}
MAX_TOKENS = 600
PER_LABEL = 3
MAX_CHARS = 600  # of one example: enough to show its parts, short enough for a small model


def sample_examples(ws: Workspace, task: str, *, per_label: int = PER_LABEL,
                    seed: int = 0) -> list[dict[str, Any]]:
    """Up to ``per_label`` seeded training examples of each label (all splits when the task
    has no training split), in a seeded mixed order."""
    info = task_info(ws, task)
    rows = ws.query("SELECT id, text, label FROM examples WHERE task = ? AND split = 'train' "
                    "ORDER BY id", [task]) or ws.query(
        "SELECT id, text, label FROM examples WHERE task = ? ORDER BY id", [task])
    if not rows:
        raise NotReady(f"task {task} has no examples to describe")
    rng = random.Random(seed)
    picked = []
    for label in info.labels:
        pool = [r for r in rows if r["label"] == label]
        picked += rng.sample(pool, min(per_label, len(pool)))
    rng.shuffle(picked)
    return picked


def parse_reply(text: str) -> str:
    """The description in a reply; :class:`ValueError` naming what is wrong."""
    data = loads_reply(text)
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    value = data.get("description")
    if not isinstance(value, str) or not value.strip():
        raise ValueError('"description" must be a non-empty string')
    return " ".join(value.split())


def draft_description(ws: Workspace, task: str, teacher: str, *, seed: int = 0) -> str:
    """The teacher's draft description of ``task`` from a sample of its labelled examples.

    Nothing is stored but the call; a person keeps (or edits) the draft with
    :func:`pld.preamble.set_description`.
    """
    info = task_info(ws, task)
    sample = sample_examples(ws, task, seed=seed)
    blocks = []
    for i, ex in enumerate(sample, 1):
        text = ex["text"].strip()
        if len(text) > MAX_CHARS:
            text = text[:MAX_CHARS].rstrip() + " [...]"
        blocks.append(f"Example {i}\n{text}\nLabel: {ex['label']}")
    prompt = prompts.render("describe", task=info.name,
                            labels="\n".join(f"- {label}" for label in info.labels),
                            examples="\n\n".join(blocks))
    try:
        description, _ = ask_json(ws, teacher, prompt, parse_reply, schema=SCHEMA,
                                  max_tokens=MAX_TOKENS, stage="describe",
                                  shape_hint=' {"description": "..."}')
    except ConfigError as e:
        raise BadInput(str(e)) from e
    return description
