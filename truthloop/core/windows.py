"""Time buckets and windows: the arithmetic behind "a window is a sum of 1-minute buckets".

Metrics are attributed to the prediction's time and kept in 1-minute buckets, numbered by epoch
minute (`bucket_of(ts)`). A window of W seconds ending at `now` is the half-open range of the
`ceil(W / 60)` buckets that ends with the bucket holding `now` (so the current, partial minute
counts). Stores also keep hourly and daily rollups of the same sums; `decompose` splits a bucket
range into the fewest aligned minute, hour and day pieces, so a 30-day window reads about 30 day
rows, 46 hour rows and 118 minute rows instead of 43,200 minute rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

BUCKET_SECONDS = 60
MINUTES_PER_HOUR = 60
MINUTES_PER_DAY = 1440

Level = Literal["minute", "hour", "day"]

#: Minutes per bucket at each rollup level, finest first.
LEVEL_MINUTES: dict[Level, int] = {"minute": 1, "hour": MINUTES_PER_HOUR, "day": MINUTES_PER_DAY}


def bucket_of(ts: float) -> int:
    """The epoch minute holding `ts` (seconds)."""
    return math.floor(ts / BUCKET_SECONDS)


def bucket_start(bucket: int) -> float:
    """The epoch second a minute bucket starts at."""
    return float(bucket * BUCKET_SECONDS)


@dataclass(frozen=True, slots=True)
class BucketRange:
    """Minute buckets `start <= b < end`."""

    start: int
    end: int

    def __len__(self) -> int:
        return max(0, self.end - self.start)


def window(now: float, seconds: float) -> BucketRange:
    """The buckets of the window of `seconds` ending at `now` (at least one bucket)."""
    end = bucket_of(now) + 1
    return BucketRange(end - max(1, math.ceil(seconds / BUCKET_SECONDS)), end)


@dataclass(frozen=True, slots=True)
class Piece:
    """Buckets `start <= b < end` of one level, numbered in that level's units (epoch hours...)."""

    level: Level
    start: int
    end: int


def decompose(span: BucketRange) -> tuple[Piece, ...]:
    """Cover exactly the minutes of `span` with the fewest aligned minute/hour/day pieces."""
    if len(span) == 0:
        return ()
    pieces: list[Piece] = []
    _cover(span.start, span.end, ("day", "hour", "minute"), pieces)
    return tuple(pieces)


def _cover(start: int, end: int, levels: tuple[Level, ...], out: list[Piece]) -> None:
    """Largest level's aligned middle first; the ragged edges go to the finer levels."""
    if start >= end:
        return
    level, finer = levels[0], levels[1:]
    unit = LEVEL_MINUTES[level]
    lo = -(-start // unit)  # first whole unit at or after start
    hi = end // unit
    if not finer:
        out.append(Piece(level, start, end))
        return
    if lo >= hi:
        _cover(start, end, finer, out)
        return
    _cover(start, lo * unit, finer, out)
    out.append(Piece(level, lo, hi))
    _cover(hi * unit, end, finer, out)


@dataclass(frozen=True, slots=True)
class Steps:
    """A series over a window: `count` points of `width` minutes, the first starting at `start`.

    Points are aligned to multiples of `width` (so the same point covers the same minutes from one
    request to the next); `level` is the coarsest rollup whose buckets tile every point.
    """

    start: int
    width: int
    count: int
    level: Level

    def index(self, bucket: int) -> int:
        return (bucket - self.start) // self.width


def steps(span: BucketRange, width_minutes: int) -> Steps:
    """Aligned points of `width_minutes` covering `span` (the first may start before it)."""
    if width_minutes < 1:
        raise ValueError("a step is at least one minute")
    first = span.start // width_minutes * width_minutes
    count = max(1, -(-(span.end - first) // width_minutes))
    level: Level = "minute"
    for candidate in ("day", "hour"):
        if width_minutes % LEVEL_MINUTES[candidate] == 0:
            level = candidate
            break
    return Steps(first, width_minutes, count, level)


NICE_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 10080)
"""The step widths in minutes a series asked for by its number of points is read at: round
figures on a time axis (1m 2m 5m 10m 15m 30m 1h 2h 3h 6h 12h 1d 2d 7d)."""


def nice_step(seconds: float, points: int) -> int:
    """The smallest step of `NICE_STEPS` (in minutes) at least `seconds / points` wide, whole
    weeks beyond the last: a window's series in about `points` points (one more at most, the
    first aligned point may start before the window), at a step a chart can label."""
    if points < 1:
        raise ValueError("a series has at least one point")
    wanted = seconds / BUCKET_SECONDS / points
    for width in NICE_STEPS:
        if width >= wanted:
            return width
    return math.ceil(wanted / NICE_STEPS[-1]) * NICE_STEPS[-1]
