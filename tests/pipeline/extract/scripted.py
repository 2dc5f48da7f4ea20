"""A ticket-routing task with a scripted teacher and student, both answered by one fake
OpenAI-compatible server: the teacher's requests ask for JSON, the student's for label scores.

The student leans to "other" (raw answers are "other" for everything) but its label scores
rank the keyword items right, so the zero-shot calibration fitted on validation recovers them:
it answers the training examples 0-7 right and 8-9 wrong (they carry no keyword). A rule in
its system prompt that names a cue of :data:`HINTS` makes it sure of that cue's label on items
holding the cue; any other rule changes nothing.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pld.tasks.store import Example, save_task
from pld.workspace import Workspace
from tests.fakes.openai_server import FakeOpenAI

TASK = "tickets"
LABELS = ["billing", "technical", "other"]
DESCRIPTION = "Route a customer message to the team that handles it."
TRAIN = [
    ("The March invoice charged me twice for one order.", "billing"),
    ("The March invoice page crashes whenever I open it.", "technical"),
    ("Please refund the duplicate payment on my card.", "billing"),
    ("The card payment form shows error 500 on submit.", "technical"),
    ("Do you have an office near the central station?", "other"),
    ("Your office near the central station overcharged my account fee.", "billing"),
    ("Who won the company football match last week?", "other"),
    ("The app logs me out after every update.", "technical"),
    ("I want my money back for the broken headphones.", "billing"),
    ("Nothing loads since yesterday on my laptop.", "technical"),
]
VAL = [
    ("My bill shows a fee I did not agree to.", "billing"),
    ("The app freezes on the login screen.", "technical"),
    ("Is there parking near your office?", "other"),
    ("I paid twice for the same subscription.", "billing"),
    ("Export to PDF shows an error and blank pages.", "technical"),
    ("Can I bring my dog to the open day?", "other"),
]
WRONG = (8, 9)  # indexes into TRAIN the zero-shot student gets wrong, even calibrated
TECHNICAL_WORDS = ("crash", "error", "freez", "logs me out", "app ")
BILLING_WORDS = ("charged", "refund", "payment", "paid", "bill", "fee")
# A cue in a rule of the system prompt -> (the words of an item it applies to, its label).
HINTS = {"money back": ("money back", "billing"), "nothing loads": ("nothing loads", "technical")}

MONEY_BACK = "If the customer asks for their money back, then the label is billing."
NOTHING_LOADS = "If nothing loads, then the label is technical."
# Conditions that read like a label's name (similarity 0.64: flagged only once verified).
LOOSE = {"billing": "If the message is a billing message, then the label is billing.",
         "technical": "If the message is about something technical, then the label is "
                      "technical.",
         "other": "If the message asks about a place or an event, then the label is other."}


def make_task(ws: Workspace, *, shape: str | None = None, labels: list[str] | None = None,
              train: list[tuple[str, str]] | None = None) -> None:
    """The ticket task (or another label set and training split of the same description)."""
    save_task(ws, name=TASK, kind="custom", labels=labels or LABELS, source="test",
              params={"shape": shape} if shape else {}, description=DESCRIPTION,
              examples=[Example(f"tr{i}", "train", t, lab, {})
                        for i, (t, lab) in enumerate(train or TRAIN)]
              + [Example(f"va{i}", "val", t, lab, {}) for i, (t, lab) in enumerate(VAL)])


def ids(ws: Workspace) -> list[int]:
    """The training examples' ids, in :data:`TRAIN` order."""
    return [r["id"] for r in ws.query("SELECT id FROM examples WHERE split = 'train' "
                                      "ORDER BY id")]


def user(body: dict[str, Any]) -> str:
    return next(m["content"] for m in body["messages"] if m["role"] == "user")


def system(body: dict[str, Any]) -> str:
    return next((m["content"] for m in body["messages"] if m["role"] == "system"), "")


def is_teacher(body: dict[str, Any]) -> bool:
    return bool(body.get("response_format"))


def example_text(prompt: str) -> str:
    """The text of the example a teacher prompt is about (the last one it shows)."""
    block = prompt.rsplit("Gold label:", 1)[0].rstrip().rsplit("\n\n", 1)[-1].strip()
    return block.split("\n", 1)[1].strip() if block.startswith("## ") else block


def contrast_text(prompt: str) -> str | None:
    """The text of the similar example a contrastive prompt shows, None in a plain one."""
    found = re.search(r"## The similar example\n(.*?)\n\nIts label:", prompt, re.DOTALL)
    return found.group(1).strip() if found else None


def teacher_rule(text: str, label: str) -> str:
    """The rule the scripted teacher writes for an example."""
    if "money back" in text:
        return MONEY_BACK
    if "Nothing loads" in text:
        return NOTHING_LOADS
    return LOOSE.get(label, f"If the message is about {label}, then the label is {label}.")


def teacher(body: dict[str, Any]) -> str:
    prompt = user(body)
    label = re.search(r"Gold label: (\S+)", prompt)
    assert label, "a teacher prompt carries the gold label"
    return json.dumps({"reasoning": "What sets it apart.",
                       "rule": teacher_rule(example_text(prompt), label.group(1))})


def guess(text: str) -> str:
    """The label the student's scores favour once calibrated (its keyword sense)."""
    low = text.lower() + " "
    if any(w in low for w in TECHNICAL_WORDS):
        return "technical"
    if any(w in low for w in BILLING_WORDS):
        return "billing"
    return "other"


def student_scores(body: dict[str, Any]) -> list[tuple[str, float]]:
    text, rules = user(body), system(body).lower()
    scores = dict.fromkeys(LABELS, -3.0)
    scores["other"] = -0.3
    right = guess(text)
    if right != "other":
        scores[right] = -1.0
    for cue, (words, label) in HINTS.items():
        if cue in rules and words in text.lower():
            scores = dict.fromkeys(LABELS, -4.0)
            scores[label] = -0.05
    return sorted(scores.items(), key=lambda kv: -kv[1])


def respond(body: dict[str, Any]) -> str:
    return teacher(body) if is_teacher(body) else "other"


def script(fake: FakeOpenAI) -> str:
    """Make ``fake`` the scripted teacher and student; return its model string."""
    fake.responder = respond
    fake.first_token_logprobs = student_scores
    return fake.model_string()
