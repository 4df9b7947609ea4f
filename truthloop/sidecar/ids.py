"""Prediction IDs for the request path: `core.ids.uuid7` fed with the wall clock and the OS RNG.

The random bytes are drawn from `os.urandom` in blocks, one system call per `BLOCK` IDs rather
than one per request.
"""

from __future__ import annotations

import os
import time

from truthloop.core.ids import RANDOM_BYTES, uuid7

BLOCK = 256
"""IDs per draw from the OS's random source."""


class PredictionIds:
    """A source of fresh UUIDv7s; one per proxy (it holds the unused random bytes)."""

    __slots__ = ("_at", "_pool")

    def __init__(self) -> None:
        self._pool = b""
        self._at = 0

    def __call__(self) -> str:
        at = self._at
        if at >= len(self._pool):
            self._pool = os.urandom(RANDOM_BYTES * BLOCK)
            at = 0
        self._at = at + RANDOM_BYTES
        return uuid7(time.time_ns() // 1_000_000, self._pool[at : at + RANDOM_BYTES])
