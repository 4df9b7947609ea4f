"""The names of a reference's columns, without the profile builder: the spec parser needs them
(every role imports the spec, the sidecar too), the builder needs numpy, which the sidecar does
not load. `core.profile` re-exports them."""

from __future__ import annotations

import re
from typing import Literal

FeatureKind = Literal["numeric", "categorical"]

FEATURE_KINDS: tuple[FeatureKind, ...] = ("numeric", "categorical")

MAX_FEATURES = 100
"""Features a monitor profiles (the prediction and score come on top)."""

PREDICTION = "prediction"
SCORE = "score"
ACTUAL = "actual"
TS = "ts"
RESERVED = (PREDICTION, SCORE, ACTUAL, TS)
"""Reference columns that are not features."""

FEATURE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}")
"""A feature's name: it is a column of the reference, part of sketch counter keys (no `:`) and a
Prometheus label value; at most 63 characters of letters, digits, `_`, `-` and `.`."""
FEATURE_NAME_EXPECTED = "at most 63 letters, digits, '_', '-' and '.', not starting with '-' or '.'"
