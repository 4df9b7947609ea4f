"""Fallback answers: the rules' predictions placed where the model would have put them.

The body mirrors what the capture spec knows of the model's answer: the prediction at the
`capture.prediction` pointer; for a batch spec, an array at `capture.batch.predictions` with one
element per row, each holding its row's prediction at the (row-relative) prediction pointer. So a
client reads a fallback answer where it reads the model's, and capture extracts it the same way.
Objects are created along the way; an array index creates an array, padded with null. `-` is
placed as an object key, since reading a pointer takes `-` in an array as naming no value.
Raises ValueError for what cannot be built; the sidecar then asks the model instead.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from truthloop.core import pointer
from truthloop.core.spec import CaptureSpec

MAX_INDEX = 1024
"""Largest array index a prediction pointer may put an answer at (the rest is null padding)."""

_INDEX = re.compile(r"0|[1-9][0-9]*")


def body(capture: CaptureSpec, predictions: Sequence[Any]) -> Any:
    """The JSON value to answer with; `predictions` has one value, or one per row for batches.

    Raises ValueError for a prediction pointer that reads a header (nothing to place) and for a
    non-batch spec given other than one prediction.
    """
    source = capture.prediction.pointer
    if source is None:
        raise ValueError("capture.prediction reads a header: a body cannot be built")
    row_tokens = pointer.parse(source)
    if capture.batch is None:
        if len(predictions) != 1:
            raise ValueError(f"one prediction expected, got {len(predictions)}")
        return place(row_tokens, predictions[0])
    rows = [place(row_tokens, value) for value in predictions]
    return place(pointer.parse(capture.batch.predictions), rows)


def place(tokens: Sequence[str], value: Any) -> Any:
    """A new document holding `value` at `tokens` (an RFC 6901 pointer's reference tokens).

    An array index beyond `MAX_INDEX` is refused (ValueError) rather than padded.
    """
    for token in reversed(tokens):
        if _INDEX.fullmatch(token):
            index = int(token)
            if index > MAX_INDEX:
                raise ValueError(f"array index {index} in the prediction pointer is too large")
            value = [None] * index + [value]
        else:
            value = {token: value}
    return value
