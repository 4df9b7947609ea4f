"""A segment's values over a window: each evaluated, ranked worst first, and what a segment
alert reads of them.

A segment read (`core.segments.split` of one window's counters) gives each kept value's
counters; each is evaluated as a group of its own (`core.evaluation`), with the estimates of the
all-versions group (the same estimator, one window per value). What "worst" means is the
monitor's: the metric of the first alert on the segment, read the way the alert reads it
(`AlertSpec.key` without the segment: `accuracy`, `estimated:accuracy`, ...), worse downwards
for a `below` alert and upwards for an `above` one; without such an alert the accuracy
(classification) or the mean absolute error (regression).

The ranking puts first the values whose metric has `minSamples` samples behind it (worst first:
the values an alert can see, the first of them the one it names), then those with fewer (worst
first too: their figures are noise more than signal), then those without a value; ties go to
the value with more samples, then by name.

A segment with `drift` keeps each value's feature sketches too: each value's drift report
(`core.drift`, against the monitor's reference) is ranked the same way (`rank_drift`: by the
first drift alert on the segment, else the dataset drift share, worse upwards; the samples are
the records compared, as `drift.alert_values` gives them), and its drift alerts read the worst
value as a metric alert does (`worst`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar

from truthloop.core import alerts, drift, evaluation, metrics, segments
from truthloop.core.drift import DriftReport
from truthloop.core.evaluation import ALL_VERSIONS, Estimator, Evaluated
from truthloop.core.spec import DRIFT_METRICS, AlertSpec, CostSpec, MonitorSpec, SegmentSpec
from truthloop.core.tasks import Task


@dataclass(frozen=True, slots=True)
class Ranking:
    """What orders a segment's values: the value read by `key` (an `evaluation.alert_values`
    key), worse when lower (`worse_below`) or higher."""

    key: str
    worse_below: bool


def ranking(spec: MonitorSpec, segment: str) -> Ranking:
    """The first alert on a model metric of `segment` decides, else the task's headline
    metric."""
    for alert in spec.alerts:
        if alert.segment == segment and alert.metric not in DRIFT_METRICS:
            return Ranking(inner_key(alert), alert.below is not None)
    return headline(spec.task)


def headline(task: Task) -> Ranking:
    """The task's headline metric: the accuracy (classification), the mean absolute error
    (regression)."""
    if task == "regression":
        return Ranking("mae", False)
    return Ranking("accuracy", True)


def inner_key(alert: AlertSpec) -> str:
    """The key a segment alert reads in each value's window (its `key` without the segment)."""
    return replace(alert, segment=None).key


def evaluate(
    task: Task,
    counters: Mapping[str, metrics.Counters],
    cost: CostSpec | None = None,
    estimator: Estimator | None = None,
    version: str = ALL_VERSIONS,
) -> dict[str, Evaluated]:
    """Each value's counters evaluated, with the estimates of `version`'s records (every
    version's by default) when given an `estimator`: all values in one call."""
    names = sorted(counters)
    found = dict(
        zip(names, evaluation.evaluate_many(task, [counters[n] for n in names], cost), strict=True)
    )
    if estimator is None or not names:
        return found
    estimates = estimator(version, [counters[name] for name in names])
    for name, estimated in zip(names, estimates, strict=True):
        if estimated:
            found[name] = replace(found[name], estimated=estimated)
    return found


class Read(Protocol):
    """One value of a segment as a ranking reads it."""

    @property
    def value(self) -> str: ...

    @property
    def metric(self) -> float | None: ...

    @property
    def samples(self) -> int: ...


R = TypeVar("R", bound=Read)


@dataclass(frozen=True, slots=True)
class Ranked:
    """One value of a segment as the ranking saw it: the value read and the samples behind it."""

    value: str
    evaluated: Evaluated
    metric: float | None
    samples: int


@dataclass(frozen=True, slots=True)
class DriftRanked:
    """One value of a drift segment as the ranking saw it (`drift.alert_values`' reading)."""

    value: str
    report: DriftReport
    metric: float | None
    samples: int


def rank(values: Mapping[str, Evaluated], by: Ranking, min_samples: int) -> tuple[Ranked, ...]:
    """The values worst first (see the module's docstring)."""
    found = []
    for name, evaluated in values.items():
        metric, samples = evaluation.alert_values(evaluated, min_samples).get(by.key, (None, 0))
        found.append(Ranked(name, evaluated, _finite(metric), samples))
    return _ordered(found, by, min_samples)


def rank_drift(
    reports: Mapping[str, DriftReport], by: Ranking, min_samples: int
) -> tuple[DriftRanked, ...]:
    """A drift segment's values worst first, as `rank` orders a segment's metrics."""
    found = []
    for name, report in reports.items():
        metric, samples = drift.alert_values(report).get(by.key, (None, 0))
        found.append(DriftRanked(name, report, _finite(metric), samples))
    return _ordered(found, by, min_samples)


def _finite(metric: float | None) -> float | None:
    return None if metric is None or not math.isfinite(metric) else metric


def _ordered(found: list[R], by: Ranking, min_samples: int) -> tuple[R, ...]:
    def order(r: R) -> tuple[int, float, int, str]:
        if r.metric is None:
            return (2, 0.0, -r.samples, r.value)
        tier = 0 if r.samples >= min_samples else 1
        return (tier, r.metric if by.worse_below else -r.metric, -r.samples, r.value)

    return tuple(sorted(found, key=order))


def alert_metric(
    alert: AlertSpec, values: Mapping[str, Evaluated], min_samples: int
) -> alerts.WindowMetric:
    """What a segment alert on a model metric reads of its values (`worst`)."""
    by = Ranking(inner_key(alert), alert.below is not None)
    return worst(alert, rank(values, by, min_samples), min_samples)


def drift_alert_metric(
    alert: AlertSpec, reports: Mapping[str, DriftReport], min_samples: int
) -> alerts.WindowMetric:
    """What a segment alert on a drift metric reads of its values' drift (`worst`)."""
    by = Ranking(inner_key(alert), alert.below is not None)
    return worst(alert, rank_drift(reports, by, min_samples), min_samples)


def worst(alert: AlertSpec, ranked: Sequence[Read], min_samples: int) -> alerts.WindowMetric:
    """What a segment alert reads of its values ranked worst first: with values that breach
    (with `min_samples` each), the worst one's metric and samples and every breaching value,
    worst first; else the worst value with enough samples (the alert is clear), else the
    best-supplied one (it has too few samples: insufficient)."""
    seen = [r for r in ranked if r.metric is not None and r.samples >= min_samples]
    breaching = [r for r in seen if alert.breached(r.metric)]  # type: ignore[arg-type]
    if breaching:
        first = breaching[0]
        return alerts.WindowMetric(first.metric, first.samples, tuple(r.value for r in breaching))
    if seen:
        return alerts.WindowMetric(seen[0].metric, seen[0].samples)
    most = max(ranked, key=lambda r: r.samples, default=None)
    if most is None:
        return alerts.WindowMetric(None, 0)
    return alerts.WindowMetric(most.metric, most.samples)


def alert_metrics(
    spec: MonitorSpec,
    segments: Mapping[str, Mapping[str, Evaluated]],
    drifts: Mapping[str, Mapping[str, DriftReport]] | None = None,
) -> dict[str, alerts.WindowMetric]:
    """Every segment alert's metric by its `AlertSpec.key`, from each segment's values (a model
    metric's) or each value's drift (`drifts`, a drift metric's; a segment not read: its alerts
    get nothing, insufficient)."""
    found = {}
    min_samples = spec.metrics.min_samples
    for alert in spec.alerts:
        if alert.segment is None:
            continue
        if alert.metric in DRIFT_METRICS:
            reports = (drifts or {}).get(alert.segment)
            if reports is not None:
                found[alert.key] = drift_alert_metric(alert, reports, min_samples)
        elif alert.segment in segments:
            found[alert.key] = alert_metric(alert, segments[alert.segment], min_samples)
    return found


def drift_ranking(spec: MonitorSpec, segment: str) -> Ranking:
    """What orders a drift segment's values: its first drift alert, else the dataset drift
    share (worse upwards)."""
    for alert in spec.alerts:
        if alert.segment == segment and alert.metric in DRIFT_METRICS:
            return Ranking(inner_key(alert), alert.below is not None)
    return Ranking("drift_share", False)


def drift_watched(spec: MonitorSpec) -> tuple[str, ...]:
    """The drift segments a tick reads: those a drift alert watches."""
    alerted = {a.segment for a in spec.alerts if a.metric in DRIFT_METRICS}
    return tuple(s.name for s in spec.segments if s.drift and s.name in alerted)


def watched(spec: MonitorSpec) -> tuple[str, ...]:
    """The segments a tick reads: those a model metric's alert watches and those exported to
    Prometheus."""
    alerted = {
        a.segment for a in spec.alerts if a.segment is not None and a.metric not in DRIFT_METRICS
    }
    return tuple(s.name for s in spec.segments if s.name in alerted or s.export)


def names(segment: SegmentSpec, kept: tuple[str, ...]) -> frozenset[str]:
    """Every value a record may be assigned now: its buckets' names or its `kept` values, and
    `other` and `missing`."""
    if segment.buckets:
        edges = segment.buckets
        found = {segments.bucket(edges, -math.inf), *(segments.bucket(edges, e) for e in edges)}
    else:
        found = set(kept)
    return frozenset(found | segments.RESERVED)
