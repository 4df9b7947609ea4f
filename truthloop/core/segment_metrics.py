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
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

from truthloop.core import alerts, evaluation, metrics, segments
from truthloop.core.evaluation import ALL_VERSIONS, Estimator, Evaluated
from truthloop.core.spec import AlertSpec, CostSpec, MonitorSpec, SegmentSpec
from truthloop.core.tasks import Task


@dataclass(frozen=True, slots=True)
class Ranking:
    """What orders a segment's values: the value read by `key` (an `evaluation.alert_values`
    key), worse when lower (`worse_below`) or higher."""

    key: str
    worse_below: bool


def ranking(spec: MonitorSpec, segment: str) -> Ranking:
    """The first alert on `segment` decides, else the task's headline metric."""
    for alert in spec.alerts:
        if alert.segment == segment:
            return Ranking(inner_key(alert), alert.below is not None)
    if spec.task == "regression":
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
    found = {name: evaluation.evaluate(task, counters[name], cost) for name in names}
    if estimator is None or not names:
        return found
    estimates = estimator(version, [counters[name] for name in names])
    for name, estimated in zip(names, estimates, strict=True):
        if estimated:
            found[name] = replace(found[name], estimated=estimated)
    return found


@dataclass(frozen=True, slots=True)
class Ranked:
    """One value of a segment as the ranking saw it: the value read and the samples behind it."""

    value: str
    evaluated: Evaluated
    metric: float | None
    samples: int


def rank(values: Mapping[str, Evaluated], by: Ranking, min_samples: int) -> tuple[Ranked, ...]:
    """The values worst first (see the module's docstring)."""
    found = []
    for name, evaluated in values.items():
        metric, samples = evaluation.alert_values(evaluated, min_samples).get(by.key, (None, 0))
        if metric is not None and not math.isfinite(metric):
            metric = None
        found.append(Ranked(name, evaluated, metric, samples))

    def order(r: Ranked) -> tuple[int, float, int, str]:
        if r.metric is None:
            return (2, 0.0, -r.samples, r.value)
        tier = 0 if r.samples >= min_samples else 1
        return (tier, r.metric if by.worse_below else -r.metric, -r.samples, r.value)

    return tuple(sorted(found, key=order))


def alert_metric(
    alert: AlertSpec, values: Mapping[str, Evaluated], min_samples: int
) -> alerts.WindowMetric:
    """What a segment alert reads: with values that breach (with `min_samples` each), the worst
    one's metric and samples and every breaching value, worst first; else the worst value with
    enough samples (the alert is clear), else the best-supplied one (it has too few samples:
    insufficient)."""
    ranked = rank(values, Ranking(inner_key(alert), alert.below is not None), min_samples)
    seen = [r for r in ranked if r.metric is not None and r.samples >= min_samples]
    breaching = [r for r in seen if alert.breached(r.metric)]  # type: ignore[arg-type]
    if breaching:
        worst = breaching[0]
        return alerts.WindowMetric(worst.metric, worst.samples, tuple(r.value for r in breaching))
    if seen:
        return alerts.WindowMetric(seen[0].metric, seen[0].samples)
    most = max(ranked, key=lambda r: r.samples, default=None)
    if most is None:
        return alerts.WindowMetric(None, 0)
    return alerts.WindowMetric(most.metric, most.samples)


def alert_metrics(
    spec: MonitorSpec, segments: Mapping[str, Mapping[str, Evaluated]]
) -> dict[str, alerts.WindowMetric]:
    """Every segment alert's metric by its `AlertSpec.key`, from each segment's values (a
    segment not in `segments` was not read: its alerts get nothing, insufficient)."""
    found = {}
    for alert in spec.alerts:
        if alert.segment is not None and alert.segment in segments:
            found[alert.key] = alert_metric(
                alert, segments[alert.segment], spec.metrics.min_samples
            )
    return found


def watched(spec: MonitorSpec) -> tuple[str, ...]:
    """The segments a tick reads: those an alert watches and those exported to Prometheus."""
    alerted = {alert.segment for alert in spec.alerts if alert.segment is not None}
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
