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
  text: `category_text`, so a captured `1`, `1.0` and a CSV's "1" are one category), `shares`
  their shares plus one last share for every other value. `seen` keeps up to `MAX_SEEN` of the
  remaining reference values, so a value in neither is new to the reference (a reference with
  more distinct values than both hold counts its rarest as new).

The prediction is always profiled (column `PREDICTION`) and, when the reference has scores, so is
the score (column `SCORE`): prediction drift. Feature names cannot take those names, nor `actual`
or `ts` (`RESERVED`).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
import numpy as np
import numpy.typing as npt

FeatureKind = Literal["numeric", "categorical"]

FEATURE_KINDS: tuple[FeatureKind, ...] = ("numeric", "categorical")

BINS = 20
"""Interior bins of a numeric feature (fewer when the reference's quantiles repeat)."""
MAX_CATEGORIES = 50
"""Categories a categorical profile names; the rest share one `other` cell."""
MAX_SEEN = 1000
"""Further reference values a categorical profile remembers, to tell a new category apart."""
MAX_FEATURES = 100
"""Features a monitor profiles (the prediction and score come on top)."""

PREDICTION = "prediction"
SCORE = "score"
ACTUAL = "actual"
TS = "ts"
RESERVED = (PREDICTION, SCORE, ACTUAL, TS)
"""Reference columns that are not features."""


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


class Reference(msgspec.Struct, frozen=True):
    """A stored profile: `id` is the store's (sketch counters carry it, so buckets counted
    against an older reference never mix with a newer one's); `version` is the model version it
    is for, "" for every version without one of its own; `source` is `upload` or `history`."""

    id: int
    version: str
    created: float
    source: Literal["upload", "history"]
    profile: Profile


def cells(edges: npt.NDArray[np.float64], values: npt.NDArray[np.float64]) -> npt.NDArray[np.intp]:
    """The cell of each value (not NaN) of a numeric column, by the rule above: 0 underflow,
    `len(edges)` overflow."""
    found = np.searchsorted(edges, values, side="right")
    found[values == edges[-1]] = len(edges) - 1
    return found


def category_text(value: Any) -> str:
    """A scalar value as a category: text as is, booleans as JSON writes them, integral numbers
    without a fraction (`1`, `1.0`, "1" are one category), other numbers as Python writes them."""
    if type(value) is str:
        return value
    if value is True or value is False:
        return "true" if value else "false"
    if type(value) is float and value.is_integer():
        return str(int(value))
    return str(value)
