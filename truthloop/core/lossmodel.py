"""Direct loss estimation (DLE) for regression: a model of each record's error, from the reference.

A regression model's error cannot be known before the label arrives, but how large it tends to be
given the inputs can be learned where labels exist: the reference. `fit` learns, on the
reference's labeled rows, three gradient-boosted models of the error e = prediction - actual
from the features and the prediction (the inputs, `LossModel.inputs`):

- `absolute`: E[|e| | x], whose mean over a window estimates its MAE;
- `squared`: E[e² | x], whose mean estimates its MSE (the root: RMSE);
- `signed`: E[e | x], whose mean estimates the mean error, and with `absolute` the over- and
  under-prediction a regression cost prices ((|e| + e) / 2 and (|e| - e) / 2).

Each is scikit-learn's `HistGradientBoostingRegressor` (squared loss, so each estimates a
conditional mean) with small trees (`PARAMETERS`: at most `MAX_TREES` trees of depth at most
`MAX_DEPTH`), fitted on at most `MAX_FIT_ROWS` rows drawn uniformly (seeded) from the labeled
reference rows, in one thread: a 1M-row reference takes the time of 100k rows, and an upload
never takes every core of the service. The rows left out (at most `MAX_HELD_OUT` of them, or a
fifth of a small reference) are held out to scale the band (below).

The fitted trees are stored in the reference profile as plain arrays (`Forest`, JSON like the
rest of the profile; never a pickle) and evaluated at ingest by `Forest.predict`, a numpy
traversal of every tree at once (a level per step), equal to scikit-learn's `predict` (tested).
scikit-learn is imported only to fit.

Inputs (`encode`): a numeric feature and the prediction as their numbers (missing, wrong-typed or
infinite: NaN, which the trees send the way the fit learned, or the way most rows went when the
reference had no missing value there); a categorical feature as the index of its value among the
profile's categories (its text by `metrics.class_label`), any other value as one more index, a
missing one as NaN. The trees treat that index as a number (the categories are ordered by
frequency), which keeps the stored trees plain thresholds.

The band. A window of n records sums, per record, the predicted losses and a variance proxy v of
the realized loss around its prediction: for |e|, v = E[e² | x] - E[|e| | x]² (the variance of |e|
given x, from the two models); for e, v = E[e² | x] - E[e | x]²; for e², v = E[e² | x]² (the
variance of e² is proportional to its mean squared for a normal or a Laplace error). The realized
mean loss is the sum of n independent draws around their predictions, so it falls within
estimate ± z sqrt(k Σv) / n, where k (`LossModel.scale`, one per loss) is fitted on the held-out
rows: the observed squared residuals over the proxies' sum, so the band is as wide as the
residuals actually were on data the trees did not see. This is the analytic sampling error of the
metric on a window of that size, adapted to where the window's records lie: a window drawn
towards noisier inputs gets a wider band. It shrinks as 1/sqrt(n), the trees' own error does
not: so the half-width is the root of the sampling term squared plus (b x estimate)², b
(`LossModel.bias`) the trees' relative error measured on the held-out rows cut in `BIAS_BINS`
bins of predicted loss (per bin, the gap between the mean realized and predicted loss, less its
sampling noise). RMSE's bounds are the square roots of the MSE's (lower at least 0). Coverage
is tested by simulation (tests/unit/test_lossmodel.py: a heteroscedastic model whose inputs
shift, windows of 400 and 2,000 records: the realized MAE, RMSE and mean error fall within the
band in at least 90% of them). What it does not cover: a change of the relation between inputs
and error (concept shift: the same x now errs more), which no estimate from the inputs can see
(the same test shows the band missing it), and a window far outside the reference, where the
trees extrapolate flat.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import msgspec
import numpy as np
import numpy.typing as npt

from truthloop.core import metrics
from truthloop.core.columns import ACTUAL, PREDICTION
from truthloop.core.table import Column, Table, column_text, not_none

Floats = npt.NDArray[np.float64]

MAX_FIT_ROWS = 100_000
"""Labeled reference rows the models are fitted on (drawn uniformly, seeded, from more)."""
MAX_HELD_OUT = 20_000
"""Labeled reference rows held out to scale the band (a fifth of a smaller reference)."""
MIN_ROWS = 100
QUANTILES = 1000
"""Quantile levels of the reference's errors the model keeps (`LossModel.errors`)."""
"""Labeled reference rows below which no loss model is fitted (with a warning)."""
MAX_TREES = 40
MAX_DEPTH = 4
PARAMETERS = {
    "max_iter": MAX_TREES,
    "max_depth": MAX_DEPTH,
    "max_leaf_nodes": 15,
    "learning_rate": 0.2,
    "min_samples_leaf": 20,
    "early_stopping": True,
    "validation_fraction": 0.1,
    "n_iter_no_change": 10,
    "random_state": 0,
}
"""The trees: few and shallow, so predicting a record costs a few hundred comparisons."""
SEED = 0
LOSSES = ("absolute", "squared", "signed")


class Forest(msgspec.Struct, frozen=True, array_like=True):
    """One fitted `HistGradientBoostingRegressor` as plain arrays: every tree's nodes one after
    the other, tree t starting at node `roots[t]`. An inner node sends a row left when its input
    `feature[i]` is `<= threshold[i]`, or is NaN and `missing_left[i]`; else right. A leaf is
    its own left and right child and holds `value[i]` (the learning rate applied). A row's
    prediction is `baseline` plus its leaf's value in every tree; `depth` is the deepest leaf's."""

    baseline: float
    depth: int
    roots: tuple[int, ...]
    feature: tuple[int, ...]
    threshold: tuple[float, ...]
    missing_left: tuple[bool, ...]
    left: tuple[int, ...]
    right: tuple[int, ...]
    value: tuple[float, ...]

    def compiled(self) -> CompiledForest:
        return CompiledForest(self)

    def predict(self, inputs: Floats) -> Floats:
        """Each row's prediction (`inputs`: rows x inputs, float64, NaN for missing)."""
        return self.compiled().predict(inputs)


class CompiledForest:
    """One or more `Forest`s as numpy arrays, for predicting batches: every tree of every forest
    traversed at once (a level per step), each forest's leaves then summed on its baseline."""

    __slots__ = ("baselines", "children", "depth", "feature", "missing_left", "roots", "spans",
                 "threshold", "value")  # fmt: skip

    def __init__(self, *forests: Forest) -> None:
        sizes = [len(f.value) for f in forests]
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)

        def joined(field: str, shift: bool = False) -> npt.NDArray[np.intp]:
            parts = [np.asarray(getattr(f, field), dtype=np.intp) for f in forests]
            if shift:
                parts = [p + o for p, o in zip(parts, offsets.tolist(), strict=True)]
            return np.concatenate(parts) if parts else np.zeros(0, dtype=np.intp)

        self.baselines = [f.baseline for f in forests]
        self.depth = max((f.depth for f in forests), default=0)
        self.roots = joined("roots", shift=True)
        counts = np.cumsum([0, *(len(f.roots) for f in forests)]).tolist()
        self.spans = list(itertools.pairwise(counts))
        """Each forest's trees: columns [start, end) of the leaves."""
        self.feature = joined("feature")
        self.threshold = np.concatenate([np.asarray(f.threshold, np.float64) for f in forests])
        self.missing_left = np.concatenate([np.asarray(f.missing_left, bool) for f in forests])
        self.value = np.concatenate([np.asarray(f.value, np.float64) for f in forests])
        # children[2 i + go]: go = 1 left, 0 right
        self.children = np.stack([joined("right", True), joined("left", True)], axis=1).reshape(-1)

    def predict(self, inputs: Floats) -> Floats:
        """The first forest's prediction of each row."""
        return self.predict_all(inputs)[0]

    def predict_all(self, inputs: Floats) -> list[Floats]:
        """Each forest's prediction of each row (`inputs`: rows x inputs, NaN for missing)."""
        rows, width = inputs.shape
        outs = [np.full(rows, baseline) for baseline in self.baselines]
        if rows == 0 or len(self.roots) == 0:
            return outs
        flat = inputs.reshape(-1)
        starts = (np.arange(rows, dtype=np.intp) * width)[:, None]
        nodes = np.broadcast_to(self.roots, (rows, len(self.roots))).copy()
        missing = bool(np.isnan(flat).any())
        for _ in range(self.depth):
            x = flat[starts + self.feature[nodes]]
            go = x <= self.threshold[nodes]
            if missing:
                go |= np.isnan(x) & self.missing_left[nodes]
            nodes = self.children[nodes * 2 + go]
        values = self.value[nodes]
        for out, (first, end) in zip(outs, self.spans, strict=True):
            for t in range(first, end):  # tree by tree, as scikit-learn adds them: equal sums
                out += values[:, t]
        return outs


class LossModel(msgspec.Struct, frozen=True):
    """The reference's loss models (see the module): `inputs` name their input columns, the
    profiled features then the prediction; `categories` the categories of each input (empty for
    a numeric one) the encoding indexes; `scale` the band's k per loss (absolute, squared,
    signed); `rows` the labeled rows fitted, `held_out` those that scaled the band."""

    inputs: tuple[str, ...]
    categories: tuple[tuple[str, ...], ...]
    numeric: tuple[bool, ...]
    absolute: Forest
    squared: Forest
    signed: Forest
    scale: tuple[float, float, float]
    bias: tuple[float, float, float]
    """The trees' own relative error per loss, on held-out rows (`BIAS_BINS`)."""
    rows: int
    held_out: int
    errors: tuple[float, ...] = ()
    """The reference's errors e at the quantiles (i + 1/2) / `QUANTILES`, over every labeled
    row: `QUANTILES` equally likely values that chunks of the reference are drawn from
    (`core.chunks`). Empty in a model stored before they were kept."""


class Compiled:
    """A loss model compiled for ingest: per record, the counters' contributions."""

    __slots__ = ("forests", "model")

    def __init__(self, model: LossModel) -> None:
        self.model = model
        self.forests = CompiledForest(model.absolute, model.squared, model.signed)

    def contributions(self, inputs: Floats, usable: npt.NDArray[np.bool_]) -> Floats:
        """Per record (rows of `inputs`), its contribution to each of `COUNTERS`; zero for a
        record that is not `usable` (its prediction is no number)."""
        return contributions(self.forests, inputs, usable)


COUNTERS = ("n", "ae", "se", "e", "vae", "vse", "ve")
"""What a window sums per record (`core.sketch` keys them `~<ref>:@dle:<name>`): records with a
loss prediction, the predicted |e|, e² and e, and the variance proxies of each (the module's
band)."""


def contributions(forests: CompiledForest, inputs: Floats, usable: npt.NDArray[np.bool_]) -> Floats:
    """Per record, its contribution to each of `COUNTERS`, from the absolute, squared and signed
    forests (in that order) compiled together."""
    absolute, squared, e = forests.predict_all(inputs)
    ae = np.maximum(absolute, 0.0)
    se = np.maximum(squared, 0.0)
    out = np.stack(
        [
            np.ones(len(ae)),
            ae,
            se,
            e,
            np.maximum(se - ae * ae, 0.0),
            se * se,
            np.maximum(se - e * e, 0.0),
        ],
        axis=1,
    )
    out[~usable] = 0.0
    return out


def encode_numbers(numbers: Floats) -> Floats:
    """A numeric input: infinities are missing (NaN), as a reference table reads them."""
    return np.where(np.isfinite(numbers), numbers, np.nan)


def _table_inputs(
    table: Table,
    names: Sequence[str],
    categories: Sequence[tuple[str, ...]],
    rows: npt.NDArray[np.intp],
) -> Floats:
    """The inputs of some rows of a reference table (the module's encoding)."""
    out = np.empty((len(rows), len(names)), dtype=np.float64)
    for j, (name, kept) in enumerate(zip(names, categories, strict=True)):
        column = table.columns[name]
        out[:, j] = column.numbers[rows] if not kept else _category_indices(column, kept, rows)
    return encode_numbers(out)


def _category_indices(
    column: Column, categories: tuple[str, ...], rows: npt.NDArray[np.intp]
) -> Floats:
    index = {text: float(i) for i, text in enumerate(categories)}
    other = float(len(categories))
    numbers = column.numbers[rows]
    out = np.full(len(rows), np.nan)
    present = ~np.isnan(numbers)
    if present.any():
        unique, inverse = np.unique(numbers[present], return_inverse=True)
        codes = [index.get(metrics.class_label(v), other) for v in unique.tolist()]
        out[present] = np.asarray(codes, dtype=np.float64)[inverse.reshape(-1)]
    if column.others is not None:
        others = column.others[rows]
        known: dict[object, float] = {}
        for i in np.flatnonzero(not_none(others)).tolist():
            value = others[i]
            if value not in known:
                try:
                    known[value] = index.get(metrics.class_label(value), other)
                except metrics.LabelError:
                    known[value] = math.nan
            out[i] = known[value]
    return out


def fit(
    table: Table,
    inputs: Sequence[tuple[str, tuple[str, ...] | None]],
    warnings: list[str],
) -> LossModel | None:
    """The loss models of a regression reference with an `actual` column, or None (with a
    warning when the reference has too few labeled rows). `inputs`: each input column's name
    and, for a categorical one, its profile's categories (None: numeric); the prediction is one
    of them, named `prediction`."""
    names = [name for name, _ in inputs]
    kept = [c or () for _, c in inputs]
    actual = table.columns[ACTUAL].numbers
    prediction = table.columns[PREDICTION].numbers
    labeled = np.flatnonzero(np.isfinite(actual) & np.isfinite(prediction))
    if len(labeled) < MIN_ROWS:
        warnings.append(
            f"column {column_text(ACTUAL)}: {len(labeled)} rows with a number there and in "
            f"the prediction, fewer than {MIN_ROWS}: no loss model, so no estimated MAE or RMSE"
        )
        return None
    rng = np.random.default_rng(SEED)
    order = rng.permutation(labeled)
    held = min(MAX_HELD_OUT, len(order) // 5)
    chosen = order[: held + MAX_FIT_ROWS]  # only these rows are encoded: bounded work
    x = _table_inputs(table, names, kept, chosen)
    error = (prediction - actual)[chosen]
    targets = (np.abs(error), error * error, error)
    forests = [_fit_forest(x[held:], t[held:]) for t in targets]
    scale, bias = _scale(forests, x[:held], error[:held])
    return LossModel(
        inputs=tuple(names),
        categories=tuple(kept),
        numeric=tuple(c is None for _, c in inputs),
        absolute=forests[0],
        squared=forests[1],
        signed=forests[2],
        scale=scale,
        bias=bias,
        rows=len(chosen) - held,
        held_out=held,
        errors=tuple(
            np.quantile(
                (prediction - actual)[labeled], (np.arange(QUANTILES) + 0.5) / QUANTILES
            ).tolist()
        ),
    )


def _fit_forest(x: Floats, y: Floats) -> Forest:
    """One target's trees, fitted in one thread, as plain arrays."""
    from sklearn.ensemble import HistGradientBoostingRegressor
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        fitted = HistGradientBoostingRegressor(**PARAMETERS).fit(x, y)
    return forest_of(fitted)


def forest_of(fitted: object) -> Forest:
    """A fitted `HistGradientBoostingRegressor`'s trees as a `Forest` (numeric splits only:
    `fit` declares no categorical feature)."""
    trees = [predictors[0].nodes for predictors in fitted._predictors]  # type: ignore[attr-defined]
    sizes = [len(nodes) for nodes in trees]
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)
    if trees:
        nodes = np.concatenate(trees)
        shift = np.repeat(offsets, sizes)
    else:
        nodes = np.zeros(0, dtype=[("is_leaf", "u1")])
        shift = np.zeros(0, dtype=np.intp)
    n = len(nodes)
    leaf = nodes["is_leaf"].astype(bool) if n else np.zeros(0, dtype=bool)
    itself = np.arange(n, dtype=np.intp)
    left = np.where(leaf, itself, nodes["left"].astype(np.intp) + shift) if n else itself
    right = np.where(leaf, itself, nodes["right"].astype(np.intp) + shift) if n else itself
    feature = np.where(leaf, 0, nodes["feature_idx"]) if n else itself
    threshold = np.where(leaf, 0.0, nodes["num_threshold"]) if n else np.zeros(0)
    missing = (nodes["missing_go_to_left"].astype(bool) & ~leaf) if n else leaf
    value = np.where(leaf, nodes["value"], 0.0) if n else np.zeros(0)
    depth = int(nodes["depth"].max()) if n else 0
    baseline = float(np.asarray(fitted._baseline_prediction).reshape(-1)[0])  # type: ignore[attr-defined]
    return Forest(
        baseline=baseline,
        depth=depth,
        roots=tuple(offsets.tolist()),
        feature=tuple(feature.tolist()),
        threshold=tuple(threshold.tolist()),
        missing_left=tuple(missing.tolist()),
        left=tuple(left.tolist()),
        right=tuple(right.tolist()),
        value=tuple(value.tolist()),
    )


Triple = tuple[float, float, float]

BIAS_BINS = 10
"""Held-out rows are cut in this many bins of the predicted loss to measure the trees' error."""


def _scale(forests: list[Forest], x: Floats, error: Floats) -> tuple[Triple, Triple]:
    """The band's k and relative bias per loss, on held-out rows.

    k: the squared residuals' sum over the variance proxies' (1 where there are no rows or the
    proxies sum to 0). Bias: the rows cut in `BIAS_BINS` bins of equal count by predicted loss,
    per bin the squared gap between the mean realized and mean predicted loss less its sampling
    variance, relative to the mean predicted loss (the signed error's: to the mean predicted
    |e|), averaged over the bins; its root is how far off, relatively, the trees were where the
    reference put their rows (0 without held-out rows)."""
    if not len(x):
        return (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)
    c = contributions(CompiledForest(*forests), x, np.ones(len(x), dtype=bool))
    _, ae, se, e, vae, vse, ve = c.T
    realized = (np.abs(error), error * error, error)
    scales: list[float] = []
    biases: list[float] = []
    sizes = (ae, se, ae)  # the signed error's bias is relative to the absolute error
    for y, predicted, v, scale in zip(realized, (ae, se, e), (vae, vse, ve), sizes, strict=True):
        residual = y - predicted
        total = float(v.sum())
        k = float(np.sum(residual * residual)) / total if total > 0 else 1.0
        scales.append(k if math.isfinite(k) and k > 0 else 1.0)
        gaps = []
        for rows in np.array_split(np.argsort(predicted, kind="stable"), BIAS_BINS):
            if len(rows) < 2:
                continue
            gap = float(residual[rows].mean())
            noise = float(residual[rows].var(ddof=1)) / len(rows)
            size = float(scale[rows].mean()) or float(np.abs(y[rows]).mean()) or 1.0
            gaps.append(max(gap * gap - noise, 0.0) / (size * size))
        bias = math.sqrt(sum(gaps) / len(gaps)) if gaps else 0.0
        biases.append(bias if math.isfinite(bias) else 0.0)
    return (scales[0], scales[1], scales[2]), (biases[0], biases[1], biases[2])
