"""Segments: the same per-minute counters, kept again for each value of a slice of the traffic.

A monitor declares up to `spec.MAX_SEGMENTS` segments (`spec.segments`). At ingest each record's
raw value of a segment (`PredictionRecord.segments`, read by the sidecar from the request) is
assigned a kept value (`assign`):
- a numeric segment (`buckets`, ascending edges e1 < ... < ek) names the range it falls in:
  `<e1`, `[e1,e2)`, ..., `>=ek` (edges written with `format_edge`); a value that is no number is
  `other`;
  (a string holding a JSON number, as a header does, is read as that number);
- otherwise the value itself (its JSON text for a number or a boolean: `text`) when it is in the
  monitor's current value set (`ValueSets`, at most `max_values` per segment, chosen by the
  leader from the recent traffic's most frequent raw values: `choose`), else `other`;
- a record without the segment's value is `missing`.
`other` and `missing` are never kept as values themselves (a raw value "missing" is `other`), so
the names mean what they say. A raw value is one `invalid` passes: a string of at most
`MAX_TEXT` characters without control characters, a finite number (an integer within
±`MAX_INT`), a boolean; the sidecar and the service apply the same rule.
The assignment is stored with the record (`prefix` of each), so a label arriving later moves the
same segment's counters, whatever the value set has become since.

Counters: every counter delta a record makes (its prediction, its labels, its estimation and
review counters; sketches only for segments with drift) is also added under the key
`^<segment>=<value>:<key>` (`key`), `<value>` escaped so that it holds no `:` (`%` -> `%25`,
`:` -> `%3A`); the binary score histogram is kept per calibration step there rather than per
bin (`core.estimate.segment_codes`: the same estimates, ROC AUC included, from far fewer
keys). Keys start with `^`, which no other counter does: ordinary reads leave them out
(`is_counter`), a segment read keeps one segment's (`split`). Cardinality is bounded everywhere:
at most `MAX_SEGMENTS` x (`max_values` + 2) prefixes per monitor.
"""

from __future__ import annotations

import heapq
import math
import re
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from typing import Final, Literal

import msgspec

from truthloop.core.spec import SegmentSpec
from truthloop.core.wire import Scalar

PREFIX = "^"
OTHER = "other"
MISSING = "missing"
RESERVED: Final = frozenset({OTHER, MISSING})
MAX_TEXT = 128
"""The longest raw string value (characters)."""

MAX_INT = 2**53
"""The largest integer magnitude (one a float and a database integer both hold)."""
Problem = Literal["too_long", "invalid", "out_of_range", "wrong_type"]
"""The reason a raw value is refused (`POST /v1/predictions`' error reasons)."""
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_UNESCAPE: Final = re.compile(r"%(25|3A)")
_NUMBER: Final = msgspec.json.Decoder(float)

ValueSets = Mapping[str, tuple[str, ...]]
"""The kept values of each segment by name (the leader's choice, in the monitor's state)."""


def escape(value: str) -> str:
    """A kept value as it appears in a key (no `:`)."""
    return value.replace("%", "%25").replace(":", "%3A")


def unescape(escaped: str) -> str:
    """The kept value `escape` wrote."""
    return _UNESCAPE.sub(lambda m: "%" if m.group(1) == "25" else ":", escaped)


def prefix(segment: str, value: str) -> str:
    """`^<segment>=<escaped value>:`: what a segment value's counters start with."""
    return f"{PREFIX}{segment}={escape(value)}:"


def key(segment: str, value: str, counter: str) -> str:
    """A counter of one segment value."""
    return prefix(segment, value) + counter


def is_counter(key: str) -> bool:
    """Whether `key` is a segment counter (ordinary reads leave them out)."""
    return key[:1] == PREFIX


def invalid(raw: object) -> tuple[Problem, str] | None:
    """Why `raw` cannot be a segment's raw value, as (reason, message); None when it can.
    Checked where values enter (the sidecar, `POST /v1/predictions`) so keys and stored values
    stay short and printable, and numbers exact."""
    if isinstance(raw, str):
        if len(raw) > MAX_TEXT:
            return "too_long", f"longer than {MAX_TEXT} characters"
        if _CONTROL.search(raw):
            return "invalid", "must not contain control characters"
        return None
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        if abs(raw) > MAX_INT:
            return "out_of_range", "integer too large (beyond ±2**53)"
        return None
    if isinstance(raw, float):
        return None if math.isfinite(raw) else ("out_of_range", "not a finite number")
    return "wrong_type", "expected a string, number, boolean or null"


def text(raw: Scalar) -> str:
    """A raw value as a kept value names it: a string itself, a number or boolean its JSON text
    (`true`, `3`, `2.5`; an integral float as the integer, so 3 and 3.0 are one value)."""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, int):
        return str(raw)
    return format_edge(raw)


def format_edge(edge: float) -> str:
    """An edge as a bucket's name writes it (`10`, `2.5`)."""
    if edge.is_integer() and abs(edge) < 1e16:
        return str(int(edge))
    return repr(edge)


def bucket(edges: tuple[float, ...], value: float) -> str:
    """The name of the range of ascending `edges` that `value` falls in."""
    at = bisect_right(edges, value)
    if at == 0:
        return f"<{format_edge(edges[0])}"
    if at == len(edges):
        return f">={format_edge(edges[-1])}"
    return f"[{format_edge(edges[at - 1])},{format_edge(edges[at])})"


def assign(segment: SegmentSpec, kept: tuple[str, ...], raw: Scalar | None) -> str:
    """The kept value of a record whose raw value is `raw` (None: it has none)."""
    if raw is None:
        return MISSING
    if segment.buckets:
        number = _number(raw)
        return OTHER if number is None else bucket(segment.buckets, number)
    found = text(raw)
    return found if found in kept and found not in RESERVED else OTHER


def _number(raw: Scalar) -> float | None:
    """A finite number in `raw`: a number, or a string holding a JSON number."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, float):
        number = raw
    elif isinstance(raw, int):
        number = float(raw) if abs(raw) <= MAX_INT else math.inf
    elif 0 < len(raw) <= 64:
        try:
            number = _NUMBER.decode(raw)
        except msgspec.MsgspecError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def prefixes(
    segments: Sequence[SegmentSpec], sets: ValueSets, raw: Mapping[str, Scalar] | None
) -> tuple[str, ...]:
    """A record's prefix for each declared segment, in spec order."""
    values = raw or {}
    return tuple(
        prefix(s.name, assign(s, sets.get(s.name, ()), values.get(s.name))) for s in segments
    )


def choose(
    segment: SegmentSpec, counts: Mapping[str, int], kept: tuple[str, ...] = ()
) -> tuple[str, ...]:
    """The values to keep: the `max_values` most frequent in `counts` (raw values as `assign`
    reads them, of the recent traffic), ties broken by keeping what is kept now, then by value;
    () for a numeric segment (its buckets are its values). Sorted by value, so the same set is
    the same tuple; `other` and `missing` are never chosen."""
    if segment.buckets:
        return ()
    now = frozenset(kept)
    ranked = heapq.nsmallest(
        segment.max_values,
        ((-n, v not in now, v) for v, n in counts.items() if n > 0 and v not in RESERVED),
    )
    return tuple(sorted(v for _, _, v in ranked))


def split(counters: Mapping[str, float], segment: str) -> dict[str, dict[str, float]]:
    """One segment's counters of a summed window, by kept value, with the prefix taken off."""
    head = f"{PREFIX}{segment}="
    out: dict[str, dict[str, float]] = {}
    for name, amount in counters.items():
        if not name.startswith(head):
            continue
        value, colon, counter = name[len(head) :].partition(":")
        if colon:
            out.setdefault(unescape(value), {})[counter] = amount
    return out
