"""A window's counters evaluated, pure: per group, and summed over versions per served_by."""

from __future__ import annotations

from truthloop.core import evaluation
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
