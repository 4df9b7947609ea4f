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
- `~<ref>:@outliers`: of them, outliers (`OUTLIER` on the record's score).

`<ref>` is the `Reference.id` in decimal; column names never hold a `:`.
"""

from __future__ import annotations

PREFIX = "~"

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
