"""Closed-form confidence intervals on plain numbers, for the metrics in `core.metrics`.

Each function takes sufficient statistics (counts, sums) and returns bounds; none reads data rows.
scipy is not a dependency, so the Student-t quantile is computed here: Newton's method on the exact
t distribution function for up to `T_EXACT_DF` degrees of freedom (integer degrees of freedom have
a finite series for it, Abramowitz & Stegun 26.7.3–4), above that the Cornish–Fisher expansion
(A&S 26.7.5), whose error there is below 1e-10. Either way the quantile is within 1e-9 of the
exact one for p up to 0.99995 (tests hold it to scipy's).

The intervals take numbers or numpy arrays of them alike (a batch of windows evaluated at once,
`metrics.evaluate_many`), an array's bounds element by element; numpy is imported where an
interval is computed, not with the module (the sidecar imports `metrics` and never loads it).
Given Python numbers they return numpy's scalars (float subclasses, but not for msgspec).
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Floats = npt.NDArray[np.float64]

X = TypeVar("X", float, "Floats")
"""A number, or an array of them."""
Bounds = tuple[Any, Any]

T_EXACT_DF = 400
"""Up to this many degrees of freedom the t quantile is solved exactly; above, a series is used."""

_STANDARD_NORMAL = NormalDist()


def z_score(confidence: float) -> float:
    """The two-sided standard normal quantile for `confidence` (1.959964 for 0.95).

    Raises ValueError unless 0 < confidence < 1.
    """
    if not 0.0 < confidence < 1.0:  # also refuses NaN
        raise ValueError(f"confidence {confidence!r} is not in (0, 1)")
    return _STANDARD_NORMAL.inv_cdf(0.5 + confidence / 2)


def wilson(successes: X, trials: X, z: float) -> Bounds:
    """Wilson score interval of a binomial proportion; `trials` must be positive.

    Unlike the Wald interval it stays inside [0, 1] and does not collapse to a point at 0 or 1.
    """
    import numpy as np

    p = np.minimum(np.maximum(successes / trials, 0.0), 1.0)
    z2 = z * z
    denominator = 1 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denominator
    half = z * np.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / denominator
    return np.maximum(0.0, centre - half), np.minimum(1.0, centre + half)


def mover_sum(a: X, a_bounds: Bounds, b: X, b_bounds: Bounds) -> Bounds:
    """Interval of a + b for independent estimates a and b with their own intervals.

    MOVER (Zou & Donner 2008; Newcombe's methods 10 and 11 for proportions): each side recovers
    the variance from the distance of the near bounds. With Wilson intervals it inherits their
    good behaviour at 0 and 1, where the normal approximation collapses to a point; with
    symmetric intervals it is the normal interval, the half-widths added in quadrature.
    """
    import numpy as np

    below = np.hypot(a - a_bounds[0], b - b_bounds[0])
    above = np.hypot(a_bounds[1] - a, b_bounds[1] - b)
    return a + b - below, a + b + above


def mover_mean(a: X, a_bounds: Bounds, b: X, b_bounds: Bounds) -> Bounds:
    """Interval of (a + b) / 2 (`mover_sum` halved)."""
    lower, upper = mover_sum(a, a_bounds, b, b_bounds)
    return lower / 2, upper / 2


def mover_difference(a: X, a_bounds: Bounds, b: X, b_bounds: Bounds) -> Bounds:
    """Interval of b − a (`mover_sum` of b and −a): with two Wilson intervals, Newcombe's hybrid
    score interval of a difference of proportions (method 10)."""
    return mover_sum(b, b_bounds, -a, (-a_bounds[1], -a_bounds[0]))


def hanley_mcneil(auc: X, positives: X, negatives: X, z: float) -> Bounds:
    """Hanley & McNeil (1982) normal interval of a ROC AUC, clipped to [0, 1].

    Its standard error assumes exponential score distributions; it is zero at an AUC of exactly
    0 or 1, so the interval is a point there.
    """
    q1 = auc / (2 - auc)
    q2 = 2 * auc * auc / (1 + auc)
    a2 = auc * auc
    spread = auc * (1 - auc) + (positives - 1) * (q1 - a2) + (negatives - 1) * (q2 - a2)
    import numpy as np

    variance = spread / (positives * negatives)
    half = z * np.sqrt(np.maximum(variance, 0.0))
    return np.maximum(0.0, auc - half), np.minimum(1.0, auc + half)


def t_mean(total: Floats, total_sq: Floats, n: Floats, confidence: float) -> Bounds:
    """Student-t intervals of means, each from the sum and sum of squares of `n` values (arrays
    alike); NaN bounds with fewer than two values (no variance estimate). `n` is a count
    (rounded); the t quantile is found once per distinct count. The variance Σx² − (Σx)²/n
    cancels when the values vary little against their size; the bounds then carry an absolute
    rounding error up to about t·√(2ε·Σx²/(n − 1)), ~1e-8 of the values' magnitude.
    """
    import numpy as np

    counts = np.round(n)
    p = 0.5 + confidence / 2
    t = np.full(counts.shape, np.nan)
    for count in np.unique(counts[counts >= 2]).tolist():
        t[counts == count] = t_quantile(p, int(count) - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = total / n
        variance = np.maximum((total_sq - total * mean) / (n - 1), 0.0)
        half = t * np.sqrt(variance / n)
    return mean - half, mean + half


def t_quantile(p: float, df: int) -> float:
    """The p-quantile of Student's t with `df` (≥ 1) degrees of freedom (see the module docstring).

    Raises ValueError unless 0 < p < 1 and df ≥ 1.
    """
    if not 0.0 < p < 1.0 or df < 1:
        raise ValueError(f"t quantile needs 0 < p < 1 and df >= 1, got p={p!r}, df={df!r}")
    if p < 0.5:
        return -t_quantile(1 - p, df)
    if df == 1:
        return math.tan(math.pi * (p - 0.5))
    if df == 2:
        return (2 * p - 1) / math.sqrt(2 * p * (1 - p))
    t = _cornish_fisher(p, df)
    if df > T_EXACT_DF:
        return t
    log_density_scale = (
        math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    )
    for _ in range(50):
        density = math.exp(log_density_scale - (df + 1) / 2 * math.log1p(t * t / df))
        step = (_t_cdf(t, df) - p) / density
        t -= step
        if abs(step) <= 1e-13 * max(1.0, abs(t)):
            break
    return t


def _cornish_fisher(p: float, df: int) -> float:
    x = _STANDARD_NORMAL.inv_cdf(p)
    x2 = x * x
    g1 = x * (x2 + 1) / 4
    g2 = x * ((5 * x2 + 16) * x2 + 3) / 96
    g3 = x * (((3 * x2 + 19) * x2 + 17) * x2 - 15) / 384
    g4 = x * ((((79 * x2 + 776) * x2 + 1482) * x2 - 1920) * x2 - 945) / 92160
    return x + (g1 + (g2 + (g3 + g4 / df) / df) / df) / df


def _t_cdf(t: float, df: int) -> float:
    """P(T ≤ t) for t ≥ 0 and integer df ≥ 2, from the finite series of A&S 26.7.3–4."""
    c = df / (df + t * t)  # cos²θ with θ = atan(t / √df)
    sin = t / math.sqrt(df + t * t)
    term = 1.0
    series = 1.0
    if df % 2 == 0:
        for k in range(1, df // 2):
            term *= c * (2 * k - 1) / (2 * k)
            series += term
        two_sided = sin * series
    else:
        for k in range(1, (df - 1) // 2):
            term *= c * (2 * k) / (2 * k + 1)
            series += term
        two_sided = (2 / math.pi) * (math.atan(t / math.sqrt(df)) + sin * math.sqrt(c) * series)
    return 0.5 + two_sided / 2
