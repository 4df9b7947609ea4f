"""Segments: the same per-minute counters, kept again for each value of a slice of the traffic.

A monitor declares up to `spec.MAX_SEGMENTS` segments (`spec.segments`). At ingest each record's
raw value of a segment (`PredictionRecord.segments`, read by the sidecar from the request) is
assigned a kept value (`assign`):
- a numeric segment (`buckets`, ascending edges e1 < ... < ek) names the range it falls in:
  `<e1`, `[e1,e2)`, ..., `>=ek` (edges written with `format_edge`); a value that is no number is
  `other`;
- otherwise the value itself (its JSON text for a number or a boolean) when it is in the
  monitor's current value set (`ValueSets`, at most `max_values` per segment, chosen by the
  leader from the recent traffic's most frequent raw values: `choose`), else `other`;
- a record without the segment's value is `missing`.
The assignment is stored with the record (`prefix` of each), so a label arriving later moves the
same segment's counters, whatever the value set has become since.

Counters: every counter delta a record makes (its prediction, its labels, its estimation and
review counters; sketches only for segments with drift) is also added under the key
`^<segment>=<value>:<key>` (`key`), `<value>` escaped so that it holds no `:` (`%` -> `%25`,
`:` -> `%3A`). Keys start with `^`, which no other counter does: ordinary reads leave them out
(`is_counter`), a segment read keeps one segment's (`split`). Cardinality is bounded everywhere:
at most `MAX_SEGMENTS` x (`max_values` + 2) prefixes per monitor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from truthloop.core.spec import SegmentSpec
from truthloop.core.wire import Scalar

PREFIX = "^"
OTHER = "other"
MISSING = "missing"

ValueSets = Mapping[str, tuple[str, ...]]
"""The kept values of each segment by name (the leader's choice, in the monitor's state)."""


def escape(value: str) -> str:
    """A kept value as it appears in a key (no `:`)."""
    raise NotImplementedError


def prefix(segment: str, value: str) -> str:
    """`^<segment>=<escaped value>:`: what a segment value's counters start with."""
    raise NotImplementedError


def key(segment: str, value: str, counter: str) -> str:
    """A counter of one segment value."""
    return prefix(segment, value) + counter


def is_counter(key: str) -> bool:
    """Whether `key` is a segment counter (ordinary reads leave them out)."""
    return key[:1] == PREFIX


def format_edge(edge: float) -> str:
    """An edge as a bucket's name writes it (`10`, `2.5`)."""
    raise NotImplementedError


def assign(segment: SegmentSpec, kept: tuple[str, ...], raw: Scalar | None) -> str:
    """The kept value of a record whose raw value is `raw` (None: it has none)."""
    raise NotImplementedError


def prefixes(
    segments: Sequence[SegmentSpec], sets: ValueSets, raw: Mapping[str, Scalar] | None
) -> tuple[str, ...]:
    """A record's prefix for each declared segment, in spec order."""
    raise NotImplementedError


def choose(
    segment: SegmentSpec, counts: Mapping[str, int], kept: tuple[str, ...] = ()
) -> tuple[str, ...]:
    """The values to keep: the `max_values` most frequent in `counts` (raw values as `assign`
    reads them, of the recent traffic), ties broken by keeping what is kept now, then by value;
    () for a numeric segment (its buckets are its values)."""
    raise NotImplementedError


def split(counters: Mapping[str, float], segment: str) -> dict[str, dict[str, float]]:
    """One segment's counters of a summed window, by kept value, with the prefix taken off."""
    raise NotImplementedError
