"""core.compare on synthetic versions of known difference."""

from __future__ import annotations

import math

import pytest

from truthloop.core import compare, evaluation, intervals, metrics
from truthloop.core.evaluation import Evaluated
from truthloop.core.metrics import Estimate
from truthloop.core.review import Reviewed


def binary(n: int, accuracy: float) -> Evaluated:
    """A window of n labeled binary predictions, half positive, right at `accuracy` in both
    classes."""
    half = n // 2
    right = round(half * accuracy)
    counters = {"tp": right, "fn": half - right, "tn": right, "fp": half - right}
    return evaluation.evaluate("binary", {"@predictions": n, **counters})


def regression(n: int, mean_error: float, spread: float = 1.0) -> Evaluated:
    """n errors of ±spread around `mean_error` (half each side)."""
    errors = [mean_error + spread, mean_error - spread] * (n // 2)
    counters = {
        "n": n,
        "se": sum(errors),
        "sae": sum(abs(e) for e in errors),
        "se2": sum(e * e for e in errors),
        "se4": sum(e**4 for e in errors),
        "sy": 0.0,
        "sy2": float(n),
    }
    return evaluation.evaluate("regression", {"@predictions": n, **counters})


def test_a_clearly_better_version_is_better_in_every_proportion() -> None:
    found = compare.compare(binary(2000, 0.80), binary(2000, 0.88))
    accuracy = found["accuracy"]
    assert accuracy.difference == pytest.approx(0.08)
    assert accuracy.lower is not None
    assert accuracy.upper is not None
    assert 0 < accuracy.lower < 0.08 < accuracy.upper
    for name in ("accuracy", "precision", "recall", "specificity", "f1", "balanced_accuracy"):
        assert found[name].verdict == "better", name
        assert found[name].more_labels is None
    assert found["accuracy"].to_dict()["verdict"] == "better"


def test_a_clearly_worse_version_is_worse() -> None:
    found = compare.compare(binary(2000, 0.88), binary(2000, 0.80))
    assert found["accuracy"].verdict == "worse"
    assert found["accuracy"].difference == pytest.approx(-0.08)


def test_the_proportions_interval_is_newcombes_hybrid_score_interval() -> None:
    a, b = binary(400, 0.70), binary(300, 0.75)
    z = intervals.z_score(0.95)
    p1, p2 = 140 / 200, 112 / 150  # recall: tp / (tp + fn) per version
    l1, u1 = intervals.wilson(140, 200, z)
    l2, u2 = intervals.wilson(112, 150, z)
    found = compare.compare(a, b)["recall"]
    d = p2 - p1
    assert found.lower == pytest.approx(d - math.hypot(p2 - l2, u1 - p1))
    assert found.upper == pytest.approx(d + math.hypot(u2 - p2, p1 - l1))


def test_cant_tell_when_the_interval_covers_zero() -> None:
    found = compare.compare(binary(200, 0.80), binary(200, 0.83))["accuracy"]
    assert found.lower is not None
    assert found.upper is not None
    assert found.lower < 0 < found.upper
    assert found.verdict == "cant_tell"
    assert found.more_labels is not None
    assert found.more_labels > 0


def test_doubling_the_labels_shrinks_the_half_width_by_sqrt_2() -> None:
    def half_width(n: int) -> float:
        found = compare.compare(binary(n, 0.80), binary(n, 0.83))["accuracy"]
        assert found.lower is not None
        assert found.upper is not None
        return (found.upper - found.lower) / 2

    assert half_width(2000) / half_width(4000) == pytest.approx(math.sqrt(2), rel=0.02)


def test_more_labels_would_tell_and_fewer_would_not() -> None:
    n = 400
    found = compare.compare(binary(n, 0.80), binary(n, 0.85))["accuracy"]
    assert found.verdict == "cant_tell"
    k = found.more_labels
    assert k is not None
    # the same rates with k more labels each tell; with half of them, not yet
    assert (
        compare.compare(binary(n + k + 20, 0.80), binary(n + k + 20, 0.85))["accuracy"].verdict
        == "better"
    )
    assert (
        compare.compare(binary(n + k // 2, 0.80), binary(n + k // 2, 0.85))["accuracy"].verdict
        == "cant_tell"
    )


def test_no_difference_has_no_more_labels_estimate() -> None:
    found = compare.compare(binary(200, 0.80), binary(200, 0.80))["accuracy"]
    assert found.difference == 0
    assert found.verdict == "cant_tell"
    assert found.more_labels is None


def test_errors_are_better_lower() -> None:
    # mae of errors ±1 around 0 is 1; around 0.5 it is (1.5 + 0.5) / 2 = 1 too, so use spread
    a, b = regression(1000, 0.0, spread=2.0), regression(1000, 0.0, spread=1.0)
    found = compare.compare(a, b)
    assert found["mae"].difference == pytest.approx(-1.0)
    assert found["mae"].verdict == "better"
    assert found["rmse"].verdict == "better"
    assert compare.compare(b, a)["mae"].verdict == "worse"


def test_a_bias_is_compared_by_its_size() -> None:
    a, b = regression(1000, -0.5), regression(1000, 0.1)
    found = compare.compare(a, b)["mean_error"]
    assert found.a == pytest.approx(-0.5)
    assert found.b == pytest.approx(0.1)
    assert found.difference == pytest.approx(0.1 - 0.5)
    assert found.verdict == "better"
    assert compare.compare(b, a)["mean_error"].verdict == "worse"


def test_a_metric_without_bounds_cant_tell() -> None:
    found = compare.compare(regression(100, 0.0, 2.0), regression(100, 0.0, 1.0))
    assert found["r2"].verdict == "cant_tell"
    only = compare.difference("higher", Estimate(0.5), 10, Estimate(0.9, 0.8, 1.0), 10)
    assert (only.difference, only.lower, only.verdict) == (pytest.approx(0.4), None, "cant_tell")
    missing = compare.difference("higher", Estimate(None), 10, Estimate(0.9, 0.8, 1.0), 10)
    assert (missing.difference, missing.verdict) == (None, "cant_tell")


def test_counts_and_totals_are_not_compared() -> None:
    assert metrics.direction("cost_total") is None
    assert metrics.direction("mape_excluded") is None
    found = compare.compare(regression(100, 0.0), regression(100, 0.0))
    assert "mape_excluded" not in found


def test_estimates_compare_without_a_labels_guess() -> None:
    a = Evaluated(1000, 0, {}, estimated={"accuracy": Estimate(0.80, 0.78, 0.82)})
    b = Evaluated(1000, 0, {}, estimated={"accuracy": Estimate(0.81, 0.79, 0.83)})
    found = compare.compare(a, b, "estimated")["accuracy"]
    assert found.verdict == "cant_tell"
    assert found.more_labels is None
    assert compare.compare(a, b) == {}


def test_reviewed_metrics_scale_with_the_reviews() -> None:
    a = Evaluated(1000, 0, {}, reviewed={"accuracy": Reviewed(0.80, 0.72, 0.88, n=100)})
    b = Evaluated(1000, 0, {}, reviewed={"accuracy": Reviewed(0.85, 0.78, 0.92, n=100)})
    found = compare.compare(a, b, "reviewed")["accuracy"]
    assert found.verdict == "cant_tell"
    k = found.more_labels
    assert k is not None
    # the half-widths towards 0 (0.08 and 0.07) shrink as sqrt(100 / (100 + k))
    assert math.hypot(0.08, 0.07) * math.sqrt(100 / (100 + k)) < 0.05
    assert math.hypot(0.08, 0.07) * math.sqrt(100 / (99 + k)) >= 0.05
