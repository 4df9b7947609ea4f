"""Prediction IDs for the request path: `core.ids` UUIDv7s of the wall clock and the OS RNG.

The random bytes are drawn from `os.urandom` in blocks, one system call per `BLOCK` IDs rather
than one per request, and their part of the IDs is formatted for the whole block at once; the
time part is formatted once per millisecond. An ID then costs a clock read and a concatenation.
"""

from __future__ import annotations

import os
import time

from truthloop.core.ids import RANDOM_BYTES, random_parts, time_part

BLOCK = 256
"""IDs per draw from the OS's random source."""


class PredictionIds:
    """A source of fresh UUIDv7s; one per proxy (it holds the unused random parts)."""

    __slots__ = ("_at", "_ms", "_parts", "_time")

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._at = 0
        self._ms = -1
        self._time = ""

    def __call__(self) -> str:
        at = self._at
        if at >= len(self._parts):
            self._parts = random_parts(os.urandom(RANDOM_BYTES * BLOCK))
            at = 0
        self._at = at + 1
        ms = time.time_ns() // 1_000_000
        if ms != self._ms:
            self._ms = ms
            self._time = time_part(ms)
        return self._time + self._parts[at]
