"""The in-house demo task: shipped data, label set, stratified small splits."""

from __future__ import annotations

import json
from collections import Counter

from pld.tasks import load_task
from pld.tasks.demo import DEMO_FILE, DEMO_LABELS, DemoTask
from pld.tasks.store import examples, task_info
from pld.workspace import Workspace


def test_file_has_80_to_120_distinct_items_with_all_labels() -> None:
    rows = [json.loads(x) for x in DEMO_FILE.read_text(encoding="utf-8").splitlines() if x]
    assert 80 <= len(rows) <= 120
    assert len({r["id"] for r in rows}) == len(rows)
    assert len({r["text"] for r in rows}) == len(rows)
    counts = Counter(r["label"] for r in rows)
    assert set(counts) == set(DEMO_LABELS)
    assert min(counts.values()) >= 0.2 * len(rows)
    # Written, not templated: no two items open with the same four words.
    openings = Counter(" ".join(r["text"].lower().split()[:4]) for r in rows)
    assert openings.most_common(1)[0][1] == 1, openings.most_common(3)


def test_every_label_in_every_split_by_default() -> None:
    ex = DemoTask().load_splits(seed=0)
    n = len(ex)
    sizes = Counter(e.split for e in ex)
    assert sizes == {"train": round(0.5 * n), "val": round(0.2 * n), "test": round(0.3 * n)}
    for split in ("train", "val", "test"):
        assert set(Counter(e.label for e in ex if e.split == split)) == set(DEMO_LABELS)
    for seed in range(1, 6):
        other = DemoTask().load_splits(seed=seed)
        for split in ("train", "val", "test"):
            assert set(Counter(e.label for e in other if e.split == split)) == set(DEMO_LABELS)


def test_status_and_load_into_workspace(ws: Workspace) -> None:
    st = DemoTask().status()
    assert st.available and st.complete and "no download" in st.notes
    counts = load_task(ws, "demo")
    assert counts == {"train": 50, "val": 20, "test": 30}
    info = task_info(ws, "demo")
    assert info.kind == "demo" and info.labels == DEMO_LABELS
    assert "compliance desk" in info.description.lower()
    rows = examples(ws, "demo", "test")
    assert len(rows) == 30 and all(r["ext_id"].startswith("cd-") for r in rows)
    assert all(json.loads(r["meta"])["fields"]["channel"] for r in rows)
