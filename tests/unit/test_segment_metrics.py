"""A segment's values evaluated, ranked worst first, and a segment alert through the machine."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

import pytest

from truthloop.core import alerts, metrics, segment_metrics, spec
from truthloop.core.alerts import MonitorState, WindowMetric
from truthloop.core.drift import ColumnDrift, DatasetDrift, DriftReport, Histogram
from truthloop.core.evaluation import Evaluated
from truthloop.core.join import PREDICTIONS_KEY
from truthloop.core.segment_metrics import Ranking
from truthloop.core.spec import (
    AlertSpec,
    CaptureSpec,
    FallbackSpec,
    MetricsSpec,
    ModelRef,
    MonitorSpec,
    SegmentSpec,
    Selector,
    Source,
)
from truthloop.core.tasks import Task

COUNTRY = SegmentSpec("country", Source(header="X-Country"))
LOW = AlertSpec("low-somewhere", "accuracy", below=0.8, segment="country")


def monitor(*alerts_: AlertSpec, task: Task = "binary", min_samples: int = 10) -> MonitorSpec:
    return MonitorSpec(
        selector=Selector(),
        model=ModelRef("churn"),
        task=task,
        capture=CaptureSpec(prediction=Source(pointer="/prediction")),
        metrics=MetricsSpec(window=300.0, min_samples=min_samples),
        alerts=alerts_,
        fallback=FallbackSpec(engage_on=()),
        segments=(COUNTRY, SegmentSpec("device", Source(pointer="/d"), export=True)),
    )


def labeled(right: int, wrong: int, predictions: int | None = None) -> metrics.Counters:
    """Binary counters of `right` and `wrong` labeled predictions."""
    n = right + wrong if predictions is None else predictions
    return {PREDICTIONS_KEY: n, "tp": right, "fp": wrong}


def values(**counters: metrics.Counters) -> dict[str, Evaluated]:
    return segment_metrics.evaluate("binary", counters)


def test_the_first_alert_on_the_segment_orders_else_the_tasks_headline_metric() -> None:
    high_error = AlertSpec("err", "mae", above=3.0, segment="country")
    assert segment_metrics.ranking(monitor(), "country") == Ranking("accuracy", True)
    assert segment_metrics.ranking(monitor(task="regression"), "country") == Ranking("mae", False)
    assert segment_metrics.ranking(monitor(high_error), "country") == Ranking("mae", False)
    estimated = AlertSpec("est", "f1", below=0.5, segment="country", source="estimated")
    other = AlertSpec("overall", "recall", below=0.5)
    spec_ = monitor(other, estimated, LOW)
    assert segment_metrics.ranking(spec_, "country") == Ranking("estimated:f1", True)
    assert segment_metrics.ranking(spec_, "device") == Ranking("accuracy", True)


def test_values_rank_worst_first_those_with_min_samples_before_the_rest_none_last() -> None:
    found = values(
        DE=labeled(6, 14),  # 0.3 on 20
        FR=labeled(18, 2),  # 0.9 on 20
        IT=labeled(0, 3),  # 0.0 on 3: too few to tell
        other=labeled(10, 10),  # 0.5 on 20
        missing={PREDICTIONS_KEY: 5},  # no label: no value
        US=labeled(1, 1),  # 0.5 on 2
    )
    ranked = segment_metrics.rank(found, Ranking("accuracy", True), min_samples=10)
    assert [r.value for r in ranked] == ["DE", "other", "FR", "IT", "US", "missing"]
    assert (ranked[0].metric, ranked[0].samples) == (0.3, 20)
    upward = segment_metrics.rank(found, Ranking("accuracy", False), min_samples=10)
    assert [r.value for r in upward] == ["FR", "other", "DE", "US", "IT", "missing"]


def test_ties_go_to_the_value_with_more_samples_then_by_name() -> None:
    found = values(b=labeled(5, 5), a=labeled(5, 5), c=labeled(10, 10))
    ranked = segment_metrics.rank(found, Ranking("accuracy", True), min_samples=1)
    assert [r.value for r in ranked] == ["c", "a", "b"]


def test_a_segment_alert_reads_the_worst_breaching_value_and_names_every_breaching_one() -> None:
    found = values(DE=labeled(6, 14), FR=labeled(14, 6), ES=labeled(19, 1), IT=labeled(0, 5))
    metric = segment_metrics.alert_metric(LOW, found, min_samples=10)
    assert metric == WindowMetric(0.3, 20, ("DE", "FR")), "IT has too few labels to breach"


def test_a_segment_alert_without_a_breach_reads_the_worst_seen_else_too_few() -> None:
    clear = segment_metrics.alert_metric(LOW, values(DE=labeled(17, 3), FR=labeled(19, 1)), 10)
    assert clear == WindowMetric(0.85, 20)
    few = segment_metrics.alert_metric(LOW, values(DE=labeled(0, 4), FR=labeled(0, 6)), 10)
    assert few == WindowMetric(0.0, 6), "the best supplied value: insufficient, no breach"
    assert segment_metrics.alert_metric(LOW, {}, 10) == WindowMetric(None, 0)


def test_estimates_are_made_for_every_value_at_once_with_the_version_asked() -> None:
    calls: list[tuple[str, int]] = []

    def estimator(
        version: str, points: Sequence[metrics.Counters]
    ) -> list[dict[str, metrics.Estimate]]:
        calls.append((version, len(points)))
        return [{"accuracy": metrics.Estimate(p[PREDICTIONS_KEY] / 100)} for p in points]

    found = segment_metrics.evaluate(
        "binary", {"DE": {PREDICTIONS_KEY: 40}, "FR": {PREDICTIONS_KEY: 70}}, None, estimator, "v2"
    )
    assert calls == [("v2", 2)]
    assert found["DE"].estimated["accuracy"].value == 0.4
    assert found["FR"].estimated["accuracy"].value == 0.7
    estimated = AlertSpec("est", "accuracy", below=0.5, segment="country", source="estimated")
    assert segment_metrics.alert_metric(estimated, found, 10) == WindowMetric(0.4, 40, ("DE",))


def test_alert_metrics_keys_each_segment_alert_and_skips_segments_not_read() -> None:
    device = AlertSpec("device-low", "accuracy", below=0.5, segment="device")
    spec_ = monitor(LOW, device, AlertSpec("overall", "accuracy", below=0.5))
    found = segment_metrics.alert_metrics(spec_, {"country": values(DE=labeled(1, 19))})
    assert found == {"segment:country:accuracy": WindowMetric(0.05, 20, ("DE",))}
    assert segment_metrics.watched(spec_) == ("country", "device")
    assert segment_metrics.watched(monitor()) == ("device",), "exported"


def test_the_machine_fires_a_segment_alert_naming_its_values_and_keeps_them_persisted() -> None:
    spec_ = monitor(LOW)
    state = alerts.initial_state(spec_)
    breach = {LOW.key: WindowMetric(0.3, 20, ("DE", "FR"))}
    state, transitions = alerts.step(state, spec_, 60, breach)
    (alert,) = state.alerts
    assert (alert.status, alert.values) == ("firing", ("DE", "FR"))
    firing = next(t for t in transitions if t.kind == "alert_firing")
    assert firing.reason == (
        "low-somewhere: segment:country:accuracy 0.3 < 0.8 in country DE, FR for 0s"
    )
    data = json.loads(json.dumps(state.to_dict()))
    assert data["alerts"][0]["values"] == ["DE", "FR"]
    assert MonitorState.from_dict(data) == state
    quiet, _ = alerts.step(state, spec_, 120, {LOW.key: WindowMetric(None, 3)})
    assert (quiet.alerts[0].status, quiet.alerts[0].values) == ("firing", ("DE", "FR")), (
        "no data is no recovery: the values last seen breaching stay named"
    )
    clear, _ = alerts.step(quiet, spec_, 180, {LOW.key: WindowMetric(0.9, 20)})
    assert (clear.alerts[0].status, clear.alerts[0].values) == ("ok", ())
    assert "values" not in clear.to_dict()["alerts"][0], "omitted when empty"
    assert MonitorState.from_dict(clear.to_dict()) == clear


def test_a_stored_alert_without_values_reads_as_none_and_bad_values_are_named() -> None:
    stored = alerts.initial_state(monitor(LOW)).to_dict()
    assert MonitorState.from_dict(stored).alerts[0].values == ()
    stored["alerts"][0]["values"] = [1]
    with pytest.raises(ValueError, match=r"state\.alerts\[0\]\.values"):
        MonitorState.from_dict(stored)


def test_a_segment_estimate_counts_records_not_labels() -> None:
    assert spec.counts_labels("segment:country:accuracy")
    assert not spec.counts_labels("segment:country:estimated:accuracy")
    assert not spec.counts_labels("segment:country:auto:accuracy")
    assert spec.counts_labels("segment:country:reviewed:accuracy")


def drifted(share: float, samples: int, plan: float | None = None) -> DriftReport:
    """A report of `samples` records whose dataset drift share is `share` (and plan's distance)."""
    features = ()
    if plan is not None:
        column = ColumnDrift(
            "plan", "categorical", "jensenshannon", plan, 0.1, plan >= 0.1, None, samples,
            0.0, 0.0, None, 0.0, Histogram((), ()), distance=plan,
        )  # fmt: skip
        features = (column,)
    dataset = DatasetDrift(2, round(share * 2), share, 0.5, share >= 0.5, ())
    return DriftReport("ok", samples=samples, features=features, dataset=dataset)


DRIFTING = SegmentSpec("country", Source(header="X-Country"), drift=True)
PLAN = AlertSpec("plan-drift", "feature_drift", above=0.3, feature="plan", segment="country")


def test_a_drift_segment_alert_reads_the_worst_value_of_enough_records() -> None:
    spec_ = dataclasses.replace(monitor(LOW, PLAN), segments=(DRIFTING,))
    assert segment_metrics.drift_watched(spec_) == ("country",)
    assert segment_metrics.watched(spec_) == ("country",), "the accuracy alert"
    assert segment_metrics.ranking(spec_, "country") == Ranking("accuracy", True)
    assert segment_metrics.drift_ranking(spec_, "country") == Ranking("feature_drift:plan", False)
    assert segment_metrics.drift_ranking(monitor(), "country") == Ranking("drift_share", False)
    reports = {
        "DE": drifted(0.5, 100, plan=0.6),
        "FR": drifted(0.5, 5, plan=0.9),  # too few records
        "IT": drifted(0.5, 50, plan=0.4),
        "US": drifted(0.0, 900, plan=0.01),
    }
    found = segment_metrics.alert_metrics(spec_, {}, {"country": reports})
    assert found == {PLAN.key: WindowMetric(0.6, 100, ("DE", "IT"))}
    ranked = segment_metrics.rank_drift(reports, Ranking("drift_share", False), 10)
    assert [r.value for r in ranked] == ["DE", "IT", "US", "FR"], "ties: more records first"
    calm = {"US": reports["US"]}
    assert segment_metrics.alert_metrics(spec_, {}, {"country": calm}) == {
        PLAN.key: WindowMetric(0.01, 900)
    }
    assert segment_metrics.alert_metrics(spec_, {}, {}) == {}, "not read: nothing"
