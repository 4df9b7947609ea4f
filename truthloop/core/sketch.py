"""Per-minute feature sketches: the drift and data-quality counters a bucket holds.

Each capture batch adds, per profiled column, its cell counts against the record's reference
(`core.profile`), to the same minute buckets as the metric counters, so a window's sketch is a
sum of buckets. The counters (the storage contract; every key holds a `:`, so none is a lifetime
total, and starts with `PREFIX`, so no metric reads it):

- `~<ref>:<column>:<cell>`: records whose value fell in cell `<cell>` (an integer, as in
  `core.profile`: numeric 0 = underflow ... `len(edges)` = overflow; categorical the index of a
  category, `len(categories)` = other);
- `~<ref>:<column>:missing`: records without a value (absent, null, NaN);
- `~<ref>:<column>:wrong`: records with a value of the wrong type (a string or bool for a numeric
  column, a list or object for a categorical one);
- `~<ref>:<column>:oor`: numeric values outside the reference's range (the under- and overflow
  cells together);
- `~<ref>:<column>:new`: categorical values the reference never had (`core.profile`'s `seen`);
- `~<ref>:@rows`: records sketched against reference `<ref>`;
- `~<ref>:@outliers`: of them, outliers (`OUTLIER` on the record's score);
- `~<ref>:@dle:<name>` (a regression reference with a loss model, `core.lossmodel`): per
  `lossmodel.COUNTERS` name, the sum over the records of their predicted loss (or its variance
  proxy; `n`: records with a loss prediction, those whose prediction is a number).

`<ref>` is the `Reference.id` in decimal; column names never hold a `:`. A reference with a
calibration also has each record add the counters of estimated performance
(`estimate.ingest`: `~<ref>:@cbpe:...`, see `core.estimate`).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from operator import itemgetter
from typing import Any

import numpy as np
import numpy.typing as npt

from truthloop.core import estimate, lossmodel, pointer, segmented
from truthloop.core.join import GroupKey
from truthloop.core.profile import (
    PREDICTION,
    SCORE,
    ColumnProfile,
    NumericProfile,
    Reference,
    binary_predictions,
    category_text,
    cells,
)
from truthloop.core.profile import reference_of as reference_of
from truthloop.core.records import PredictionRecord
from truthloop.core.registry import Referenced
from truthloop.core.spec import FeatureSpec, MonitorSpec
from truthloop.core.windows import BUCKET_SECONDS

PREFIX = "~"

Floats = npt.NDArray[np.float64]

ROWS = "@rows"
OUTLIERS = "@outliers"
MISSING = "missing"
WRONG = "wrong"
OUT_OF_RANGE = "oor"
NEW = "new"


def is_sketch(key: str) -> bool:
    """Whether a counter is a sketch counter (metrics leave these out)."""
    return key.startswith(PREFIX)


def key(ref: int, column: str, cell: int | str) -> str:
    """The counter of one cell (or `MISSING`, `WRONG`, ...) of a column under reference `ref`."""
    return f"{PREFIX}{ref}:{column}:{cell}"


def rows_key(ref: int) -> str:
    return f"{PREFIX}{ref}:{ROWS}"


def outliers_key(ref: int) -> str:
    return f"{PREFIX}{ref}:{OUTLIERS}"


dle_key = estimate.dle_key


# -- sketching a batch -------------------------------------------------------------------------


_MISSING_TYPES = frozenset({type(None)})
_NUMBERS = frozenset({int, float, type(None)})
_TEXTS = frozenset({str, type(None)})
_INTS = frozenset({int, type(None)})
_INT = frozenset({int})


class _Column:
    """One profiled column of a reference compiled for sketching: how to read its value from a
    record, how a value maps to a code, and how the codes' counts map to counters.

    A value's code (one small integer, so a batch's counts are one `bincount`): numeric
    `0..E` the cells of `E = len(edges)` edges (0 and E out of range), `E+1` missing, `E+2`
    wrong; categorical `0..k-1` the `k` categories, `k` another value the reference had, `k+1` a
    value it never had (new), `k+2` missing, `k+3` wrong. `project` (codes x counters) turns
    counts of codes into counts of the column's counters `keys`; `outlying` marks the codes of an
    outlier value (out of range, new)."""

    __slots__ = (
        "edges",
        "feature",
        "ints",
        "keys",
        "lookup",
        "name",
        "numeric",
        "outlying",
        "project",
        "tokens",
        "width",
    )

    def __init__(self, ref: int, column: ColumnProfile, tokens: tuple[str, ...] | None) -> None:
        self.name = column.name
        self.tokens = tokens
        """Where the value is in the record's features; None: the prediction or the score."""
        self.feature = tokens is not None
        name = column.name
        if isinstance(column, NumericProfile):
            self.numeric = True
            edges = column.edges
            self.edges = np.asarray(edges, dtype=np.float64)
            cells = len(edges) + 1
            self.width = cells + 2
            self.keys = [key(ref, name, i) for i in range(cells)]
            self.keys += [
                key(ref, name, MISSING),
                key(ref, name, WRONG),
                key(ref, name, OUT_OF_RANGE),
            ]
            project = np.zeros((self.width, len(self.keys)), dtype=np.float64)
            project[np.arange(self.width), np.arange(self.width)] = 1.0
            project[0, cells + 2] = project[cells - 1, cells + 2] = 1.0
            self.outlying = np.zeros(self.width, dtype=bool)
            self.outlying[[0, cells - 1]] = True
            self.lookup: dict[Any, int] = {}
            self.ints: dict[int, int] = {}
        else:
            self.numeric = False
            self.edges = np.empty(0)
            k = len(column.categories)
            self.width = k + 4
            self.lookup = {text: i for i, text in enumerate(column.categories)}
            for text in column.seen:
                self.lookup.setdefault(text, k)
            self.lookup[None] = k + 2
            self.ints = {}
            for text, code in self.lookup.items():
                if isinstance(text, str) and _canonical_int(text):
                    self.ints[int(text)] = code
            self.ints[None] = k + 2  # type: ignore[index]
            self.keys = [key(ref, name, i) for i in range(k + 1)]
            self.keys += [key(ref, name, NEW), key(ref, name, MISSING), key(ref, name, WRONG)]
            project = np.zeros((self.width, len(self.keys)), dtype=np.float64)
            for code in range(k + 1):
                project[code, code] = 1.0
            project[k + 1, k] = project[k + 1, k + 1] = 1.0  # new: in the other cell too
            project[k + 2, k + 2] = project[k + 3, k + 3] = 1.0
            self.outlying = np.zeros(self.width, dtype=bool)
            self.outlying[k + 1] = True
        self.project = project

    def codes(self, values: Sequence[Any]) -> npt.NDArray[np.intp]:
        """Each value's code."""
        return self.read(values)[0]

    def read(self, values: Sequence[Any]) -> tuple[npt.NDArray[np.intp], Floats | None]:
        """Each value's code and, for a numeric column, its number (NaN: missing or wrong)."""
        kinds = set(map(type, values))
        if self.numeric:
            return self._numeric(values, kinds)
        return self._categorical(values, kinds), None

    def _numeric(
        self, values: Sequence[Any], kinds: set[type]
    ) -> tuple[npt.NDArray[np.intp], Floats]:
        edges = len(self.edges)
        if kinds <= _NUMBERS:
            numbers = np.array(values, dtype=np.float64)  # None: NaN
            wrong = None
        else:
            numbers = np.array(
                [v if type(v) is float or type(v) is int else None for v in values],
                dtype=np.float64,
            )
            wrong = np.fromiter(
                (v is not None and type(v) is not float and type(v) is not int for v in values),
                dtype=bool,
                count=len(values),
            )
        missing = np.isnan(numbers)
        codes = cells(self.edges, numbers)
        codes[missing] = edges + 1
        if wrong is not None:
            codes[wrong] = edges + 2
        return codes, numbers

    def _categorical(self, values: Sequence[Any], kinds: set[type]) -> npt.NDArray[np.intp]:
        new = self.width - 3
        n = len(values)
        if kinds <= _TEXTS:
            found: Any = map(self.lookup.get, values, repeat(new))
        elif kinds <= _INTS:
            found = map(self.ints.get, values, repeat(new))
        else:
            found = (self._code(v, new) for v in values)
        return np.fromiter(found, dtype=np.intp, count=n)

    def _code(self, value: Any, new: int) -> int:
        if value is None:
            return self.width - 2
        if type(value) is list or type(value) is dict:
            return self.width - 1
        if type(value) is float and not math.isfinite(value):
            return self.width - 2  # NaN and infinities are no category (category_text)
        return self.lookup.get(category_text(value), new)


def _canonical_int(text: str) -> bool:
    """Whether `text` is how `category_text` writes an integer."""
    try:
        return str(int(text)) == text
    except ValueError:
        return False


class _Layout:
    """A reference compiled for sketching against one monitor's features."""

    __slots__ = ("binary", "columns", "extras", "features", "loss", "loss_inputs", "profile", "ref")

    def __init__(self, reference: Reference, spec: MonitorSpec) -> None:
        self.ref = reference.id
        self.profile = reference.profile
        self.binary = spec.threshold if spec.task == "binary" else None
        """A binary model's threshold: its predictions are profiled by class."""
        features = spec.features
        pointers = {f.name: pointer.parse(f.pointer) for f in features}
        self.columns = []
        for column in reference.profile.columns:
            if column.name in (PREDICTION, SCORE):
                tokens = None
            else:
                tokens = pointers.get(column.name, (column.name,))
            self.columns.append(_Column(reference.id, column, tokens))
        self.features = sum(c.feature for c in self.columns)
        self.extras = estimate.ingest(reference, spec)
        """Counters a record adds for estimated performance (`core.estimate`)."""
        model = reference.profile.loss
        self.loss = None if model is None else lossmodel.Compiled(model)
        """The reference's loss model (regression), compiled."""
        names = [c.name for c in self.columns]
        self.loss_inputs = [] if model is None else [names.index(n) for n in model.inputs]
        """The layout's column of each loss model input."""

    def loss_counters(
        self, read: Sequence[tuple[npt.NDArray[np.intp], Floats | None]]
    ) -> Floats | None:
        """Per record, its contribution to the `@dle` counters (None without a loss model):
        the loss model's inputs taken from the columns as read (`lossmodel`'s encoding: a
        category's index, other and new values one more, missing and wrong NaN)."""
        if self.loss is None:
            return None
        inputs = np.empty((len(read[0][0]), len(self.loss_inputs)), dtype=np.float64)
        for j, i in enumerate(self.loss_inputs):
            codes, numbers = read[i]
            if numbers is not None:
                inputs[:, j] = numbers
            else:
                k = self.columns[i].width - 4  # the categories
                indices = np.minimum(codes, k).astype(np.float64)
                indices[codes >= k + 2] = np.nan  # missing, wrong
                inputs[:, j] = indices
        inputs = lossmodel.encode_numbers(inputs)
        usable = ~np.isnan(inputs[:, -1])  # the prediction
        return self.loss.contributions(inputs, usable)


_LAYOUTS: OrderedDict[tuple[int, tuple[FeatureSpec, ...], str, float], _Layout] = OrderedDict()
MAX_LAYOUTS = 1024
"""Compiled references kept, the least recently used dropped first (a compiled one weighs about
what its profile does, and the references in use are in memory anyway)."""


def _layout(reference: Reference, spec: MonitorSpec) -> _Layout:
    """The compiled reference, compiled once per reference id and the spec's features, task and
    threshold. An id names one profile within one store only (a process may open several: a
    test run does), so a hit must hold the same profile: the same object, as a monitor's
    references stay between rereads, or an equal one."""
    key = (reference.id, spec.features, spec.task, spec.threshold)
    cached = _LAYOUTS.get(key)
    if cached is None or (
        cached.profile is not reference.profile and cached.profile != reference.profile
    ):
        cached = _LAYOUTS[key] = _Layout(reference, spec)
        _LAYOUTS.move_to_end(key)
        while len(_LAYOUTS) > MAX_LAYOUTS:
            _LAYOUTS.popitem(last=False)
    else:
        _LAYOUTS.move_to_end(key)
    return cached


def _columns(records: Sequence[PredictionRecord], layout: _Layout) -> list[Sequence[Any]]:
    """Each column's values, in the layout's order (None where a record has none).

    Features are read by one `itemgetter` per record when every record's features are an object
    holding every flat feature (the usual batch), transposed by `zip`; else column by column.
    """
    features = [r.features for r in records]
    flat = [c.tokens[0] for c in layout.columns if c.tokens is not None and len(c.tokens) == 1]
    found: dict[str, Sequence[Any]] = {}
    if len(flat) > 1 and set(map(type, features)) == {dict}:
        try:
            rows = map(itemgetter(*flat), features)
            found = dict(zip(flat, zip(*rows, strict=True), strict=True))
        except KeyError:
            found = {}
    out: list[Sequence[Any]] = []
    for column in layout.columns:
        tokens = column.tokens
        if tokens is None:
            if column.name == PREDICTION:
                predictions: list[Any] = [r.prediction for r in records]
                if layout.binary is not None and not set(map(type, predictions)) <= _INT:
                    # (integers are their own class, or no class: the `ints` lookup reads them)
                    scores = [r.score for r in records]
                    predictions = binary_predictions(predictions, scores, layout.binary)
                out.append(predictions)
            else:
                out.append([r.score for r in records])
        elif len(tokens) == 1:
            token = tokens[0]
            values = found.get(token)
            if values is None:
                values = [f.get(token) if type(f) is dict else None for f in features]
            out.append(values)
        else:
            out.append([_deep(f, tokens) for f in features])
    return out


def _deep(features: Any, tokens: tuple[str, ...]) -> Any:
    if features is None:
        return None
    found = pointer.resolve(features, tokens)
    return None if isinstance(found, pointer.Missing) else found


@dataclass(frozen=True, slots=True)
class _Part:
    """The records of a batch sketched against one reference."""

    monitor_id: int
    layout: _Layout
    indices: npt.NDArray[np.intp]
    """Their positions in the batch."""
    groups: list[tuple[str, str, int]]
    """(version, served_by, bucket) of each group index."""
    group: npt.NDArray[np.intp]
    """Each record's group index."""
    codes: list[npt.NDArray[np.intp]]
    """Per column of the layout, each record's code."""
    outliers: npt.NDArray[np.bool_]
    extras: tuple[tuple[npt.NDArray[np.intp], npt.NDArray[np.float64] | None], ...] = ()
    """Per `layout.extras`, each record's codes and weights (`estimate.Ingest`)."""
    losses: Floats | None = None
    """Per record, its contribution to each `@dle` counter (`_Layout.loss_counters`)."""
    drift: frozenset[str] = frozenset()
    """The monitor's segments with `drift`: the feature sketches are kept per value of those."""


@dataclass(frozen=True, slots=True)
class Sketched:
    """A batch sketched: each record's outlier score, and the counter deltas of any of its
    records (`deltas`: a store counts the ones it stored, not the duplicates)."""

    size: int
    outliers: list[float | None]
    """Per record of the batch: the outlier score (see `sketch`), None when it had no
    reference."""
    parts: tuple[_Part, ...] = ()

    def deltas(
        self,
        stored: Sequence[int] | None = None,
        assigned: segmented.Assigned | None = None,
    ) -> dict[GroupKey, dict[str, float]]:
        """The sketch counters the records at positions `stored` (None: all) add, per minute
        group; the estimation counters again under each record's segment prefixes of
        `assigned`, the feature sketches under those of the segments with `drift` only."""
        keep = None
        if stored is not None and len(stored) < self.size:
            keep = np.zeros(self.size, dtype=bool)
            keep[np.asarray(stored, dtype=np.intp)] = True
        out: dict[GroupKey, dict[str, float]] = {}
        for part in self.parts:
            _count(part, None if keep is None else keep[part.indices], out, assigned)
        return out


def _count(
    part: _Part,
    keep: npt.NDArray[np.bool_] | None,
    out: dict[GroupKey, dict[str, float]],
    assigned: segmented.Assigned | None = None,
) -> None:
    """Add the counters of a part's records (`keep`: only those) to `out`, the estimation
    ones under their segment prefixes too (`assigned`; compacted where the ingest says so), the
    feature sketches under those of the part's segments with drift."""
    group = part.group if keep is None else part.group[keep]
    if not len(group):
        return
    positions = part.indices if keep is None else part.indices[keep]
    fanned = segmented.fan(assigned, positions, group)
    drifting = segmented.fan(segmented.only(assigned, part.drift), positions, group)
    widened = drifting.group
    n = len(part.groups) * drifting.width
    ref = part.layout.ref
    matrices: list[npt.NDArray[np.float64]] = []
    keys: list[str] = []
    for column, codes in zip(part.layout.columns, part.codes, strict=True):
        width = column.width
        picked = drifting.take(codes if keep is None else codes[keep])
        counts = np.bincount(widened * width + picked, minlength=n * width).reshape(n, width)
        matrices.append(counts @ column.project)
        keys += column.keys
    outliers = drifting.take(part.outliers if keep is None else part.outliers[keep])
    matrices.append(
        np.stack(
            [
                np.bincount(widened, minlength=n),
                np.bincount(widened, weights=outliers, minlength=n),
            ],
            axis=1,
        ).astype(np.float64)
    )
    keys += [rows_key(ref), outliers_key(ref)]
    table = np.concatenate(matrices, axis=1)
    for g in np.flatnonzero(table.any(axis=1)).tolist():
        row = table[g]
        nonzero = np.flatnonzero(row)
        plain, prefix = drifting.split(g)
        version, served_by, bucket = part.groups[plain]
        counters = out.setdefault((part.monitor_id, version, served_by, bucket), {})
        for index, value in zip(nonzero.tolist(), row[nonzero].tolist(), strict=True):
            name = prefix + keys[index]
            counters[name] = counters.get(name, 0.0) + value
    if part.losses is not None:
        losses = part.losses if keep is None else part.losses[keep]
        _count_losses(part, fanned.take(losses), fanned, out)
    for extra, (found, weights) in zip(part.layout.extras, part.extras, strict=True):
        if keep is not None:
            found = found[keep]
            weights = None if weights is None else weights[keep]
        weighted = None if weights is None else fanned.take(weights)
        codes = fanned.take(found)
        if extra.compact is not None and fanned.copies is not None:
            codes = np.where(fanned.copies[:, None], extra.compact[codes], codes)
        _count_extra(part, extra.keys, codes, weighted, fanned, out)


def _count_losses(
    part: _Part, losses: Floats, fanned: segmented.Fan, out: dict[GroupKey, dict[str, float]]
) -> None:
    """Add the `@dle` counters of the fanned records (`losses`: theirs, in `fanned.rows`'s
    order) per widened group."""
    n = len(part.groups) * fanned.width
    sums = np.stack(
        [np.bincount(fanned.group, weights=c, minlength=n) for c in losses.T], axis=1
    ).astype(np.float64)
    keys = [dle_key(part.layout.ref, name) for name in lossmodel.COUNTERS]
    for g in np.flatnonzero(sums.any(axis=1)).tolist():
        plain, prefix = fanned.split(g)
        version, served_by, bucket = part.groups[plain]
        counters = out.setdefault((part.monitor_id, version, served_by, bucket), {})
        for name, value in zip(keys, sums[g].tolist(), strict=True):
            if value:
                name = prefix + name
                counters[name] = counters.get(name, 0.0) + value


def _count_extra(
    part: _Part,
    keys: Sequence[str],
    codes: npt.NDArray[np.intp],
    weights: npt.NDArray[np.float64] | None,
    fanned: segmented.Fan,
    out: dict[GroupKey, dict[str, float]],
) -> None:
    """Add an `estimate.Ingest`'s counters of the fanned records (`codes`, `weights`: theirs):
    sparse (a histogram of 2,000 keys holds a few per minute), so only the (group, key) pairs
    that occur are summed."""
    group = fanned.group
    width = len(keys)
    valid = codes >= 0
    flat = (group[:, None] * width + codes)[valid]
    picked = None if weights is None else weights[valid]
    cells = len(part.groups) * fanned.width * width
    if cells <= 4 * len(flat) + 4096:  # few cells for the records: count them all
        dense = np.bincount(flat, weights=picked, minlength=cells)
        found = np.flatnonzero(dense)
        sums = dense[found]
    else:
        found, inverse = np.unique(flat, return_inverse=True)
        sums = np.bincount(inverse.reshape(-1), weights=picked)
    nonzero = sums != 0
    found, sums = found[nonzero], sums[nonzero]
    widened = found // width  # ascending: the codes are
    starts = np.flatnonzero(np.diff(widened, prepend=-1))
    groups = widened[starts]
    ends = [*starts[1:].tolist(), len(found)]
    at = (found % width).tolist()
    values = sums.tolist()
    for g, start, end in zip(groups.tolist(), starts.tolist(), ends, strict=True):
        plain, prefix = fanned.split(g)
        version, served_by, bucket = part.groups[plain]
        counters = out.setdefault((part.monitor_id, version, served_by, bucket), {})
        get = counters.get
        for k, value in zip(at[start:end], values[start:end], strict=True):
            name = prefix + keys[k]
            counters[name] = get(name, 0.0) + value


@dataclass(slots=True)
class _Gathering:
    """A part's records as `sketch` finds them."""

    monitor_id: int
    layout: _Layout
    indices: list[int] = field(default_factory=list)
    """The records' positions in the batch."""
    slots: list[tuple[str, str]] = field(default_factory=list)
    """(version, served_by) of each slot."""
    slot: list[int] = field(default_factory=list)
    """Each record's slot."""
    drift: frozenset[str] = frozenset()
    """The monitor's segments with `drift`."""


def sketch(records: Sequence[PredictionRecord], known: Mapping[str, Referenced]) -> Sketched:
    """Sketch a batch: each record against its reference (`reference_of`), per profiled column
    its cell, missing, wrong-type, out-of-range and new-category counts, and its outlier score.

    The outlier score is the share of the record's profiled features (not the prediction or
    score) whose value lies outside the reference: a number beyond the reference's minimum or
    maximum (its extreme quantiles), or a category the reference never had. A record is an
    outlier when its score is above 0. Why this score: it needs nothing but the profile, costs
    nothing beyond the cells already computed, and is calibrated without labels: a record drawn
    from the reference's own distribution falls outside the range of `n` reference rows with
    probability at most 2/(n+1) per numeric feature (exchangeability), so with a reference of
    10,000 rows and 10 features at most 0.2% of in-distribution records are flagged, while a
    broken sensor (a value never seen) or a typo (a category never seen) always is. The share,
    rather than a count, compares monitors of different widths. A missing or wrong-typed value
    is a data-quality count of its own, not an outlier.
    """
    n = len(records)
    outliers: list[float | None] = [None] * n
    slots: dict[tuple[str, str, str], list[int]] = {}
    for i, record in enumerate(records):
        slots.setdefault((record.monitor, record.model_version, record.served_by), []).append(i)
    by_reference: dict[int, _Gathering] = {}
    for (monitor, version, served_by), indices in slots.items():
        registered = known[monitor]
        reference = reference_of(registered.references, version)
        if reference is None:
            continue
        layout = _layout(reference, registered.monitor.spec)
        gathering = by_reference.get(layout.ref)
        if gathering is None:
            segments = registered.monitor.spec.segments
            drifting = frozenset(s.name for s in segments if s.drift)
            gathering = by_reference[layout.ref] = _Gathering(registered.id, layout, drift=drifting)
        gathering.slots.append((version, served_by))
        gathering.indices += indices
        gathering.slot += [len(gathering.slots) - 1] * len(indices)
    parts = []
    for gathering in by_reference.values():
        layout = gathering.layout
        batch = [records[i] for i in gathering.indices]
        buckets = np.floor(np.array([r.ts for r in batch]) / BUCKET_SECONDS).astype(np.int64)
        low = int(buckets.min())
        span = int(buckets.max()) - low + 1
        combined = np.asarray(gathering.slot, dtype=np.int64) * span + (buckets - low)
        unique, group = np.unique(combined, return_inverse=True)
        groups = [
            (*gathering.slots[int(code) // span], low + int(code) % span)
            for code in unique.tolist()
        ]
        read = [
            column.read(values)
            for column, values in zip(layout.columns, _columns(batch, layout), strict=True)
        ]
        codes = [c for c, _ in read]
        outlying = np.zeros(len(batch), dtype=np.intp)
        for column, found in zip(layout.columns, codes, strict=True):
            if column.feature:
                outlying += column.outlying[found]
        scores = outlying / layout.features if layout.features else outlying.astype(np.float64)
        for i, score in zip(gathering.indices, scores.tolist(), strict=True):
            outliers[i] = score
        parts.append(
            _Part(
                gathering.monitor_id,
                layout,
                np.asarray(gathering.indices, dtype=np.intp),
                groups,
                group.reshape(-1).astype(np.intp),
                codes,
                outlying > 0,
                tuple(extra.deltas(batch) for extra in layout.extras),
                layout.loss_counters(read),
                gathering.drift,
            )
        )
    return Sketched(n, outliers, tuple(parts))
