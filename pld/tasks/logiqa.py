"""LogiQA (Liu et al., IJCAI 2020), original English files: four-way logical reasoning MCQ.

Every 8 lines of ``Train.txt`` / ``Eval.txt`` / ``Test.txt`` form one example: a blank line, the
answer letter (a-d), the context, the question, then the four options. Options are read by
line position: some upstream lines lack their ``A.`` prefix, carry a lowercase or ``A?`` style
prefix, or have the letter inside the text ("... on the C.S City market ..."). A leading letter
prefix is stripped only when present; the option's letter is always its position.

Without ``Train.txt`` the train/val pool is ``Eval.txt`` and ``Test.txt`` stays held out; with
all three files, train comes from Train.txt, val from Eval.txt and test from Test.txt.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pld.errors import BadInput
from pld.tasks.base import Item, PoolInfo
from pld.tasks.benchmark_files import FileBenchmark, Found, cached_per_file

LETTERS = "ABCD"
LABELS = ["A", "B", "C", "D"]
FOLDER = "logiqa"
FILES = {"train": "Train.txt", "val": "Eval.txt", "test": "Test.txt"}
# "A." / "a." / "A?" / "A．" / "A、" (any letter A-D), with optional spaces around the mark.
_PUNCT_PREFIX = re.compile(r"^\s*([A-Da-d])\s*[.?．、:)]\s*")


def strip_prefix(option: str, position: int, block: Sequence[str]) -> tuple[str, str | None]:
    """Option text without its letter prefix, and the prefix letter found (None if absent).

    A letter followed by punctuation is a prefix wherever it appears. A bare "A " is a prefix
    only for the option at A's position and only if the next word is capitalised or a sibling
    option has the same bare form: this keeps the article in "A small amount of ...".
    """
    m = _PUNCT_PREFIX.match(option)
    if m:
        return option[m.end():].strip(), m.group(1).upper()
    letter = LETTERS[position]
    if option.startswith(letter + " ") and len(option) > 2:
        rest = option[2:].lstrip()
        siblings = sum(1 for j, o in enumerate(block) if o.startswith(LETTERS[j] + " "))
        if siblings >= 2 or rest[:1].isupper() or not rest[:1].isalpha():
            return rest, letter
    return option.strip(), None


@cached_per_file(maxsize=6)
def read_examples(path: Path) -> tuple[dict[str, Any], ...]:
    """Parsed examples of one LogiQA file (cached per path, mtime and size)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise BadInput(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    lines = text.split("\n")
    # The upstream files have no final newline; tolerate one (or a trailing blank) anyway.
    while lines and lines[-1] == "" and len(lines) % 8 != 0:
        lines.pop()
    if len(lines) % 8:
        raise BadInput(
            f"{path}: {len(lines)} lines is not a multiple of 8 (one example per 8 lines)")
    out = []
    for i in range(0, len(lines), 8):
        blank, answer, context, question, *options = lines[i:i + 8]
        where = f"{path} line {i + 2}"
        if blank.strip():
            raise BadInput(f"{path} line {i + 1}: expected the blank line that starts an example")
        if answer.strip().lower() not in ("a", "b", "c", "d"):
            raise BadInput(f"{where}: field 'answer' is {answer!r}, expected a letter a-d")
        parsed = [strip_prefix(o, j, options) for j, o in enumerate(options)]
        found = [letter for _, letter in parsed]
        issues = [f"option {LETTERS[j]}: prefix {'missing' if f is None else f}"
                  for j, f in enumerate(found) if f != LETTERS[j]]
        out.append({"index": i // 8, "answer": answer.strip().upper(), "context": context.strip(),
                    "question": question.strip(), "options": [t for t, _ in parsed],
                    "prefix_issues": issues})
    return tuple(out)


def _items(path: Path, split_name: str) -> list[Item]:
    out = []
    for ex in read_examples(path):
        meta = {"file": path.name, "index": ex["index"]}
        if ex["prefix_issues"]:
            meta["prefix_issues"] = ex["prefix_issues"]
        out.append(Item(f"logiqa-{split_name}-{ex['index']:04d}", ex["answer"], ex, meta))
    return out


class LogiQA(FileBenchmark):
    """LogiQA: pick the option (A-D) that the context logically supports."""

    name = "logiqa"
    shape = "multiple-choice"
    labels = LABELS
    description = (
        "LogiQA logical reasoning (English, from Chinese civil-service exam questions). Each "
        "item gives a short passage, a question about it and four options A-D; answer with "
        "the letter of the option that follows from (or best fits) the passage. The label is "
        "the option letter, A, B, C or D (LogiQA, IJCAI 2020)."
    )
    folder = FOLDER
    files = FILES
    complete_notes = "upstream files: train from Train.txt, val from Eval.txt, test from Test.txt"

    def read_items(self, path: Path) -> list[Item]:
        """One item per example of the file; ids name the file (``logiqa-eval-0001``)."""
        return _items(path, path.stem.lower())

    def partial_notes(self, found: Found, pools: Sequence[PoolInfo]) -> str:
        """Train and val come from Eval.txt."""
        return (f"partial: Train.txt (7,376 examples) is missing, so train and val are drawn "
                f"from Eval.txt ({pools[0].size} examples); Test.txt ({pools[-1].size}) stays "
                "held out. Run: python -m pld download logiqa for the training file")

    def render(self, item: Item) -> str:
        """Passage, question, then the options as "A. ...", one per line."""
        ex = item.fields
        opts = "\n".join(f"{LETTERS[j]}. {o}" for j, o in enumerate(ex["options"]))
        return f"{ex['context']}\n\nQuestion: {ex['question']}\n{opts}"
