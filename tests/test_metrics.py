"""pld.metrics against scikit-learn on random data, unparseable answers, bootstrap CIs."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from pld.metrics import UNPARSEABLE, score

LABELS = ["yes", "no", "maybe"]


def _random(n: int, seed: int, p_correct: float = 0.6,
            p_none: float = 0.0) -> tuple[list[str], list[str | None]]:
    rng = np.random.default_rng(seed)
    gold = [LABELS[i] for i in rng.integers(0, len(LABELS), n)]
    pred: list[str | None] = []
    for g in gold:
        u = rng.random()
        if u < p_none:
            pred.append(None)
        elif u < p_none + p_correct:
            pred.append(g)
        else:
            pred.append(LABELS[int(rng.integers(0, len(LABELS)))])
    return gold, pred


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_point_estimates_equal_sklearn(seed: int) -> None:
    gold, pred = _random(200, seed)
    m = score(gold, pred, LABELS, n_boot=0)
    assert m["macro_f1"] == pytest.approx(
        f1_score(gold, pred, labels=LABELS, average="macro", zero_division=0))
    assert m["accuracy"] == pytest.approx(accuracy_score(gold, pred))
    p, r, f, s = precision_recall_fscore_support(gold, pred, labels=LABELS, zero_division=0)
    for i, label in enumerate(LABELS):
        assert m["per_label"][label] == pytest.approx(
            {"precision": p[i], "recall": r[i], "f1": f[i], "support": s[i]})
    assert m["confusion"]["rows"] == LABELS
    assert m["confusion"]["columns"] == LABELS
    assert m["confusion"]["matrix"] == confusion_matrix(gold, pred, labels=LABELS).tolist()
    assert m["n"] == 200 and m["n_unparseable"] == 0 and m["ci"] is None


def test_label_missing_from_a_sample_scores_zero_like_sklearn() -> None:
    gold = ["yes", "yes", "no", "no"]
    pred: list[str | None] = ["yes", "no", "no", "no"]
    m = score(gold, pred, LABELS, n_boot=0)
    assert m["per_label"]["maybe"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["macro_f1"] == pytest.approx(
        f1_score(gold, pred, labels=LABELS, average="macro", zero_division=0))


def test_unparseable_counts_as_wrong_and_gets_its_own_column() -> None:
    gold = ["yes", "no", "maybe", "yes"]
    pred: list[str | None] = ["yes", "no", "maybe", None]
    m = score(gold, pred, LABELS, n_boot=0)
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["n_unparseable"] == 1
    assert m["per_label"]["yes"]["recall"] == pytest.approx(0.5)
    assert m["per_label"]["yes"]["precision"] == pytest.approx(1.0)
    assert m["confusion"]["columns"] == [*LABELS, UNPARSEABLE]
    assert m["confusion"]["matrix"] == [[1, 0, 0, 1], [0, 1, 0, 0], [0, 0, 1, 0]]
    assert m["macro_f1"] < 1.0


@pytest.mark.parametrize("seed", [0, 5])
def test_unparseable_matches_sklearn_with_a_non_label_prediction(seed: int) -> None:
    gold, pred = _random(150, seed, p_none=0.2)
    as_wrong = ["__none__" if p is None else p for p in pred]
    m = score(gold, pred, LABELS, n_boot=0)
    assert m["n_unparseable"] == sum(p is None for p in pred) > 0
    assert m["macro_f1"] == pytest.approx(
        f1_score(gold, as_wrong, labels=LABELS, average="macro", zero_division=0))
    assert m["accuracy"] == pytest.approx(accuracy_score(gold, as_wrong))
    full = confusion_matrix(gold, as_wrong, labels=[*LABELS, "__none__"])
    assert m["confusion"]["matrix"] == full[: len(LABELS)].tolist()


def test_bootstrap_ci_is_the_percentile_interval_of_sklearn_scores() -> None:
    gold, pred = _random(60, 7, p_none=0.1)
    n_boot, seed = 50, 3
    m = score(gold, pred, LABELS, n_boot=n_boot, seed=seed)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(gold), size=(n_boot, len(gold)))
    y_pred = np.array(["__none__" if p is None else p for p in pred])
    y_gold = np.array(gold)
    f1s = [f1_score(y_gold[i], y_pred[i], labels=LABELS, average="macro", zero_division=0)
           for i in idx]
    accs = [accuracy_score(y_gold[i], y_pred[i]) for i in idx]
    assert m["ci"]["macro_f1"] == pytest.approx(list(np.quantile(f1s, [0.025, 0.975])))
    assert m["ci"]["accuracy"] == pytest.approx(list(np.quantile(accs, [0.025, 0.975])))
    assert m["ci"]["level"] == 0.95 and m["ci"]["n_boot"] == n_boot


def test_ci_contains_point_estimate_and_narrows_with_more_items() -> None:
    widths = []
    for n in (40, 2000):
        gold, pred = _random(n, 11, p_correct=0.7)
        m = score(gold, pred, LABELS, n_boot=500, seed=0)
        for key in ("macro_f1", "accuracy"):
            lo, hi = m["ci"][key]
            assert lo <= m[key] <= hi
        widths.append(m["ci"]["macro_f1"][1] - m["ci"]["macro_f1"][0])
    assert widths[1] < widths[0] / 3


def test_same_seed_same_ci_other_seed_other_ci() -> None:
    gold, pred = _random(80, 2)
    a = score(gold, pred, LABELS, seed=1)
    assert score(gold, pred, LABELS, seed=1)["ci"] == a["ci"]
    assert score(gold, pred, LABELS, seed=2)["ci"] != a["ci"]


@pytest.mark.parametrize(("gold", "pred", "why"), [
    (["yes"], [], "items"),
    ([], [], "no items"),
    (["perhaps"], ["yes"], "gold labels not in"),
    (["yes"], ["perhaps"], "predicted labels not in"),
])
def test_bad_input_is_rejected(gold: list[str], pred: list[str | None], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        score(gold, pred, LABELS)
