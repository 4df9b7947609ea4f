"""A window's counters evaluated: per group, its predictions, labeled ones and every metric.

The feedback service reads summed counters per (model version, served_by) from its store and
hands them here; what comes back is what the metrics API, the alert machine and the exporter
show. `ALL_VERSIONS` groups sum every version of one served_by, the headline figures.

Given an `Estimator` (the engine's: each version's reference, `core.estimate`), the model's
groups also carry their estimated metrics (`Evaluated.estimated`), computed from the same read's
estimation counters: a version's against the reference its records are sketched against, the
all-versions sum against the default reference (records sketched against a version's own
reference are not in that estimate). The fallback's groups have none: the calibration is the
model's.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from truthloop.core import cost as costs
from truthloop.core import metrics, review, sketch, wire
from truthloop.core.join import PREDICTIONS_KEY
from truthloop.core.spec import CostSpec
from truthloop.core.tasks import Task

ALL_VERSIONS = "*"
"""The version label of a sum over every model version."""

Group = tuple[str, str]
"""(model_version, served_by)"""

Estimates = Mapping[str, metrics.Estimate]
Estimator = Callable[[str, Sequence[metrics.Counters]], Sequence[Estimates]]
"""The estimated metrics of windows (summed counters) of a version (`ALL_VERSIONS`: every
version's records), one mapping per window, `{}` when nothing is estimated."""


class Interval(Protocol):
    """A metric's value and interval: a realized or estimated one, or a reviewed one."""

    @property
    def value(self) -> float | None: ...
    @property
    def lower(self) -> float | None: ...
    @property
    def upper(self) -> float | None: ...


@dataclass(frozen=True, slots=True)
class Evaluated:
    """One group's window: predictions, labeled ones, and every metric with its interval."""

    samples: int
    labeled: int
    metrics: Mapping[str, metrics.Estimate]
    estimated: Estimates = field(default_factory=dict)
    """The metrics estimated from the window's predictions before labels (`core.estimate`)."""
    reviewed: Mapping[str, review.Reviewed] = field(default_factory=dict)
    """The metrics the window's reviewed labels estimate (`core.review.estimate`); `{}` for a
    window without review counters."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "labeled": self.labeled,
            "metrics": _shown(self.metrics),
            "estimated": _shown(self.estimated),
            "reviewed": {
                name: {"value": r.value, "lower": r.lower, "upper": r.upper, "n": r.n}
                for name, r in self.reviewed.items()
            },
        }

    def estimates(self) -> tuple[tuple[str, Mapping[str, Interval]], ...]:
        """The metrics estimated otherwise than from the labels, by source: `estimated` (before
        labels) and `reviewed` (from the reviewed labels)."""
        return (("estimated", self.estimated), ("reviewed", self.reviewed))


def _shown(found: Mapping[str, Interval]) -> dict[str, dict[str, float | None]]:
    return {
        name: {"value": e.value, "lower": e.lower, "upper": e.upper} for name, e in found.items()
    }


def alert_values(model: Evaluated, min_samples: int) -> dict[str, tuple[float | None, int]]:
    """What the alert machine reads of the model's window, by `AlertSpec.key`, each value with
    the samples behind it: a realized metric by its name (labeled predictions), its estimate as
    `estimated:<metric>` (the window's predictions) and as `auto:<metric>` the realized one once
    the window holds `min_samples` labeled predictions (or when there is no estimate), the
    estimate before; the reviewed labels' estimate as `reviewed:<metric>` with the reviewed
    records as samples (so `minSamples` counts reviews)."""
    found: dict[str, tuple[float | None, int]] = {
        name: (e.value, model.labeled) for name, e in model.metrics.items()
    }
    for name, e in model.estimated.items():
        found[f"estimated:{name}"] = (e.value, model.samples)
    for name, r in model.reviewed.items():
        found[f"reviewed:{name}"] = (r.value, r.n)
    for name in {*model.metrics, *model.estimated}:
        guess = model.estimated.get(name)
        if model.labeled >= min_samples or guess is None:
            realized = model.metrics.get(name)
            found[f"auto:{name}"] = (realized.value if realized else None, model.labeled)
        else:
            found[f"auto:{name}"] = (guess.value, model.samples)
    return found


def label_counters(counters: metrics.Counters) -> dict[str, float]:
    """The counters metrics are computed from: not the `@` ones (they count records) nor the
    feature sketches (`core.sketch`)."""
    return {k: v for k, v in counters.items() if not k.startswith("@") and not sketch.is_sketch(k)}


def evaluate(task: Task, counters: metrics.Counters, cost: CostSpec | None = None) -> Evaluated:
    """One group's counters evaluated (the counters of `metrics`; the others, `@` and
    sketches, are not read); with a `cost` (`spec.metrics.cost`),
    also what the labeled predictions cost (`core.cost`: `cost`, `cost_total`); with review
    counters, what the reviewed labels estimate. `evaluate_many` of one window."""
    return evaluate_many(task, [counters], cost)[0]


def evaluate_many(
    task: Task,
    windows: Sequence[metrics.Counters],
    cost: CostSpec | None = None,
    names: Collection[str] | None = None,
) -> list[Evaluated]:
    """`evaluate` of many windows at once, their metrics in one batch (`metrics.evaluate_many`,
    only those in `names` when given: a reader that needs a few leaves the rest out)."""
    found = metrics.evaluate_many(task, windows, names=names)
    reviewing = any(map(review.is_counter, set().union(*windows)))
    out = []
    for counters, metric in zip(windows, found, strict=True):
        if cost is not None:
            metric.update(costs.realized(task, label_counters(counters), cost))
        reviewed = review_counters(counters) if reviewing else {}
        out.append(
            Evaluated(
                int(counters.get(PREDICTIONS_KEY, 0)),
                metrics.samples(counters),
                metric,
                reviewed=review.estimate(task, reviewed) if reviewed else {},
            )
        )
    return out


def review_counters(counters: metrics.Counters) -> dict[str, float]:
    """The review counters of a window (`core.review`), what `review.estimate` reads."""
    return {k: v for k, v in counters.items() if review.is_counter(k)}


def evaluate_groups(
    task: Task,
    groups: Mapping[Group, metrics.Counters],
    cost: CostSpec | None = None,
    estimator: Estimator | None = None,
) -> dict[Group, Evaluated]:
    """Each (version, served_by) window evaluated, plus the all-versions sum per served_by; the
    model's groups with their estimates when given an `estimator`."""
    summed = dict(groups)
    for served_by in wire.SERVED_BY:
        mine = [c for (_, s), c in groups.items() if s == served_by]
        if mine:
            summed[ALL_VERSIONS, served_by] = metrics.total(mine)
    result = dict(zip(summed, evaluate_many(task, list(summed.values()), cost), strict=True))
    if estimator is not None:
        for (version, served), counters in summed.items():
            if served == "model":
                (found,) = estimator(version, [counters])
                if found:
                    result[version, served] = replace(result[version, served], estimated=found)
    return result


def series(
    task: Task,
    points: Mapping[int, Mapping[Group, metrics.Counters]],
    count: int,
    cost: CostSpec | None = None,
    estimator: Estimator | None = None,
    version: str = ALL_VERSIONS,
) -> list[Evaluated]:
    """Each of `count` points evaluated over all its groups (a point with no data is empty),
    with the estimates of `version` (its records: a read of one version's, or all) when given
    an `estimator`."""
    summed = [metrics.total(points.get(i, {}).values()) for i in range(count)]
    found = evaluate_many(task, summed, cost)
    if estimator is None:
        return found
    estimates = estimator(version, summed)
    return [replace(e, estimated=x) if x else e for e, x in zip(found, estimates, strict=True)]
