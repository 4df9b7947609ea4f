"""A window's counters evaluated: per group, its predictions, labeled ones and every metric.

The feedback service reads summed counters per (model version, served_by) from its store and
hands them here; what comes back is what the metrics API, the alert machine and the exporter
show. `ALL_VERSIONS` groups sum every version of one served_by, the headline figures.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from truthloop.core import cost as costs
from truthloop.core import metrics, sketch, wire
from truthloop.core.join import PREDICTIONS_KEY
from truthloop.core.spec import CostSpec
from truthloop.core.tasks import Task

ALL_VERSIONS = "*"
"""The version label of a sum over every model version."""

Group = tuple[str, str]
"""(model_version, served_by)"""


@dataclass(frozen=True, slots=True)
class Evaluated:
    """One group's window: predictions, labeled ones, and every metric with its interval."""

    samples: int
    labeled: int
    metrics: Mapping[str, metrics.Estimate]

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "labeled": self.labeled,
            "metrics": {
                name: {"value": e.value, "lower": e.lower, "upper": e.upper}
                for name, e in self.metrics.items()
            },
        }


def label_counters(counters: metrics.Counters) -> dict[str, float]:
    """The counters metrics are computed from: not the `@` ones (they count records) nor the
    feature sketches (`core.sketch`)."""
    return {k: v for k, v in counters.items() if not k.startswith("@") and not sketch.is_sketch(k)}


def evaluate(task: Task, counters: metrics.Counters, cost: CostSpec | None = None) -> Evaluated:
    """One group's counters evaluated (`label_counters`); with a `cost` (`spec.metrics.cost`),
    also what the labeled predictions cost (`core.cost`: `cost`, `cost_total`)."""
    samples = int(counters.get(PREDICTIONS_KEY, 0))
    labels = label_counters(counters)
    found = metrics.evaluate(task, labels)
    if cost is not None:
        found.update(costs.realized(task, labels, cost))
    return Evaluated(samples, metrics.samples(labels), found)


def evaluate_groups(
    task: Task, groups: Mapping[Group, metrics.Counters], cost: CostSpec | None = None
) -> dict[Group, Evaluated]:
    """Each (version, served_by) window evaluated, plus the all-versions sum per served_by."""
    result = {group: evaluate(task, counters, cost) for group, counters in groups.items()}
    for served in wire.SERVED_BY:
        mine = [c for (_, s), c in groups.items() if s == served]
        if mine:
            result[ALL_VERSIONS, served] = evaluate(task, metrics.total(mine), cost)
    return result


def series(
    task: Task,
    points: Mapping[int, Mapping[Group, metrics.Counters]],
    count: int,
    cost: CostSpec | None = None,
) -> list[Evaluated]:
    """Each of `count` points evaluated over all its groups (a point with no data is empty)."""
    return [evaluate(task, metrics.total(points.get(i, {}).values()), cost) for i in range(count)]
