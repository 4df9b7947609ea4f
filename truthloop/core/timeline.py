"""A metric's window value over a backtest's period, thinned for a chart (`backtestpage`).

A 30-day backtest steps 43,200 minutes; a chart needs a few hundred points, and a breach of a
minute must still show. `thin` keeps, of each span of minutes, the worst value on the side the
alert watches.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from truthloop.core.spec import MonitorSpec

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

MAX_POINTS = 720
"""Points of a metric line at most (a 30-day backtest: one an hour)."""
MAX_LINES = 4
"""Lines a chart draws at most (the first alerts')."""


@dataclass(frozen=True, slots=True)
class Line:
    """One metric's window value over the backtest's period for the chart: `times` the ends of
    the thinned spans, `values` the worst window value in each (None: no value there), and the
    alert threshold it is read against."""

    key: str
    times: tuple[float, ...]
    values: tuple[float | None, ...]
    threshold: float | None = None
    below: bool = True


def thin(
    key: str,
    times: Sequence[float],
    values: Sequence[float],
    threshold: float | None = None,
    below: bool = True,
    points: int = MAX_POINTS,
) -> Line:
    """`values` (NaN: none) at `times` thinned to at most `points`: each the lowest of its span
    when the alert fires below its threshold, the highest otherwise, so a breach never thins
    away."""
    n = len(values)
    step = max(1, math.ceil(n / points))
    out_times, out_values = [], []
    for first in range(0, n, step):
        found = [v for v in values[first : first + step] if not math.isnan(v)]
        out_times.append(float(times[min(n, first + step) - 1]))
        out_values.append((min(found) if below else max(found)) if found else None)
    return Line(key, tuple(out_times), tuple(out_values), threshold, below)


def lines(
    spec: MonitorSpec, times: Sequence[float], read: Mapping[str, npt.NDArray[np.float64]]
) -> tuple[Line, ...]:
    """Each alert's value at `times` (`read`: by its key, NaN for none; an alert not read is
    not drawn) with its threshold, the first `MAX_LINES`, or the task's headline metric without
    a threshold when no alert is read."""
    found: list[Line] = []
    for alert in spec.alerts:
        values = read.get(alert.key)
        if values is None or len(found) == MAX_LINES:
            continue
        below = alert.below is not None
        threshold = alert.below if below else alert.above
        found.append(thin(alert.key, times, values.tolist(), threshold, below))
    if not found:
        headline = "mae" if spec.task == "regression" else "accuracy"
        values = read.get(headline)
        if values is not None:
            found.append(thin(headline, times, values.tolist(), below=headline != "mae"))
    return tuple(found)
