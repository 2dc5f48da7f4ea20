"""LogiQA: counts, positional option parsing of the upstream typos, pools and splits."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from pld.errors import BadInput
from pld.tasks import REPO_ROOT
from pld.tasks.logiqa import LogiQA, read_examples, strip_prefix

SHARED = REPO_ROOT.parent / "shared" / "data"
EVAL, TEST = SHARED / "logiqa" / "Eval.txt", SHARED / "logiqa" / "Test.txt"


@pytest.fixture(scope="module")
def data() -> Path:
    # CI has ../shared/data: a missing folder is a failure, never a skip.
    assert EVAL.is_file() and TEST.is_file(), f"benchmark data missing under {SHARED}"
    return SHARED


def test_counts_match_the_data_readme(data: Path) -> None:
    st = LogiQA().status([data])
    assert st.available and not st.complete and st.missing == ["logiqa/Train.txt"]
    assert "Eval.txt" in st.notes and "Test.txt" in st.notes and "partial" in st.notes
    trainval, test = st.pools
    assert trainval.splits == ["train", "val"] and trainval.size == 651
    assert trainval.label_counts == {"A": 109, "B": 122, "C": 150, "D": 270}
    assert test.splits == ["test"] and test.size == 651
    assert test.label_counts == {"A": 132, "B": 159, "C": 179, "D": 181}


def test_options_are_parsed_by_position(data: Path) -> None:
    ev, te = read_examples(EVAL), read_examples(TEST)
    assert all(len(ex["options"]) == 4 and all(ex["options"]) for ex in ev + te)
    # Each option is its line at that position, less at most one short letter prefix (some
    # options really start with a letter, e.g. "A.A.C, D are playing ..." -> "A.C, D are ...").
    for path, parsed in ((EVAL, ev), (TEST, te)):
        lines = path.read_text(encoding="utf-8").split("\n")
        for ex in parsed:
            raw = lines[ex["index"] * 8 + 4: ex["index"] * 8 + 8]
            for line, opt in zip(raw, ex["options"], strict=True):
                assert line.endswith(opt) and len(line) - len(opt) <= 3, (line, opt)
                if re.match(r"^[A-D][.?]", line):
                    assert line[2:].strip() == opt
    # Eval example 27: C and D have the letter inside the text ("the C.S City market").
    ex = ev[27]
    assert ex["options"][2] == "Most of the spirits on the C.S City market come from other cities."
    assert ex["options"][3].startswith("The economic income of D.S City")
    assert ex["prefix_issues"] == ["option C: prefix missing", "option D: prefix missing"]
    # Eval example 39: a lowercase "d." prefix.
    assert ev[39]["options"][3].startswith("The fertility rate is not directly proportional")
    # Eval example 532: an option that starts with the article "A" keeps it.
    assert ev[532]["options"][2].startswith("A small amount of cultivated land in C.A area")
    # Test example 2: bare "A " prefixes on all four options, one in Chinese.
    assert te[2]["options"] == ["No dangshen", "No Shouwu", "有 白 术", "不 白 术"]
    # Test example 10: "A?" style prefixes.
    assert te[10]["options"][0].startswith("Many Chinese people buy homes")
    # Test example 108: prefixes out of order (B and C swapped): the position decides.
    assert te[108]["options"][1] == "No.3 valve and No.5 valve."
    assert "option B: prefix C" in te[108]["prefix_issues"]


def test_strip_prefix_rules() -> None:
    block = ["A small amount is used.", "B.Two", "C.Three", "D.Four"]
    assert strip_prefix(block[0], 0, block) == ("A small amount is used.", None)
    assert strip_prefix("A The brain adapts.", 0, ["A The brain adapts.", "B.x", "C.y", "D.z"]) \
        == ("The brain adapts.", "A")
    assert strip_prefix("b. lower", 1, block) == ("lower", "B")
    assert strip_prefix("C．Full-width dot", 2, block) == ("Full-width dot", "C")
    assert strip_prefix("Plain text", 3, block) == ("Plain text", None)


def test_render_and_labels(data: Path) -> None:
    task = LogiQA()
    ex = task.load_splits([data], seed=0)
    for e in ex:
        assert e.label in {"A", "B", "C", "D"}
        lines = e.text.split("\n")
        assert [ln[:3] for ln in lines[-4:]] == ["A. ", "B. ", "C. ", "D. "]
        assert lines[-5].startswith("Question: ")
    e = next(x for x in ex)
    raw = read_examples(EVAL if e.meta["file"] == "Eval.txt" else TEST)[e.meta["index"]]
    assert e.text.startswith(raw["context"])


def test_splits(data: Path) -> None:
    task = LogiQA()
    a = task.load_splits([data], seed=0)
    b = task.load_splits([data], seed=0)
    c = task.load_splits([data], seed=1)
    assert Counter(e.split for e in a) == {"train": 60, "val": 40, "test": 100}
    assert [(e.ext_id, e.split) for e in a] == [(e.ext_id, e.split) for e in b]
    assert {e.ext_id for e in a} != {e.ext_id for e in c}
    assert len({e.ext_id for e in a}) == 200
    assert {e.meta["file"] for e in a if e.split != "test"} == {"Eval.txt"}
    assert {e.meta["file"] for e in a if e.split == "test"} == {"Test.txt"}
    pool = {"A": 132, "B": 159, "C": 179, "D": 181}
    got = Counter(e.label for e in a if e.split == "test")
    for k, n in pool.items():
        assert abs(got[k] - 100 * n / 651) <= 1, got
    every = task.load_splits([data], n_train="all", n_val=40, n_test=0, seed=0)
    assert Counter(e.split for e in every) == {"train": 611, "val": 40, "test": 651}
    same_val = {e.ext_id for e in every if e.split == "val"}
    assert same_val == {e.ext_id for e in a if e.split == "val"}
    with pytest.raises(BadInput, match=r"logiqa: asked for train 620 \+ val 40 .*Eval\.txt"):
        task.load_splits([data], n_train=620, n_val=40, seed=0)


def _block(answer: str, n: int) -> list[str]:
    return ["", answer, f"Context {n}.", f"Question {n}?",
            f"A.first {n}", f"B.second {n}", f"C.third {n}", f"D.fourth {n}"]


def test_complete_files_give_three_pools(data: Path, tmp_path: Path) -> None:
    (tmp_path / "logiqa").mkdir()
    lines = [x for n in range(24) for x in _block("abcd"[n % 4], n)]
    (tmp_path / "logiqa" / "Train.txt").write_text("\n".join(lines), encoding="utf-8")
    st = LogiQA().status([tmp_path, data])
    assert st.complete and not st.missing
    assert [(p.splits, p.size) for p in st.pools] == [(["train"], 24), (["val"], 651),
                                                      (["test"], 651)]
    ex = LogiQA().load_splits([tmp_path, data], n_train=8, seed=0)
    assert {e.meta["file"] for e in ex if e.split == "train"} == {"Train.txt"}
    assert {e.meta["file"] for e in ex if e.split == "val"} == {"Eval.txt"}
    assert Counter(e.label for e in ex if e.split == "train") == {k: 2 for k in "ABCD"}


def test_malformed_file(tmp_path: Path) -> None:
    (tmp_path / "logiqa").mkdir()
    (tmp_path / "logiqa" / "Eval.txt").write_text("\n".join(_block("a", 0)[:7]))
    (tmp_path / "logiqa" / "Test.txt").write_text("\n".join(_block("e", 0)))
    with pytest.raises(BadInput, match=r"Eval\.txt: 7 lines is not a multiple of 8"):
        LogiQA().pools([tmp_path])
    (tmp_path / "logiqa" / "Eval.txt").write_text("\n".join(_block("a", 0)))
    with pytest.raises(BadInput, match=r"Test\.txt line 2: field 'answer'"):
        LogiQA().pools([tmp_path])
    st = LogiQA().status([tmp_path / "none"])
    assert not st.available and "download logiqa" in st.notes
