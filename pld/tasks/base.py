"""The task interface and the one deterministic, stratified split helper every task uses.

A task turns files on disk into labelled :class:`~pld.tasks.store.Example` rows. It knows its
label set, how an item is rendered as a model input, and which *pools* its splits are drawn
from: a benchmark may ship separate train/val/test files (three pools), only a development file
and a held-out test file (a train+val pool and a test pool), or a single file (one pool for all
three splits).

Split sizes (``n_train``, ``n_val``, ``n_test``) accept:

* ``None`` – the task's default (60/40/100 for the benchmarks, fractions for demo and custom);
* an int >= 1 – exactly that many items (BadInput if the pool is too small);
* ``0`` or ``"all"`` – every item of the split's pool that the other splits did not take;
* a float in (0, 1) – that fraction of the split's pool.

Splits are drawn held-out first (test, then val, then train; a split asking for "all" of its
pool comes last), so growing ``n_train`` never changes the validation or test items drawn with
the same seed.
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pld.errors import BadInput
from pld.tasks.store import SPLITS, Example

ALL = "all"
Size = int | float | str | None
#: Held-out splits are drawn first so that they do not depend on the training size.
DRAW_ORDER = ("test", "val", "train")
BENCHMARK_SIZES: dict[str, Size] = {"train": 60, "val": 40, "test": 100}

DataDir = Path | str | Sequence[Path | str] | None


@dataclass(frozen=True)
class Item:
    """A labelled candidate before it is assigned a split.

    ``group`` keeps related items (the three sentences of one StereoSet record, the 17
    hypotheses of one contract) in the same split. ``fields`` holds what :meth:`Task.render`
    needs; ``meta`` is stored with the example.
    """

    ext_id: str
    label: str
    fields: Mapping[str, Any]
    meta: Mapping[str, Any]
    group: str | None = None


@dataclass(frozen=True)
class Pool:
    """Items that one or more splits are drawn from, and the files they came from."""

    splits: tuple[str, ...]
    items: Sequence[Item]
    files: tuple[str, ...]


@dataclass
class PoolInfo:
    """A pool as reported by ``tasks``: which splits it feeds, its size and label counts."""

    splits: list[str]
    size: int
    files: list[str]
    label_counts: dict[str, int]


@dataclass
class TaskStatus:
    """What data a task finds, what is missing, and where each split will be drawn from."""

    name: str
    available: bool
    complete: bool
    files: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    notes: str = ""
    pools: list[PoolInfo] = field(default_factory=list)

    @property
    def pool_sizes(self) -> dict[str, int]:
        """Size of the pool each split is drawn from (a shared pool is counted per split)."""
        return {s: p.size for p in self.pools for s in p.splits}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``tasks --json``)."""
        d = asdict(self)
        d["pool_sizes"] = self.pool_sizes
        return d


def as_roots(data_dir: DataDir) -> list[Path]:
    """Normalise a data-dir argument to the list of folders searched for files, in order."""
    if data_dir is None:
        from pld.tasks import data_dirs  # late import: the package imports this module

        return data_dirs()
    if isinstance(data_dir, (str, Path)):
        return [Path(data_dir)]
    return [Path(d) for d in data_dir]


def find_file(roots: Sequence[Path], rel: str) -> Path | None:
    """The first ``root/rel`` that exists, else None."""
    for root in roots:
        p = root / rel
        if p.is_file():
            return p
    return None


def parse_size(value: Size) -> Size:
    """Normalise a user-given size: "all"/0 -> ``ALL``, digits -> int, "0.3" -> float."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise BadInput(f"split size {value!r}: expected a count, a fraction or 'all'")
    if isinstance(value, str):
        v = value.strip().lower()
        if v in ("all", "0", ""):
            return ALL
        try:
            num: float = float(v)
        except ValueError:
            raise BadInput(f"split size {value!r}: expected a count, a fraction or 'all'") from None
        value = int(num) if num.is_integer() and num >= 1 else num
    if isinstance(value, int):
        if value < 0:
            raise BadInput(f"split size {value}: must not be negative (0 or 'all' means all)")
        return ALL if value == 0 else value
    if isinstance(value, float):
        if value == 0:
            return ALL
        if not 0 < value < 1:
            if value.is_integer() and value > 1:
                return int(value)
            raise BadInput(f"split size {value}: a fraction must be between 0 and 1")
        return value
    raise BadInput(f"split size {value!r}: expected a count, a fraction or 'all'")


def resolve_counts(
    pool_size: int,
    splits: Sequence[str],
    requested: Mapping[str, Size],
    defaults: Mapping[str, Size],
    *,
    caps: Mapping[str, int] | None = None,
) -> dict[str, int | None]:
    """Turn requested sizes for the splits of one pool into counts (None = rest of the pool).

    Fractions are of ``pool_size``. Several "all" splits in one pool share what is left in
    proportion to their default sizes (or equally when those are not comparable). ``caps``
    bound the *default* sizes only (an explicit request is honoured as given).
    """
    sizes: dict[str, Size] = {}
    for s in splits:
        given = parse_size(requested.get(s))
        if given is None:
            given = parse_size(defaults.get(s))
            if isinstance(given, float) and caps and s in caps:
                given = min(max(1, round(given * pool_size)), caps[s])
        sizes[s] = given
    counts: dict[str, int | None] = {}
    for s, v in sizes.items():
        if isinstance(v, float):
            counts[s] = max(1, round(v * pool_size))
        elif isinstance(v, int):
            counts[s] = v
    alls = [s for s in splits if sizes[s] == ALL or sizes[s] is None]
    if len(alls) > 1:
        rest = pool_size - sum(c for c in counts.values() if c is not None)
        weights = [_weight(defaults.get(s)) for s in alls]
        total_w = sum(weights)
        for s, w in zip(alls[:-1], weights[:-1], strict=True):
            counts[s] = max(1, math.floor(rest * w / total_w))
    if alls:
        counts[alls[-1]] = None
    return counts


def _weight(default: Size) -> float:
    if isinstance(default, (int, float)) and not isinstance(default, bool) and default > 0:
        return float(default)
    return 1.0


def label_quotas(available: Mapping[str, int], need: int) -> dict[str, int]:
    """Split ``need`` over labels in proportion to ``available`` (largest remainder).

    Every label that has items gets at least one when ``need`` allows it, so that small
    splits still contain rare labels (macro-F1 needs them). Never exceeds availability.
    """
    labels = sorted(lab for lab, n in available.items() if n > 0)
    total = sum(available[lab] for lab in labels)
    if need <= 0 or total == 0:
        return {lab: 0 for lab in labels}
    exact = {lab: need * available[lab] / total for lab in labels}
    quotas = {lab: math.floor(x) for lab, x in exact.items()}
    short = need - sum(quotas.values())
    by_rest = sorted(labels, key=lambda lab: (-(exact[lab] - quotas[lab]), lab))
    for lab in by_rest:
        if short <= 0:
            break
        if quotas[lab] < available[lab]:
            quotas[lab] += 1
            short -= 1
    if need >= len(labels):
        for lab in labels:
            if quotas[lab] == 0:
                donor = max(labels, key=lambda x: (quotas[x], x))
                if quotas[donor] > 1:
                    quotas[donor] -= 1
                    quotas[lab] = 1
    return quotas


class PoolTooSmallError(Exception):
    """A split asked for more items than its pool has left (turned into BadInput by callers)."""

    def __init__(self, split: str, need: int, left: int) -> None:
        super().__init__(f"{split} needs {need}, {left} left")
        self.split, self.need, self.left = split, need, left


def stratified_split(
    items: Sequence[Item], counts: Mapping[str, int | None], *, seed: int,
) -> dict[str, list[Item]]:
    """Draw disjoint, label-stratified splits from one pool, deterministically from ``seed``.

    ``counts`` maps split -> number of items, or None for "every item left" (at most one).
    Items are first put in a canonical order (by ``ext_id``), so the result does not depend on
    the order of the source file. Items sharing a ``group`` always land in the same split;
    when there are enough groups, a split takes one item per group first, for variety.
    """
    rng = random.Random(seed)
    groups: dict[str, list[Item]] = {}
    for it in sorted(items, key=lambda i: i.ext_id):
        groups.setdefault(it.group if it.group is not None else it.ext_id, []).append(it)
    keys = sorted(groups)
    rng.shuffle(keys)
    for k in keys:
        rng.shuffle(groups[k])
    order = [s for s in DRAW_ORDER if s in counts] + [s for s in counts if s not in DRAW_ORDER]
    # "The rest of the pool" can only be known once every sized split has been drawn.
    order.sort(key=lambda s: counts[s] is None)
    remaining = keys
    out: dict[str, list[Item]] = {}
    for i, split in enumerate(order):
        left = [it for k in remaining for it in groups[k]]
        need = counts[split]
        if need is None:
            out[split] = left
            remaining = []
            continue
        if need > len(left):
            raise PoolTooSmallError(split, need, len(left))
        later = [counts[s] for s in order[i + 1:]]
        later_fixed = sum(c for c in later if c is not None)
        spread = None not in later and len(remaining) - need >= later_fixed
        quotas = label_quotas(Counter(it.label for it in left), need)
        chosen, used = _fill(remaining, groups, quotas, spread=spread)
        out[split] = chosen
        remaining = [k for k in remaining if k not in used]
    return out


def _fill(
    keys: list[str], groups: Mapping[str, list[Item]], quotas: dict[str, int], *, spread: bool,
) -> tuple[list[Item], set[str]]:
    need = dict(quotas)
    unmet = sum(need.values())
    chosen: list[Item] = []
    taken: set[str] = set()
    used: list[str] = []

    def take(it: Item) -> None:
        nonlocal unmet
        chosen.append(it)
        taken.add(it.ext_id)
        need[it.label] -= 1
        unmet -= 1

    if spread:
        for k in keys:
            if unmet == 0:
                break
            cands = [it for it in groups[k] if need.get(it.label, 0) > 0]
            if cands:
                take(max(cands, key=lambda it: need[it.label]))
                used.append(k)
        for k in used:
            for it in groups[k]:
                if unmet and it.ext_id not in taken and need.get(it.label, 0) > 0:
                    take(it)
    used_set = set(used)
    for k in keys:
        if unmet == 0:
            break
        if k in used_set:
            continue
        took = False
        for it in groups[k]:
            if unmet and need.get(it.label, 0) > 0:
                take(it)
                took = True
        if took:
            used_set.add(k)
    return chosen, used_set


SHAPES = ("single", "pair", "multiple-choice")


class Task(ABC):
    """A labelled classification task that can be loaded into a workspace.

    ``kind`` is ``"benchmark"`` (a published data set), ``"demo"`` (shipped in-house data) or
    ``"custom"`` (a user's file).
    """

    name: ClassVar[str]
    kind: ClassVar[str]
    description: ClassVar[str]
    labels: list[str]
    # How an input is built; it picks the form of the rules the teacher writes (see SHAPES).
    shape: ClassVar[str] = "single"
    default_sizes: ClassVar[Mapping[str, Size]] = BENCHMARK_SIZES
    default_caps: ClassVar[Mapping[str, int] | None] = None

    @abstractmethod
    def pools(self, data_dir: DataDir = None) -> list[Pool]:
        """The pools splits are drawn from; BadInput (naming the files) if the data is absent."""

    @abstractmethod
    def status(self, data_dir: DataDir = None) -> TaskStatus:
        """What is found under ``data_dir`` and what each split will be drawn from."""

    @abstractmethod
    def render(self, item: Item) -> str:
        """The exact model input for ``item``."""

    def example(self, item: Item, split: str) -> Example:
        """``item`` as a stored example of ``split``."""
        return Example(item.ext_id, split, self.render(item), item.label, dict(item.meta))

    @property
    def task_description(self) -> str:
        """The framing paragraph stored with a loaded task."""
        return self.description

    def params(self) -> dict[str, Any]:
        """Task options that change the rendered inputs (recorded with the loaded task)."""
        return {}

    def load_splits(
        self, data_dir: DataDir = None, *, n_train: Size = None, n_val: Size = None,
        n_test: Size = None, seed: int = 0,
    ) -> list[Example]:
        """Deterministic, stratified, disjoint train/val/test examples (train, val, test order)."""
        requested = {"train": n_train, "val": n_val, "test": n_test}
        chosen: dict[str, list[Item]] = {}
        for pool in self.pools(data_dir):
            counts = resolve_counts(len(pool.items), pool.splits, requested, self.default_sizes,
                                    caps=self.default_caps)
            try:
                chosen.update(stratified_split(pool.items, counts, seed=seed))
            except PoolTooSmallError as e:
                asked = " + ".join(f"{s} {c if c is not None else 'all'}"
                                   for s, c in counts.items())
                grouped = any(it.group is not None for it in pool.items)
                why = " (related items stay together in one split)" if grouped else ""
                raise BadInput(
                    f"task {self.name}: asked for {asked} from a pool of {len(pool.items)} "
                    f"items ({', '.join(pool.files)}); {e.split} is short by {e.need - e.left}"
                    f"{why}; ask for fewer or use 'all'"
                ) from None
        return [self.example(it, s) for s in SPLITS for it in chosen.get(s, [])]


def pool_info(pool: Pool) -> PoolInfo:
    """Summary of a pool for :class:`TaskStatus`."""
    return PoolInfo(list(pool.splits), len(pool.items), list(pool.files),
                    dict(sorted(Counter(it.label for it in pool.items).items())))
