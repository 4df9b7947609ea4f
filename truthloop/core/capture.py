"""Capture records: what the sidecar sends the feedback service for each prediction it saw.

`records` turns one request's extracted rows (core/extract) into `wire.CaptureRecord`s, the
shape `POST /v1/predictions` takes (encode with msgspec; `score`, `features` and `segments` are
left out when absent, `entity_id` is null). A row-based capture (`CaptureSpec.row_based`: a
protocol with rows, or `capture.batch`) yields one record per row, with the ID
`<prediction_id>.<row>` (the client gets `<prediction_id>` and forms a row's ID itself).

`sampled` decides, from the prediction ID alone, whether a request is kept at a `sampleRate`: the
same ID always gets the same answer, so the fallback's answer and the model's shadow answer to one
request (which share the ID) are kept or skipped together.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

import msgspec

from truthloop.core.extract import Row
from truthloop.core.wire import CaptureRecord, ServedBy

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

_SPAN = float(2**64)


def sampled(prediction_id: str, rate: float) -> bool:
    """True when a request with this ID is kept at `rate` (0..1); stable for a given ID."""
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    return uniform(prediction_id) < rate


def uniform(text: str) -> float:
    """A number in [0, 1) fixed by `text` and spread uniformly over texts (blake2b's first 64
    bits): a decision every replica and the sidecar take alike without talking."""
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SPAN


def uniforms(prefix: str, texts: Iterable[str]) -> npt.NDArray[np.float64]:
    """`uniform(prefix + text)` of many texts at once (a batch's draws). numpy is imported here,
    not with the module: the sidecar samples with `uniform` and does not load it (12 MiB)."""
    import numpy as np

    hashed = hashlib.blake2b(prefix.encode(), digest_size=8)  # the prefix hashed once, copied:
    digests = []  # a third faster than hashing prefix + text anew
    for text in texts:
        h = hashed.copy()
        h.update(text.encode())
        digests.append(h.digest())
    return np.frombuffer(b"".join(digests), dtype=">u8") / _SPAN


def records(
    rows: Iterable[Row],
    *,
    prediction_id: str,
    monitor: str,
    model_version: str,
    served_by: ServedBy,
    ts: float,
    batch: bool,
    abstained: bool = False,
) -> list[CaptureRecord]:
    """One record per row; for a row-based capture (`batch`) the row number is appended to
    the prediction ID after a dot (`<prediction_id>.<row>`).
    `abstained`: the sidecar answered "I don't know" in the model's place (the rows are still
    the model's prediction and score, which the reviewer needs)."""
    out = []
    for row in rows:
        out.append(
            CaptureRecord(
                prediction_id=f"{prediction_id}.{row.index}" if batch else prediction_id,
                monitor=monitor,
                model_version=model_version,
                entity_id=row.entity_id,
                ts=ts,
                prediction=row.prediction,
                served_by=served_by,
                score=msgspec.UNSET if row.score is None else row.score,
                features=msgspec.UNSET if row.features is None else row.features,
                abstained=abstained,
                segments=msgspec.UNSET if row.segments is None else row.segments,
            )
        )
    return out
