"""Calibration from the reference: the probability that a prediction is right, given its score.

CBPE (confidence-based performance estimation, `core.estimate`) reads a window's scores and turns
each into the probability of the positive class (binary) or of each class (multiclass). A
model's raw scores are not always probabilities one can trust, so they are calibrated on the
reference, where the actual outcome is known:

- binary: isotonic regression of `actual` (0/1) on `score`;
- multiclass: one-vs-rest isotonic regression per class of `actual == class` on that class's
  score, the calibrated class probabilities of a row renormalised to sum to 1 (a row whose
  calibrated probabilities are all 0 keeps its raw scores, renormalised).

Isotonic regression is fitted by pool-adjacent-violators on the score *bins* of
`core.metrics`' ROC AUC histogram (`BINS` = 1000 bins of width 0.001, bin `min(int(s * 1000),
999)`): each bin is one point, weighted by its rows, at its rows' mean outcome. The fitted curve
is a step function of the bin (`Curve`): constant within a bin, so a window's score histogram
carries everything CBPE needs, and the estimate from the histogram is the estimate from the rows
(a bin no reference score fell in takes the value of the nearest fitted bin below it, or the
first one above). Fitting on 1000 points costs the same whatever the reference's size.

The calibration also keeps the reference's labeled counts (binary: per score bin, the rows by
predicted and actual class; multiclass: the confusion matrix), from which `core.estimate` draws
reference chunks of a window's size (the realized metrics' spread, and a suggested threshold).
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import numpy as np
import numpy.typing as npt

from truthloop.core import metrics
from truthloop.core.columns import ACTUAL, PREDICTION, SCORE
from truthloop.core.table import Column, Table, not_none

BINS = metrics.AUC_BINS
"""Score bins, the ROC AUC histogram's (width 1/BINS)."""
MAX_CLASSES = 50
"""Classes a multiclass calibration holds (one curve each)."""

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.intp]


class Curve(msgspec.Struct, frozen=True, array_like=True):
    """An isotonic step function of the score bin: bins `starts[i]` up to `starts[i + 1] - 1`
    (the last up to `BINS - 1`) map to `values[i]`; `starts[0]` is 0, `values` never decrease.
    `weights[i]` is the reference rows the value was fitted on: `values[i]` is their mean outcome,
    whose sampling variance (`values[i] (1 - values[i]) / weights[i]`) is the calibration's own
    uncertainty, which `core.estimate` adds to its bands."""

    starts: tuple[int, ...]
    values: tuple[float, ...]
    weights: tuple[float, ...]


class BinaryCalibration(msgspec.Struct, frozen=True, tag="binary", tag_field="type"):
    """The positive class's probability per score bin, and the reference's labeled histogram:
    per bin in `bins` (those with reference rows), the rows by (predicted, actual) class."""

    curve: Curve
    rows: int
    """Reference rows fitted (with a score, a predicted class and an actual)."""
    bins: tuple[int, ...]
    tp: tuple[int, ...]
    fp: tuple[int, ...]
    tn: tuple[int, ...]
    fn: tuple[int, ...]


class MulticlassCalibration(msgspec.Struct, frozen=True, tag="multiclass", tag_field="type"):
    """One curve per class (`classes`, as `metrics.class_label` writes them), and the
    reference's confusion matrix: `confusion[i][j]` rows of actual class i predicted as j."""

    classes: tuple[str, ...]
    curves: tuple[Curve, ...]
    rows: int
    confusion: tuple[tuple[int, ...], ...]


Calibration = BinaryCalibration | MulticlassCalibration


def bins(scores: Floats) -> Ints:
    """Each score's bin (scores in [0, 1]), by the ROC AUC histogram's rule."""
    found = (scores * BINS).astype(np.intp)
    return np.minimum(found, BINS - 1)


def isotonic(x: Ints, y: Floats) -> Curve:
    """The isotonic (non-decreasing) least-squares fit of outcomes `y` on bins `x`, as a step
    function of the bin: pool-adjacent-violators over the bins' means weighted by their rows."""
    weight = np.bincount(x, minlength=BINS).astype(np.float64)
    total = np.bincount(x, weights=y, minlength=BINS)
    seen = np.flatnonzero(weight)
    starts: list[int] = []
    sums: list[float] = []
    weights: list[float] = []
    for b, w, s in zip(seen.tolist(), weight[seen].tolist(), total[seen].tolist(), strict=True):
        starts.append(b)
        sums.append(s)
        weights.append(w)
        while len(sums) > 1 and sums[-2] * weights[-1] >= sums[-1] * weights[-2]:
            s_last, w_last = sums.pop(), weights.pop()
            starts.pop()
            sums[-1] += s_last
            weights[-1] += w_last
    if not starts:
        return Curve((0,), (0.0,), (0.0,))
    values = [s / w for s, w in zip(sums, weights, strict=True)]
    starts[0] = 0
    return Curve(tuple(starts), tuple(min(max(v, 0.0), 1.0) for v in values), tuple(weights))


def table(curve: Curve) -> Floats:
    """The curve's value at every bin (`BINS` values)."""
    out = np.empty(BINS, dtype=np.float64)
    ends = [*curve.starts[1:], BINS]
    for start, end, value in zip(curve.starts, ends, curve.values, strict=True):
        out[start:end] = value
    return out


def fit_binary(scores: Floats, predicted: Ints, actual: Ints) -> BinaryCalibration:
    """The binary calibration of reference rows: scores in [0, 1], predicted and actual classes
    (0/1), all of one length."""
    x = bins(scores)
    curve = isotonic(x, actual.astype(np.float64))
    cells = [
        np.bincount(x[(predicted == p) & (actual == a)], minlength=BINS)
        for p, a in ((1, 1), (1, 0), (0, 0), (0, 1))
    ]
    used = np.flatnonzero(sum(cells))
    return BinaryCalibration(
        curve,
        len(x),
        tuple(used.tolist()),
        *(tuple(c[used].tolist()) for c in cells),
    )


def fit_multiclass(
    classes: Sequence[str], scores: Floats, predicted: Sequence[str], actual: Sequence[str]
) -> MulticlassCalibration:
    """The multiclass calibration of reference rows: `scores` (rows x classes, in [0, 1]) the
    score of each of `classes`, the predicted and actual labels as text."""
    index = {c: i for i, c in enumerate(classes)}
    truth = np.fromiter((index.get(a, -1) for a in actual), dtype=np.intp, count=len(actual))
    said = np.fromiter((index.get(p, -1) for p in predicted), dtype=np.intp, count=len(predicted))
    curves = tuple(
        isotonic(bins(scores[:, k]), (truth == k).astype(np.float64)) for k in range(len(classes))
    )
    k = len(classes)
    known = (truth >= 0) & (said >= 0)
    confusion = np.bincount(truth[known] * k + said[known], minlength=k * k).reshape(k, k)
    return MulticlassCalibration(
        tuple(classes), curves, len(truth), tuple(tuple(row) for row in confusion.tolist())
    )


def probabilities(calibration: MulticlassCalibration, scores: Floats) -> Floats:
    """Calibrated class probabilities of rows of class scores (rows x classes, in [0, 1]), each
    row renormalised to sum to 1 (one whose calibrated values are all 0 falls back to its raw
    scores, and to uniform without any)."""
    tables = np.stack([table(c) for c in calibration.curves])  # classes x BINS
    return calibrate(tables, scores)


def calibrate(tables: Floats, scores: Floats) -> Floats:
    """`probabilities` with the curves' tables already built (classes x BINS)."""
    k = tables.shape[0]
    found = tables[np.arange(k)[None, :], bins(np.clip(scores, 0.0, 1.0))]
    total = found.sum(axis=1, keepdims=True)
    raw = np.clip(scores, 0.0, 1.0)
    raw_total = raw.sum(axis=1, keepdims=True)
    fallback = np.where(raw_total > 0, raw / np.where(raw_total > 0, raw_total, 1.0), 1.0 / k)
    return np.where(total > 0, found / np.where(total > 0, total, 1.0), fallback)


# -- from a reference table ----------------------------------------------------------------------

CLASS_SCORE = "score:"
"""A multiclass reference's class scores are columns `score:<class>` (a feature's name never holds
a `:`)."""


def class_columns(names: Sequence[str]) -> dict[str, str]:
    """A multiclass reference's class score columns: class label -> column name."""
    return {n[len(CLASS_SCORE) :]: n for n in names if n.startswith(CLASS_SCORE)}


def from_table(table: Table, task: str, warnings: list[str]) -> Calibration | None:
    """The calibration of a reference table with `actual` and scores (`score` for a binary
    model, `score:<class>` columns for a multiclass one), None without them or without a row
    that has all it needs. Rows lacking a usable score, prediction or actual are left out, with
    a warning saying how many."""
    if ACTUAL not in table.columns or PREDICTION not in table.columns or table.rows == 0:
        return None
    actual = _labels(table.columns[ACTUAL])
    predicted = _labels(table.columns[PREDICTION])
    found: Calibration | None = None
    if task == "binary" and SCORE in table.columns:
        scores = table.columns[SCORE].numbers
        truth = _binary(actual)
        said = _binary(predicted)
        usable = (truth >= 0) & (said >= 0) & (scores >= 0) & (scores <= 1)
        if usable.any():
            found = fit_binary(scores[usable], said[usable], truth[usable])
    elif task == "multiclass":
        columns = class_columns(table.names)
        if not columns:
            return None
        if len(columns) > MAX_CLASSES:
            warnings.append(
                f"{len(columns)} class score columns, at most {MAX_CLASSES}: not calibrated"
            )
            return None
        classes = sorted(columns)
        matrix = np.stack([table.columns[columns[c]].numbers for c in classes], axis=1)
        pairs = zip(actual, predicted, strict=True)
        known = np.array([a is not None and p is not None for a, p in pairs], dtype=bool)
        usable = known & np.all((matrix >= 0) & (matrix <= 1), axis=1)
        if usable.any():
            rows = np.flatnonzero(usable).tolist()
            found = fit_multiclass(
                classes,
                matrix[usable],
                [str(predicted[i]) for i in rows],
                [str(actual[i]) for i in rows],
            )
        task_rows = int(np.count_nonzero(usable))
        _left_out(table.rows - task_rows, warnings)
        return found
    else:
        return None
    _left_out(table.rows - (found.rows if found else 0), warnings)
    return found


def _left_out(count: int, warnings: list[str]) -> None:
    if count:
        warnings.append(
            f"{count} reference rows without a usable score, prediction or actual are left out "
            "of the calibration"
        )


def _labels(column: Column) -> list[str | None]:
    """Each cell as a class label (`metrics.class_label`), None where there is none; each
    distinct value is read once."""
    out: list[str | None] = [None] * len(column.numbers)
    numbers = column.numbers
    present = np.flatnonzero(~np.isnan(numbers))
    if len(present):
        unique, inverse = np.unique(numbers[present], return_inverse=True)
        texts = [metrics.class_label(v) for v in unique.tolist()]
        for i, t in zip(present.tolist(), inverse.reshape(-1).tolist(), strict=True):
            out[i] = texts[t]
    if column.others is not None:
        known: dict[object, str | None] = {}
        for i in np.flatnonzero(not_none(column.others)).tolist():
            value = column.others[i]
            if value not in known:
                try:
                    known[value] = metrics.class_label(value)
                except metrics.LabelError:
                    known[value] = None
            out[i] = known[value]
    return out


def _binary(labels: Sequence[str | None]) -> Ints:
    """Each label's binary class, -1 where it is none."""
    known: dict[str | None, int] = {None: -1}
    for label in set(labels):
        if label is not None:
            try:
                known[label] = metrics.binary_class(label, "class")
            except metrics.LabelError:
                known[label] = -1
    return np.fromiter(map(known.__getitem__, labels), dtype=np.intp, count=len(labels))
