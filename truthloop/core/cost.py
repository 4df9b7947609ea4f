"""What the predictions cost (`spec.metrics.cost`), from a window's labeled counters.

`realized(task, counters, cost)` gives two values next to the metrics:

- `cost`: the mean cost per labeled prediction (an alert may name it: lower is better, alerts use
  `above`), with a Student-t interval from the sum of the per-prediction costs and of their
  squares, both of which the counters give exactly;
- `cost_total`: what the window's labeled predictions cost together (`cost` times their number,
  bounds likewise).

Per task (a negative cost is a gain):
- binary: a prediction costs `falsePositive` (predicted 1, actual 0), `falseNegative` (predicted 0,
  actual 1), or minus `truePositive` / `trueNegative` when right; from the confusion counts;
- multiclass: the matrix's cost of its (actual, predicted) pair, 0 for a pair not listed; from the
  confusion cells (down-votes without a label have no pair and are left out);
- regression: `overPrediction` per unit the prediction is above the actual, `underPrediction` per
  unit below. With e = prediction - actual, the sums of the positive and negative parts of e are
  (sum |e| + sum e) / 2 and (sum |e| - sum e) / 2, from `sae` and `se`; the squares' sums are
  `se2o` and `se2u` (the squared errors of over- and under-predictions), counted at label time.
  A window holding buckets counted before those two counters existed (their sum short of `se2`)
  bounds the squares by the larger unit cost squared times `se2`: a wider, still valid interval.

Estimated costs (before labels) come from `core.estimate`: the expected confusion matrix prices
directly, and the loss model's predicted over- and under-prediction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from truthloop.core import intervals, metrics
from truthloop.core.metrics import Estimate
from truthloop.core.spec import COST, CostSpec

COST_TOTAL = "cost_total"
"""What the window's predictions cost together (not an alert metric)."""


def realized(
    task: str, counters: Mapping[str, float], cost: CostSpec, *, confidence: float = 0.95
) -> dict[str, Estimate]:
    """`cost` and `cost_total` of a window's labeled counters (see the module)."""
    if task == "binary":
        total, squares, n = _binary(counters, cost)
    elif task == "multiclass":
        total, squares, n = _multiclass(counters, cost)
    else:
        total, squares, n = _regression(counters, cost)
    return priced(total, squares, n, confidence)


def priced(total: float, squares: float, n: float, confidence: float) -> dict[str, Estimate]:
    """`cost` and `cost_total` from the sum of n per-prediction costs and of their squares."""
    if n <= 0 or not math.isfinite(total):
        return {COST: Estimate(None), COST_TOTAL: Estimate(None)}
    mean = total / n
    bounds = intervals.t_mean(np.array([total]), np.array([squares]), np.array([n]), confidence)
    low, high = float(bounds[0][0]), float(bounds[1][0])
    if not (math.isfinite(low) and math.isfinite(high)):
        return {COST: Estimate(mean), COST_TOTAL: Estimate(total)}
    lower, upper = min(low, mean), max(high, mean)
    return {
        COST: Estimate(mean, lower, upper),
        COST_TOTAL: Estimate(total, lower * n, upper * n),
    }


def _binary(counters: Mapping[str, float], cost: CostSpec) -> tuple[float, float, float]:
    tp, fp, tn, fn = (counters.get(k, 0.0) for k in metrics.CONFUSION_CELLS)
    each = (
        (fp, cost.false_positive),
        (fn, cost.false_negative),
        (tp, -cost.true_positive),
        (tn, -cost.true_negative),
    )
    return (
        sum(count * c for count, c in each),
        sum(count * c * c for count, c in each),
        tp + fp + tn + fn,
    )


def _multiclass(counters: Mapping[str, float], cost: CostSpec) -> tuple[float, float, float]:
    prices = {(cell.actual, cell.predicted): cell.cost for cell in cost.matrix}
    total = squares = n = 0.0
    for actual, predicted, count in metrics.confusion_cells(counters):
        price = prices.get((actual, predicted), 0.0)
        total += count * price
        squares += count * price * price
        n += count
    return total, squares, n


def _regression(counters: Mapping[str, float], cost: CostSpec) -> tuple[float, float, float]:
    get = counters.get
    n, sae, se, se2 = get("n", 0.0), get("sae", 0.0), get("se", 0.0), get("se2", 0.0)
    over_unit, under_unit = cost.over_prediction, cost.under_prediction
    over, under = (sae + se) / 2, (sae - se) / 2
    over_sq, under_sq = get("se2o", 0.0), get("se2u", 0.0)
    if over_sq + under_sq >= se2 * (1 - 1e-9):
        squares = over_unit**2 * over_sq + under_unit**2 * under_sq
    else:  # buckets from before se2o and se2u were counted
        squares = max(over_unit, under_unit) ** 2 * se2
    return over_unit * max(over, 0.0) + under_unit * max(under, 0.0), squares, n
