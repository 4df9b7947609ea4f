"""Reference profiles and window sketches built from raw values, by the cell rule of core.profile.

The drift tests compare statistics computed from sketches with the same statistics computed on
the raw values (scipy), so both the profile and the window's cell counts are built here from raw
arrays, following `core.profile`'s docstring (not its code: the tests hold the two to one rule).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from truthloop.core import profile, sketch
from truthloop.core.profile import (
    BINS,
    MAX_CATEGORIES,
    CategoricalProfile,
    ColumnProfile,
    NumericProfile,
    Profile,
    Reference,
)
from truthloop.core.spec import (
    CaptureSpec,
    DriftOverride,
    DriftSpec,
    ModelRef,
    MonitorSpec,
    Selector,
    Source,
)

REF = 7


def numeric_profile(name: str, values: np.ndarray, missing: int = 0) -> NumericProfile:
    """The profile of `values`: quantile edges at 0, 1/BINS, ..., 1 with repeats removed (a
    constant's value twice)."""
    edges = np.unique(np.quantile(values, np.linspace(0, 1, BINS + 1)))
    if len(edges) == 1:
        edges = np.concatenate([edges, edges])
    counts = np.bincount(numeric_cells(edges, values), minlength=len(edges) + 1)
    return NumericProfile(
        name=name,
        edges=tuple(edges.tolist()),
        proportions=tuple((counts / len(values)).tolist()),
        mean=float(values.mean()),
        std=float(values.std()),
        min=float(values.min()),
        max=float(values.max()),
        count=len(values),
        missing=missing,
    )


def numeric_cells(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Cell per value (`core.profile.cells`, the rule the ingest sketch uses too)."""
    return profile.cells(edges.astype(np.float64), values.astype(np.float64))


def categorical_profile(name: str, values: Sequence[str]) -> CategoricalProfile:
    """The profile of `values`: the top MAX_CATEGORIES values and their shares, then the rest."""
    counts = Counter(str(v) for v in values)
    top = [v for v, _ in counts.most_common(MAX_CATEGORIES)]
    shares = [counts[v] / len(values) for v in top]
    rest = [v for v in counts if v not in set(top)]
    return CategoricalProfile(
        name=name,
        categories=tuple(top),
        shares=(*shares, 1.0 - sum(shares)),
        seen=tuple(rest),
        count=len(values),
        missing=0,
    )


def reference(*columns: ColumnProfile, rows: int | None = None) -> Reference:
    count = max((c.count for c in columns), default=0)
    return Reference(
        id=REF,
        version="v1",
        created=1_700_000_000.0,
        source="upload",
        profile=Profile(rows=count if rows is None else rows, columns=columns),
    )


def sketch_numeric(profile: NumericProfile, values: np.ndarray, ref: int = REF) -> dict[str, float]:
    """A window's counters of one numeric column holding `values` (no missing ones)."""
    edges = np.asarray(profile.edges)
    counts = np.bincount(numeric_cells(edges, values), minlength=len(edges) + 1)
    out = {sketch.key(ref, profile.name, i): float(c) for i, c in enumerate(counts) if c}
    oor = int(counts[0] + counts[-1])
    if oor:
        out[sketch.key(ref, profile.name, sketch.OUT_OF_RANGE)] = float(oor)
    return out


def sketch_categorical(
    profile: CategoricalProfile, values: Sequence[str], ref: int = REF
) -> dict[str, float]:
    """A window's counters of one categorical column holding `values`."""
    index = {c: i for i, c in enumerate(profile.categories)}
    other = len(profile.categories)
    known = set(profile.categories) | set(profile.seen)
    values = [str(v) for v in values]
    cells = Counter(index.get(v, other) for v in values)
    out = {sketch.key(ref, profile.name, i): float(c) for i, c in cells.items()}
    new = sum(1 for v in values if v not in known)
    if new:
        out[sketch.key(ref, profile.name, sketch.NEW)] = float(new)
    return out


def window(rows: int, *parts: Mapping[str, float], outliers: int = 0) -> dict[str, float]:
    """Summed counters: the columns' parts plus the rows and outliers of reference REF."""
    out: dict[str, float] = {sketch.rows_key(REF): float(rows)}
    if outliers:
        out[sketch.outliers_key(REF)] = float(outliers)
    for part in parts:
        for key, value in part.items():
            out[key] = out.get(key, 0.0) + value
    return out


def spec(*overrides: DriftOverride, share: float = 0.5) -> MonitorSpec:
    return MonitorSpec(
        selector=Selector(),
        model=ModelRef("churn"),
        capture=CaptureSpec(prediction=Source(pointer="/prediction")),
        drift=DriftSpec(share=share, overrides=overrides),
    )
