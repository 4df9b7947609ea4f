"""Thresholds from history: each metric's mean and spread over reference chunks of a window's
size, and a suggested alert threshold, so a user can write an alert without guessing.

A profile does not keep the reference's rows, but its calibration keeps their labeled counts
(`core.calibration`: binary, per score bin the rows by predicted and actual class; multiclass,
the confusion matrix), which is all these metrics read. `spread(reference, spec, rows)` draws
`CHUNKS` chunks of `rows` rows from those counts (with replacement, seeded: the same reference
and size always give the same answer), computes each chunk's realized metrics as
`core.metrics` would (binary: accuracy, precision, recall, F1, specificity, balanced accuracy,
ROC AUC on the binned scores; multiclass: accuracy and the macro, micro and weighted averages
over the labels the chunk has), and reports per metric the chunks' `mean`, standard deviation
`std`, and `threshold` = mean - 3 std (at least 0): every one of these metrics is
higher-is-better, so the alert is `below: threshold`, and a window as good as the reference
falls under it about once in 700 evaluations (the normal tail beyond 3 sigma). Chunks drawn at
random see the reference as exchangeable: consecutive chunks of the raw reference would also
show its own trends, which a profile does not keep. A metric undefined in most chunks (no
positives in a chunk of 20 rows) is left out.

Regression: a reference with a loss model keeps its errors' quantiles (`lossmodel.LossModel.
errors`: 1,000 equally likely values, the quantiles at (i + 1/2) / 1000 over every labeled row);
chunks draw their errors from them and report `mae` and `rmse`, lower-is-better, so
their threshold is mean + 3 std with `alert: above`. Chunks larger than `MAX_DRAWN` rows are
drawn at that size and their spread scaled by sqrt(MAX_DRAWN / rows) (a mean's spread shrinks
as 1/sqrt(n)).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import msgspec
import numpy as np
import numpy.typing as npt

from truthloop.core.calibration import BinaryCalibration, MulticlassCalibration
from truthloop.core.profile import Reference

if TYPE_CHECKING:
    from truthloop.core.spec import MonitorSpec

CHUNKS = 200
"""Chunks drawn per answer."""
SIGMAS = 3.0
"""How many standard deviations below the mean the suggested threshold lies."""
SEED = 0

Floats = npt.NDArray[np.float64]


class Spread(msgspec.Struct, frozen=True):
    """A metric over the reference's chunks, and the alert it suggests (`alert: threshold`)."""

    mean: float
    std: float
    threshold: float
    alert: Literal["below", "above"] = "below"


class Chunks(msgspec.Struct, frozen=True):
    """`count` chunks of `rows` reference rows each, and each metric's spread over them."""

    rows: int
    count: int
    metrics: dict[str, Spread]


def spread(reference: Reference, spec: MonitorSpec, rows: int) -> Chunks | None:
    """The reference's metrics over chunks of `rows` rows (>= 1), None when the reference has
    no labeled counts for the task (no calibration: no `actual` or no scores)."""
    found = reference.profile.calibration
    rng = np.random.default_rng(SEED)
    if spec.task == "binary" and isinstance(found, BinaryCalibration):
        values = _binary(found, rows, rng)
    elif spec.task == "multiclass" and isinstance(found, MulticlassCalibration):
        values = _multiclass(found, rows, rng)
    elif spec.task == "regression" and reference.profile.loss and reference.profile.loss.errors:
        return _regression(reference.profile.loss.errors, rows, rng)
    else:
        return None
    out: dict[str, Spread] = {}
    for name, per_chunk in values.items():
        defined = per_chunk[np.isfinite(per_chunk)]
        if len(defined) * 2 < len(per_chunk):
            continue
        mean = float(defined.mean())
        std = float(defined.std(ddof=1)) if len(defined) > 1 else 0.0
        out[name] = Spread(mean, std, max(mean - SIGMAS * std, 0.0))
    return Chunks(rows, CHUNKS, out)


MAX_DRAWN = 10_000
"""The most rows a regression chunk draws (larger ones are scaled: see the module)."""


def _regression(errors: tuple[float, ...], rows: int, rng: np.random.Generator) -> Chunks:
    drawn = min(rows, MAX_DRAWN)
    e = np.asarray(errors)[rng.integers(0, len(errors), size=(CHUNKS, drawn))]
    scale = np.sqrt(drawn / rows)
    out: dict[str, Spread] = {}
    for name, per_chunk in (
        ("mae", np.abs(e).mean(axis=1)),
        ("rmse", np.sqrt((e * e).mean(axis=1))),
    ):
        mean = float(per_chunk.mean())
        std = float(per_chunk.std(ddof=1)) * float(scale)
        out[name] = Spread(mean, std, mean + SIGMAS * std, "above")
    return Chunks(rows, CHUNKS, out)


def _draw(counts: Floats, rows: int, rng: np.random.Generator) -> Floats:
    """`CHUNKS` chunks of `rows` rows drawn from cells with these counts (chunks x cells)."""
    total = counts.sum()
    if total <= 0:
        return np.zeros((CHUNKS, len(counts)))
    drawn: Floats = rng.multinomial(rows, counts / total, size=CHUNKS).astype(np.float64)
    return drawn


def _binary(found: BinaryCalibration, rows: int, rng: np.random.Generator) -> dict[str, Floats]:
    cells = np.array([found.tp, found.fp, found.tn, found.fn], dtype=np.float64)
    width = cells.shape[1]
    drawn = _draw(cells.reshape(-1), rows, rng).reshape(CHUNKS, 4, width)
    tp, fp, tn, fn = (drawn[:, i].sum(axis=1) for i in range(4))
    positives = drawn[:, 0] + drawn[:, 3]
    negatives = drawn[:, 1] + drawn[:, 2]
    below = np.cumsum(negatives, axis=1) - negatives  # the bins are in score order
    wins = np.sum(positives * (below + 0.5 * negatives), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall, specificity = tp / (tp + fn), tn / (tn + fp)
        return {
            "accuracy": (tp + tn) / rows,
            "precision": tp / (tp + fp),
            "recall": recall,
            "f1": 2 * tp / (2 * tp + fp + fn),
            "specificity": specificity,
            "balanced_accuracy": (recall + specificity) / 2,
            "roc_auc": wins / (positives.sum(axis=1) * negatives.sum(axis=1)),
        }


def _multiclass(
    found: MulticlassCalibration, rows: int, rng: np.random.Generator
) -> dict[str, Floats]:
    k = len(found.classes)
    confusion = np.array(found.confusion, dtype=np.float64).reshape(-1)
    drawn = _draw(confusion, rows, rng).reshape(CHUNKS, k, k)
    hits = np.einsum("cii->ci", drawn)
    said = drawn.sum(axis=1)
    support = drawn.sum(axis=2)
    seen = (said > 0) | (support > 0)  # the labels a chunk has, as `core.metrics` averages
    labels = seen.sum(axis=1)
    share = support / support.sum(axis=1, keepdims=True)
    out = {"accuracy": hits.sum(axis=1) / rows}
    with np.errstate(divide="ignore", invalid="ignore"):
        per_class = {
            "precision": np.where(said > 0, hits / said, 0.0),
            "recall": np.where(support > 0, hits / support, 0.0),
            "f1": np.where(said + support > 0, 2 * hits / (said + support), 0.0),
        }
        for name, values in per_class.items():
            out[f"macro_{name}"] = np.where(seen, values, 0.0).sum(axis=1) / labels
            out[f"micro_{name}"] = out["accuracy"]
            out[f"weighted_{name}"] = (share * values).sum(axis=1)
    return out
