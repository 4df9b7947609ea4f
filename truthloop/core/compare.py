"""Two model versions compared: each metric's difference b − a, its interval, and a verdict.

The versions' windows are independent samples, so the difference's interval is MOVER
(`intervals.mover_difference`) on the two metrics' own intervals: for proportions with Wilson
intervals (accuracy, precision, recall, specificity...) that is Newcombe's hybrid score interval,
for the t and delta-method intervals (mae, brier score, estimates...) the normal interval with
the half-widths added in quadrature. The two intervals are at the service's confidence (95%), and
so is the difference's.

Verdict per metric (`metrics.direction`): `better` when the interval excludes 0 on the side
where b is better (above 0 for accuracy, below for mae), `worse` on the other, else `cant_tell`.
`mean_error`, a signed bias, is compared by its size: the difference is |b| − |a| over the
intervals of |a| and |b|. A metric without bounds on either side (macro averages, R²) is
`cant_tell`.

For `cant_tell` with a difference other than 0, `more_labels` guesses how many more labels per
version would tell, were the difference what it is now: each version's half-width on the side
towards 0 shrinks as sqrt(n / (n + k)) with k more labels each (n its labeled records, or its
reviewed ones for reviewed metrics), and k is the least for which the combined half-width is
below |difference|. Estimates before labels (`source="estimated"`) do not shrink with labels:
none is given for them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, get_args

from truthloop.core import intervals, metrics
from truthloop.core.evaluation import Evaluated, Interval

Verdict = Literal["better", "worse", "cant_tell"]
Source = Literal["realized", "estimated", "reviewed"]
SOURCES: tuple[Source, ...] = get_args(Source)


@dataclass(frozen=True, slots=True)
class Difference:
    """One metric of versions a and b: their values, b − a with its interval, the verdict on b
    and, for `cant_tell`, about how many more labels per version would tell."""

    a: float | None
    b: float | None
    difference: float | None
    lower: float | None
    upper: float | None
    verdict: Verdict
    more_labels: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "difference": self.difference,
            "lower": self.lower,
            "upper": self.upper,
            "verdict": self.verdict,
            "more_labels": self.more_labels,
        }


@dataclass(frozen=True, slots=True)
class _Side:
    value: float
    lower: float
    upper: float
    n: float | None


def compare(a: Evaluated, b: Evaluated, source: Source = "realized") -> dict[str, Difference]:
    """Every metric both windows have from `source` (realized, estimated or reviewed), b against
    a, in a's order; counts and totals (`metrics.direction` None) are left out."""
    found_a, found_b = _of(a, source), _of(b, source)
    return {
        name: difference(direction, *found_a[name], *found_b[name])
        for name in found_a
        if name in found_b and (direction := metrics.direction(name)) is not None
    }


def _of(window: Evaluated, source: Source) -> dict[str, tuple[Interval, float | None]]:
    """A window's metrics from `source`, each with the samples its interval shrinks with."""
    if source == "reviewed":
        return {name: (r, r.n) for name, r in window.reviewed.items()}
    if source == "estimated":
        return {name: (e, None) for name, e in window.estimated.items()}
    return {name: (e, window.labeled) for name, e in window.metrics.items()}


def difference(
    direction: metrics.Direction,
    a: Interval,
    n_a: float | None,
    b: Interval,
    n_b: float | None,
) -> Difference:
    """b − a of one metric with `direction` (see the module docstring)."""
    if a.value is None or b.value is None:
        return Difference(a.value, b.value, None, None, None, "cant_tell")
    side_a, side_b = _side(a, n_a, direction), _side(b, n_b, direction)
    if side_a is None or side_b is None:
        return Difference(a.value, b.value, b.value - a.value, None, None, "cant_tell")
    diff = side_b.value - side_a.value
    lower, upper = map(
        float,
        intervals.mover_difference(
            side_a.value, (side_a.lower, side_a.upper), side_b.value, (side_b.lower, side_b.upper)
        ),
    )
    sign = 1 if direction == "higher" else -1
    if lower > 0 or upper < 0:
        verdict: Verdict = "better" if sign * diff > 0 else "worse"
        return Difference(a.value, b.value, diff, lower, upper, verdict)
    return Difference(
        a.value, b.value, diff, lower, upper, "cant_tell", _more_labels(diff, side_a, side_b)
    )


def _side(found: Interval, n: float | None, direction: metrics.Direction) -> _Side | None:
    """A version's value and bounds as compared: by size for a bias (`zero`); None without
    bounds."""
    value, lower, upper = found.value, found.lower, found.upper
    if value is None or lower is None or upper is None:
        return None
    if direction != "zero":
        return _Side(value, lower, upper, n)
    if lower >= 0:
        return _Side(value, lower, upper, n)
    if upper <= 0:
        return _Side(-value, -upper, -lower, n)
    return _Side(abs(value), 0.0, max(-lower, upper), n)


def _more_labels(diff: float, a: _Side, b: _Side) -> int | None:
    """The least k more labels per version for which the half-width towards 0 drops below
    |diff| (None: no difference, or no labels to scale from)."""
    if diff == 0 or not a.n or not b.n:
        return None
    if diff > 0:  # the lower bound is to pass 0: a's upper side, b's lower side
        near_a, near_b = a.upper - a.value, b.value - b.lower
    else:
        near_a, near_b = a.value - a.lower, b.upper - b.value
    if not math.isfinite(near_a + near_b):
        return None
    n_a, n_b = a.n, b.n

    def tells(k: int) -> bool:
        width = math.hypot(near_a * math.sqrt(n_a / (n_a + k)), near_b * math.sqrt(n_b / (n_b + k)))
        return width < abs(diff)

    high = 1
    while not tells(high):
        high *= 2
    low = high // 2  # does not tell (or is 0)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if tells(middle) else (middle, high)
    return high
