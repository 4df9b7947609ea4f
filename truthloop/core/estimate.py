"""Estimated performance before labels (CBPE for classifiers, DLE for regression), from a
window's summed counters and the reference's calibration (`core.calibration`) or loss model
(`core.lossmodel`). No raw row is read at read time.

Ingest (`ingest`, called by `core.sketch` for every record sketched against a reference that
has a calibration) adds per-minute counters, keys starting with `~` and holding `:` (so neither
metrics nor lifetime totals read them), under the reference's id:

- binary: `~<ref>:@cbpe:<c>:<bin>`, the records whose predicted class is `<c>` (0/1) and whose
  score fell in `<bin>` (`calibration.bins`, the ROC AUC histogram's 1000 bins): the score
  histogram of *all* predictions, labeled or not. A record with a score counts (a float
  prediction without a separate score is its own score, as `core.metrics` reads it); one
  without, or whose prediction is no class, does not. A segment value's copy (`core.segments`:
  `^<segment>=<value>:~<ref>:@cbpe:...`) counts each record at the first bin of its calibration
  step instead (`segment_codes`): a few dozen keys per value rather than hundreds of bins, and
  the same estimates (see below).
- regression (a reference with a loss model): `~<ref>:@dle:<name>` (`dle_key`) for each of
  `lossmodel.COUNTERS`, the sums of each record's predicted |e|, e², e and their variance
  proxies (`core.sketch` computes them from the columns it reads anyway).
- multiclass (records with class scores, `records.PredictionRecord.scores`): with q a record's
  calibrated class probabilities (`calibration.probabilities`, over the calibration's classes
  K; a class it lacks scores 0) and j its predicted class (K: a label none of them),
  `~<ref>:@cbpe:cm:<i>:<j>` adds q_i: the expected confusion matrix, summed per bucket; `v:<j>`
  adds q_j (1 - q_j) and `u:<i>` adds q_i (1 - q_i), the label variances the bands need.

`evaluate(reference, counters, spec)` (and `series` over many windows at once) gives each
estimable metric as a `metrics.Estimate` (names of `metrics.METRIC_NAMES`): `{}` when the
reference has no calibration or the task has no estimator; a metric whose denominator is empty
(no records, no expected positives) is `Estimate(None)`.

Binary: with p_b the calibrated probability of the positive class in bin b and n1_b, n0_b the
records predicted 1 and 0 there, the expected confusion matrix is E[TP] = sum n1_b p_b, E[FP] =
sum n1_b (1 - p_b), E[FN] = sum n0_b p_b, E[TN] = sum n0_b (1 - p_b), whence accuracy,
precision, recall, F1, specificity and balanced accuracy. ROC AUC is the expected ROC curve's
(NannyML's): bin b holds n_b p_b expected positives and n_b (1 - p_b) expected negatives, ranked
as `core.metrics` ranks its histogram (pairs in one bin are ties). The calibration is constant
within a bin, so every figure equals the same estimator computed row by row over the window's
raw scores (within rounding; tests/unit/test_estimate.py holds them within 0.001 on 50k rows).
It is constant within a whole isotonic step too, which is why a segment's histogram can keep one
bin per step: the expected confusion matrix, its variances and the calibration's error term are
sums per step; and ROC AUC is unchanged, as within a step each bin's expected positives and
negatives are both proportional to its records, so the step's own pairs count half whether its
records spread over its bins or all sit in its first (pairs across steps rank alike).

Regression (direct loss estimation): `mae`, `rmse` and `mean_error` are the window's mean
predicted |e|, the root of its mean predicted e², and its mean predicted e; their band (the
realized metric's sampling error on a window of that many records, with the trees' own error)
is `core.lossmodel`'s.

The binary band (at `confidence`, 95% by default) is the sampling error of the *realized* metric
of a window of that size around the estimate, analytically: given the window's scores, each record's
label is Bernoulli(p) of its bin, independently, so TP (a sum over the records predicted 1) and
FN (over those predicted 0) are independent with variances sum n1_b p_b (1 - p_b) and
sum n0_b p_b (1 - p_b); FP = N1 - TP and TN = N0 - FN. Every metric above is a function of (TP,
FN) and its band is the delta method's normal interval, clipped to [0, 1]. ROC AUC's band is
Hanley-McNeil's at the expected numbers of positives and negatives (it also counts the scores'
own sampling error: wider than the labels' alone). The band covers the realized metric as long
as the calibration holds in the window: under covariate shift (the inputs move, P(y | score)
does not) it does, and the estimate tracks the realized metric; under concept shift (P(y |
score) itself changes) the calibration is wrong, the estimate does not move and the band says
nothing: that is CBPE's limit, which no estimator without labels escapes (drift and, once
labels come, the realized metrics show it).

Multiclass: every metric of `metrics.METRIC_NAMES["multiclass"]` from the expected confusion
matrix, as `core.metrics` computes them from a realized one (averages over the calibration's
classes; a per-class ratio with an empty denominator is 0). Bands: accuracy (= the micro
averages) from the variance of the number right, sum over records of q_j (1 - q_j); each class's
precision, recall and F1 by the delta method on its TP (variance `v`) and FN (`u - v`), and an
average's standard deviation as the average of the classes' (an upper bound whatever the
classes' correlations, so these bands are conservative: about twice as wide as needed in the
simulation of tests/unit/test_estimate.py). The calibration's own error is not counted for
multiclass.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from itertools import repeat
from operator import itemgetter
from typing import TYPE_CHECKING, Protocol, cast

import numpy as np
import numpy.typing as npt

from truthloop.core import calibration, intervals, lossmodel, metrics
from truthloop.core.calibration import BinaryCalibration, MulticlassCalibration
from truthloop.core.cost import COST_TOTAL
from truthloop.core.profile import Reference
from truthloop.core.spec import COST, CostSpec

if TYPE_CHECKING:
    from truthloop.core.records import PredictionRecord
    from truthloop.core.spec import MonitorSpec

BINS = calibration.BINS
CBPE = "@cbpe"
DLE = "@dle"

BINARY_METRICS = metrics.ESTIMATED_NAMES["binary"]
"""The binary metrics CBPE estimates (brier score and log loss need each row's score)."""

MARKERS = (f":{CBPE}:", f":{DLE}:")
"""What an estimation counter's key holds (a feature sketch's never does: no column name starts
with `@`)."""

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.intp]
Estimates = dict[str, metrics.Estimate]


def is_counter(key: str) -> bool:
    """Whether `key` is an estimation counter (`~<ref>:@cbpe:...` or `~<ref>:@dle:...`)."""
    return key[:1] == "~" and (MARKERS[0] in key or MARKERS[1] in key)


def binary_key(ref: int, predicted: int, bin_: int) -> str:
    """The counter of records of reference `ref` predicted `predicted` with a score in `bin_`."""
    return f"~{ref}:{CBPE}:{predicted}:{bin_}"


def dle_key(ref: int, name: str) -> str:
    """The counter of one of `lossmodel.COUNTERS` under reference `ref`."""
    return f"~{ref}:{DLE}:{name}"


def multiclass_keys(ref: int, classes: int) -> tuple[str, ...]:
    """A multiclass calibration's counters (`classes` K): the expected confusion cells
    `cm:<i>:<j>` (actual class i, predicted j, K: a label none of the classes), then `v:<j>`
    (sum of q_j (1 - q_j) over records predicted j), then `u:<i>` (sum of q_i (1 - q_i) over all
    records), q a record's calibrated class probabilities."""
    return _multiclass_keys(ref, classes)


@lru_cache(maxsize=256)
def _multiclass_keys(ref: int, k: int) -> tuple[str, ...]:
    head = f"~{ref}:{CBPE}:"
    return (
        *(f"{head}cm:{i}:{j}" for i in range(k) for j in range(k + 1)),
        *(f"{head}v:{j}" for j in range(k)),
        *(f"{head}u:{i}" for i in range(k)),
    )


@lru_cache(maxsize=256)
def _binary_keys(ref: int) -> tuple[str, ...]:
    """Every binary histogram key of a reference: predicted 0's bins, then predicted 1's."""
    return tuple(binary_key(ref, c, b) for c in (0, 1) for b in range(BINS))


# -- ingest ----------------------------------------------------------------------------------


class Ingest(Protocol):
    """Counters a batch of records adds: per record and per column j, `codes[:, j]` indexes
    `keys` (-1: nothing) and `weights[:, j]` is what it adds (None: 1 each). `compact` (None:
    none) maps each code to the one a segment value's copy counts instead (`segment_codes`),
    with one entry more, -1 for -1."""

    @property
    def keys(self) -> Sequence[str]: ...

    @property
    def compact(self) -> Ints | None: ...

    def deltas(self, records: Sequence[PredictionRecord]) -> tuple[Ints, Floats | None]: ...


class _BinaryIngest:
    """The binary score histogram of every record (`binary_key`); a segment value's copy
    counts each record at its calibration step's first bin (`segment_codes`)."""

    __slots__ = ("compact", "keys", "threshold")

    def __init__(self, ref: int, threshold: float, curve: calibration.Curve) -> None:
        self.keys = _binary_keys(ref)
        self.threshold = threshold
        self.compact: Ints | None = segment_codes(curve)

    def deltas(self, records: Sequence[PredictionRecord]) -> tuple[Ints, Floats | None]:
        predictions = [r.prediction for r in records]
        scores = [r.score for r in records]
        if set(map(type, scores)) == {float} and set(map(type, predictions)) <= _CLASS_TYPES:
            classes = np.array(predictions, dtype=np.int64)
            found = calibration.bins(np.array(scores, dtype=np.float64)) + BINS * classes
            codes = np.where((classes == 0) | (classes == 1), found, -1)
        else:
            codes = np.fromiter(
                map(self._code, predictions, scores), dtype=np.intp, count=len(records)
            )
        return codes.astype(np.intp).reshape(-1, 1), None

    def _code(self, prediction: object, score: float | None) -> int:
        """A record's key index, -1 when it has no score or no class (`core.metrics`' rule)."""
        if score is None:
            if type(prediction) is not float or not 0.0 <= prediction <= 1.0:
                return -1
            score, predicted = prediction, int(prediction >= self.threshold)
        else:
            try:
                predicted = metrics.binary_class(prediction, "prediction")
            except metrics.LabelError:
                return -1
        return predicted * BINS + min(int(score * BINS), BINS - 1)


_CLASS_TYPES = frozenset({int, bool})


def segment_codes(curve: calibration.Curve) -> Ints:
    """Per binary histogram key index (predicted 0's bins, then 1's), the index of its
    calibration step's first bin for the same class, and -1 at index `2 * BINS` (so -1, no
    key, stays -1): where a segment value's copy of the histogram counts a record."""
    starts = np.zeros(BINS, dtype=np.intp)
    starts[np.asarray(curve.starts, dtype=np.intp)] = curve.starts
    starts = np.maximum.accumulate(starts)
    return np.concatenate([starts, starts + BINS, [-1]]).astype(np.intp)


class _MulticlassIngest:
    """The expected confusion cells of every record with class scores (`multiclass_keys`):
    few keys, so a segment value's copy is the same (no `compact`)."""

    __slots__ = ("classes", "getter", "index", "keys", "tables")

    compact = None

    def __init__(self, ref: int, found: MulticlassCalibration) -> None:
        self.classes = found.classes
        self.getter = itemgetter(*found.classes)
        self.index = {c: i for i, c in enumerate(found.classes)}
        self.tables = np.stack([calibration.table(c) for c in found.curves])
        self.keys = _multiclass_keys(ref, len(found.classes))

    def deltas(self, records: Sequence[PredictionRecord]) -> tuple[Ints, Floats | None]:
        k = len(self.classes)
        n = len(records)
        codes = np.full((n, 2 * k + 1), -1, dtype=np.intp)
        weights = np.zeros((n, 2 * k + 1), dtype=np.float64)
        rows = [i for i, r in enumerate(records) if r.scores]
        if not rows:
            return codes, weights
        scores: list[dict[str, float]] = [records[i].scores for i in rows]  # type: ignore[misc]
        try:  # the usual batch: every record scores every class
            matrix = np.array(list(map(self.getter, scores)), dtype=np.float64).reshape(-1, k)
        except KeyError:
            matrix = np.array(
                [[found.get(c, 0.0) for c in self.classes] for found in scores], dtype=np.float64
            )
        q = calibration.calibrate(self.tables, matrix)
        labels = [records[i].prediction for i in rows]
        if set(map(type, labels)) == {str}:
            said = map(self.index.get, cast(list[str], labels), repeat(k))
        else:
            said = map(self._predicted, labels)
        predicted = np.fromiter(said, dtype=np.intp, count=len(rows))
        at = np.asarray(rows, dtype=np.intp)
        spread = q * (1.0 - q)
        codes[at, :k] = np.arange(k)[None, :] * (k + 1) + predicted[:, None]
        weights[at, :k] = q
        named = predicted < k
        codes[at[named], k] = k * (k + 1) + predicted[named]
        weights[at[named], k] = spread[named, predicted[named]]
        codes[at, k + 1 :] = k * (k + 1) + k + np.arange(k)[None, :]
        weights[at, k + 1 :] = spread
        return codes, weights

    def _predicted(self, prediction: object) -> int:
        if type(prediction) is str:
            return self.index.get(prediction, len(self.classes))
        try:
            return self.index.get(metrics.class_label(prediction), len(self.classes))
        except metrics.LabelError:
            return len(self.classes)


def ingest(reference: Reference, spec: MonitorSpec) -> list[Ingest]:
    """What a record sketched against `reference` adds for estimation (nothing without a
    calibration)."""
    found = reference.profile.calibration
    out: list[Ingest] = []
    if spec.task == "binary" and isinstance(found, BinaryCalibration):
        out.append(_BinaryIngest(reference.id, spec.threshold, found.curve))
    elif spec.task == "multiclass" and isinstance(found, MulticlassCalibration):
        out.append(_MulticlassIngest(reference.id, found))
    return out


# -- reading ---------------------------------------------------------------------------------


def evaluate(
    reference: Reference,
    counters: Mapping[str, float],
    spec: MonitorSpec,
    *,
    confidence: float = 0.95,
) -> Estimates:
    """The estimated metrics of a window's summed counters (see the module docstring)."""
    return series(reference, [counters], spec, confidence=confidence)[0]


def series(
    reference: Reference,
    points: Sequence[Mapping[str, float]],
    spec: MonitorSpec,
    *,
    confidence: float = 0.95,
) -> list[Estimates]:
    """`evaluate` of every window of `points` at once (one row of arrays per window)."""
    found = reference.profile.calibration
    if spec.task == "binary" and isinstance(found, BinaryCalibration):
        counts = metrics.dense(points, _binary_keys(reference.id))
        n1, n0 = counts[:, BINS:], counts[:, :BINS]
        rows = binary_rows(n1, n0, found.curve, confidence)
        price = spec.metrics.cost
        if price is not None:
            costs = binary_cost(n1, n0, found.curve, price, confidence)
            for row, found_cost in zip(rows, costs, strict=True):
                row.update(found_cost)
        return rows
    model = reference.profile.loss
    if spec.task == "regression" and model is not None:
        z = intervals.z_score(confidence)
        return [regression(model, LossSums(reference.id, c), z, spec.metrics.cost) for c in points]
    if spec.task == "multiclass" and isinstance(found, MulticlassCalibration):
        k = len(found.classes)
        keys = _multiclass_keys(reference.id, k)
        counts = metrics.dense(points, keys)
        cells = k * (k + 1)
        expected = counts[:, :cells].reshape(-1, k, k + 1)
        rows = multiclass_rows(
            expected, counts[:, cells : cells + k], counts[:, cells + k :], confidence
        )
        if spec.metrics.cost is not None:
            costs = multiclass_cost(expected, found.classes, spec.metrics.cost, confidence)
            for row, found_cost in zip(rows, costs, strict=True):
                row.update(found_cost)
        return rows
    return [{} for _ in points]


def records(reference: Reference, counters: Mapping[str, float]) -> int:
    """The records a window's estimate rests on (binary: those in the score histogram)."""
    found = reference.profile.calibration
    if isinstance(found, BinaryCalibration):
        return round(sum(counters.get(k, 0.0) for k in _binary_keys(reference.id)))
    if reference.profile.loss is not None:
        return round(LossSums(reference.id, counters).n)
    if isinstance(found, MulticlassCalibration):
        k = len(found.classes)
        cells = _multiclass_keys(reference.id, k)[: k * (k + 1)]
        return round(sum(counters.get(key, 0.0) for key in cells))
    return 0


def binary_rows(
    n1: Floats, n0: Floats, curve: calibration.Curve, confidence: float = 0.95
) -> list[Estimates]:
    """The binary estimates of windows (rows) of records per bin predicted 1 (`n1`) and 0
    (`n0`), with `curve` the positive class's calibrated probability."""
    z = intervals.z_score(confidence)
    p = calibration.table(curve)
    q = 1.0 - p
    tp, fn = n1 @ p, n0 @ p
    var_tp, var_fn = n1 @ (p * q), n0 @ (p * q)
    # the calibration's own error: each fitted value is a mean over its reference rows
    starts = np.asarray(curve.starts, dtype=np.intp)
    fitted = np.asarray(curve.values)
    with np.errstate(divide="ignore", invalid="ignore"):
        var_fit = np.where(
            np.asarray(curve.weights) > 0, fitted * (1 - fitted) / np.asarray(curve.weights), 0.0
        )
    block1 = np.add.reduceat(n1, starts, axis=1)
    block0 = np.add.reduceat(n0, starts, axis=1)
    big1, big0 = n1.sum(axis=1), n0.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = metrics.binary_ratios(tp, fn, big1, big0)
        auc = _auc(n1 + n0, p)
    pos, neg = tp + fn, big1 + big0 - tp - fn
    out: list[Estimates] = [{} for _ in range(len(pos))]
    for name, (value, d_tp, d_fn) in ratios.items():
        with np.errstate(invalid="ignore"):
            d_fit = d_tp[:, None] * block1 + d_fn[:, None] * block0
            variance = d_tp**2 * var_tp + d_fn**2 * var_fn + (d_fit**2) @ var_fit
            half = z * np.sqrt(variance)
        for row, (v, h) in enumerate(zip(value.tolist(), half.tolist(), strict=True)):
            out[row][name] = _band(v, v - h, v + h)
    with np.errstate(divide="ignore", invalid="ignore"):
        low, high = intervals.hanley_mcneil(auc, pos, neg, z)
    rows = zip(auc.tolist(), pos.tolist(), neg.tolist(), low.tolist(), high.tolist(), strict=True)
    for row, (a, p_, n_, lo, hi) in enumerate(rows):
        if math.isfinite(a) and p_ > 0 and n_ > 0:
            out[row]["roc_auc"] = _band(a, lo, hi)
        else:
            out[row]["roc_auc"] = metrics.Estimate(None)
    return out


def multiclass_rows(
    cells: Floats, v: Floats, u: Floats, confidence: float = 0.95
) -> list[Estimates]:
    """The multiclass estimates of windows (rows): `cells` (rows x K x K+1) the expected
    confusion matrix (actual class, predicted class; the last column a label none of the
    classes), `v` and `u` (rows x K) the label variances of `multiclass_keys`."""
    z = intervals.z_score(confidence)
    k = cells.shape[1]
    n = cells.sum(axis=(1, 2))
    tp = np.einsum("rii->ri", cells[:, :, :k])
    said = cells.sum(axis=1)[:, :k]  # records predicted each class (known, not random)
    support = cells.sum(axis=2)  # expected records of each actual class
    fn = support - tp
    var_tp, var_fn = v, np.maximum(u - v, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        accuracy = tp.sum(axis=1) / n
        accuracy_var = v.sum(axis=1) / n**2
        per_class = {
            "precision": (tp / said, 1 / said, 0 * tp),
            "recall": (tp / support, fn / support**2, -tp / support**2),
            "f1": (
                2 * tp / (said + support),
                2 * (said + fn) / (said + support) ** 2,
                -2 * tp / (said + support) ** 2,
            ),
        }
        averaged: dict[str, tuple[Floats, Floats]] = {}
        share = support / support.sum(axis=1, keepdims=True)
        for name, (value, d_tp, d_fn) in per_class.items():
            value = np.where(np.isfinite(value), value, 0.0)  # scikit-learn's zero_division=0
            spread = np.sqrt(np.nan_to_num(d_tp**2 * var_tp + d_fn**2 * var_fn))
            # classes share records, so their errors correlate: the sum of the standard
            # deviations bounds the average's (Cauchy-Schwarz), whatever the correlations
            averaged[f"macro_{name}"] = (value.mean(axis=1), spread.mean(axis=1) ** 2)
            averaged[f"weighted_{name}"] = (
                (share * value).sum(axis=1),
                (share * spread).sum(axis=1) ** 2,
            )
    out: list[Estimates] = [{} for _ in range(len(n))]
    for row in range(len(n)):
        if not n[row] > 0:
            out[row] = dict.fromkeys(metrics.METRIC_NAMES["multiclass"], metrics.Estimate(None))
            continue
        a, h = float(accuracy[row]), z * math.sqrt(float(accuracy_var[row]))
        found = out[row]
        found["accuracy"] = _band(a, a - h, a + h)
        for name, (values, variances) in averaged.items():
            value, half = float(values[row]), z * math.sqrt(max(float(variances[row]), 0.0))
            found[name] = _band(value, value - half, value + half)
        for name in ("precision", "recall", "f1"):
            found[f"micro_{name}"] = found["accuracy"]
        out[row] = {name: found[name] for name in metrics.METRIC_NAMES["multiclass"]}
    return out


def binary_cost(
    n1: Floats, n0: Floats, curve: calibration.Curve, cost: CostSpec, confidence: float = 0.95
) -> list[Estimates]:
    """The expected `cost` per prediction and `cost_total` of windows (rows) of records per bin
    predicted 1 (`n1`) and 0 (`n0`): the expected confusion matrix priced (a true positive or
    negative's gain taken off). Band: given the scores, a record predicted 1 costs
    `falsePositive` with probability 1 - p and `-truePositive` with p, a variance of
    (falsePositive + truePositive)² p (1 - p), and likewise for those predicted 0; the records
    are independent, plus each fitted value's binomial error as for the other metrics."""
    z = intervals.z_score(confidence)
    p = calibration.table(curve)
    q = 1.0 - p
    ones = q * cost.false_positive - p * cost.true_positive
    zeros = p * cost.false_negative - q * cost.true_negative
    total = n1 @ ones + n0 @ zeros
    spread1 = cost.false_positive + cost.true_positive
    spread0 = cost.false_negative + cost.true_negative
    variance = spread1**2 * (n1 @ (p * q)) + spread0**2 * (n0 @ (p * q))
    starts = np.asarray(curve.starts, dtype=np.intp)
    fitted = np.asarray(curve.values)
    weights = np.asarray(curve.weights)
    with np.errstate(divide="ignore", invalid="ignore"):
        var_fit = np.where(weights > 0, fitted * (1 - fitted) / weights, 0.0)
    d_fit = -spread1 * np.add.reduceat(n1, starts, axis=1) + spread0 * np.add.reduceat(
        n0, starts, axis=1
    )
    variance = variance + (d_fit**2) @ var_fit
    n = n1.sum(axis=1) + n0.sum(axis=1)
    out: list[Estimates] = []
    for t, v, count in zip(total.tolist(), variance.tolist(), n.tolist(), strict=True):
        out.append(priced(t, z * math.sqrt(max(v, 0.0)), count))
    return out


def multiclass_cost(
    cells: Floats, classes: Sequence[str], cost: CostSpec, confidence: float = 0.95
) -> list[Estimates]:
    """The expected `cost` and `cost_total` of windows (rows) of expected confusion matrices
    (`cells`, rows x K x K+1, as `multiclass_rows` takes them): each expected cell priced by the
    matrix (a pair not listed, or a predicted label none of the classes, costs 0). Band: a
    record's cost variance is at most the expected square of its cost (the mean's square left
    out), so the total's is at most the cells priced squared: conservative."""
    z = intervals.z_score(confidence)
    k = len(classes)
    index = {c: i for i, c in enumerate(classes)}
    price = np.zeros((k, k + 1))
    for cell in cost.matrix:
        i, j = index.get(cell.actual), index.get(cell.predicted)
        if i is not None and j is not None:
            price[i, j] = cell.cost
    total = np.einsum("rij,ij->r", cells, price)
    bound = np.einsum("rij,ij->r", cells, price * price)
    n = cells.sum(axis=(1, 2))
    return [
        priced(t, z * math.sqrt(max(b, 0.0)), count)
        for t, b, count in zip(total.tolist(), bound.tolist(), n.tolist(), strict=True)
    ]


def priced(total: float, half_total: float, n: float) -> Estimates:
    """`cost` (per prediction) and `cost_total` from an expected total, the half-width of its
    band and the number of predictions."""
    if n <= 0:
        return {COST: metrics.Estimate(None), COST_TOTAL: metrics.Estimate(None)}
    return {
        COST: _unbounded(total / n, (total - half_total) / n, (total + half_total) / n),
        COST_TOTAL: _unbounded(total, total - half_total, total + half_total),
    }


def _auc(n: Floats, p: Floats) -> Floats:
    """The expected ROC curve's AUC per row of per-bin records `n`: n p positives and n (1 - p)
    negatives per bin, pairs within a bin counted half."""
    positives = n * p
    negatives = n * (1.0 - p)
    below = np.cumsum(negatives, axis=1) - negatives
    wins = np.sum(positives * (below + 0.5 * negatives), axis=1)
    result: Floats = wins / (positives.sum(axis=1) * negatives.sum(axis=1))
    return result


def _band(value: float, lower: float, upper: float) -> metrics.Estimate:
    """An estimate clipped to [0, 1]; None when undefined, no bounds when they are not finite."""
    if not math.isfinite(value):
        return metrics.Estimate(None)
    if not (math.isfinite(lower) and math.isfinite(upper)):
        return metrics.Estimate(value)
    return metrics.Estimate(value, max(0.0, min(lower, value)), min(1.0, max(upper, value)))


# -- regression: direct loss estimation ------------------------------------------------------


class LossSums:
    """A window's `@dle` sums (`lossmodel.COUNTERS`) against one reference."""

    __slots__ = ("ae", "e", "n", "se", "vae", "ve", "vse")

    def __init__(self, ref: int, counters: Mapping[str, float]) -> None:
        get = counters.get
        self.n, self.ae, self.se, self.e, self.vae, self.vse, self.ve = (
            get(dle_key(ref, name), 0.0) for name in lossmodel.COUNTERS
        )


def regression(
    model: lossmodel.LossModel, sums: LossSums, z: float, cost: CostSpec | None = None
) -> Estimates:
    """A window's estimated `mae`, `rmse` and `mean_error` from its loss sums (`{}` when no
    record was predicted); the bands as `core.lossmodel` describes them. With a `cost`, also
    `cost` and `cost_total`: the predicted over- and under-prediction, (|e| + e) / 2 and
    (|e| - e) / 2, priced per unit; its band's half-width is at most |a + b| / 2 times |e|'s
    plus |a - b| / 2 times e's (a standard deviation of a sum is at most the sum of theirs)."""
    n = sums.n
    if n < 0.5:
        return {}
    k_ae, k_se, k_e = model.scale
    b_ae, b_se, b_e = model.bias
    mae = max(sums.ae / n, 0.0)
    mse = max(sums.se / n, 0.0)
    mean_error = sums.e / n
    half_ae = math.hypot(z * math.sqrt(k_ae * max(sums.vae, 0.0)) / n, b_ae * mae)
    half_se = math.hypot(z * math.sqrt(k_se * max(sums.vse, 0.0)) / n, b_se * mse)
    half_e = math.hypot(z * math.sqrt(k_e * max(sums.ve, 0.0)) / n, b_e * mae)
    found = {
        "mae": _unbounded(mae, max(mae - half_ae, 0.0), mae + half_ae),
        "rmse": _unbounded(
            math.sqrt(mse), math.sqrt(max(mse - half_se, 0.0)), math.sqrt(mse + half_se)
        ),
        "mean_error": _unbounded(mean_error, mean_error - half_e, mean_error + half_e),
    }
    if cost is not None:
        a, b = cost.over_prediction, cost.under_prediction
        over, under = max((sums.ae + sums.e) / 2, 0.0), max((sums.ae - sums.e) / 2, 0.0)
        half = n * (abs(a + b) / 2 * half_ae + abs(a - b) / 2 * half_e)
        found.update(priced(a * over + b * under, half, n))
    return found


def _unbounded(value: float, lower: float, upper: float) -> metrics.Estimate:
    """An estimate on an open scale; None when not finite (sums that overflowed)."""
    if not math.isfinite(value):
        return metrics.Estimate(None)
    if not (math.isfinite(lower) and math.isfinite(upper)):
        return metrics.Estimate(value)
    return metrics.Estimate(value, min(lower, value), max(upper, value))
