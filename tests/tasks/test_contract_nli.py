"""Contract-NLI: pools from partial and complete files, document-level splits, shortening."""

from __future__ import annotations

import os
import random
import re
from collections import Counter
from pathlib import Path

import pytest

from pld.tasks import REPO_ROOT
from pld.tasks.base import Item
from pld.tasks.contract_nli import ContractNLI, bm25_scores

SHARED = REPO_ROOT.parent / "shared" / "data"
FOLDER = SHARED / "contract_nli"
NOTE = re.compile(r"\[Excerpt: (\d+) of (\d+) passages most relevant to the hypothesis; "
                  r"the rest omitted\]")


@pytest.fixture(scope="module")
def data() -> Path:
    # CI has ../shared/data: a missing folder is a failure, never a skip.
    for name in ("dev.json", "test.json", "train_truncated.json"):
        assert (FOLDER / name).is_file(), f"benchmark data missing: {FOLDER / name}"
    return SHARED


def _layout(root: Path, files: dict[str, str]) -> Path:
    (root / "contract_nli").mkdir(parents=True)
    for dest, src in files.items():
        os.symlink(FOLDER / src, root / "contract_nli" / dest)
    return root


def test_partial_pools_and_status(data: Path) -> None:
    st = ContractNLI().status([data])
    assert st.available and not st.complete
    assert st.missing == ["contract_nli/train.json"]
    assert "train_truncated.json" in st.notes and "dev.json" in st.notes
    trainval, test = st.pools
    assert trainval.splits == ["train", "val"] and test.splits == ["test"]
    assert trainval.size == 850 + 1037 and test.size == 2091
    assert trainval.label_counts == {"Entailment": 389 + 519, "Contradiction": 114 + 95,
                                     "NotMentioned": 347 + 423}
    assert test.label_counts == {"Entailment": 968, "Contradiction": 220, "NotMentioned": 903}


def test_dev_only_counts(tmp_path: Path) -> None:
    root = _layout(tmp_path, {"dev.json": "dev.json", "test.json": "test.json"})
    st = ContractNLI().status([root])
    assert st.pools[0].size == 1037
    assert st.pools[0].label_counts == {"Entailment": 519, "Contradiction": 95,
                                        "NotMentioned": 423}
    assert "dev.json (1037 pairs)" in st.notes


def test_complete_files_use_upstream_train(tmp_path: Path) -> None:
    # The truncated file is in the official schema, so it can stand in for train.json here.
    root = _layout(tmp_path, {"train.json": "train_truncated.json", "dev.json": "dev.json",
                              "test.json": "test.json"})
    st = ContractNLI().status([root])
    assert st.complete and not st.missing
    assert [(p.splits, p.size) for p in st.pools] == [
        (["train"], 850), (["val"], 1037), (["test"], 2091)]
    ex = ContractNLI().load_splits([root], n_train=17, n_val=17, n_test=17, seed=0)
    assert {e.split: e.meta["source"] for e in ex} == {
        "train": "train.json", "val": "dev.json", "test": "test.json"}


def test_splits_disjoint_by_document_and_deterministic(data: Path) -> None:
    task = ContractNLI()
    a = task.load_splits([data], seed=0)
    b = task.load_splits([data], seed=0)
    c = task.load_splits([data], seed=7)
    assert Counter(e.split for e in a) == {"train": 60, "val": 40, "test": 100}
    assert [(e.ext_id, e.split, e.text) for e in a] == [(e.ext_id, e.split, e.text) for e in b]
    assert {e.ext_id for e in a} != {e.ext_id for e in c}
    docs: dict[int, set[str]] = {}
    for e in a:
        docs.setdefault(e.meta["doc_id"], set()).add(e.split)
        want = {"test.json"} if e.split == "test" else {"train_truncated.json", "dev.json"}
        assert e.meta["source"] in want
    assert all(len(s) == 1 for s in docs.values()), "a document straddles splits"
    for split, n in (("train", 60), ("val", 40), ("test", 100)):
        got = Counter(e.label for e in a if e.split == split)
        assert set(got) == set(task.labels)
        share = got["Entailment"] / n
        assert 0.4 < share < 0.55, (split, got)


def test_long_documents_are_shortened_and_say_so(data: Path) -> None:
    task = ContractNLI()
    ex = task.load_splits([data], n_train=200, n_val=40, n_test=100, seed=0)
    budget = task.context_tokens * 4
    shortened = [e for e in ex if e.meta["shortened"]]
    assert len(shortened) > len(ex) / 2
    for e in ex:
        assert len(e.text) <= budget, (e.ext_id, len(e.text))
        m = NOTE.search(e.text)
        if e.meta["shortened"]:
            assert m is not None, e.text[:300]
            kept, total = int(m.group(1)), int(m.group(2))
            assert kept == len(e.meta["kept_spans"]) and total == e.meta["n_spans"]
            assert 0 < kept < total
            assert "[...]" in e.text
        else:
            assert m is None


def test_excerpt_keeps_document_order_and_relevant_passages(data: Path) -> None:
    task = ContractNLI()
    pool = task.pools([data])[0]
    dev = [it for it in pool.items if it.meta["source"] == "dev.json"
           and it.label != "NotMentioned"]
    rng = random.Random(0)
    hits = random_hits = n = 0
    for it in dev:
        e = task.example(it, "val")
        if not e.meta["shortened"]:
            continue
        n += 1
        kept = e.meta["kept_spans"]
        doc = it.fields["doc"]
        passages = [doc["text"][s:t].strip() for s, t in doc["spans"]]
        # Each kept passage is found after the previous one: the excerpt is in document order.
        lines = e.text.split("\n")
        body = [ln for ln in lines[lines.index(NOTE.search(e.text).group(0)) + 1:]
                if ln != "[...]"]
        assert body == [passages[i] for i in kept]
        gold = set(it.meta["evidence_spans"])
        hits += bool(gold & set(kept))
        random_hits += bool(gold & set(rng.sample(range(len(passages)), len(kept))))
    assert n > 400
    # BM25 finds an annotated evidence passage for almost every pair; chance would not.
    assert hits / n >= 0.9
    assert hits / n >= random_hits / n + 0.3


def test_budget_is_a_parameter(data: Path) -> None:
    item = next(it for it in ContractNLI().pools([data])[1].items
                if len(it.fields["doc"]["text"]) > 20000)
    small, large = ContractNLI(context_tokens=600), ContractNLI(context_tokens=3000)
    s, big = small.example(item, "test"), large.example(item, "test")
    assert len(s.meta["kept_spans"]) < len(big.meta["kept_spans"])
    assert len(s.text) <= 2400 and len(big.text) <= 12000
    whole = ContractNLI(context_tokens=20000).example(item, "test")
    assert not whole.meta["shortened"]
    assert item.fields["doc"]["text"].strip() in whole.text
    assert ContractNLI().params() == {"context_tokens": 1500}


def test_a_passage_longer_than_the_budget_is_cut_visibly() -> None:
    text = "Confidential Information includes trade secrets. " * 200
    doc = {"id": 1, "text": text, "spans": [[0, len(text)]]}
    item = Item("x", "Entailment", {"doc": doc, "hypothesis": "trade secrets"}, {})
    e = ContractNLI(context_tokens=200).example(item, "test")
    assert "[passage truncated]" in e.text and NOTE.search(e.text)
    assert e.meta["passage_truncated"] and len(e.text) <= 800


def test_bm25_prefers_rare_matching_terms() -> None:
    passages = ["The Agreement is governed by the laws of New York.",
                "Receiving Party shall not reverse engineer any prototypes.",
                "The Agreement shall be binding on the parties.",
                "Notices must be in writing."]
    scores = bm25_scores("Receiving Party shall not reverse engineer objects", passages)
    assert max(range(4), key=lambda i: scores[i]) == 1
    assert scores[3] == 0
