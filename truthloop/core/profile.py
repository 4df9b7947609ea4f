"""Reference profiles: what drift is measured against, small and fixed whatever the size.

A profile is built once from a reference data set (an upload, or a period of captured records) and
stored; the raw reference is not kept. Each profiled column is one `NumericProfile` or
`CategoricalProfile`:

- numeric: `edges` are the reference's quantiles at 0, 1/20, ..., 1 with repeats removed, so
  `edges[0]` is the reference's minimum and `edges[-1]` its maximum (a constant reference keeps
  its one value twice, `(c, c)`: one interior cell, holding exactly `c`). A value falls in cell 0
  (underflow, below the minimum), cell i for `edges[i-1] <= x < edges[i]` (1 <= i < len(edges)),
  the last interior cell also holding `x == edges[-1]`, or cell `len(edges)` (overflow, above the
  maximum): `cells` says which. `proportions` are the reference's shares of every cell, under-
  and overflow included (both 0 by construction), so they sum to 1.
- categorical: `categories` are the reference's most frequent values (at most `MAX_CATEGORIES`, as
  text: `category_text`, the rule of multiclass labels (`metrics.class_label`), so a captured
  `1`, `1.0` and a CSV's "1" are one category, `true` is "true"; ties by text), `shares` their
  shares plus one last share for every other value. `seen` keeps up to `MAX_SEEN` of the
  remaining reference values, so a value in neither is new to the reference (a reference with
  more distinct values than both hold counts its rarest as new, with a warning; values longer
  than `MAX_TEXT` are never named, so they count as other, and new).

The prediction is always profiled (column `PREDICTION`) and, when the reference has scores, so is
the score (column `SCORE`, numeric): prediction drift. A regression prediction is numeric; a
multiclass one categorical; a binary one categorical over its class, "0" or "1", read as metrics
reads it (`prediction_class`).

`build` profiles a `core.table.Table` (an upload) against a spec: the declared features
(`spec.features`; any other column but the reserved ones is refused) or, without any, every
column but the reserved ones, numeric when all its values are numbers, categorical otherwise (at
most `MAX_FEATURES`). A cell that does not fit its column (text in a numeric feature, a binary
prediction that is no class) is refused naming its line and column, and so is a column without a
value; a constant numeric column is profiled, with a warning. `build_from_records` does the same
for captured records (history), where such cells count as missing instead: they were captured
and must not stop the reference. Feature names cannot take the prediction's and score's names,
nor `actual` or `ts` (`RESERVED`).

A reference with `actual` and scores (`score` for a binary model, one column `score:<class>` per
class for a multiclass one, which are no features) also calibrates the scores
(`core.calibration`): the profile's `calibration`, what estimated performance reads.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import msgspec
import numpy as np
import numpy.typing as npt

from truthloop.core import calibration, columns, lossmodel, metrics, pointer
from truthloop.core.table import (
    MAX_DETAILS,
    Column,
    Problems,
    Table,
    TableError,
    column_text,
    concat,
    not_none,
    show,
    values,
)

if TYPE_CHECKING:
    from truthloop.core.spec import MonitorSpec

# The column names live in `core.columns`, which the spec imports without numpy.
FeatureKind = columns.FeatureKind
FEATURE_KINDS = columns.FEATURE_KINDS
MAX_FEATURES = columns.MAX_FEATURES
PREDICTION = columns.PREDICTION
SCORE = columns.SCORE
ACTUAL = columns.ACTUAL
TS = columns.TS
RESERVED = columns.RESERVED
FEATURE_NAME = columns.FEATURE_NAME
FEATURE_NAME_EXPECTED = columns.FEATURE_NAME_EXPECTED

BINS = 20
"""Interior bins of a numeric feature (fewer when the reference's quantiles repeat)."""
MAX_CATEGORIES = 50
"""Categories a categorical profile names; the rest share one `other` cell."""
MAX_SEEN = 1000
"""Further reference values a categorical profile remembers, to tell a new category apart."""
MAX_TEXT = 256
"""The longest category a profile names (longer values count in "other"): a profile stays small
whatever the reference holds."""


class NumericProfile(msgspec.Struct, frozen=True, tag="numeric", tag_field="type"):
    """A numeric column of the reference."""

    name: str
    edges: tuple[float, ...]
    proportions: tuple[float, ...]
    """Per cell: underflow, the `len(edges) - 1` interior bins, overflow."""
    mean: float
    std: float
    min: float
    max: float
    count: int
    """Reference rows with a number here."""
    missing: int
    """Reference rows without one (absent, null, NaN)."""


class CategoricalProfile(msgspec.Struct, frozen=True, tag="categorical", tag_field="type"):
    """A categorical column of the reference."""

    name: str
    categories: tuple[str, ...]
    shares: tuple[float, ...]
    """Per cell: each of `categories`, then every other value."""
    seen: tuple[str, ...]
    count: int
    missing: int


ColumnProfile = NumericProfile | CategoricalProfile


class Profile(msgspec.Struct, frozen=True):
    """A reference data set summarised: its rows and one profile per column, features first."""

    rows: int
    columns: tuple[ColumnProfile, ...]
    calibration: calibration.Calibration | None = None
    """How the model's scores map to the probability of each outcome (`core.calibration`),
    when the reference has scores and `actual`: what estimated performance (`core.estimate`)
    reads. A new reference recalibrates."""
    loss: lossmodel.LossModel | None = None
    """A regression reference with `actual`: the models of each record's error that estimate a
    window's MAE and RMSE before its labels (`core.lossmodel`, direct loss estimation)."""


ReferenceSource = Literal["upload", "history"]
"""Where a reference came from: an uploaded data set or the monitor's own history."""


class Reference(msgspec.Struct, frozen=True):
    """A stored profile: `id` is the store's (sketch counters carry it, so buckets counted
    against an older reference never mix with a newer one's); `version` is the model version it
    is for, "" for every version without one of its own; `source` is `upload` or `history`."""

    id: int
    version: str
    created: float
    source: ReferenceSource
    profile: Profile


def reference_of(references: Mapping[str, Reference], version: str) -> Reference | None:
    """The reference a record of model `version` is read against (sketched, estimated,
    reviewed): its version's own, else the one for every version (`""`), else none."""
    return references.get(version) or references.get("")


def cells(edges: npt.NDArray[np.float64], values: npt.NDArray[np.float64]) -> npt.NDArray[np.intp]:
    """The cell of each value (not NaN) of a numeric column, by the rule above: 0 underflow,
    `len(edges)` overflow."""
    found = np.searchsorted(edges, values, side="right")
    found[values == edges[-1]] = len(edges) - 1
    return found


def category_text(value: Any) -> str:
    """A scalar value as a category: `metrics.class_label`, the multiclass label rule (text as
    is, booleans as JSON writes them, integral numbers without a fraction: `1`, `1.0` and "1" are
    one category). LabelError for NaN, infinities and containers, which are no category."""
    return metrics.class_label(value)


class ProfileError(TableError):
    """A reference that cannot be profiled: `details` name each problem's column, and line when
    it is one cell's (at most `MAX_DETAILS`), `count` is how many there were."""


def prediction_class(value: object, threshold: float, scored: bool) -> int:
    """A binary prediction's class as metrics reads it: a class (0/1, true/false, "0"/"1"), or,
    without a score (`scored`: the record or row has one), a probability whose class is
    `p >= threshold`. 0 and 1 are classes, whatever their type (a CSV does not tell 1 from 1.0).
    LabelError otherwise."""
    if (
        not scored
        and isinstance(value, float | int)
        and not isinstance(value, bool)
        and value not in (0, 1)
    ):
        if not 0 <= value <= 1:
            raise metrics.LabelError(f"prediction {value!r} is not a probability in [0, 1]")
        return int(value >= threshold)
    return metrics.binary_class(value, "prediction")


def binary_predictions(
    predictions: Sequence[object], scores: Sequence[object], threshold: float
) -> list[object]:
    """Captured binary predictions as the profile's prediction column holds them: each one's
    class as text ("0", "1"; `prediction_class`, with the record's own score), or the value as
    it was when it is no class (the sketch then counts it new or wrong)."""
    out: list[object] = []
    for value, score in zip(predictions, scores, strict=True):
        try:
            out.append(_CLASS_TEXT[prediction_class(value, threshold, score is not None)])
        except (metrics.LabelError, TypeError):
            out.append(value)
    return out


_CLASS_TEXT = ("0", "1")


def build(table: Table, spec: MonitorSpec, *, strict: bool = True) -> tuple[Profile, list[str]]:
    """The profile of `table` for a monitor with `spec`, and warnings (a constant column).

    Raises ProfileError naming every problem (bounded). `strict=False` (history) counts cells
    that do not fit their column as missing instead of refusing them.
    """
    problems = Problems()
    warnings: list[str] = []
    features = _features(table, spec, problems, warnings)
    if PREDICTION not in table.columns:
        problems.add(f"no {column_text(PREDICTION)} column: the model's prediction is profiled too")
    elif table.rows == 0:
        problems.add("no rows: a reference needs at least one")
    problems.raise_any(ProfileError)
    profiled: list[ColumnProfile] = []
    found: ColumnProfile | None
    for name, kind in features:
        column = table.columns[name]
        if kind == "numeric":
            found = _numeric(name, column, table, problems, strict, warnings)
        else:
            found = _categorical(name, _texts(column), table.rows, problems, warnings)
        if found is not None:
            profiled.append(found)
    scored = SCORE in table.columns
    prediction = table.columns[PREDICTION]
    if strict:
        absent = np.flatnonzero(~prediction.present())
        for i in absent[:MAX_DETAILS]:
            problems.add(f"line {table.lines[i]}, column {column_text(PREDICTION)}: missing")
        problems.count += max(0, len(absent) - MAX_DETAILS)
    if spec.task == "regression":
        found = _numeric(PREDICTION, prediction, table, problems, strict, warnings)
    elif spec.task == "multiclass":
        found = _categorical(PREDICTION, _texts(prediction), table.rows, problems, warnings)
    else:
        with_score = table.columns[SCORE].present() if scored else np.zeros(table.rows, dtype=bool)
        texts = _classes(prediction, table, spec.threshold, with_score, problems, strict)
        found = _categorical(PREDICTION, texts, table.rows, problems, warnings)
    if found is not None:
        profiled.append(found)
    if scored:
        found = _numeric(SCORE, table.columns[SCORE], table, problems, strict, warnings)
        if found is not None:
            profiled.append(found)
    problems.raise_any(ProfileError)
    calibrated = calibration.from_table(table, spec.task, warnings)
    loss = _loss_model(table, spec, profiled, warnings)
    profile = Profile(table.rows, tuple(profiled), calibration=calibrated, loss=loss)
    return profile, warnings


def _loss_model(
    table: Table, spec: MonitorSpec, profiled: list[ColumnProfile], warnings: list[str]
) -> lossmodel.LossModel | None:
    """A regression reference's loss models (`core.lossmodel`) when it has `actual`: the
    profiled features and the prediction are their inputs."""
    if spec.task != "regression" or ACTUAL not in table.columns:
        return None
    inputs = [
        (c.name, c.categories if isinstance(c, CategoricalProfile) else None)
        for c in profiled
        if c.name not in (PREDICTION, SCORE)
    ]
    return lossmodel.fit(table, [*inputs, (PREDICTION, None)], warnings)


def build_from_records(
    records: Iterable[tuple[object, object, object]], spec: MonitorSpec
) -> tuple[Profile, list[str]]:
    """The profile of captured records, each `(prediction, score, features)` as stored (the
    features object the capture kept, or None), for a history reference. Features are read
    with each `spec.features` pointer or, without any declared, are the features object's keys
    (a key that never holds a number, string or boolean is left out, with a warning); cells that
    do not fit count as missing. Raises ProfileError as `build` does.

    The records are taken `BATCH` at a time into columns (numbers as float64), so a long period
    holds its columns in memory, not its records."""
    declared = [(f.name, pointer.parse(f.pointer)) for f in spec.features]
    names: dict[str, None] = dict.fromkeys(name for name, _ in declared)
    parts: list[tuple[int, dict[str, Column]]] = []
    scored = False
    batches = iter(records)
    while batch := list(itertools.islice(batches, BATCH)):
        features = [r[2] for r in batch]
        part = {PREDICTION: values([r[0] for r in batch])}
        scores = [r[1] for r in batch]
        if any(s is not None for s in scores):
            part[SCORE] = values(scores)
            scored = True
        if not declared:
            for key in itertools.chain.from_iterable(f for f in features if type(f) is dict):
                if key not in names and len(names) <= MAX_FEATURES and key not in RESERVED:
                    names[key] = None
        for name in names:
            tokens = dict(declared).get(name, (name,))
            if len(tokens) == 1:
                token = tokens[0]
                cells_ = [f.get(token) if type(f) is dict else None for f in features]
            else:
                cells_ = [_resolved(f, tokens) for f in features]
            part[name] = values(cells_)
        parts.append((len(batch), part))
    order = [*names, PREDICTION, *([SCORE] if scored else [])]
    columns = {
        name: concat([p.get(name) or Column(np.full(n, np.nan)) for n, p in parts])
        for name in order
    }
    skipped = []
    if not declared:  # a discovered key without a usable value is no feature, not a refusal
        skipped = [n for n in names if not columns[n].present().any()]
        for name in skipped:
            del columns[name]
    rows = sum(n for n, _ in parts)
    table = Table(tuple(columns), columns, np.arange(1, rows + 1, dtype=np.int64))
    profile, warnings = build(table, spec, strict=False)
    return profile, [
        *(
            f"features key {column_text(name)} has no number, string or boolean in the period: "
            "not profiled"
            for name in skipped
        ),
        *warnings,
    ]


BATCH = 65536
"""Records `build_from_records` turns into columns at a time."""


def _resolved(features: object, tokens: tuple[str, ...]) -> object:
    """The value a pointer names in a features object, None where there is none."""
    if features is None:
        return None
    value = pointer.resolve(features, tokens)
    return None if isinstance(value, pointer.Missing) else value


def _features(
    table: Table, spec: MonitorSpec, problems: Problems, warnings: list[str]
) -> list[tuple[str, FeatureKind]]:
    """The profiled features, in order, with their kinds: declared, or discovered."""
    if spec.features:
        declared = {f.name for f in spec.features}
        for name in table.names:
            if name not in declared and name not in RESERVED and not _class_score(name, spec):
                problems.add(
                    f"column {column_text(name)}: not a feature of spec.features "
                    f"({', '.join(sorted(declared))}) nor one of {', '.join(RESERVED)}"
                )
        for f in spec.features:
            if f.name not in table.columns:
                problems.add(f"no column {column_text(f.name)}: spec.features declares it")
        return [(f.name, f.kind) for f in spec.features if f.name in table.columns]
    names = [n for n in table.names if n not in RESERVED and not _class_score(n, spec)]
    if len(names) > MAX_FEATURES:
        problems.add(
            f"{len(names)} feature columns, at most {MAX_FEATURES}: declare the features to "
            "watch in spec.features"
        )
        return []
    discovered: list[tuple[str, FeatureKind]] = []
    for name in names:
        if not FEATURE_NAME.fullmatch(name):
            problems.add(f"column {column_text(name)}: a feature's name is {FEATURE_NAME_EXPECTED}")
            continue
        column = table.columns[name]
        numeric = column.others is None or not not_none(column.others).any()
        discovered.append((name, "numeric" if numeric else "categorical"))
        if not numeric and column.others is not None:
            _mostly_numbers(name, column, table, warnings)
    return discovered


def _class_score(name: str, spec: MonitorSpec) -> bool:
    """Whether a column is a multiclass model's class score (`score:<class>`), no feature."""
    return spec.task == "multiclass" and name.startswith(calibration.CLASS_SCORE)


def _mostly_numbers(name: str, column: Column, table: Table, warnings: list[str]) -> None:
    """Warn when a discovered categorical column is mostly numbers: likely a numeric feature
    with a typo, which as a category would make every number a category of its own."""
    assert column.others is not None
    numbers = int(np.count_nonzero(~np.isnan(column.numbers)))
    texts = not_none(column.others)
    if numbers < 2 * np.count_nonzero(texts):
        return
    first = int(np.flatnonzero(texts)[0])
    warnings.append(
        f"column {column_text(name)} is mostly numbers but not only (line {table.lines[first]}: "
        f"{show(column.others[first])}), so it is profiled as categorical; declare it numeric in "
        "spec.features to have such cells refused"
    )


def _numeric(
    name: str,
    column: Column,
    table: Table,
    problems: Problems,
    strict: bool,
    warnings: list[str],
) -> NumericProfile | None:
    if strict and column.others is not None:
        wrong = np.flatnonzero(not_none(column.others))
        for i in wrong[:MAX_DETAILS]:
            problems.add(
                f"line {table.lines[i]}, column {column_text(name)}: expected a number, "
                f"got {show(column.others[i])}"
            )
        problems.count += max(0, len(wrong) - MAX_DETAILS)
    v = column.numbers[~np.isnan(column.numbers)]
    count = len(v)
    if count == 0:
        problems.add(f"column {column_text(name)}: no numbers in any row")
        return None
    edges = np.unique(np.quantile(v, np.linspace(0.0, 1.0, BINS + 1)))
    lowest, highest = float(edges[0]), float(edges[-1])
    if len(edges) == 1:
        edges = np.array([lowest, lowest])
        warnings.append(
            f"column {column_text(name)} is constant ({lowest:g}) in the reference: any other "
            "value will show as drift"
        )
    counts = np.bincount(cells(edges, v), minlength=len(edges) + 1)
    scale = max(abs(lowest), abs(highest), 1.0)
    scaled = v / scale if scale > 1e150 else v
    mean = float(np.mean(scaled)) * (scale if scale > 1e150 else 1.0)
    std = float(np.std(scaled)) * (scale if scale > 1e150 else 1.0)
    return NumericProfile(
        name=name,
        edges=tuple(float(e) for e in edges),
        proportions=tuple(float(c) / count for c in counts),
        mean=mean,
        std=std,
        min=lowest,
        max=highest,
        count=count,
        missing=table.rows - count,
    )


def _texts(column: Column) -> Counter[str]:
    """How often each value of a column occurs, as text (`metrics.class_label`)."""
    found: Counter[str] = Counter()
    numbers = column.numbers[~np.isnan(column.numbers)]
    if len(numbers):
        unique, counts = np.unique(numbers, return_counts=True)
        for value, count in zip(unique.tolist(), counts.tolist(), strict=True):
            found[category_text(value)] += count
    if column.others is not None:
        counted = Counter(column.others.tolist())
        counted.pop(None, None)
        for value, count in counted.items():
            found[category_text(value)] += count
    return found


def _classes(
    column: Column,
    table: Table,
    threshold: float,
    scored: npt.NDArray[np.bool_],
    problems: Problems,
    strict: bool,
) -> Counter[str]:
    """A binary prediction column's classes ("0", "1") and their counts, by `prediction_class`
    row by row (`scored`: the rows with a score)."""
    found: Counter[str] = Counter()
    numbers = column.numbers
    present = ~np.isnan(numbers)
    classes = (numbers == 0) | (numbers == 1)
    fits = present & (classes | (~scored & (numbers >= 0) & (numbers <= 1)))
    positive = (numbers == 1) | (~scored & (numbers != 0) & (numbers >= threshold))
    ones = int(np.count_nonzero(fits & positive))
    found["1"] += ones
    found["0"] += int(np.count_nonzero(fits)) - ones
    bad = present & ~fits
    wrong: list[tuple[int, object]] = [(int(i), numbers[i].item()) for i in np.flatnonzero(bad)]
    if column.others is not None:
        known: dict[object, int | None] = {}
        for i in np.flatnonzero(not_none(column.others)):
            value = column.others[i]
            if value not in known:
                try:
                    known[value] = prediction_class(value, threshold, True)
                except metrics.LabelError:
                    known[value] = None
            cls = known[value]
            if cls is None:
                wrong.append((int(i), value))
            else:
                found[str(cls)] += 1
    if strict:
        wrong.sort(key=lambda item: item[0])
        for row, value in wrong[:MAX_DETAILS]:
            problems.add(
                f"line {table.lines[row]}, column {column_text(PREDICTION)}: {show(value)} is not "
                "a binary class (0/1, true/false)"
                + ("" if scored[row] else " or a probability in [0, 1]")
            )
        problems.count += max(0, len(wrong) - MAX_DETAILS)
    return +found


def _categorical(
    name: str, texts: Counter[str], rows: int, problems: Problems, warnings: list[str]
) -> CategoricalProfile | None:
    count = sum(texts.values())
    if count == 0:
        problems.add(f"column {column_text(name)}: no values in any row")
        return None
    kept = MAX_CATEGORIES + MAX_SEEN
    if len(texts) > kept:
        warnings.append(
            f"column {column_text(name)} has {len(texts)} distinct values, more than a profile "
            f"keeps ({kept}): its rarest values will count as new categories (an identifier is "
            "no feature)"
        )
    long = sum(1 for t in texts if len(t) > MAX_TEXT)
    if long:
        warnings.append(
            f"column {column_text(name)}: {long} values longer than {MAX_TEXT} characters are "
            "kept only as 'other'"
        )
    ranked = sorted(
        ((t, c) for t, c in texts.items() if len(t) <= MAX_TEXT),
        key=lambda item: (-item[1], item[0]),
    )
    top = ranked[:MAX_CATEGORIES]
    other = count - sum(c for _, c in top)
    return CategoricalProfile(
        name=name,
        categories=tuple(t for t, _ in top),
        shares=(*(c / count for _, c in top), other / count),
        seen=tuple(t for t, _ in ranked[MAX_CATEGORIES : MAX_CATEGORIES + MAX_SEEN]),
        count=count,
        missing=rows - count,
    )
