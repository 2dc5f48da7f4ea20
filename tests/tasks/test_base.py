"""The shared split helper: sizes, quotas, determinism, disjointness, stratification, groups."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from pld.errors import BadInput
from pld.tasks.base import (
    ALL,
    Item,
    PoolTooSmallError,
    label_quotas,
    parse_size,
    resolve_counts,
    stratified_split,
)


def _items(n_by_label: dict[str, int], group_size: int = 1) -> list[Item]:
    out = []
    i = 0
    for label, n in n_by_label.items():
        for _ in range(n):
            group = f"g{i // group_size}" if group_size > 1 else None
            out.append(Item(f"it-{i:04d}", label, {}, {}, group=group))
            i += 1
    return out


def _ids(split: dict[str, list[Item]]) -> dict[str, list[str]]:
    return {s: [it.ext_id for it in items] for s, items in split.items()}


def test_parse_size_accepts_counts_fractions_and_all() -> None:
    assert parse_size(None) is None
    assert parse_size("all") == ALL
    assert parse_size(0) == ALL
    assert parse_size("0") == ALL
    assert parse_size("60") == 60
    assert parse_size(60) == 60
    assert parse_size("0.25") == 0.25
    assert parse_size(0.5) == 0.5
    for bad in (-1, "-3", "many", 1.5, True):
        with pytest.raises(BadInput, match="split size"):
            parse_size(bad)


def test_resolve_counts_rest_fractions_and_shared_all() -> None:
    defaults = {"train": 60, "val": 40, "test": 100}
    got = resolve_counts(651, ("train", "val"), {"train": "all"}, defaults)
    assert got == {"val": 40, "train": None}
    got = resolve_counts(651, ("train", "val"), {"train": 0, "val": 0}, defaults)
    # Two "all" splits share the pool 60:40; the last one takes whatever is left.
    assert got == {"train": 390, "val": None}
    got = resolve_counts(100, ("train", "val", "test"), {"val": 0.1}, {
        "train": 0.5, "val": 0.2, "test": 0.3})
    assert got == {"train": 50, "val": 10, "test": 30}
    capped = resolve_counts(1000, ("train", "val", "test"), {}, {
        "train": 0.5, "val": 0.2, "test": 0.3}, caps={"train": 60, "val": 40, "test": 100})
    assert capped == {"train": 60, "val": 40, "test": 100}
    explicit = resolve_counts(1000, ("train",), {"train": 0.5}, {"train": 0.5},
                              caps={"train": 60})
    assert explicit == {"train": 500}


def test_label_quotas_sum_cap_and_rare_labels() -> None:
    q = label_quotas({"a": 900, "b": 95, "c": 5}, 40)
    assert sum(q.values()) == 40
    assert q["c"] >= 1 and q["b"] >= 1
    assert q["a"] > q["b"] > 0
    q = label_quotas({"a": 3, "b": 1}, 4)
    assert q == {"a": 3, "b": 1}
    assert label_quotas({"a": 10, "b": 10}, 1) in ({"a": 1, "b": 0}, {"a": 0, "b": 1})


def test_split_sizes_disjoint_and_deterministic() -> None:
    items = _items({"x": 300, "y": 150, "z": 50})
    counts = {"train": 60, "val": 40, "test": 100}
    a = stratified_split(items, counts, seed=0)
    b = stratified_split(list(reversed(items)), counts, seed=0)
    c = stratified_split(items, counts, seed=1)
    assert {s: len(v) for s, v in a.items()} == counts
    ids = [i for v in _ids(a).values() for i in v]
    assert len(ids) == len(set(ids)) == 200
    assert _ids(a) == _ids(b), "input order must not matter"
    assert _ids(a) != _ids(c)
    assert set(_ids(a)["test"]) != set(_ids(c)["test"])


def test_split_is_stratified() -> None:
    items = _items({"x": 600, "y": 300, "z": 100})
    got = stratified_split(items, {"train": 100, "val": 50, "test": 200}, seed=3)
    for split, chosen in got.items():
        c = Counter(it.label for it in chosen)
        n = len(chosen)
        assert abs(c["x"] / n - 0.6) <= 0.02, split
        assert abs(c["y"] / n - 0.3) <= 0.02, split
        assert abs(c["z"] / n - 0.1) <= 0.02, split


def test_rest_of_pool_and_growing_train_keeps_heldout() -> None:
    items = _items({"x": 70, "y": 30})
    got = stratified_split(items, {"train": None, "val": 20, "test": 30}, seed=5)
    assert len(got["train"]) == 50
    assert not set(_ids(got)["train"]) & set(_ids(got)["test"])
    small = stratified_split(items, {"train": 10, "val": 20, "test": 30}, seed=5)
    big = stratified_split(items, {"train": 40, "val": 20, "test": 30}, seed=5)
    assert _ids(small)["test"] == _ids(big)["test"]
    assert _ids(small)["val"] == _ids(big)["val"]
    assert set(_ids(small)["train"]) <= set(_ids(big)["train"])


def test_groups_never_straddle_splits() -> None:
    items = _items({"x": 90, "y": 90, "z": 90}, group_size=1)
    # Regroup so that every group holds one item of each label (like a StereoSet record).
    by_label = {lab: [it for it in items if it.label == lab] for lab in "xyz"}
    grouped = [Item(it.ext_id, it.label, {}, {}, group=f"rec{k}")
               for lab in "xyz" for k, it in enumerate(by_label[lab])]
    got = stratified_split(grouped, {"train": 30, "val": 15, "test": 30}, seed=0)
    where: dict[str, set[str]] = {}
    for split, chosen in got.items():
        for it in chosen:
            where.setdefault(it.group or "", set()).add(split)
    assert all(len(s) == 1 for s in where.values())
    # Plenty of groups: one item per group, for variety.
    for chosen in got.values():
        assert len({it.group for it in chosen}) == len(chosen)
    # With "all" for train, the held-out splits pack their groups and leave the rest to train.
    packed = stratified_split(grouped, {"train": None, "val": 15, "test": 30}, seed=0)
    assert len(packed["train"]) == 270 - 45
    assert len({it.group for it in packed["test"]}) == 10


def test_pool_too_small() -> None:
    items = _items({"x": 5, "y": 5})
    with pytest.raises(PoolTooSmallError) as e:
        stratified_split(items, {"train": 6, "test": 5}, seed=0)
    assert e.value.split == "train" and e.value.left == 5


def test_random_pools_always_exact_and_disjoint() -> None:
    rng = random.Random(11)
    for _ in range(25):
        labels = {f"l{j}": rng.randint(1, 40) for j in range(rng.randint(2, 5))}
        items = _items(labels, group_size=rng.choice([1, 1, 3, 7]))
        n = len(items)
        test, val = rng.randint(1, n // 3), rng.randint(1, n // 4)
        try:
            got = stratified_split(items, {"train": None, "val": val, "test": test},
                                   seed=rng.randint(0, 10**6))
        except PoolTooSmallError:
            continue
        assert len(got["test"]) == test and len(got["val"]) == val
        ids = [it.ext_id for v in got.values() for it in v]
        assert len(ids) == len(set(ids))
