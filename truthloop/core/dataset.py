"""A dataset export's rows (`GET .../dataset`, `truthloop export`): the columns of a labeled
record, in the one order CSV and Parquet files have, with the kind of value each holds.

Besides the record and its label, a row says where the label came from (`source`: `review`, a
reviewer's; `assumed`, the spec's `missingActual`; `actual`, any other) and, for a record the
review queue selected, its inclusion probability `pi` and `weight` = 1/pi: a mixed sample of
random and borderline items is biased, and weighting each reviewed row by 1/pi undoes that (the
Horvitz-Thompson weight, the one a retraining or an analysis of the reviewed rows needs).
"""

from __future__ import annotations

from typing import Literal

from truthloop.core.join import Label

Kind = Literal["text", "number", "bool", "label", "json"]
"""What a column holds: text, a number, a boolean, a class or regression value (`label`: the
class as text, or a number for a regression), or any JSON value (features, votes)."""

COLUMNS: tuple[tuple[str, Kind], ...] = (
    ("prediction_id", "text"),
    ("entity_id", "text"),
    ("tag", "text"),
    ("model_version", "text"),
    ("served_by", "text"),
    ("ts", "number"),
    ("prediction", "label"),
    ("score", "number"),
    ("actual", "label"),
    ("vote", "text"),
    ("assumed", "bool"),
    ("correct", "bool"),
    ("outlier", "number"),
    ("source", "text"),
    ("reviewer", "text"),
    ("reason", "text"),
    ("pi", "number"),
    ("weight", "number"),
    ("abstained", "bool"),
    ("votes", "json"),
    ("features", "json"),
)
"""The export's columns and their kinds, in file order."""

NAMES = tuple(name for name, _ in COLUMNS)

Source = Literal["review", "actual", "assumed"]


def source(label: Label | None) -> Source | None:
    """Where a record's label came from (None: unlabeled)."""
    if label is None:
        return None
    if label.reviewer is not None:
        return "review"
    return "assumed" if label.assumed else "actual"


def weight(pi: float | None) -> float | None:
    """A reviewed row's inverse-probability weight 1/pi (None: not selected for review)."""
    return None if not pi else 1.0 / pi
