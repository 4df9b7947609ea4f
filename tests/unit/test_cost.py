"""What the predictions cost: from the counters, the same as priced row by row, with the same
interval, for each task."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy import stats

from tests.support.monitors import churn_monitor
from tests.unit import test_estimate as estimated
from tests.unit import test_lossmodel as losses
from truthloop.core import calibration, cost, estimate, evaluation, metrics
from truthloop.core.join import PREDICTIONS_KEY
from truthloop.core.profile import build
from truthloop.core.spec import CostCell, CostSpec, MonitorSpec


def by_rows(rows: np.ndarray) -> tuple[float, float, float]:
    """The mean cost per prediction and its 95% Student-t interval, from each row's cost."""
    mean = float(rows.mean())
    half = stats.t.ppf(0.975, len(rows) - 1) * rows.std(ddof=1) / math.sqrt(len(rows))
    return mean, mean - half, mean + half


def check(found: dict[str, metrics.Estimate], rows: np.ndarray) -> None:
    mean, lower, upper = by_rows(rows)
    priced = found["cost"]
    assert priced.value == pytest.approx(mean, rel=1e-9)
    assert priced.lower == pytest.approx(lower, rel=1e-6)
    assert priced.upper == pytest.approx(upper, rel=1e-6)
    total = found["cost_total"]
    assert total.value == pytest.approx(rows.sum(), rel=1e-9)
    assert total.lower == pytest.approx(lower * len(rows), rel=1e-6)


def test_a_binary_cost_prices_each_cell_and_takes_off_the_gains() -> None:
    rng = np.random.default_rng(0)
    predicted = rng.integers(0, 2, 500)
    actual = np.where(rng.random(500) < 0.8, predicted, 1 - predicted)
    spec = CostSpec(false_positive=5, false_negative=50, true_positive=2, true_negative=0.5)
    counters: dict[str, float] = {}
    for p, a in zip(predicted.tolist(), actual.tolist(), strict=True):
        metrics.tally(counters, "binary", p, a)
    table = {(1, 0): 5.0, (0, 1): 50.0, (1, 1): -2.0, (0, 0): -0.5}
    rows = np.array([table[p, a] for p, a in zip(predicted, actual, strict=True)])
    check(cost.realized("binary", counters, spec), rows)


def test_a_multiclass_cost_prices_the_matrix_and_nothing_else() -> None:
    rng = np.random.default_rng(1)
    classes = ["cat", "dog", "1"]
    predicted = rng.choice(classes, 400)
    actual = np.where(rng.random(400) < 0.7, predicted, rng.choice(classes, 400))
    spec = CostSpec(
        matrix=(CostCell("cat", "dog", 3), CostCell("dog", "cat", 1), CostCell("1", "1", 0.5))
    )
    counters: dict[str, float] = {}
    for p, a in zip(predicted.tolist(), actual.tolist(), strict=True):
        metrics.tally(counters, "multiclass", 1 if p == "1" else p, a)  # 1 and "1" are one class
    metrics.tally_vote(counters, "multiclass", "cat", False)  # no pair: left out
    prices = {("cat", "dog"): 3.0, ("dog", "cat"): 1.0, ("1", "1"): 0.5}
    rows = np.array([prices.get((a, p), 0.0) for p, a in zip(predicted, actual, strict=True)])
    check(cost.realized("multiclass", counters, spec), rows)


def test_a_regression_cost_prices_over_and_under_prediction_per_unit() -> None:
    rng = np.random.default_rng(2)
    actual = rng.normal(100, 10, 300)
    prediction = actual + rng.normal(1, 5, 300)
    prediction[:5] = actual[:5]  # exact: free
    spec = CostSpec(over_prediction=1.5, under_prediction=4)
    counters: dict[str, float] = {}
    for p, a in zip(prediction.tolist(), actual.tolist(), strict=True):
        metrics.tally(counters, "regression", p, a)
    e = prediction - actual
    rows = np.where(e > 0, 1.5 * e, -4 * e)
    check(cost.realized("regression", counters, spec), rows)

    # buckets from before se2o and se2u: the same value, an interval that still holds it
    old = {k: v for k, v in counters.items() if k not in ("se2o", "se2u")}
    wider = cost.realized("regression", old, spec)["cost"]
    exact = cost.realized("regression", counters, spec)["cost"]
    assert wider.value == exact.value
    assert wider.lower is not None
    assert exact.lower is not None
    assert wider.upper is not None
    assert exact.upper is not None
    assert wider.lower <= exact.lower
    assert wider.upper >= exact.upper


def test_the_window_shows_cost_only_when_the_spec_prices_mistakes() -> None:
    counters = {PREDICTIONS_KEY: 4, "tp": 1, "fp": 2, "tn": 1}
    spec = CostSpec(false_positive=10, false_negative=1)
    priced = evaluation.evaluate("binary", counters, spec)
    assert priced.metrics["cost"].value == 5.0
    assert priced.metrics["cost_total"].value == 20.0
    assert "cost" not in evaluation.evaluate("binary", counters).metrics
    empty = evaluation.evaluate("binary", {}, spec)
    assert empty.metrics["cost"] == metrics.Estimate(None)
    groups = evaluation.evaluate_groups("binary", {("v1", "model"): counters}, spec)
    assert groups[evaluation.ALL_VERSIONS, "model"].metrics["cost"].value == 5.0
    (point,) = evaluation.series("binary", {0: {("v1", "model"): counters}}, 1, spec)
    assert point.metrics["cost"].value == 5.0


# -- estimated before labels -------------------------------------------------------------------

BINARY_COST = CostSpec(false_positive=5, false_negative=20, true_positive=3, true_negative=1)


def priced_spec(task: str, price: CostSpec) -> MonitorSpec:
    spec = (losses.monitor(task) if task == "regression" else churn_monitor(task)).spec
    return dataclasses.replace(spec, metrics=dataclasses.replace(spec.metrics, cost=price))


def test_the_binary_estimate_prices_the_expected_confusion_matrix() -> None:
    rng = np.random.default_rng(5)
    ref = estimated.reference_of(rng)
    assert isinstance(ref.profile.calibration, calibration.BinaryCalibration)
    score = estimated.sigmoid(1.5 * rng.normal(0.3, 1.2, 20_000))
    predicted = (score >= 0.5).astype(np.intp)
    spec = priced_spec("binary", BINARY_COST)
    found = estimate.evaluate(ref, estimated.counters_of(3, score, predicted), spec)
    table = calibration.table(ref.profile.calibration.curve)
    p = table[calibration.bins(score)]
    each = np.where(predicted == 1, (1 - p) * 5 - p * 3, p * 20 - (1 - p) * 1)
    assert found["cost"].value == pytest.approx(each.mean(), rel=1e-9)
    assert found["cost_total"].value == pytest.approx(each.sum(), rel=1e-9)
    assert "accuracy" in found
    assert "cost" not in estimate.evaluate(
        ref, estimated.counters_of(3, score, predicted), churn_monitor().spec
    )


def test_the_binary_cost_band_covers_the_realized_cost_under_covariate_shift() -> None:
    rng = np.random.default_rng(6)
    ref = estimated.reference_of(rng)
    spec = priced_spec("binary", BINARY_COST)
    windows, inside = 150, 0
    for i in range(windows):
        score = estimated.sigmoid(2 * rng.normal(1.5 * i / windows, 1.0, 500))
        actual = rng.uniform(size=500) < score  # calibrated: P(y | score) holds
        predicted = (score >= 0.5).astype(np.intp)
        band = estimate.evaluate(ref, estimated.counters_of(3, score, predicted), spec)["cost"]
        realized = np.where(
            predicted == 1, np.where(actual, -3.0, 5.0), np.where(actual, 20.0, -1.0)
        ).mean()
        assert band.lower is not None
        assert band.upper is not None
        inside += band.lower <= realized <= band.upper
    assert inside / windows >= 0.9


def test_the_regression_cost_band_covers_the_realized_cost_under_covariate_shift() -> None:
    data = losses.generate(np.random.default_rng(1), 20_000)
    profile, _ = build(data.table(), losses.monitor().spec)
    assert profile.loss is not None
    price = CostSpec(over_prediction=1.0, under_prediction=3.0)
    spec = priced_spec("regression", price)
    rng = np.random.default_rng(7)
    windows, inside = 120, 0
    for i in range(windows):
        data = losses.generate(rng, 400, shift=1.5 * i / windows)
        band = estimate.evaluate(losses.reference(profile), losses.window(profile.loss, data), spec)
        e = data.prediction - data.actual
        realized = np.where(e > 0, e, -3.0 * e).mean()
        assert band["cost"].lower is not None
        assert band["cost"].upper is not None
        inside += band["cost"].lower <= realized <= band["cost"].upper
        assert band["cost_total"].value == pytest.approx(band["cost"].value * 400)
    assert inside / windows >= 0.9


MATRIX = CostSpec(
    matrix=(
        CostCell("ant", "bee", 4),
        CostCell("bee", "ant", 1),
        CostCell("cat", "ant", 10),
        CostCell("cat", "cat", 0.5),
        CostCell("dog", "ant", 99),  # a class the calibration does not know: never priced
    )
)
PRICES = np.array([[0, 4, 0], [1, 0, 0], [10, 0, 0.5]])  # [actual, predicted]


def test_the_multiclass_estimate_prices_the_expected_confusion_matrix() -> None:
    rng = np.random.default_rng(33)
    ref = estimated.multiclass_reference(rng, rows=20_000)
    found = ref.profile.calibration
    assert isinstance(found, calibration.MulticlassCalibration)
    probs, _ = estimated.multiclass_model(rng, 0.4, 3000)
    predicted = probs.argmax(axis=1)
    counters = estimated.multiclass_counters(ref, probs, predicted)
    got = estimate.evaluate(ref, counters, priced_spec("multiclass", MATRIX))
    q = calibration.probabilities(found, probs)
    each = (q * PRICES[:, predicted].T).sum(axis=1)  # expected cost of each row
    assert got["cost"].value == pytest.approx(each.mean(), rel=1e-9)
    assert got["cost_total"].value == pytest.approx(each.sum(), rel=1e-9)


def test_the_multiclass_cost_band_covers_the_realized_cost_under_covariate_shift() -> None:
    rng = np.random.default_rng(34)
    ref = estimated.multiclass_reference(rng)
    spec = priced_spec("multiclass", MATRIX)
    windows, inside = 100, 0
    for shift in np.linspace(-0.8, 0.8, windows):
        probs, actual = estimated.multiclass_model(rng, shift, 1000)
        predicted = probs.argmax(axis=1)
        got = estimate.evaluate(ref, estimated.multiclass_counters(ref, probs, predicted), spec)
        realized = PRICES[actual, predicted].mean()
        band = got["cost"]
        assert band.lower is not None
        assert band.upper is not None
        inside += band.lower <= realized <= band.upper
    assert inside / windows >= 0.9
