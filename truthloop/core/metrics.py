"""Model quality metrics from sufficient statistics that can be added and subtracted.

An aggregate is a flat mapping of counter names to numbers (`Counters`). One labeled sample's
contribution comes from `observe` (or `observe_vote`; `tally` and `tally_vote` add it into a sum
in place); buckets combine with `add`/`total`, a
relabel moves them by `subtract(new, old)`, and `evaluate` turns any sum of them into estimates.
Because the state is only counters, a store keeps it as rows upserted with
`value = value + excluded.value` (exact under concurrent writers) and nothing is ever rescanned.

Counter names (the storage contract; cells of histograms and matrices contain a `:`):
- binary: `tp` `fp` `tn` `fn`; rows with a score also add `n_scored`, `brier`, `brier_sq`,
  `logloss`, `logloss_sq` and one histogram cell `pos:<bin>` or `neg:<bin>`.
- multiclass: `n` (rows in accuracy), `correct`, and a confusion cell `cm:<actual>|<predicted>`
  in which each label has `%` written `%25` and `|` written `%7C`, so any label reads back.
- regression: `n`, `se` `sae` `se2` `se4` (sums of e, |e|, e², e⁴ with e = prediction − actual),
  `se2o` `se2u` (sums of e² over the over-predictions, e > 0, and the under-predictions, e < 0:
  a cost's interval, `core.cost`), `sy` `sy2` (sums of the actual and its square), `nm` `sape`
  `sape2` (rows in MAPE, sums of the absolute percentage error and its square),
  `mape_excluded`.
- every task: `votes`, `votes_up` (reviews without a label).

Labels:
- binary classes are `True`/`False`, 0/1 (1.0 too) or the strings "0"/"1"/"true"/"false" (any
  case, surrounding blanks ignored). A float prediction without a separate score is the score of
  the positive class and its class is `score >= threshold` (so 1.0 is a score of 1, not a class);
  with a score given, the prediction must be a class.
- multiclass labels are JSON scalars compared as text: strings as they are, integers in decimal,
  integral floats as integers (1, 1.0 and "1" are one class), other floats in their shortest
  round-trip form, booleans as "true"/"false" (so `True` is "true", not 1). Null, NaN, infinities
  and containers are refused.
- regression values are finite numbers within ±`REGRESSION_LIMIT`, so every contribution, up to
  the fourth power of the error, stays finite.

Metrics and their intervals (at `confidence`, default 95%):
- Wilson score: accuracy, precision, recall, specificity, micro averages, approval rate.
- F1: the Wilson interval of the Jaccard index J = tp / (tp + fp + fn), mapped through the
  monotone F1 = 2J / (1 + J). Given tp + fp + fn, tp is binomial with rate J, so this inherits
  Wilson's coverage.
- Balanced accuracy: MOVER (Zou & Donner) on the Wilson intervals of recall and specificity.
- ROC AUC: Hanley–McNeil. It comes from a histogram of `AUC_BINS` = 1000 bins of width 0.001: a
  score s falls in bin `min(int(s * 1000), 999)` (float64 arithmetic), pairs in one bin count as
  ties (half a win, Mann–Whitney). It is the exact AUC of the binned scores, and differs from the
  AUC of the raw scores by at most half the share of positive–negative pairs sharing a bin.
- Student's t from stored sums of squares: Brier score, log loss, MAE, mean error, MAPE.
- RMSE: the square roots of the t-interval of the mean squared error (from the sum of e⁴); this
  is the delta method's interval to first order but never reaches below zero.
- No bounds (no honest closed form from these sums): macro and weighted averages, R².

Definitions where scikit-learn would warn or divide by zero: precision, recall, specificity, F1,
balanced accuracy and ROC AUC are None when their denominator is empty (no predicted positives,
no positives, no negatives, neither). Multiclass per-class ratios with an empty denominator are 0
inside the macro and weighted averages, as scikit-learn's `zero_division=0` (labels are those seen
as actual or predicted). Log loss clips probabilities to [ε, 1 − ε], ε = `LOG_LOSS_EPS`, the
float64 machine epsilon scikit-learn uses. MAPE leaves out actuals of 0 (counted in
`mape_excluded`) and divides by max(|actual|, ε) like scikit-learn. R² is None when the actuals'
sum of squared deviations is not above `R2_RESOLUTION` times their sum of squares: from sums alone
the cancellation would leave too few correct digits (e.g. Unix timestamps as actuals), and so is
it when that sum of squares is below the normal float range (actuals around 1e-160), where the
squares themselves have lost their digits. Anything
undefined is None, never NaN or infinity.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal

from truthloop.core import intervals
from truthloop.core.tasks import Task

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Floats = npt.NDArray[np.float64]

Counters = Mapping[str, float]
CONFUSION_CELLS = ("tp", "fp", "tn", "fn")

METRIC_NAMES: Mapping[Task, tuple[str, ...]] = MappingProxyType(
    {
        "binary": (
            "accuracy",
            "precision",
            "recall",
            "f1",
            "specificity",
            "balanced_accuracy",
            "brier_score",
            "log_loss",
            "roc_auc",
        ),
        "multiclass": (
            "accuracy",
            "macro_precision",
            "macro_recall",
            "macro_f1",
            "micro_precision",
            "micro_recall",
            "micro_f1",
            "weighted_precision",
            "weighted_recall",
            "weighted_f1",
        ),
        "regression": ("mae", "rmse", "mape", "r2", "mean_error"),
    }
)
"""The metrics an alert may name, by task."""

ESTIMATED_NAMES: Mapping[Task, tuple[str, ...]] = MappingProxyType(
    {
        "binary": tuple(
            name for name in METRIC_NAMES["binary"] if name not in ("brier_score", "log_loss")
        ),
        "multiclass": METRIC_NAMES["multiclass"],
        "regression": ("mae", "rmse", "mean_error"),
    }
)
"""The metrics `core.estimate` estimates before labels, by task: an alert with `source`
estimated or auto names one of these (brier score and log loss need each row's score; MAPE and
R² no loss model predicts)."""

REVIEWED_NAMES: Mapping[Task, tuple[str, ...]] = MappingProxyType(
    {
        "binary": ("accuracy", "precision", "recall", "f1", "specificity", "balanced_accuracy"),
        "multiclass": ("accuracy",),
        "regression": ("mae", "rmse", "mean_error"),
    }
)
"""The metrics `core.review` estimates from reviewed labels, by task: an alert with `source`
reviewed names one of these (here, not in `core.review`, so the spec can check alerts without
importing what imports it)."""

AUXILIARY_NAMES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "binary": ("approval_rate",),
        "multiclass": ("approval_rate",),
        "regression": ("mape_excluded", "approval_rate"),
    }
)
"""Values `evaluate` reports beside the metrics, not alertable."""

Direction = Literal["higher", "lower", "zero"]
"""Which way a metric is better: higher (accuracy...), lower (errors, losses, costs), or closer
to zero (a signed bias)."""

_DIRECTIONS: Mapping[str, Direction | None] = MappingProxyType(
    {
        **dict.fromkeys(("mae", "rmse", "mape", "brier_score", "log_loss", "cost"), "lower"),
        "mean_error": "zero",
        # counts and totals grow with the traffic: no better or worse between two windows
        **dict.fromkeys(("mape_excluded", "cost_total"), None),
    }
)


def direction(name: str) -> Direction | None:
    """Which way metric `name` is better (`Direction`), None for a count or total that is not a
    quality (`mape_excluded`, `cost_total`). Every metric not named otherwise is higher-better,
    including the ones of `AUXILIARY_NAMES` that are rates (`approval_rate`)."""
    return _DIRECTIONS.get(name, "higher")


BinaryRatio = tuple["npt.NDArray[np.float64]", "npt.NDArray[np.float64]", "npt.NDArray[np.float64]"]


def binary_ratios(
    tp: npt.NDArray[np.float64],
    fn: npt.NDArray[np.float64],
    n1: npt.NDArray[np.float64],
    n0: npt.NDArray[np.float64],
) -> dict[str, BinaryRatio]:
    """The binary ratio metrics as functions of the true positives and false negatives of
    windows whose records predicted 1 (`n1`) and 0 (`n0`) are known (FP = n1 - TP, TN = n0 -
    FN): per name (value, d/dTP, d/dFN), for an estimator's delta-method interval
    (`core.estimate`'s from calibration, `core.review`'s from reviewed labels). Arrays in,
    arrays out; an empty denominator gives NaN or infinity (the caller's errstate)."""
    fp, tn = n1 - tp, n0 - fn
    n = n1 + n0
    pos, neg = tp + fn, tn + fp
    recall = (tp / pos, fn / pos**2, -tp / pos**2)
    specificity = (tn / neg, tn / neg**2, -fp / neg**2)
    d_f1 = tp + n1 + fn
    return {
        "accuracy": ((tp + tn) / n, 1 / n, -1 / n),
        "precision": (tp / n1, 1 / n1, 0 * n),
        "recall": recall,
        "f1": (2 * tp / d_f1, 2 * (n1 + fn) / d_f1**2, -2 * tp / d_f1**2),
        "specificity": specificity,
        "balanced_accuracy": (
            (recall[0] + specificity[0]) / 2,
            (recall[1] + specificity[1]) / 2,
            (recall[2] + specificity[2]) / 2,
        ),
    }


AUC_BINS = 1000
LOG_LOSS_EPS = sys.float_info.epsilon
MAPE_EPS = sys.float_info.epsilon
REGRESSION_LIMIT = 1e50
R2_RESOLUTION = 1e-9

_BINARY_CLASSES: Mapping[object, int] = MappingProxyType(
    {0: 0, 1: 1, "0": 0, "1": 1, "false": 0, "true": 1}  # True == 1 == 1.0 share a hash
)
_POS_KEYS = tuple(f"pos:{b}" for b in range(AUC_BINS))
_NEG_KEYS = tuple(f"neg:{b}" for b in range(AUC_BINS))
_HISTOGRAM_CELLS: Mapping[str, tuple[int, bool]] = MappingProxyType(
    {key: (b, True) for b, key in enumerate(_POS_KEYS)}
    | {key: (b, False) for b, key in enumerate(_NEG_KEYS)}
)
"""Histogram key → (bin, positive): parsed once, read per key by `evaluate`."""
_CELL = "cm:"


def is_histogram(key: str) -> bool:
    """Whether `key` is a cell of the score histogram, which only `roc_auc` reads (a read that
    needs no AUC can leave its up to 2,000 cells out)."""
    return key in _HISTOGRAM_CELLS


class LabelError(ValueError):
    """A prediction, actual or score the task cannot use; the message names the value."""


@dataclass(frozen=True, slots=True)
class Estimate:
    """A metric's value and confidence bounds; None where undefined or without a closed form."""

    value: float | None
    lower: float | None = None
    upper: float | None = None


_UNDEFINED = Estimate(None)


# ---------------------------------------------------------------- contributions


def observe(
    task: str,
    prediction: object,
    actual: object,
    *,
    score: float | None = None,
    threshold: float = 0.5,
) -> dict[str, float]:
    """One labeled sample's contribution to an aggregate. Raises `LabelError` on unusable input."""
    out: dict[str, float] = {}
    tally(out, task, prediction, actual, score=score, threshold=threshold)
    return out


def tally(
    into: dict[str, float],
    task: str,
    prediction: object,
    actual: object,
    *,
    score: float | None = None,
    threshold: float = 0.5,
) -> bool | None:
    """Add what `observe` would return into `into`, without a dict of its own: a batch sums
    thousands of samples into a few buckets. Returns whether the prediction was right (None for
    regression, where there is only an error). Raises `LabelError` before `into` is touched."""
    if task == "binary":
        predicted, score = binary_prediction(prediction, score, threshold)
        actual_class = binary_class(actual, "actual")
        _binary(into, predicted, actual_class, score)
        return predicted == actual_class
    if task == "multiclass":
        actual_label = class_label(actual)
        predicted_label = class_label(prediction)
        right = actual_label == predicted_label
        _multiclass(into, actual_label, predicted_label, right)
        return right
    if task == "regression":
        _regression(into, _number(prediction, "prediction"), _number(actual, "actual"))
        return None
    raise ValueError(f"unknown task {task!r}")


def observe_vote(
    task: str,
    prediction: object,
    up: bool,
    *,
    score: float | None = None,
    threshold: float = 0.5,
) -> dict[str, float]:
    """A reviewer's verdict without a label: `up` means the prediction was right.

    Binary: the vote implies the label (the predicted class, or the other one). Multiclass: an
    up-vote labels the row with its prediction; a down-vote counts as a wrong row in `accuracy`
    only (the true class is unknown). Regression: only the vote counters move. Every task counts
    the vote for `approval_rate`.
    """
    out: dict[str, float] = {}
    tally_vote(out, task, prediction, up, score=score, threshold=threshold)
    return out


def tally_vote(
    into: dict[str, float],
    task: str,
    prediction: object,
    up: bool,
    *,
    score: float | None = None,
    threshold: float = 0.5,
) -> bool:
    """Add what `observe_vote` would return into `into`; returns `up` (the vote is the verdict).
    Raises `LabelError` before `into` is touched."""
    if task == "binary":
        predicted, score = binary_prediction(prediction, score, threshold)
        _binary(into, predicted, predicted if up else 1 - predicted, score)
    elif task == "multiclass":
        label = class_label(prediction)
        if up:
            _multiclass(into, label, label, True)
        else:
            into["n"] = into.get("n", 0) + 1
    elif task == "regression":
        _number(prediction, "prediction")
    else:
        raise ValueError(f"unknown task {task!r}")
    into["votes"] = into.get("votes", 0) + 1
    if up:
        into["votes_up"] = into.get("votes_up", 0) + 1
    return up


def check_prediction(task: Task, value: object) -> str | None:
    """Why `value` cannot be a prediction of the task, or None when it can."""
    return _problem(lambda: binary_prediction(value, None, 0.5), task, value, "prediction")


def check_actual(task: Task, value: object) -> str | None:
    """Why `value` cannot be an actual of the task, or None when it can."""
    return _problem(lambda: binary_class(value, "actual"), task, value, "actual")


def _problem(binary: Callable[[], object], task: Task, value: object, what: str) -> str | None:
    try:
        if task == "binary":
            binary()
        elif task == "multiclass":
            class_label(value)
        else:
            _number(value, what)
    except LabelError as e:
        return str(e)
    return None


def _binary(into: dict[str, float], predicted: int, actual: int, score: float | None) -> None:
    get = into.get
    cell = ("tp" if predicted else "fn") if actual else ("fp" if predicted else "tn")
    into[cell] = get(cell, 0) + 1
    if score is None:
        return
    miss = score - actual
    brier = miss * miss
    p = LOG_LOSS_EPS if score < LOG_LOSS_EPS else min(score, 1.0 - LOG_LOSS_EPS)
    loss = -math.log(p) if actual else -math.log(1.0 - p)
    b = int(score * AUC_BINS)
    if b >= AUC_BINS:
        b = AUC_BINS - 1
    cell = (_POS_KEYS if actual else _NEG_KEYS)[b]
    into[cell] = get(cell, 0) + 1
    into["n_scored"] = get("n_scored", 0) + 1
    into["brier"] = get("brier", 0) + brier
    into["brier_sq"] = get("brier_sq", 0) + brier * brier
    into["logloss"] = get("logloss", 0) + loss
    into["logloss_sq"] = get("logloss_sq", 0) + loss * loss


def _multiclass(into: dict[str, float], actual: str, predicted: str, right: bool) -> None:
    get = into.get
    cell = _cell_key(actual, predicted)
    into[cell] = get(cell, 0) + 1
    into["n"] = get("n", 0) + 1
    if right:
        into["correct"] = get("correct", 0) + 1


def _regression(into: dict[str, float], prediction: float, actual: float) -> None:
    get = into.get
    e = prediction - actual
    e2 = e * e
    ae = abs(e)
    into["n"] = get("n", 0) + 1
    into["se"] = get("se", 0) + e
    into["sae"] = get("sae", 0) + ae
    into["se2"] = get("se2", 0) + e2
    into["se4"] = get("se4", 0) + e2 * e2
    if e > 0:
        into["se2o"] = get("se2o", 0) + e2
    elif e < 0:
        into["se2u"] = get("se2u", 0) + e2
    into["sy"] = get("sy", 0) + actual
    into["sy2"] = get("sy2", 0) + actual * actual
    if actual == 0:
        into["mape_excluded"] = get("mape_excluded", 0) + 1
    else:
        ape = ae / max(abs(actual), MAPE_EPS)
        into["nm"] = get("nm", 0) + 1
        into["sape"] = get("sape", 0) + ape
        into["sape2"] = get("sape2", 0) + ape * ape


def binary_class(value: object, what: str) -> int:
    """A binary class, 0 or 1 (see the module's Labels); LabelError names `what` otherwise."""
    try:
        c = _BINARY_CLASSES.get(value)
    except TypeError:  # unhashable
        c = None
    if c is None and isinstance(value, str):
        c = _BINARY_CLASSES.get(value.strip().lower())
    if c is None:
        raise LabelError(f"{what} {value!r} is not a binary class (0/1, true/false)")
    return c


def binary_prediction(
    prediction: object, score: float | None, threshold: float
) -> tuple[int, float | None]:
    """A binary prediction's class and score (see the module's Labels); LabelError otherwise."""
    if score is not None:
        return binary_class(prediction, "prediction"), _probability(score, "score")
    if isinstance(prediction, float):
        p = _probability(prediction, "prediction")
        return int(p >= threshold), p
    return binary_class(prediction, "prediction"), None


def _probability(value: object, what: str) -> float:
    if type(value) is float and 0.0 <= value <= 1.0:
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise LabelError(f"{what} {value!r} is not a probability")
    if not 0 <= value <= 1:  # also refuses NaN
        raise LabelError(f"{what} {value!r} is not a probability in [0, 1]")
    return float(value)


def _number(value: object, what: str) -> float:
    if type(value) is float and -REGRESSION_LIMIT <= value <= REGRESSION_LIMIT:
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise LabelError(f"{what} {value!r} is not a number")
    if not -REGRESSION_LIMIT <= value <= REGRESSION_LIMIT:  # also refuses NaN and infinities
        raise LabelError(f"{what} {value!r} is not a finite number within ±{REGRESSION_LIMIT:g}")
    return float(value)


def class_label(value: object) -> str:
    """A class as text, the one rule for multiclass labels and categorical values (see the
    module's Labels); LabelError for null, NaN, infinities and containers."""
    if type(value) is str:
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise LabelError(f"class {value!r} is not a finite number")
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str):
        return str(value)
    raise LabelError(f"class {value!r} is not a string, number or boolean")


def confusion_cells(counters: Counters) -> Iterable[tuple[str, str, float]]:
    """A multiclass aggregate's confusion cells: (actual, predicted, count)."""
    for key, value in counters.items():
        if key.startswith(_CELL):
            yield *_labels(key), value


def _labels(cell: str) -> tuple[str, str]:
    """A confusion cell's (actual, predicted) labels."""
    a, p = map(_unescape, cell[len(_CELL) :].split("|"))
    return a, p


def _cell_key(actual: str, predicted: str) -> str:
    return f"{_CELL}{_escape(actual)}|{_escape(predicted)}"


def _escape(label: str) -> str:
    return label.replace("%", "%25").replace("|", "%7C")


def _unescape(text: str) -> str:
    return text.replace("%7C", "|").replace("%25", "%")


# ---------------------------------------------------------------- arithmetic


def add(a: Counters, b: Counters) -> dict[str, float]:
    """a + b, key by key."""
    out = dict(a)
    _accumulate(out, b.items(), 1)
    return out


def subtract(a: Counters, b: Counters) -> dict[str, float]:
    """a − b, key by key (how a relabel or an expired bucket leaves an aggregate)."""
    out = dict(a)
    _accumulate(out, b.items(), -1)
    return out


def total(counters: Iterable[Counters]) -> dict[str, float]:
    """The sum of many aggregates, accumulated in one dict."""
    out: dict[str, float] = {}
    for c in counters:
        _accumulate(out, c.items(), 1)
    return out


def _accumulate(out: dict[str, float], items: Iterable[tuple[str, float]], sign: int) -> None:
    """Add `sign` × items into `out`; a key whose sum reaches exactly zero is removed.

    Counts are integers and cancel exactly. A float sum taken out in another order than it went
    in may keep a rounding residue (about ε × its terms); it is kept, since no threshold can tell
    residue from a small true sum, and it is harmless: every mean divides by a count, and with the
    count at zero the metric is None.
    """
    get = out.get
    for key, value in items:
        result = get(key, 0) + sign * value
        if result == 0:
            out.pop(key, None)
        else:
            out[key] = result


def samples(counters: Counters) -> int:
    """Labeled rows behind an aggregate (down-votes that count for accuracy included)."""
    binary = counters.get("tp", 0) + counters.get("fp", 0) + counters.get("tn", 0)
    return round(binary + counters.get("fn", 0) + counters.get("n", 0))


# ---------------------------------------------------------------- evaluation


def evaluate(task: str, counters: Counters, *, confidence: float = 0.95) -> dict[str, Estimate]:
    """Every metric of the task and its auxiliary values (`METRIC_NAMES`, `AUXILIARY_NAMES`):
    `evaluate_many` of one window.

    Raises ValueError for an unknown task or a confidence outside (0, 1).
    """
    return evaluate_many(task, [counters], confidence=confidence)[0]


def evaluate_many(
    task: str,
    windows: Sequence[Counters],
    *,
    confidence: float = 0.95,
    names: Collection[str] | None = None,
) -> list[dict[str, Estimate]]:
    """`evaluate` of many windows at once (only the metrics in `names`, when given): each
    metric computed over a matrix of the windows' counters (a row a window, a column a counter
    key the task reads) in numpy, then turned into one `Estimate` per window.

    Raises ValueError for an unknown task or a confidence outside (0, 1).
    """
    import numpy as np

    z = intervals.z_score(confidence)
    if task not in METRIC_NAMES:
        raise ValueError(f"unknown task {task!r}")
    columns = sorted(filter(_read_by(task), set().union(*windows)))
    rows = dense(windows, columns)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        bands = _bands(task, _Matrix(columns, rows), z, confidence)
    found: list[dict[str, Estimate]] = [{} for _ in windows]
    for name, (values, lower, upper) in bands.items():
        if names is not None and name not in names:
            continue
        if name in _COUNTS:
            for out, v in zip(found, values.tolist(), strict=True):
                out[name] = Estimate(round(v))
            continue
        for out, v, lo, hi in zip(
            found, values.tolist(), lower.tolist(), upper.tolist(), strict=True
        ):
            out[name] = _UNDEFINED if v != v else Estimate(v) if lo != lo else Estimate(v, lo, hi)
    return found


def dense(windows: Sequence[Counters], columns: Sequence[str]) -> Floats:
    """The windows' counters as a matrix: a row a window, a column each of `columns` (a key
    the window lacks: 0). Each window's own keys are looked up, not every column in each."""
    import numpy as np

    at = {key: j for j, key in enumerate(columns)}
    cells = [
        (i, j, value)
        for i, counters in enumerate(windows)
        for key, value in counters.items()
        if (j := at.get(key)) is not None
    ]
    rows = np.zeros((len(windows), len(columns)))
    if cells:
        where, column, value = zip(*cells, strict=True)
        rows[where, column] = value
    return rows


Bands = tuple["Floats", "Floats", "Floats"]
"""A metric of many windows: its values, lower and upper bounds (NaN: none)."""

_SCALARS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "binary": frozenset(
            (*CONFUSION_CELLS, "n_scored", "brier", "brier_sq", "logloss", "logloss_sq")
        ),
        "multiclass": frozenset(("n", "correct")),
        "regression": frozenset(
            ("n", "se", "sae", "se2", "se4", "sy", "sy2", "nm", "sape", "sape2", "mape_excluded")
        ),
    }
)
"""The counters (not cells) each task's metrics read, besides the votes."""
_VOTES = frozenset(("votes", "votes_up"))
_COUNTS = frozenset(("mape_excluded",))
"""Values that are counts: an integer value, no bounds."""


def _read_by(task: str) -> Callable[[str], bool]:
    """Whether the task's metrics read counter `key`."""
    scalars = _SCALARS[task] | _VOTES
    if task == "binary":
        return lambda key: key in scalars or key in _HISTOGRAM_CELLS
    if task == "multiclass":
        return lambda key: key in scalars or key.startswith(_CELL)
    return scalars.__contains__


@dataclass(frozen=True, slots=True)
class _Matrix:
    """Windows' counters: a row a window, a column a counter key (absent: 0)."""

    columns: Sequence[str]
    rows: Floats

    def __getitem__(self, key: str) -> Floats:
        import numpy as np

        try:
            return self.rows[:, self.columns.index(key)]
        except ValueError:
            return np.zeros(len(self.rows))


def _bands(task: str, c: _Matrix, z: float, confidence: float) -> dict[str, Bands]:
    if task == "binary":
        out = _evaluate_binary(c, z, confidence)
    elif task == "multiclass":
        out = _evaluate_multiclass(c, z)
    else:
        out = _evaluate_regression(c, confidence)
    out["approval_rate"] = _proportion(c["votes_up"], c["votes"], z)
    return out


def _evaluate_binary(c: _Matrix, z: float, confidence: float) -> dict[str, Bands]:
    tp, fp, tn, fn = (c[k] for k in CONFUSION_CELLS)
    n_scored = c["n_scored"]
    return {
        "accuracy": _proportion(tp + tn, tp + tn + fp + fn, z),
        "precision": _proportion(tp, tp + fp, z),
        "recall": _proportion(tp, tp + fn, z),
        "f1": _f1(tp, fp + fn, z),
        "specificity": _proportion(tn, tn + fp, z),
        "balanced_accuracy": _balanced(tp, fn, tn, fp, z),
        "brier_score": _mean(c["brier"], c["brier_sq"], n_scored, confidence),
        "log_loss": _mean(c["logloss"], c["logloss_sq"], n_scored, confidence),
        "roc_auc": _roc_auc(c, z),
    }


def _f1(tp: Floats, errors: Floats, z: float) -> Bands:
    import numpy as np

    lower, upper = intervals.wilson(tp, tp + errors, z)
    value = 2 * tp / (2 * tp + errors)
    defined = tp + errors > 0
    return _estimate(
        np.where(defined, value, np.nan), 2 * lower / (1 + lower), 2 * upper / (1 + upper)
    )


def _balanced(tp: Floats, fn: Floats, tn: Floats, fp: Floats, z: float) -> Bands:
    import numpy as np

    recall, specificity = tp / (tp + fn), tn / (tn + fp)
    lower, upper = intervals.mover_mean(
        recall, intervals.wilson(tp, tp + fn, z), specificity, intervals.wilson(tn, tn + fp, z)
    )
    defined = (tp + fn > 0) & (tn + fp > 0)
    return _estimate(np.where(defined, (recall + specificity) / 2, np.nan), lower, upper)


def _roc_auc(c: _Matrix, z: float) -> Bands:
    """The AUC of each window's histogram: over the bins any window holds, in order, each
    positive wins against the negatives below its bin and ties with those in it."""
    import numpy as np

    cells = [(j, *hit) for j, key in enumerate(c.columns) if (hit := _HISTOGRAM_CELLS.get(key))]
    bins = sorted({b for _, b, _ in cells})
    at = {b: i for i, b in enumerate(bins)}
    positives = np.zeros((len(c.rows), len(bins)))
    negatives = np.zeros((len(c.rows), len(bins)))
    for j, b, positive in cells:
        (positives if positive else negatives)[:, at[b]] = c.rows[:, j]
    n_pos, n_neg = positives.sum(axis=1), negatives.sum(axis=1)
    below = np.cumsum(negatives, axis=1) - negatives
    wins = (positives * (below + 0.5 * negatives)).sum(axis=1)
    auc = wins / (n_pos * n_neg)
    defined = (n_pos > 0) & (n_neg > 0)
    return _estimate(np.where(defined, auc, np.nan), *intervals.hanley_mcneil(auc, n_pos, n_neg, z))


def _evaluate_multiclass(c: _Matrix, z: float) -> dict[str, Bands]:
    """Per class (the labels of the confusion cells' keys, a label counted in a window where
    one of its cells is not 0), its support, predictions and hits as the cells' sums."""
    import numpy as np

    cells = [(j, *_labels(key)) for j, key in enumerate(c.columns) if key.startswith(_CELL)]
    labels = {label: i for i, label in enumerate(sorted({x for _, a, p in cells for x in (a, p)}))}
    actual = np.zeros((len(cells), len(labels)))
    predicted_as = np.zeros((len(cells), len(labels)))
    for k, (_, a, p) in enumerate(cells):
        actual[k, labels[a]] = 1.0
        predicted_as[k, labels[p]] = 1.0
    counts = c.rows[:, [j for j, _, _ in cells]]
    support, predicted = counts @ actual, counts @ predicted_as
    hits = counts @ (actual * predicted_as)
    seen = ((counts != 0) @ (actual + predicted_as)) > 0
    classes = seen.sum(axis=1)
    labeled = support.sum(axis=1)
    per_class = {
        "precision": _ratio0(hits, predicted),
        "recall": _ratio0(hits, support),
        "f1": _ratio0(2 * hits, predicted + support),
    }
    micro = _proportion(hits.sum(axis=1), labeled, z)
    out = {"accuracy": _proportion(c["correct"], c["n"], z)}
    for name, values in per_class.items():
        macro = np.where(seen, values, 0.0).sum(axis=1) / classes
        out[f"macro_{name}"] = _estimate(np.where(classes > 0, macro, np.nan))
    for name in per_class:
        out[f"micro_{name}"] = micro
    for name, values in per_class.items():
        weighted = (values * support).sum(axis=1) / labeled
        out[f"weighted_{name}"] = _estimate(np.where(labeled > 0, weighted, np.nan))
    return out


def _evaluate_regression(c: _Matrix, confidence: float) -> dict[str, Bands]:
    import numpy as np

    n = c["n"]
    se2 = c["se2"]
    low, high = intervals.t_mean(se2, c["se4"], n, confidence)
    rmse = np.sqrt(np.maximum(se2 / n, 0.0))
    sy2 = c["sy2"]
    ss_tot = sy2 - c["sy"] ** 2 / n
    r2 = (n > 0) & (sy2 >= sys.float_info.min) & (ss_tot > R2_RESOLUTION * sy2)
    return {
        "mae": _mean(c["sae"], se2, n, confidence),
        "rmse": _estimate(
            np.where(n > 0, rmse, np.nan), np.sqrt(np.maximum(low, 0.0)), np.sqrt(high)
        ),
        "mape": _mean(c["sape"], c["sape2"], c["nm"], confidence),
        "r2": _estimate(np.where(r2, 1 - se2 / ss_tot, np.nan)),
        "mean_error": _mean(c["se"], se2, n, confidence),
        "mape_excluded": _estimate(c["mape_excluded"]),
    }


def _proportion(successes: Floats, trials: Floats, z: float) -> Bands:
    import numpy as np

    value = np.where(trials > 0, successes / trials, np.nan)
    return _estimate(value, *intervals.wilson(successes, trials, z))


def _mean(total_: Floats, total_sq: Floats, n: Floats, confidence: float) -> Bands:
    import numpy as np

    value = np.where(n > 0, total_ / n, np.nan)
    return _estimate(value, *intervals.t_mean(total_, total_sq, n, confidence))


def _estimate(value: Floats, lower: Floats | None = None, upper: Floats | None = None) -> Bands:
    """Estimates with non-finite parts (undefined, or overflowed sums) as NaN (None).

    The bounds are widened to hold the value where rounding put it a hair outside (Wilson at 1).
    """
    import numpy as np

    value = np.where(np.isfinite(value), value, np.nan)
    if lower is None or upper is None:
        nothing = np.full(value.shape, np.nan)
        return value, nothing, nothing
    bounded = np.isfinite(value) & np.isfinite(lower) & np.isfinite(upper)
    return (
        value,
        np.where(bounded, np.minimum(lower, value), np.nan),
        np.where(bounded, np.maximum(upper, value), np.nan),
    )


def _ratio0(num: Floats, den: Floats) -> Floats:
    """Per-class ratios with scikit-learn's `zero_division=0`: an empty denominator gives 0."""
    import numpy as np

    return np.where(den > 0, num / den, 0.0)
