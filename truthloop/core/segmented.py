"""Counting a batch under its segment prefixes: each ingest counter a record makes is also
added under each of its prefixes (`core.segments`: `^<segment>=<value>:<counter>`).

The counting code (`core.sketch`'s estimation counters, `core.review`'s selection counters)
sums records per group index with `bincount`; segments widen the group index rather than run
the counting once per value. `assign` gives each record of the batch its prefixes (and an id per
distinct prefix, 0 none); `fan` repeats each record once more per prefix it has, with the group
index `group * width + prefix id`, so one `bincount` over `width` times as many groups sums the
plain counters (prefix id 0) and every segment value's at once (`Fan.copies` marks the copies,
which an estimation counter may count more coarsely: `estimate.Ingest.compact`). The feature
sketches are fanned only under the prefixes of segments with `drift` (`only`). A batch of
monitors without segments costs one look at their specs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from truthloop.core import segments
from truthloop.core.records import PredictionRecord
from truthloop.core.registry import Known
from truthloop.core.spec import SegmentSpec
from truthloop.core.wire import Scalar

Ints = npt.NDArray[np.intp]
T = TypeVar("T", bound=np.generic)


@dataclass(frozen=True, slots=True)
class Assigned:
    """The segment prefixes of a batch's records."""

    names: tuple[str, ...]
    """The batch's distinct prefixes, `""` (no prefix) first: a prefix id indexes them."""
    ids: Ints
    """Per record, the id of each of its prefixes (records x most segments; 0 pads)."""

    @property
    def width(self) -> int:
        return len(self.names)

    def prefixes(self, position: int) -> tuple[str, ...]:
        """The prefixes of the record at `position` of the batch, in spec order."""
        names = self.names
        return tuple(names[i] for i in self.ids[position].tolist() if i)


_NONE: Mapping[str, Scalar] = {}


def assign(
    records: Sequence[PredictionRecord],
    known: Mapping[str, Known],
    sets: Mapping[int, segments.ValueSets] | None = None,
) -> Assigned | None:
    """Each record's prefixes (`segments.prefixes`, with its monitor's value sets of `sets` by
    monitor id; a monitor without any yet: none, so its values are `other`, `missing` or
    buckets); None when no record's monitor declares segments (the usual batch).

    Segment by segment, each distinct raw value is assigned once (a batch holds few)."""
    positions: dict[str, list[int]] = {}
    for i, record in enumerate(records):
        positions.setdefault(record.monitor, []).append(i)
    declared = {key: known[key] for key in positions if known[key].monitor.spec.segments}
    if not declared:
        return None
    ids: dict[str, int] = {"": 0}
    most = max(len(r.monitor.spec.segments) for r in declared.values())
    table = np.zeros((len(records), most), dtype=np.intp)
    for key, registered in declared.items():
        at = np.asarray(positions[key], dtype=np.intp)
        raws = [records[i].segments or _NONE for i in positions[key]]
        kept = (sets or {}).get(registered.id, {})
        for j, spec in enumerate(registered.monitor.spec.segments):
            name, values = spec.name, kept.get(spec.name, ())
            column = [raw.get(name) for raw in raws]
            if set(map(type, column)) <= _TEXTS:  # the usual column: one lookup per value
                memo = {
                    value: ids.setdefault(
                        segments.prefix(name, segments.assign(spec, values, value)), len(ids)
                    )
                    for value in set(column)
                }
                table[at, j] = np.fromiter(map(memo.__getitem__, column), np.intp, len(at))
            else:
                table[at, j] = _ids(spec, values, column, ids)
    return Assigned(tuple(ids), table)


_TEXTS = frozenset({str, type(None)})


def _ids(
    spec: SegmentSpec, values: tuple[str, ...], column: list[Scalar | None], ids: dict[str, int]
) -> list[int]:
    """The prefix id of each raw value of a column of any types (`ids` gains new prefixes)."""
    memo: dict[tuple[type, Scalar | None], int] = {}
    out = []
    for value in column:
        found = memo.get((type(value), value))  # (True and 1 are equal keys)
        if found is None:
            named = segments.prefix(spec.name, segments.assign(spec, values, value))
            found = memo[type(value), value] = ids.setdefault(named, len(ids))
        out.append(found)
    return out


def only(assigned: Assigned | None, names: frozenset[str]) -> Assigned | None:
    """The prefixes of the segments named `names` only (the feature sketches are fanned under
    those of segments with `drift`), renumbered densely; None when no record has one."""
    if assigned is None or not names:
        return None
    picked = [0] + [
        i for i, name in enumerate(assigned.names) if name and name[1 : name.index("=")] in names
    ]
    if len(picked) == 1:
        return None
    renumber = np.zeros(assigned.width, dtype=np.intp)
    renumber[picked] = np.arange(len(picked), dtype=np.intp)
    return Assigned(tuple(assigned.names[i] for i in picked), renumber[assigned.ids])


@dataclass(frozen=True, slots=True)
class Fan:
    """Records fanned out under their prefixes: `rows` picks, per entry, the record (an index
    into the arrays `fan` was given; None: each once, as they are) and `group` is its widened
    group index."""

    rows: Ints | None
    group: Ints
    width: int
    names: tuple[str, ...]
    copies: npt.NDArray[np.bool_] | None = None
    """Per entry, whether it is a copy under a prefix (None: no entry is)."""

    def take(self, values: npt.NDArray[T]) -> npt.NDArray[T]:
        """Per entry, its record's of `values` (one per record `fan` was given)."""
        return values if self.rows is None else values[self.rows]

    def split(self, group: int) -> tuple[int, str]:
        """A widened group index as (the plain group index, the prefix its counters take)."""
        plain, prefix = divmod(group, self.width)
        return plain, self.names[prefix]


def fan(assigned: Assigned | None, positions: Ints, group: Ints) -> Fan:
    """The records at batch `positions` (with their plain `group` indices) once as they are
    and once per prefix each has (None: as they are only)."""
    if assigned is None or not assigned.ids.shape[1]:
        return Fan(None, group, 1, ("",))
    ids = assigned.ids[positions]
    full = np.concatenate([np.zeros((len(group), 1), dtype=np.intp), ids], axis=1)
    taken = full > 0
    taken[:, 0] = True
    rows, _ = np.nonzero(taken)
    width = assigned.width
    widened = (group[:, None] * width + full)[taken]
    copies = full[taken] > 0
    return Fan(rows.astype(np.intp), widened.astype(np.intp), width, assigned.names, copies)
