"""Contract-NLI (Koreeda & Manning, Findings of EMNLP 2021): hypothesis + NDA -> NLI label.

One example is one (document, hypothesis) pair. NDAs run to tens of thousands of characters,
far beyond what a small local model should read per call, so a document that does not fit the
context budget is shortened to the passages (the dataset's own ``spans``) that BM25 ranks most
relevant to the hypothesis. The kept passages stay in document order, omitted stretches are
marked ``[...]``, and the input says that it is an excerpt and how much was kept.

Files (``contract_nli/`` under the data dir): ``train.json``, ``dev.json``, ``test.json``
upstream. When ``train.json`` is absent, ``train_truncated.json`` + ``dev.json`` form the
train/val pool; ``test.json`` is always the held-out test pool. Pairs of one document stay in
one split.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pld.errors import BadInput
from pld.tasks.base import Item, PoolInfo
from pld.tasks.benchmark_files import FileBenchmark, Found, cached_per_file
from pld.tasks.store import Example

LABELS = ["Entailment", "Contradiction", "NotMentioned"]
FOLDER = "contract_nli"
# Upstream names; train_truncated.json (a shortened train.json) joins train+val without it.
FILES = {"train": "train.json", "val": "dev.json", "test": "test.json",
         "train_truncated": "train_truncated.json"}
DEFAULT_CONTEXT_TOKENS = 1500
CHARS_PER_TOKEN = 4

_STOP = frozenset({
    "a", "an", "and", "any", "are", "as", "at", "be", "by", "for", "from", "has", "have", "in",
    "is", "it", "its", "of", "on", "or", "shall", "such", "that", "the", "this", "to", "was",
    "were", "which", "will", "with", "may", "not", "no", "all", "other", "than", "under",
    "upon", "into",
})
_WORD = re.compile(r"[a-z0-9]+")


def _stem(w: str) -> str:
    # A crude suffix strip is enough for matching "disclose/disclosed/disclosure" style variants.
    for suf in ("ations", "ation", "ings", "ing", "ies", "ed", "es", "s", "ure", "e"):
        if w.endswith(suf) and len(w) - len(suf) >= 4:
            return w[: -len(suf)]
    return w


def tokens(text: str) -> list[str]:
    """Lowercased, stemmed content words of ``text``."""
    return [_stem(w) for w in _WORD.findall(text.lower()) if w not in _STOP]


class BM25:
    """Okapi BM25 over a fixed list of passages; IDF is computed over those passages."""

    def __init__(self, passages: Sequence[str], k1: float = 1.5, b: float = 0.75) -> None:
        self.docs = [Counter(tokens(p)) for p in passages]
        self.lengths = [sum(d.values()) for d in self.docs]
        self.avg = (sum(self.lengths) / len(self.docs) if self.docs else 0.0) or 1.0
        self.k1, self.b = k1, b

    def scores(self, query: str) -> list[float]:
        """Score of each passage for ``query``."""
        n = len(self.docs)
        q = set(tokens(query))
        df = {t: sum(1 for d in self.docs if t in d) for t in q}
        idf = {t: math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5)) for t in q}
        k1, b = self.k1, self.b
        out = []
        for d, length in zip(self.docs, self.lengths, strict=True):
            s = 0.0
            for t in q:
                tf = d.get(t, 0)
                if tf:
                    s += idf[t] * tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / self.avg))
            out.append(s)
        return out


def bm25_scores(query: str, passages: Sequence[str]) -> list[float]:
    """BM25 score of each passage for ``query`` (IDF over ``passages``)."""
    return BM25(passages).scores(query)


@cached_per_file(maxsize=8)
def read_file(path: Path) -> dict[str, Any]:
    """A parsed Contract-NLI JSON file (cached per path, mtime and size)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        docs, labels = data["documents"], data["labels"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise BadInput(f"{path}: not a Contract-NLI file ({type(e).__name__}: {e})") from None
    for i, d in enumerate(docs):
        for k in ("id", "text", "spans", "annotation_sets"):
            if k not in d:
                raise BadInput(f"{path} documents[{i}]: field {k!r} is missing")
    return {"documents": docs, "labels": labels}


def _pairs(path: Path) -> list[Item]:
    data = read_file(path)
    hyps = data["labels"]
    items = []
    for d in data["documents"]:
        annotations = d["annotation_sets"][0]["annotations"]
        for key in sorted(annotations, key=lambda k: int(k.split("-")[1])):
            ann = annotations[key]
            if ann["choice"] not in LABELS:
                raise BadInput(f"{path} document {d['id']} {key}: field 'choice' is "
                               f"{ann['choice']!r}, expected one of {LABELS}")
            h = hyps[key]
            meta = {"doc_id": d["id"], "file_name": d.get("file_name"), "hypothesis_key": key,
                    "short_description": h.get("short_description"),
                    "document_type": d.get("document_type"), "source": path.name,
                    "evidence_spans": list(ann.get("spans", []))}
            items.append(Item(f"cnli-{d['id']}-{key}", ann["choice"],
                              {"doc": d, "hypothesis": h["hypothesis"]}, meta,
                              group=f"doc-{d['id']}"))
    return items


class ContractNLI(FileBenchmark):
    """Contract-NLI with a context budget (in estimated tokens, chars / 4) per model input."""

    name = "contract-nli"
    shape = "pair"  # a hypothesis and the contract
    labels = LABELS
    description = (
        "Contract-NLI: document-level natural language inference on non-disclosure agreements. "
        "Each item gives a hypothesis about a contract obligation (e.g. 'Receiving Party shall "
        "not reverse engineer ...') and the NDA text, or the passages most relevant to the "
        "hypothesis when the NDA is too long. Label whether the contract entails the hypothesis "
        "(Entailment), contradicts it (Contradiction) or does not address it (NotMentioned). "
        "17 hypotheses per document (Contract-NLI, Findings of EMNLP 2021, CC BY 4.0)."
    )
    folder = FOLDER
    files = FILES
    trainval_extras = ("train_truncated",)
    complete_notes = ("upstream train/dev/test: train from train.json, val from dev.json, "
                      "test from test.json")

    def __init__(self, context_tokens: int = DEFAULT_CONTEXT_TOKENS) -> None:
        if context_tokens < 100:
            raise BadInput(f"contract-nli: context_tokens {context_tokens} is too small (>= 100)")
        self.context_tokens = context_tokens
        # Passages and BM25 index per document: the 17 hypotheses of a document share them.
        self._index: dict[Any, tuple[list[str], BM25]] = {}

    def params(self) -> dict[str, Any]:
        """The context budget, which decides how documents are shortened."""
        return {"context_tokens": self.context_tokens}

    def read_items(self, path: Path) -> list[Item]:
        """One item per (document, hypothesis) pair of the file."""
        return _pairs(path)

    def partial_notes(self, found: Found, pools: Sequence[PoolInfo]) -> str:
        """Train and val come from dev.json (after train_truncated.json when it is there)."""
        partial = ("train_truncated.json (first 50 of 423 training documents) + "
                   if found["train_truncated"] is not None else "")
        return (f"partial: upstream train.json is missing, so train and val are drawn from "
                f"{partial}dev.json ({pools[0].size} pairs); test.json ({pools[-1].size} pairs) "
                "stays held out. Run: python -m pld download contract-nli for the full "
                "training set (7,191 pairs)")

    def _render(self, item: Item) -> tuple[str, dict[str, Any]]:
        doc, hypothesis = item.fields["doc"], item.fields["hypothesis"]
        head = f"Hypothesis: {hypothesis}\n\nContract:\n"
        budget = self.context_tokens * CHARS_PER_TOKEN - len(head)
        text: str = doc["text"].strip()
        if len(text) <= budget:
            return head + text, {"shortened": False}
        key = (doc["id"], len(doc["text"]))
        if key not in self._index:
            passages = [doc["text"][s:e].strip() for s, e in doc["spans"]]
            self._index[key] = (passages, BM25(passages))
        passages, index = self._index[key]
        n = len(passages)
        note_len = len(f"[Excerpt: {n} of {n} passages most relevant to the hypothesis; "
                       "the rest omitted]\n")
        room = budget - note_len
        scores = index.scores(hypothesis)
        ranked = sorted(range(n), key=lambda i: (-scores[i], i))
        keep: set[int] = set()
        used = 0
        for i in ranked:
            if not passages[i]:
                continue
            # One line per passage plus, at worst, one "[...]" line for the gap before it.
            cost = len(passages[i]) + 1 + 6
            if used + cost <= room:
                keep.add(i)
                used += cost
        lines: list[str] = []
        truncated = False
        if not keep:
            # Not even the best passage fits: keep its start and say that it was cut.
            best = ranked[0]
            cut = max(0, room - 40)
            lines.append(passages[best][:cut] + " [passage truncated]")
            keep, truncated = {best}, True
        else:
            prev = -1
            for i in sorted(keep):
                if i > prev + 1 and any(passages[j] for j in range(prev + 1, i)):
                    lines.append("[...]")
                lines.append(passages[i])
                prev = i
            if any(passages[j] for j in range(prev + 1, n)):
                lines.append("[...]")
        note = (f"[Excerpt: {len(keep)} of {n} passages most relevant to the hypothesis; "
                "the rest omitted]")
        info = {"shortened": True, "kept_spans": sorted(keep), "n_spans": n,
                "passage_truncated": truncated}
        return head + note + "\n" + "\n".join(lines), info

    def render(self, item: Item) -> str:
        """Hypothesis, then the contract (or an announced excerpt of it)."""
        return self._render(item)[0]

    def example(self, item: Item, split: str) -> Example:
        """The example, with which passages were kept recorded in ``meta``."""
        text, info = self._render(item)
        return Example(item.ext_id, split, text, item.label, {**item.meta, **info})
