"""Drift and data quality of a window, from its summed sketch counters and a reference profile.

`evaluate(reference, counters, spec)` reads only the sketch counters of `reference.id`
(`core.sketch`: cells, missing, wrong, oor, new, `@rows`, `@outliers`) from a window's summed
buckets and gives a `DriftReport`: what `GET .../drift` returns, JSON-ready, never a NaN or an
infinity (`None` where a number cannot be had). `no_reference()` is the report of a monitor
without a reference; a window that sketched nothing is `status: "no_data"`. `point(report, ...)`
slims a report for a `?series=` point, and `series(reference, points, spec, ...)` gives every
point of a series at once (each statistic is written once, over rows of windows: a report is one
row), the same as `point(evaluate(...))` of each up to rounding.

Columns. Every profiled column is tested; the features make `features` and the dataset share,
the prediction and the score make `predictions`, and `prediction_drift` is the score's test when
the score is profiled, else the prediction's. A column's `samples` are the window's values that
fell in a cell (missing and wrong-type values are not in any). Ratios: `missing_ratio` and
`wrong_type_ratio` are of the records sketched (`@rows`); `out_of_range_ratio` (numeric) and
`new_category_ratio` (categorical) are of the column's values (`samples`), as Evidently counts
them over the non-null values.

Method and threshold (Evidently's defaults): numeric -> `wasserstein` >= 0.1, categorical ->
`jensenshannon` >= 0.1; with fewer than `SMALL_SAMPLE` (1,000) values in the window: numeric ->
`ks` p < 0.05, categorical -> `chisquare` p < 0.05. A distance drifts when `statistic >=
threshold`, a test when `p_value < threshold`. `spec.drift.overrides` (by column name):
- a method, with or without a threshold: that method at every sample size, the threshold given
  or the method's default (`DEFAULT_THRESHOLDS`: distances 0.1, p-value bounds 0.05);
- a threshold alone: the kind's distance (wasserstein / jensenshannon) at every sample size, with
  that bound (a bound for a distance is no bound for a p-value, so no switch);
- `wasserstein` and `ks` need ordered cells: named for a categorical column they are ignored and
  the defaults apply (the spec parser refuses them where `spec.features` declares the kind).
Dataset drift: `share` = drifted features / features tested (those with at least one value),
`drifted` when `share >= spec.drift.share`; `share` is None when no feature had a value.

The statistics, on the cells of `core.profile` (numeric: underflow, the interior bins between
`edges`, overflow; categorical: the top categories, then "other"), reference proportions p
against the window's proportions q, and how each relates to the same statistic on raw values
(tests/unit/test_drift_bounds.py checks each bound with hypothesis against scipy on raw samples,
binned with the same cell rule):

- `wasserstein` (normed): the exact first Wasserstein distance W = integral |F - G| between the
  two binned distributions, each spread uniformly within an interior bin, the under- and
  overflow mass placed at the reference's minimum `edges[0]` and maximum `edges[-1]`; divided by
  the reference's std (`max(std, 0.001)`, as Evidently's `wasserstein_distance_norm`). The
  binned CDFs equal the raw ones at every edge, so within a bin of width w_j the two integrands
  differ by at most max(p_j, q_j), and
      |W_binned - (W_exact - T)| <= sum_j w_j * max(p_j, q_j),
  where T = E_current[(edges[0] - X)+ + (X - edges[-1])+] is how far beyond the reference's range
  the window's values lie, which the sketch does not see (it counts them: `out_of_range_ratio`).
  So mass beyond the range counts as if it sat on the range's end: a shift far outside the
  reference raises W no more than one onto its extremes would, and the out-of-range ratio (and
  the outlier share) says the rest.
- `ks`: the Kolmogorov-Smirnov statistic max |F - G| over the edges (where the binned CDFs are
  exact), so KS_binned <= KS_exact <= KS_binned + max_j max(p_j, q_j) (between two edges each
  CDF moves by at most its cell's mass). p-value: Smirnov's asymptotic two-sample distribution,
  `scipy.special.kolmogorov(sqrt(n m / (n + m)) * KS)` with n the reference's count (the profile)
  and m the window's values; as KS_binned <= KS_exact, p_binned >= the same formula on the exact
  statistic (binning can hide drift, never invent it). scipy's `ks_2samp(method="asymp")` uses
  the finite-n Kolmogorov distribution at round(nm/(n+m)) instead (`kstwo`): close (0.0215
  there against 0.0222 here at nm/(n+m) = 900, KS = 0.05), but up to 100 ms a call where this
  takes 1 us.
- `jensenshannon`: the Jensen-Shannon distance sqrt((KL(p||m) + KL(q||m)) / 2), m = (p + q) / 2,
  natural logarithm (scipy's `jensenshannon` with its default base, as current Evidently calls
  it; some older Evidently releases passed base 2, whose values are 1/sqrt(ln 2) ~ 1.20 times
  these), in [0, sqrt(ln 2)]. On raw continuous values it does not exist: every tool bins (so
  does Evidently). Merging cells never increases it (data processing inequality), so it is at
  most the distance on any finer binning of the same values.
- `psi`: sum_j (p_j - q_j) ln(p_j / q_j) with Evidently's smoothing (`get_binned_data`): in each
  distribution a zero proportion becomes 0.0001, or a millionth of its smallest non-zero one
  when that is at most 0.0001. Without zero cells it is KL(p||q) + KL(q||p), which merging cells
  never increases either (at most PSI on a finer binning).
- `chisquare`: Pearson's goodness of fit of the window's counts to the reference's proportions,
  sum_j (o_j - e_j)^2 / e_j with e_j = p_j * m, p-value from chi^2 with (cells - 1) degrees of
  freedom (scipy's `chisquare(o, e)`, as Evidently calls it). A cell the reference never had
  (p_j = 0: the "other" cell of a reference with few categories, an under- or overflow cell) gets
  the proportion 0.5 / n (half a reference row) and the proportions are renormalised, so a value
  the reference never had is strong, finite evidence rather than an infinite statistic; a cell
  empty in both is left out. Without zero cells it is scipy's statistic and p-value exactly.

One scale at every window size: a column's `distance` is its distance method's value
(`distance_method`: the override's method when that is a distance, else wasserstein /
jensenshannon) in every window, the test's windows included. The test decides `drifted` below
1,000 values, but its statistic is on another scale (a chi-square statistic grows with the
cells and the values: an alert `above: 0.1` would fire on any small window), so charts (a
series' points), alerts and gauges read the distance.

Names the alert machine reads (`alert_values`, each as (value, samples)): `drift_share` (the
dataset share; samples = records sketched), `prediction_drift` (the prediction drift column's
distance; samples = its column's values), `feature_drift:<feature>` (that feature's distance;
samples = its values), `missing_ratio:<feature>` (samples = records sketched), `outlier_ratio`
(samples = records sketched). A name without a value in the window is absent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import repeat
from typing import Literal

import msgspec
import numpy as np
from scipy import special

from truthloop.core import sketch, wire
from truthloop.core.profile import (
    PREDICTION,
    SCORE,
    ColumnProfile,
    FeatureKind,
    NumericProfile,
    Reference,
)
from truthloop.core.spec import DriftMethod, DriftOverride, MonitorSpec

Status = Literal["ok", "no_reference", "no_data"]

SMALL_SAMPLE = 1000
"""Below this many values in the window, the defaults are tests (ks, chisquare), not distances."""
DEFAULT_THRESHOLDS: Mapping[DriftMethod, float] = {
    "wasserstein": 0.1,
    "jensenshannon": 0.1,
    "psi": 0.1,
    "ks": 0.05,
    "chisquare": 0.05,
}
P_VALUE_METHODS: frozenset[DriftMethod] = frozenset({"ks", "chisquare"})
"""Methods whose threshold bounds the p-value (drifted when p < threshold)."""
DISTANCE_METHODS: frozenset[DriftMethod] = frozenset({"wasserstein", "jensenshannon", "psi"})
"""Methods whose threshold bounds the statistic (drifted when statistic >= threshold)."""
ORDERED_METHODS: frozenset[DriftMethod] = frozenset({"wasserstein", "ks"})
"""Methods that need ordered cells: numeric columns only."""
OTHER = "other"
"""The label of a categorical histogram's last cell."""
ROUNDING = 1e-15
"""A Jensen-Shannon divergence below this is the sums' rounding, not a difference (its square
root, ~3e-8, would otherwise show identical distributions apart)."""
MAX_COUNT = 2.0**53
"""Counts are read as at most this (and not below 0, not NaN): whatever a store sums, a report
stays finite."""
RESIDUE = 1e-12
"""A profile share below this is rounding residue, not mass."""
MIN_STD = 0.001
"""The floor of the std that normalises the Wasserstein distance (Evidently's)."""

# -- the report ----------------------------------------------------------------------------------


class ReferenceInfo(msgspec.Struct, frozen=True):
    """Which reference the window was measured against."""

    id: int
    version: str
    created: float
    rows: int
    source: str


class Histogram(msgspec.Struct, frozen=True):
    """Both distributions, ready to plot. Numeric: `edges` (cells: below `edges[0]`, each interior
    bin, above `edges[-1]`); categorical: `categories` (the reference's, then "other").
    `reference` and `current` hold one proportion per cell (`current` all 0 without values)."""

    reference: tuple[float, ...]
    current: tuple[float, ...]
    edges: tuple[float, ...] | None = None
    categories: tuple[str, ...] | None = None


class ColumnDrift(msgspec.Struct, frozen=True):
    """One column's test in the window, and its data quality."""

    name: str
    kind: FeatureKind
    method: DriftMethod
    statistic: float | None
    threshold: float
    drifted: bool
    p_value: float | None
    samples: int
    missing_ratio: float | None
    wrong_type_ratio: float | None
    out_of_range_ratio: float | None
    new_category_ratio: float | None
    histogram: Histogram
    distance: float | None = None
    """The column's distance (`distance_method`) whatever the window's size: `statistic` when
    `method` is a distance, else computed alongside the test; one scale for charts and alerts."""
    distance_method: DriftMethod | None = None


class DatasetDrift(msgspec.Struct, frozen=True):
    """`share` of the `tested` features that drifted (`names`), and whether it reaches
    `threshold` (`spec.drift.share`)."""

    tested: int
    count: int
    share: float | None
    threshold: float
    drifted: bool
    names: tuple[str, ...]


class PredictionDrift(msgspec.Struct, frozen=True):
    """The test of the score (when profiled) or the prediction."""

    column: str
    method: DriftMethod
    statistic: float | None
    threshold: float
    p_value: float | None
    drifted: bool
    samples: int
    distance: float | None = None
    distance_method: DriftMethod | None = None


class Outliers(msgspec.Struct, frozen=True):
    count: int
    ratio: float | None


class DriftReport(msgspec.Struct, frozen=True):
    """A window against a reference: what `GET .../drift` returns. `samples` are the records
    sketched against the reference in the window."""

    status: Status
    reference: ReferenceInfo | None = None
    samples: int = 0
    features: tuple[ColumnDrift, ...] = ()
    predictions: tuple[ColumnDrift, ...] = ()
    dataset: DatasetDrift | None = None
    prediction_drift: PredictionDrift | None = None
    outliers: Outliers | None = None


class DriftPoint(msgspec.Struct, frozen=True):
    """One point of a `?series=`: the report slimmed to its numbers."""

    start: float
    end: float
    status: Status
    samples: int
    statistics: dict[str, float | None]
    """Per feature, its `distance` (one scale at every window size, so a chart's points compare)."""
    drifted: tuple[str, ...]
    share: float | None
    prediction_drift: float | None
    outlier_ratio: float | None


# -- entry points --------------------------------------------------------------------------------


def no_reference() -> DriftReport:
    """The report of a monitor (or version) without a reference: a status, not an error."""
    return DriftReport(status="no_reference")


def evaluate(reference: Reference, counters: Mapping[str, float], spec: MonitorSpec) -> DriftReport:
    """The window whose summed counters are `counters`, against `reference`."""
    profile = reference.profile
    info = ReferenceInfo(
        reference.id, reference.version, reference.created, profile.rows, reference.source
    )
    rows = _count(counters, sketch.rows_key(reference.id))
    if rows <= 0:
        return DriftReport(status="no_data", reference=info)
    overrides = {o.feature: o for o in spec.drift.overrides}
    features: list[ColumnDrift] = []
    predictions: list[ColumnDrift] = []
    for column in profile.columns:
        tested = _column(reference.id, column, counters, rows, overrides.get(column.name))
        (predictions if column.name in (PREDICTION, SCORE) else features).append(tested)
    dataset = _dataset(features, spec.drift.share)
    outliers = _count(counters, sketch.outliers_key(reference.id))
    return DriftReport(
        status="ok",
        reference=info,
        samples=rows,
        features=tuple(features),
        predictions=tuple(predictions),
        dataset=dataset,
        prediction_drift=_prediction_drift(predictions),
        outliers=Outliers(outliers, _ratio(outliers, rows)),
    )


def point(report: DriftReport, start: float, end: float) -> DriftPoint:
    """`report` slimmed for a series point covering [start, end)."""
    dataset, prediction, outliers = report.dataset, report.prediction_drift, report.outliers
    return DriftPoint(
        start=start,
        end=end,
        status=report.status,
        samples=report.samples,
        statistics={c.name: c.distance for c in report.features},
        drifted=dataset.names if dataset else (),
        share=dataset.share if dataset else None,
        prediction_drift=prediction.distance if prediction else None,
        outlier_ratio=outliers.ratio if outliers else None,
    )


def series(
    reference: Reference,
    points: Sequence[Mapping[str, float]],
    spec: MonitorSpec,
    first: float,
    width: float,
) -> list[DriftPoint]:
    """The slim points of a series, point i the window [first + i width, first + (i + 1) width)
    whose summed counters are `points[i]`: each what `point(evaluate(...))` gives, but computed
    column by column over every point at once (a 30-day series of 10-minute points is 4,320
    reports)."""
    ref = reference.id
    columns = reference.profile.columns
    shares = [proportions(c) for c in columns]
    index: dict[str, int] = {}
    for column, p in zip(columns, shares, strict=True):
        prefix = f"{sketch.PREFIX}{ref}:{column.name}:"
        for cell in range(len(p)):
            index[prefix + str(cell)] = len(index)
    rows_at, outliers_at = len(index), len(index) + 1
    index[sketch.rows_key(ref)], index[sketch.outliers_key(ref)] = rows_at, outliers_at
    keys = list(index)
    matrix = np.zeros((len(points), len(keys)))
    for i, counters in enumerate(points):
        if len(counters) < len(keys) // 4:  # a quiet point: place the few counters it has
            for key, value in counters.items():
                at = index.get(key)
                if at is not None:
                    matrix[i, at] = value
        else:
            values = map(counters.get, keys, repeat(0.0))
            matrix[i] = np.fromiter(values, dtype=np.float64, count=len(keys))
    counts = np.minimum(np.where(matrix[:, rows_at:] > 0, matrix[:, rows_at:], 0.0), MAX_COUNT)
    rows, outliers = np.rint(counts[:, 0]), np.rint(counts[:, 1])
    overrides = {o.feature: o for o in spec.drift.overrides}
    features: list[tuple[str, _Tests]] = []
    predictions: dict[str, _Tests] = {}
    start = 0
    for column, p in zip(columns, shares, strict=True):
        cells = matrix[:, start : start + len(p)]
        start += len(p)
        tests = _test(column, p, cells, overrides.get(column.name))
        if column.name in (PREDICTION, SCORE):
            predictions[column.name] = tests
        else:
            features.append((column.name, tests))
    prediction = predictions.get(SCORE) or predictions.get(PREDICTION)
    names = [name for name, _ in features]
    statistics = [_nones(t.distance) for _, t in features]
    tested = [(np.isfinite(t.statistic) | np.isfinite(t.p_value)).tolist() for _, t in features]
    drifted = [t.drifted.tolist() for _, t in features]
    predicted = _nones(prediction.distance) if prediction else [None] * len(points)
    out: list[DriftPoint] = []
    for i, (n, o) in enumerate(zip(rows.tolist(), outliers.tolist(), strict=True)):
        start_i, end_i = first + i * width, first + (i + 1) * width
        if n <= 0:
            out.append(DriftPoint(start_i, end_i, "no_data", 0, {}, (), None, None, None))
            continue
        hit = tuple(name for f, name in enumerate(names) if tested[f][i] and drifted[f][i])
        checked = sum(1 for f in range(len(names)) if tested[f][i])
        out.append(
            DriftPoint(
                start=start_i,
                end=end_i,
                status="ok",
                samples=int(n),
                statistics={name: statistics[f][i] for f, name in enumerate(names)},
                drifted=hit,
                share=len(hit) / checked if checked else None,
                prediction_drift=predicted[i],
                outlier_ratio=min(o / n, 1.0),
            )
        )
    return out


def _nones(values: np.ndarray) -> list[float | None]:
    return [None if math.isnan(v) else v for v in values.tolist()]


def drifted_features(report: DriftReport) -> tuple[str, ...]:
    """The features that drifted in the window (for the status condition)."""
    return report.dataset.names if report.dataset else ()


def alert_values(report: DriftReport) -> dict[str, tuple[float, int]]:
    """The drift values an alert may name (see the module docstring), each (value, samples)."""
    values: dict[str, tuple[float, int]] = {}
    if report.status != "ok":
        return values
    rows = report.samples
    if report.dataset is not None and report.dataset.share is not None:
        values["drift_share"] = (report.dataset.share, rows)
    prediction = report.prediction_drift
    if prediction is not None and prediction.distance is not None:
        values["prediction_drift"] = (prediction.distance, prediction.samples)
    for column in report.features:
        if column.distance is not None:
            values[f"feature_drift:{column.name}"] = (column.distance, column.samples)
        if column.missing_ratio is not None:
            values[f"missing_ratio:{column.name}"] = (column.missing_ratio, rows)
    if report.outliers is not None and report.outliers.ratio is not None:
        values["outlier_ratio"] = (report.outliers.ratio, rows)
    return values


# -- one column ----------------------------------------------------------------------------------


class _Tests(msgspec.Struct):
    """One column tested in P windows at once (a report's one window, or a series' points)."""

    samples: np.ndarray
    """(P,) values in a cell per window."""
    q: np.ndarray
    """(P, cells) the windows' proportions (0 without values)."""
    methods: list[DriftMethod]
    thresholds: list[float]
    statistic: np.ndarray
    """(P,) NaN where there is none (no values, or not finite)."""
    p_value: np.ndarray
    drifted: np.ndarray
    distance: np.ndarray
    """(P,) the column's distance (`distance_method`) at every window size; NaN as above."""
    distance_method: DriftMethod


def _test(
    column: ColumnProfile, p: np.ndarray, cells: np.ndarray, override: DriftOverride | None
) -> _Tests:
    """`column` (proportions `p`) tested in each window whose cell counts are a row of `cells`."""
    # Counts are whole: NaN and below 0 are 0, a fraction rounds (so no cell is a denormal).
    cells = np.rint(np.minimum(np.where(cells > 0, cells, 0.0), MAX_COUNT))
    total = cells.sum(axis=1)
    samples = total
    has = samples > 0
    q = np.divide(cells, total[:, None], out=np.zeros_like(cells), where=has[:, None])
    kind: FeatureKind = "numeric" if isinstance(column, NumericProfile) else "categorical"
    small, large = choose(kind, 0, override), choose(kind, SMALL_SAMPLE, override)
    is_large = samples >= SMALL_SAMPLE
    statistic = np.full(len(samples), np.nan)
    p_value = np.full(len(samples), np.nan)
    drifted = np.zeros(len(samples), dtype=bool)
    for (method, threshold), rows in ((small, has & ~is_large), (large, has & is_large)):
        if not rows.any():
            continue
        stat, pv = _statistics(method, column, p, q[rows], cells[rows], samples[rows])
        stat[~np.isfinite(stat)] = np.nan
        pv[~np.isfinite(pv)] = np.nan
        statistic[rows], p_value[rows] = stat, pv
        drifted[rows] = pv < threshold if method in P_VALUE_METHODS else stat >= threshold
    measure = distance_method(kind, override)
    distance = statistic.copy()
    for (method, _), rows in ((small, has & ~is_large), (large, has & is_large)):
        if method != measure and rows.any():
            stat, _ = _statistics(measure, column, p, q[rows], cells[rows], samples[rows])
            distance[rows] = np.where(np.isfinite(stat), stat, np.nan)
    chosen = [large if big else small for big in is_large.tolist()]
    return _Tests(
        samples=samples,
        q=q,
        methods=[m for m, _ in chosen],
        thresholds=[t for _, t in chosen],
        statistic=statistic,
        p_value=p_value,
        drifted=drifted,
        distance=distance,
        distance_method=measure,
    )


def _column(
    ref: int,
    column: ColumnProfile,
    counters: Mapping[str, float],
    rows: int,
    override: DriftOverride | None,
) -> ColumnDrift:
    prefix = f"{sketch.PREFIX}{ref}:{column.name}:"
    p = proportions(column)
    cells = np.array([[counters.get(prefix + str(i), 0.0) for i in range(len(p))]], np.float64)
    tests = _test(column, p, cells, override)
    samples = int(tests.samples[0])
    q = tests.q[0]
    missing = _count(counters, prefix + sketch.MISSING)
    wrong = _count(counters, prefix + sketch.WRONG)
    if isinstance(column, NumericProfile):
        oor = _ratio(_count(counters, prefix + sketch.OUT_OF_RANGE), samples)
        new = None
        histogram = Histogram(tuple(p.tolist()), tuple(q.tolist()), edges=column.edges)
    else:
        oor = None
        new = _ratio(_count(counters, prefix + sketch.NEW), samples)
        categories = (*column.categories, OTHER)
        histogram = Histogram(tuple(p.tolist()), tuple(q.tolist()), categories=categories)
    return ColumnDrift(
        name=column.name,
        kind="numeric" if isinstance(column, NumericProfile) else "categorical",
        method=tests.methods[0],
        statistic=_finite(float(tests.statistic[0])),
        threshold=tests.thresholds[0],
        drifted=bool(tests.drifted[0]),
        p_value=_finite(float(tests.p_value[0])),
        samples=samples,
        missing_ratio=_ratio(missing, rows),
        wrong_type_ratio=_ratio(wrong, rows),
        out_of_range_ratio=oor,
        new_category_ratio=new,
        histogram=histogram,
        distance=_finite(float(tests.distance[0])),
        distance_method=tests.distance_method,
    )


def choose(
    kind: FeatureKind, samples: int, override: DriftOverride | None
) -> tuple[DriftMethod, float]:
    """The method and threshold of a column of `kind` with `samples` values in the window."""
    distance: DriftMethod = "wasserstein" if kind == "numeric" else "jensenshannon"
    test: DriftMethod = "ks" if kind == "numeric" else "chisquare"
    method: DriftMethod = distance if samples >= SMALL_SAMPLE else test
    if override is None:
        return method, DEFAULT_THRESHOLDS[method]
    if override.method is not None:
        if kind == "categorical" and override.method in ORDERED_METHODS:
            return method, DEFAULT_THRESHOLDS[method]
        method = override.method
    elif override.threshold is not None:
        method = distance
    threshold = override.threshold
    return method, DEFAULT_THRESHOLDS[method] if threshold is None else threshold


def distance_method(kind: FeatureKind, override: DriftOverride | None) -> DriftMethod:
    """The distance a column is charted and alerted on: its override's method when that is a
    distance (and fits the kind), else the kind's default distance."""
    method = override.method if override is not None else None
    if method in DISTANCE_METHODS and not (kind == "categorical" and method in ORDERED_METHODS):
        assert method is not None
        return method
    return "wasserstein" if kind == "numeric" else "jensenshannon"


def _statistics(
    method: DriftMethod,
    column: ColumnProfile,
    p: np.ndarray,
    q: np.ndarray,
    cells: np.ndarray,
    samples: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(statistic, p-value) per row of windows with values; the p-value NaN for a distance."""
    none = np.full(len(q), np.nan)
    if method == "jensenshannon":
        return jensenshannon_rows(p, q), none
    if method == "psi":
        return psi_rows(p, q), none
    if method == "chisquare":
        return chisquare_rows(p, cells, column.count)
    assert isinstance(column, NumericProfile)  # choose() keeps ordered methods numeric
    if method == "ks":
        statistic = ks_rows(p, q)
        return statistic, ks_p_value_rows(statistic, column.count, samples)
    edges = np.asarray(column.edges, dtype=np.float64)
    return wasserstein_rows(edges, p, q) / max(column.std, MIN_STD), none


# -- the statistics (public for the bound tests) -------------------------------------------------
#
# Each `*_rows` function takes the reference's proportions `p` (cells,) and one window per row of
# `q` (P, cells): a report tests its one window, a series all its points at once.


def wasserstein_rows(edges: np.ndarray, p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """W1 between the binned distributions `p` and each row of `q` over `edges` (cells as in
    `core.profile`; mass uniform within an interior bin, under/overflow on `edges[0]` /
    `edges[-1]`), not normed."""
    if len(edges) < 2:
        return np.zeros(len(q))
    d = np.cumsum(p[: len(edges)] - q[:, : len(edges)], axis=1)  # F - G below edges[j]
    a, b = np.abs(d[:, :-1]), np.abs(d[:, 1:])
    total = a + b
    same = d[:, :-1] * d[:, 1:] >= 0
    crossing = np.divide(a * a + b * b, total, out=np.zeros_like(total), where=total > 0)
    integral: np.ndarray = np.sum(np.diff(edges) * np.where(same, total, crossing), axis=1)
    return integral / 2


def ks_rows(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """The largest gap between the two binned CDFs, at the cells' boundaries."""
    if not len(p):
        return np.zeros(len(q))
    gap: np.ndarray = np.max(np.abs(np.cumsum(p - q, axis=1)), axis=1)
    return gap


def ks_p_value_rows(statistic: np.ndarray, n: int, m: np.ndarray) -> np.ndarray:
    """Smirnov's asymptotic two-sample p-value of KS statistics between n and m values."""
    if n <= 0:
        return np.ones(len(statistic))
    en = np.divide(n * m, n + m, out=np.zeros(len(m)), where=m > 0)
    return np.where(m > 0, special.kolmogorov(np.sqrt(en) * statistic), 1.0)


def jensenshannon_rows(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """The Jensen-Shannon distance, natural log (scipy's `jensenshannon` with its default base)."""
    m = (p + q) / 2
    divergence = (_kl_rows(np.broadcast_to(p, q.shape), m) + _kl_rows(q, m)) / 2
    return np.sqrt(np.where(divergence > ROUNDING, divergence, 0.0))


def psi_rows(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """The population stability index with Evidently's smoothing of empty cells."""
    ps, qs = _fill_zeros(p[None, :])[0], _fill_zeros(q)
    index: np.ndarray = np.sum((ps - qs) * np.log(ps / qs), axis=1)
    return index


def chisquare_rows(p: np.ndarray, observed: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Pearson's chi-square of each row of `observed` counts against proportions `p` of a
    reference of `n` rows, and its p-value (a zero proportion counts as half a reference row;
    a cell empty in both is left out; see above)."""
    keep = (p > 0)[None, :] | (observed > 0)
    shares = np.where(keep, np.where(p > 0, p, 0.5 / max(n, 1)), 0.0)
    norm = shares.sum(axis=1, keepdims=True)
    expected = shares / norm * observed.sum(axis=1, keepdims=True)
    terms = np.divide((observed - expected) ** 2, expected, out=np.zeros_like(expected), where=keep)
    statistic = terms.sum(axis=1)
    df = keep.sum(axis=1) - 1
    tested = df >= 1
    p_value = np.where(tested, special.chdtrc(np.maximum(df, 1), statistic), 1.0)
    return np.where(tested, statistic, 0.0), p_value


def wasserstein(edges: np.ndarray, p: np.ndarray, q: np.ndarray) -> float:
    """`wasserstein_rows` of one window."""
    return float(wasserstein_rows(edges, p, q[None, :])[0])


def ks(p: np.ndarray, q: np.ndarray) -> float:
    """`ks_rows` of one window."""
    return float(ks_rows(p, q[None, :])[0])


def ks_p_value(statistic: float, n: int, m: int) -> float:
    """`ks_p_value_rows` of one window."""
    return float(ks_p_value_rows(np.array([statistic]), n, np.array([float(m)]))[0])


def jensenshannon(p: np.ndarray, q: np.ndarray) -> float:
    """`jensenshannon_rows` of one window."""
    return float(jensenshannon_rows(p, q[None, :])[0])


def psi(p: np.ndarray, q: np.ndarray) -> float:
    """`psi_rows` of one window."""
    return float(psi_rows(p, q[None, :])[0])


def chisquare(p: np.ndarray, observed: np.ndarray, n: int) -> tuple[float, float]:
    """`chisquare_rows` of one window."""
    statistic, p_value = chisquare_rows(p, observed[None, :], n)
    return float(statistic[0]), float(p_value[0])


def proportions(column: ColumnProfile) -> np.ndarray:
    """A column's reference proportions per cell; rounding residue (a last share computed as 1 -
    the others, ~1e-16 or below 0) is 0, so identical distributions are at distance 0."""
    shares = column.proportions if isinstance(column, NumericProfile) else column.shares
    p = np.asarray(shares, dtype=np.float64)
    p = np.where(p > RESIDUE, p, 0.0)
    total = float(p.sum())
    return p / total if total > 0 else p


def _kl_rows(p: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Per row, sum of p log(p / m) over the cells where p > 0 (then m > 0 too)."""
    positive = p > 0
    ratio = np.divide(p, m, out=np.ones_like(p), where=positive)
    divergence: np.ndarray = np.sum(p * np.log(ratio), axis=1)
    return divergence


def _fill_zeros(p: np.ndarray) -> np.ndarray:
    """Evidently's smoothing, per row: a 0 becomes 0.0001, or a millionth of the row's smallest
    non-zero proportion when that is at most 0.0001."""
    positive = p > 0
    smallest = np.min(np.where(positive, p, np.inf), axis=1, keepdims=True)
    fill = np.where(smallest <= 0.0001, smallest / 10**6, 0.0001)
    return np.where(positive, p, fill)


# -- the dataset ---------------------------------------------------------------------------------


def _dataset(features: list[ColumnDrift], share: float) -> DatasetDrift:
    tested = [c for c in features if c.statistic is not None or c.p_value is not None]
    names = tuple(c.name for c in tested if c.drifted)
    fraction = len(names) / len(tested) if tested else None
    return DatasetDrift(
        tested=len(tested),
        count=len(names),
        share=fraction,
        threshold=share,
        drifted=fraction is not None and fraction >= share,
        names=names,
    )


def _prediction_drift(predictions: list[ColumnDrift]) -> PredictionDrift | None:
    by_name = {c.name: c for c in predictions}
    column = by_name.get(SCORE) or by_name.get(PREDICTION)
    if column is None:
        return None
    return PredictionDrift(
        column=column.name,
        method=column.method,
        statistic=column.statistic,
        threshold=column.threshold,
        p_value=column.p_value,
        drifted=column.drifted,
        samples=column.samples,
        distance=column.distance,
        distance_method=column.distance_method,
    )


def _count(counters: Mapping[str, float], key: str) -> int:
    value = float(counters.get(key, 0.0))
    return round(min(value, MAX_COUNT)) if value > 0 else 0  # NaN is not > 0


def _ratio(part: int, whole: int) -> float | None:
    return min(part / whole, 1.0) if whole > 0 else None


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


# -- the summary the state carries ---------------------------------------------------------------


def summary(report: DriftReport) -> wire.DriftSummary:
    """`report` in short, as the monitor's state and status show it: the verdicts, never a
    statistic, so the state's version moves only when one changes (which features drifted,
    dataset drift, prediction drift, the status)."""
    dataset, prediction = report.dataset, report.prediction_drift
    if report.status != "ok" or dataset is None:
        return wire.DriftSummary(status=report.status)
    return wire.DriftSummary(
        status=report.status,
        drifted=dataset.drifted,
        share=dataset.share,
        threshold=dataset.threshold,
        features=dataset.names[: wire.MAX_DRIFTED],
        profiled=dataset.tested,
        prediction=prediction is not None and prediction.drifted,
    )
