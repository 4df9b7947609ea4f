"""A window's counters evaluated, pure: per group, and summed over versions per served_by."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from truthloop.core import estimate, evaluation, metrics, review
from truthloop.core.evaluation import ALL_VERSIONS
from truthloop.core.join import PREDICTIONS_KEY


def test_a_group_counts_its_predictions_apart_from_its_labels() -> None:
    evaluated = evaluation.evaluate("binary", {PREDICTIONS_KEY: 5, "tp": 2, "tn": 1, "fp": 1})
    assert (evaluated.samples, evaluated.labeled) == (5, 4)
    assert evaluated.metrics["accuracy"].value == 0.75


def test_versions_are_summed_per_served_by_and_kept_apart_across_it() -> None:
    groups = {
        ("v1", "model"): {PREDICTIONS_KEY: 2, "tp": 1, "fn": 1},
        ("v2", "model"): {PREDICTIONS_KEY: 3, "tn": 2},
        ("v1", "fallback"): {PREDICTIONS_KEY: 4, "fp": 1},
    }
    evaluated = evaluation.evaluate_groups("binary", groups)
    assert set(evaluated) == {*groups, (ALL_VERSIONS, "model"), (ALL_VERSIONS, "fallback")}
    model = evaluated[ALL_VERSIONS, "model"]
    assert (model.samples, model.labeled, model.metrics["accuracy"].value) == (5, 4, 0.75)
    fallback = evaluated[ALL_VERSIONS, "fallback"]
    assert (fallback.samples, fallback.labeled, fallback.metrics["accuracy"].value) == (4, 1, 0.0)


def test_a_served_by_without_data_has_no_sum() -> None:
    evaluated = evaluation.evaluate_groups("regression", {("v1", "model"): {PREDICTIONS_KEY: 1}})
    assert (ALL_VERSIONS, "fallback") not in evaluated


def test_a_series_point_without_data_is_empty_and_a_point_sums_its_groups() -> None:
    points = {1: {("v1", "model"): {"tp": 1}, ("v2", "model"): {"fp": 1}}}
    series = evaluation.series("binary", points, 3)
    assert [p.labeled for p in series] == [0, 2, 0]
    assert series[0].metrics["accuracy"].value is None
    assert series[1].metrics["accuracy"].value == 0.5


def estimator(value: float) -> evaluation.Estimator:
    """Estimates every window's accuracy as `value` plus its predictions (to tell windows
    apart), recording which version each call was for."""

    def estimated(
        version: str, points: Sequence[metrics.Counters]
    ) -> list[dict[str, metrics.Estimate]]:
        calls.append(version)
        return [
            {"accuracy": metrics.Estimate(value + p.get(PREDICTIONS_KEY, 0) / 100)} for p in points
        ]

    calls: list[str] = []
    estimated.calls = calls  # type: ignore[attr-defined]
    return estimated


def test_the_model_s_groups_carry_their_estimates_and_the_fallback_s_none() -> None:
    groups = {
        ("v1", "model"): {PREDICTIONS_KEY: 2},
        ("v2", "model"): {PREDICTIONS_KEY: 3},
        ("v1", "fallback"): {PREDICTIONS_KEY: 4},
    }
    found = estimator(0.5)
    evaluated = evaluation.evaluate_groups("binary", groups, estimator=found)
    assert sorted(found.calls) == [ALL_VERSIONS, "v1", "v2"]  # type: ignore[attr-defined]
    assert evaluated[ALL_VERSIONS, "model"].estimated["accuracy"].value == 0.55
    assert evaluated["v2", "model"].estimated["accuracy"].value == 0.53
    assert evaluated[ALL_VERSIONS, "fallback"].estimated == {}
    assert evaluated[ALL_VERSIONS, "model"].to_dict()["estimated"] == {
        "accuracy": {"value": 0.55, "lower": None, "upper": None}
    }
    assert evaluation.evaluate_groups("binary", groups)[ALL_VERSIONS, "model"].estimated == {}


def test_a_series_estimates_each_point_for_its_version() -> None:
    points = {1: {("v1", "model"): {PREDICTIONS_KEY: 1}, ("v2", "model"): {PREDICTIONS_KEY: 2}}}
    found = estimator(0.5)
    series = evaluation.series("binary", points, 2, estimator=found, version="v2")
    assert found.calls == ["v2"]  # type: ignore[attr-defined]
    assert [p.estimated["accuracy"].value for p in series] == [0.5, 0.53]


def test_alerts_read_the_estimate_under_estimated_and_auto_until_min_samples_labels() -> None:
    def window(labeled: int) -> evaluation.Evaluated:
        return evaluation.Evaluated(
            200,
            labeled,
            {"accuracy": metrics.Estimate(1.0 if labeled else None)},
            {"accuracy": metrics.Estimate(0.6, 0.5, 0.7), "roc_auc": metrics.Estimate(0.8)},
        )

    before = evaluation.alert_values(window(49), 50)
    assert before["accuracy"] == (1.0, 49)
    assert before["estimated:accuracy"] == (0.6, 200)
    assert before["auto:accuracy"] == (0.6, 200)
    assert before["auto:roc_auc"] == (0.8, 200)
    after = evaluation.alert_values(window(50), 50)
    assert after["estimated:accuracy"] == (0.6, 200)
    assert after["auto:accuracy"] == (1.0, 50)
    assert after["auto:roc_auc"] == (None, 50)  # no realized AUC: the realized one all the same
    without = evaluation.alert_values(replace(window(3), estimated={}), 50)
    assert without == {"accuracy": (1.0, 3), "auto:accuracy": (1.0, 3)}


def test_the_estimable_metrics_are_those_the_estimator_gives() -> None:
    assert metrics.ESTIMATED_NAMES["binary"] == estimate.BINARY_METRICS
    cells = np.array([[[3.0, 1.0, 0.0], [1.0, 3.0, 0.0]]])
    found = estimate.multiclass_rows(cells, np.ones((1, 2)), np.ones((1, 2)))[0]
    assert tuple(found) == metrics.ESTIMATED_NAMES["multiclass"]
    assert set(metrics.ESTIMATED_NAMES["regression"]) <= set(metrics.METRIC_NAMES["regression"])
    for task, names in metrics.ESTIMATED_NAMES.items():
        assert set(names) <= set(metrics.METRIC_NAMES[task])


def test_a_window_with_review_counters_carries_what_the_reviewed_labels_estimate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only the review counters reach `review.estimate`, only when the window has some; the
    answer is shown with its `n`, and alerts read it as `reviewed:<metric>` with n samples."""
    read: list[dict[str, float]] = []

    def estimated(task: str, counters: dict[str, float], confidence: float = 0.95) -> Any:
        read.append(counters)
        return {"accuracy": review.Reviewed(0.8, 0.7, 0.9, int(counters[review.key("rev", "1")]))}

    monkeypatch.setattr(review, "estimate", estimated)
    counters = {PREDICTIONS_KEY: 100, "tp": 3, review.key("n", "1"): 100, review.key("rev", "1"): 7}
    found = evaluation.evaluate("binary", counters)
    assert read == [{review.key("n", "1"): 100, review.key("rev", "1"): 7}]
    assert found.reviewed == {"accuracy": review.Reviewed(0.8, 0.7, 0.9, 7)}
    assert (found.samples, found.labeled) == (100, 3)  # review counters are no labels
    assert found.to_dict()["reviewed"] == {
        "accuracy": {"value": 0.8, "lower": 0.7, "upper": 0.9, "n": 7}
    }
    assert evaluation.alert_values(found, 5)["reviewed:accuracy"] == (0.8, 7)
    assert evaluation.evaluate("binary", {PREDICTIONS_KEY: 100, "tp": 3}).reviewed == {}
    assert len(read) == 1, "a window without review counters is not estimated"


@st.composite
def _windows(draw: st.DrawFn, task: str) -> dict[str, float]:
    """A window's counters as the store sums them: labeled rows and votes of the task, its
    predictions, maybe review counters and a feature sketch's cell (neither read by metrics)."""
    counters: dict[str, float] = {}
    labels = ["a", "b", "c|d", "e%"]
    for _ in range(draw(st.integers(0, 30))):
        score = draw(st.one_of(st.none(), st.floats(0, 1)))
        if task == "binary":
            predicted, actual = draw(st.integers(0, 1)), draw(st.integers(0, 1))
        elif task == "multiclass":
            predicted, actual, score = (
                draw(st.sampled_from(labels)),
                draw(st.sampled_from(labels)),
                None,
            )
        else:
            predicted, actual, score = draw(st.floats(-1e3, 1e3)), draw(st.floats(-1e3, 1e3)), None
        if draw(st.booleans()) and draw(st.booleans()):
            metrics.tally_vote(counters, task, predicted, draw(st.booleans()), score=score)
        else:
            metrics.tally(counters, task, predicted, actual, score=score)
    counters[PREDICTIONS_KEY] = draw(st.integers(0, 50))
    if draw(st.booleans()):
        counters[review.key("n", "1")] = draw(st.integers(1, 100))
        counters[review.key("rev", "1")] = draw(st.integers(0, 10))
    if draw(st.booleans()):
        counters["~1:feature:3"] = 2.0
    return counters


def _same(a: metrics.Estimate | review.Reviewed, b: metrics.Estimate | review.Reviewed) -> bool:
    def close(x: float | None, y: float | None) -> bool:
        if x is None or y is None:
            return x is y
        return type(x) is type(y) and abs(x - y) <= 1e-12 * max(1.0, abs(x), abs(y))

    return all(close(getattr(a, f), getattr(b, f)) for f in ("value", "lower", "upper"))


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(["binary", "multiclass", "regression"]), st.booleans(), st.data())
def test_a_series_evaluated_in_one_batch_is_each_point_evaluated_alone(
    task: str, estimated: bool, data: st.DataObject
) -> None:
    """The batch (`evaluate_many`, behind `series`, `evaluate_groups` and the backtest) gives
    each window what `evaluate` gives it alone, estimates and reviews included: the windows of
    one batch do not change each other's metrics (the histogram's bins, the classes seen)."""
    windows = data.draw(st.lists(_windows(task), min_size=1, max_size=8))
    points = {i: {("v1", "model"): w} for i, w in enumerate(windows) if data.draw(st.booleans())}
    alone = estimator(0.5) if estimated else None
    found = evaluation.series(task, points, len(windows), None, alone)
    for i, batch in enumerate(found):
        counters = metrics.total([points[i]["v1", "model"]] if i in points else [])
        one = evaluation.evaluate(task, counters)
        if alone is not None:
            (guess,) = alone(ALL_VERSIONS, [counters])
            one = replace(one, estimated=guess)
        assert (batch.samples, batch.labeled) == (one.samples, one.labeled)
        for mine, theirs in (
            (batch.metrics, one.metrics),
            (batch.estimated, one.estimated),
            (batch.reviewed, one.reviewed),
        ):
            assert list(mine) == list(theirs)
            assert all(_same(mine[k], theirs[k]) for k in mine), (mine, theirs)
    names = {data.draw(st.sampled_from(metrics.METRIC_NAMES[task]))}
    few = evaluation.evaluate_many(task, windows, names=names)
    every = evaluation.evaluate_many(task, windows)
    for some, whole in zip(few, every, strict=True):
        assert list(some.metrics) == [*names]
        assert all(_same(some.metrics[k], whole.metrics[k]) for k in names)
