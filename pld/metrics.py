"""Classification scores for a student's predictions: macro-F1, accuracy, per-label P/R/F1,
confusion matrix and percentile-bootstrap 95% confidence intervals.

An unparseable prediction (``None``: the student named no label) always counts as wrong: it is
mapped to a sentinel that is not a label, so it is a false negative for the gold label and a
false positive for no label. Point estimates come from scikit-learn; the bootstrap recomputes
the same formulas with numpy over resampled items, which is what keeps 1000 resamples fast.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

UNPARSEABLE = "(unparseable)"
_SENTINEL = "\x00unparseable"
CI_LEVEL = 0.95


def _check(gold: list[str], pred: list[str | None], labels: list[str]) -> None:
    if len(gold) != len(pred):
        raise ValueError(f"gold has {len(gold)} items but pred has {len(pred)}")
    if not gold:
        raise ValueError("no items to score")
    if len(set(labels)) != len(labels) or not labels:
        raise ValueError(f"labels must be a non-empty list without duplicates: {labels}")
    unknown = sorted(set(gold) - set(labels))
    if unknown:
        raise ValueError(f"gold labels not in the label set {labels}: {unknown}")
    stray = sorted({p for p in pred if p is not None} - set(labels))
    if stray:
        raise ValueError(f"predicted labels not in the label set {labels}: {stray}")


def _bootstrap(
    gold_codes: np.ndarray, pred_codes: np.ndarray, n_labels: int, n_boot: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Macro-F1 and accuracy of ``n_boot`` resamples (items drawn with replacement)."""
    rng = np.random.default_rng(seed)
    n = len(gold_codes)
    f1s = np.empty(n_boot)
    accs = np.empty(n_boot)
    # Chunked so that memory stays bounded (chunk x n) on large test sets.
    chunk = max(1, min(n_boot, 2_000_000 // max(n, 1)))
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(size, n))
        g, p = gold_codes[idx], pred_codes[idx]
        hit = g == p
        accs[start:start + size] = hit.mean(axis=1)
        f1 = np.zeros(size)
        for label in range(n_labels):
            gl, pl = g == label, p == label
            tp = (gl & pl).sum(axis=1)
            denom = gl.sum(axis=1) + pl.sum(axis=1)
            # sklearn's F1 = 2tp / (2tp + fp + fn) = 2tp / (gold + pred); 0 when both are 0.
            f1 += np.divide(2 * tp, denom, out=np.zeros(size), where=denom > 0)
        f1s[start:start + size] = f1 / n_labels
    return f1s, accs


def _interval(values: np.ndarray) -> list[float]:
    alpha = (1 - CI_LEVEL) / 2
    lo, hi = np.quantile(values, [alpha, 1 - alpha])
    return [float(lo), float(hi)]


def score(
    gold: list[str],
    pred: list[str | None],
    labels: list[str],
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Score predictions against gold labels.

    Returns a JSON-ready dict: ``macro_f1``, ``accuracy``, ``per_label`` ({label: precision,
    recall, f1, support}), ``confusion`` ({rows: gold labels, columns: predicted labels plus
    ``"(unparseable)"`` when any prediction is None, matrix}), ``ci`` (percentile bootstrap
    95% intervals for macro-F1 and accuracy, resampling items with a numpy Generator seeded by
    ``seed``; None when ``n_boot`` is 0), ``n``, ``n_unparseable``, and ``top_answer`` with
    ``top_answer_share`` (the most frequent answer and the share of items that got it).
    """
    _check(gold, pred, labels)
    y_pred = [_SENTINEL if p is None else p for p in pred]
    macro_f1 = float(f1_score(gold, y_pred, labels=labels, average="macro", zero_division=0))
    accuracy = float(accuracy_score(gold, y_pred))
    precision, recall, f1, support = precision_recall_fscore_support(
        gold, y_pred, labels=labels, zero_division=0
    )
    per_label = {
        label: {"precision": float(precision[i]), "recall": float(recall[i]),
                "f1": float(f1[i]), "support": int(support[i])}
        for i, label in enumerate(labels)
    }
    n_unparseable = sum(p is None for p in pred)
    columns = list(labels) + ([UNPARSEABLE] if n_unparseable else [])
    cm_labels = list(labels) + ([_SENTINEL] if n_unparseable else [])
    matrix = confusion_matrix(gold, y_pred, labels=cm_labels)
    # Rows are gold labels only: the sentinel never appears in gold, so its row is all zeros.
    rows = matrix[: len(labels)].tolist()

    ci = None
    if n_boot > 0:
        code = {label: i for i, label in enumerate(labels)}
        gold_codes = np.array([code[g] for g in gold])
        pred_codes = np.array([code.get(p, len(labels)) for p in y_pred])
        f1s, accs = _bootstrap(gold_codes, pred_codes, len(labels), n_boot, seed)
        ci = {"level": CI_LEVEL, "n_boot": n_boot, "seed": seed,
              "macro_f1": _interval(f1s), "accuracy": _interval(accs)}

    return {
        "macro_f1": macro_f1,
        "accuracy": accuracy,
        "per_label": per_label,
        "confusion": {"rows": list(labels), "columns": columns, "matrix": rows},
        "ci": ci,
        "n": len(gold),
        "n_unparseable": n_unparseable,
        **_top_answer(pred),
    }


def _top_answer(pred: list[str | None]) -> dict[str, Any]:
    """The most frequent answer and its share: a student that answers one label for almost
    everything must show it beside its scores."""
    counts = Counter(UNPARSEABLE if p is None else p for p in pred)
    answer, n = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
    return {"top_answer": answer, "top_answer_share": n / len(pred)}


def paired_delta(
    gold: list[str],
    pred_a: list[str | None],
    pred_b: list[str | None],
    labels: list[str],
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Macro-F1 of ``pred_a`` minus that of ``pred_b`` on the same items, with a paired
    percentile-bootstrap 95% interval (each resample draws the same items for both).

    Returns ``delta``, ``ci`` ([low, high], None when ``n_boot`` is 0), and the items ``a``
    gets right that ``b`` gets wrong (``a_only_right``) and the reverse (``b_only_right``), as
    positions in ``gold``.
    """
    _check(gold, pred_a, labels)
    _check(gold, pred_b, labels)
    delta = score(gold, pred_a, labels, n_boot=0)["macro_f1"] - score(
        gold, pred_b, labels, n_boot=0)["macro_f1"]
    ci = None
    if n_boot > 0:
        code = {label: i for i, label in enumerate(labels)}
        g = np.array([code[x] for x in gold])
        a = np.array([code.get(x, len(labels)) if x is not None else len(labels) for x in pred_a])
        b = np.array([code.get(x, len(labels)) if x is not None else len(labels) for x in pred_b])
        # The same seed draws the same resampled items for both: the difference is paired.
        f1_a, _ = _bootstrap(g, a, len(labels), n_boot, seed)
        f1_b, _ = _bootstrap(g, b, len(labels), n_boot, seed)
        ci = _interval(f1_a - f1_b)
    right_a = [p == x for p, x in zip(pred_a, gold, strict=True)]
    right_b = [p == x for p, x in zip(pred_b, gold, strict=True)]
    return {"delta": float(delta), "ci": ci,
            "a_only_right": [i for i, (ra, rb) in enumerate(zip(right_a, right_b, strict=True))
                             if ra and not rb],
            "b_only_right": [i for i, (ra, rb) in enumerate(zip(right_a, right_b, strict=True))
                             if rb and not ra]}
