"""Reference chunks: each metric's spread over chunks of a window's size drawn from the
reference's labeled counts matches chunks of the raw rows, and the suggested threshold is
mean - 3 std."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from tests.support.monitors import churn_monitor
from tests.unit.test_estimate import CLASSES, LABELS, PREDICTION, T0, sigmoid
from truthloop.core import calibration, chunks, metrics
from truthloop.core.profile import Profile, Reference


def test_binary_chunks_spread_as_chunks_of_the_raw_rows() -> None:
    rng = np.random.default_rng(8)
    n, size = 60_000, 400
    score = sigmoid(2 * rng.normal(size=n))
    actual = (rng.uniform(size=n) < score).astype(np.intp)
    predicted = (score >= 0.5).astype(np.intp)
    fitted = calibration.fit_binary(score, predicted, actual)
    ref = Reference(1, "", T0, "upload", Profile(n, (PREDICTION,), fitted))
    got = chunks.spread(ref, churn_monitor().spec, size)
    assert got is not None
    assert (got.rows, got.count) == (size, chunks.CHUNKS)
    raw: dict[str, list[float]] = {"accuracy": [], "recall": [], "roc_auc": []}
    for start in range(0, n, size):  # the raw reference's own chunks
        a, p, s = (
            actual[start : start + size],
            predicted[start : start + size],
            score[start : start + size],
        )
        raw["accuracy"].append(float(np.mean(a == p)))
        raw["recall"].append(float(np.sum(a & p) / np.sum(a)))
        raw["roc_auc"].append(float(roc_auc_score(a, s)))
    for name, values in raw.items():
        spread = got.metrics[name]
        assert spread.mean == pytest.approx(np.mean(values), abs=0.01), name
        assert spread.std == pytest.approx(np.std(values, ddof=1), rel=0.25), name
        assert spread.threshold == max(spread.mean - 3 * spread.std, 0.0)
    whole = metrics.evaluate(
        "binary",
        {
            "tp": float(np.sum(actual & predicted)),
            "fp": float(np.sum(~actual.astype(bool) & predicted.astype(bool))),
            "tn": float(np.sum((actual == 0) & (predicted == 0))),
            "fn": float(np.sum((actual == 1) & (predicted == 0))),
        },
    )
    for name in ("precision", "f1", "specificity", "balanced_accuracy"):
        assert got.metrics[name].mean == pytest.approx(whole[name].value, abs=0.01), name
    assert chunks.spread(ref, churn_monitor().spec, size) == got  # seeded: the same answer


def test_multiclass_chunks_and_nothing_without_a_calibration() -> None:
    rng = np.random.default_rng(9)
    n = 30_000
    actual = rng.choice(3, size=n, p=[0.5, 0.3, 0.2])
    predicted = np.where(rng.uniform(size=n) < 0.8, actual, rng.choice(3, size=n))
    scores = np.full((n, 3), 1 / 3)
    fitted = calibration.fit_multiclass(
        CLASSES, scores, [CLASSES[i] for i in predicted], [CLASSES[i] for i in actual]
    )
    ref = Reference(2, "", T0, "upload", Profile(n, (LABELS,), fitted))
    got = chunks.spread(ref, churn_monitor("multiclass").spec, 300)
    assert got is not None
    assert set(got.metrics) == set(metrics.METRIC_NAMES["multiclass"])
    accuracy = float(np.mean(actual == predicted))
    assert got.metrics["accuracy"].mean == pytest.approx(accuracy, abs=0.01)
    assert got.metrics["accuracy"].std == pytest.approx(
        np.sqrt(accuracy * (1 - accuracy) / 300), rel=0.2
    )
    assert got.metrics["micro_f1"] == got.metrics["accuracy"]
    bare = Reference(3, "", T0, "upload", Profile(n, (LABELS,)))
    assert chunks.spread(bare, churn_monitor("multiclass").spec, 300) is None
    assert chunks.spread(ref, churn_monitor("binary").spec, 300) is None


def test_a_metric_undefined_in_most_chunks_is_left_out() -> None:
    # one positive in 1,000 rows: chunks of 5 rows almost never have one
    score = np.r_[np.full(999, 0.1), 0.9]
    actual = np.r_[np.zeros(999, dtype=np.intp), 1]
    fitted = calibration.fit_binary(score, (score >= 0.5).astype(np.intp), actual)
    ref = Reference(1, "", T0, "upload", Profile(1000, (PREDICTION,), fitted))
    got = chunks.spread(ref, churn_monitor().spec, 5)
    assert got is not None
    assert "recall" not in got.metrics
    assert got.metrics["accuracy"].mean == pytest.approx(1.0, abs=0.01)


def test_regression_chunks_spread_as_chunks_of_the_raw_errors() -> None:
    """A loss model keeps the errors' quantiles; chunks drawn from them spread as the raw
    reference's own chunks do, and their thresholds lie above (lower is better)."""
    from tests.unit.test_lossmodel import generate
    from tests.unit.test_lossmodel import monitor as regression
    from truthloop.core.profile import build

    data = generate(np.random.default_rng(9), 40_000)
    profile, _ = build(data.table(), regression().spec)
    assert profile.loss is not None
    assert len(profile.loss.errors) == 1000
    ref = Reference(2, "", T0, "upload", profile)
    e = data.prediction - data.actual
    for size in (200, 2_000):
        got = chunks.spread(ref, regression().spec, size)
        assert got is not None
        raw = e[: len(e) // size * size].reshape(-1, size)
        rmse = np.sqrt(np.mean(e * e))
        for name, values, analytic in (
            ("mae", np.abs(raw).mean(axis=1), np.abs(e).std() / np.sqrt(size)),
            # the delta method: sd(e²) / (2 rmse sqrt(n))
            ("rmse", np.sqrt((raw * raw).mean(axis=1)), (e * e).std() / (2 * rmse * np.sqrt(size))),
        ):
            spread = got.metrics[name]
            assert spread.mean == pytest.approx(values.mean(), rel=0.02), name
            assert spread.std == pytest.approx(analytic, rel=0.15), name
            if len(values) >= 100:  # enough of the raw reference's own chunks to compare
                assert spread.std == pytest.approx(values.std(ddof=1), rel=0.25), name
            assert spread.alert == "above"
            assert spread.threshold == spread.mean + 3 * spread.std
    big = chunks.spread(ref, regression().spec, 1_000_000)
    small = chunks.spread(ref, regression().spec, 10_000)
    assert big is not None
    assert small is not None
    assert big.metrics["mae"].std == pytest.approx(small.metrics["mae"].std / 10, rel=1e-9)
