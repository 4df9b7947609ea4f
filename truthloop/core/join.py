"""Join semantics: which predictions an actual labels, and how the aggregates move when it does.

A stored prediction is keyed by (monitor, prediction_id, served_by); while the fallback answers,
the sidecar also scores the model in shadow under the same prediction_id, so one id can name a
`model` and a `fallback` record. An actual labels:

- by `prediction_id`: every record with that id;
- by `entity_id` (+ `tag`, which selects the entity's prediction series; no tag selects the
  untagged series): the records of that entity made within the monitor's `attributionWindow`
  before the actual's timestamp — all of them (`match: all`) or the latest per `served_by`
  (`match: latest`; ties broken by arrival order).

An actual that labels nothing waits ("pending") until a prediction it would label arrives, or until
`expiry` (one attribution window after it arrived) when it is counted as expired. Once it has
labeled something it is done: a record of the same entity arriving later is not relabeled by it.

Labeling is idempotent and replaceable: `Labeling.apply` changes nothing when the record already
has that label, and otherwise moves the counters by `new - old` (never a rescan). A
`missingActual: assume` label is marked `assumed`, so a real actual arriving afterwards still
replaces it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

import msgspec

from truthloop.core import metrics, review
from truthloop.core.records import Actual, ItemError, PredictionRecord, Vote
from truthloop.core.spec import MonitorSpec
from truthloop.core.windows import bucket_of
from truthloop.core.wire import Scalar

PREDICTIONS_KEY = "@predictions"
"""The counter of captured predictions, kept in the same buckets as the metric counters."""


class Label(msgspec.Struct, frozen=True, gc=False):
    """What a record is labeled with: an actual `value`, or a `vote` on its correctness."""

    value: Scalar | None = None
    vote: Vote | None = None
    assumed: bool = False
    reviewer: str | None = None
    """Who gave it, for a label from human review: it also moves the record's review counters
    (`core.review.contribution`) when the record was queued (`Row.review`)."""


class Row(msgspec.Struct, frozen=True, gc=False):
    """A stored prediction as the join sees it; `ref` is the store's handle for it.

    (A msgspec Struct rather than a dataclass: stores build thousands per request.)
    """

    ref: int
    prediction_id: str
    served_by: str
    model_version: str
    ts: float
    prediction: Scalar
    score: float | None = None
    label: Label | None = None
    review: review.Mark | None = None
    """Set when the record was queued for review: its inclusion probability and f."""
    segments: tuple[str, ...] = ()
    """The record's segment prefixes (`core.segments.prefixes`, assigned when it arrived): its
    label moves those segment values' counters too."""

    @classmethod
    def of(cls, ref: int, record: PredictionRecord, segments: tuple[str, ...] = ()) -> Row:
        """A record just stored (so unlabeled) under `ref`, with its segment prefixes."""
        return cls(
            ref,
            record.prediction_id,
            record.served_by,
            record.model_version,
            record.ts,
            record.prediction,
            record.score,
            segments=segments,
        )


def label_of(actual: Actual) -> Label:
    return Label(value=actual.value, vote=actual.vote, reviewer=actual.reviewer)


def assumed_label(spec: MonitorSpec) -> Label | None:
    """The label `missingActual: assume` gives an unlabeled record, or None for `ignore`."""
    missing = spec.feedback.missing_actual
    if missing.policy != "assume" or missing.value is None:
        return None
    return Label(value=missing.value, assumed=True)


def expiry(received: float, spec: MonitorSpec) -> float:
    """When a pending actual stops waiting for its prediction."""
    return received + spec.feedback.attribution_window


def entity_span(actual: Actual, spec: MonitorSpec) -> tuple[float, float]:
    """The prediction times `lo <= ts <= hi` an entity actual can label."""
    return actual.timestamp - spec.feedback.attribution_window, actual.timestamp


def accepts(actual: Actual, record: PredictionRecord, spec: MonitorSpec) -> bool:
    """Would this (pending) actual label this newly arrived record?"""
    if actual.prediction_id is not None:
        return actual.prediction_id == record.prediction_id
    if actual.entity_id != record.entity_id or actual.tag != record.tag:
        return False
    lo, hi = entity_span(actual, spec)
    return lo <= record.ts <= hi


def choose(actual: Actual, rows: Sequence[Row], spec: MonitorSpec) -> list[Row]:
    """Of the candidate rows (already filtered by id or entity/tag/span), those the actual labels.

    `rows` must be in arrival order; for `latest` the newest per served_by wins, the later
    arrival on equal timestamps.
    """
    if actual.prediction_id is not None or spec.feedback.match == "all":
        return list(rows)
    latest: dict[str, Row] = {}
    for row in rows:
        best = latest.get(row.served_by)
        if best is None or row.ts >= best.ts:
            latest[row.served_by] = row
    return list(latest.values())


def _difference(row: Row, label: Label, spec: MonitorSpec) -> tuple[bool | None, dict[str, float]]:
    """Whether `row` labeled `label` is right, and the counters' delta from its current label
    (one it does not have yet)."""
    new: dict[str, float] = {}
    right = _tally(new, row, label, spec)
    if row.label is not None:
        new = metrics.subtract(new, contribution(row, row.label, spec))
    return right, new


def contribution(row: Row, label: Label, spec: MonitorSpec) -> dict[str, float]:
    """The counters one labeled record adds to its bucket."""
    out: dict[str, float] = {}
    _tally(out, row, label, spec)
    return out


def _tally(into: dict[str, float], row: Row, label: Label, spec: MonitorSpec) -> bool | None:
    """Add `contribution` into `into`; whether the prediction was right (None: unknown). A
    reviewer's label of a queued record also adds its review counters (`core.review`)."""
    if label.vote is not None:
        right: bool | None = metrics.tally_vote(
            into,
            spec.task,
            row.prediction,
            label.vote == "up",
            score=row.score,
            threshold=spec.threshold,
        )
    else:
        right = metrics.tally(
            into, spec.task, row.prediction, label.value, score=row.score, threshold=spec.threshold
        )
    if label.reviewer is not None and row.review is not None:
        found = review.contribution(row.review, spec.task, row.prediction, right, label.value)
        for key, value in found.items():
            into[key] = into.get(key, 0.0) + value
    return right


def still_reviewed(row: Row, label: Label) -> Label:
    """`label` as it replaces `row`'s: a queued record a reviewer labeled keeps its reviewer
    when a label without one (ground truth arriving, say) replaces the reviewer's, so it stays in
    the reviewed sample with the newer value. Dropping it would take reviews out of a window
    as the ground truth comes, the older first: the items left would no longer be a sample at
    random of those queued, and the estimate would lose its reviews just when they agree."""
    current = row.label
    if (
        label.reviewer is None
        and row.review is not None
        and current is not None
        and current.reviewer is not None
    ):
        return msgspec.structs.replace(label, reviewer=current.reviewer)
    return label


K = TypeVar("K")
GroupKey = tuple[int, str, str, int]
"""(monitor id, model version, served_by, minute bucket): where a counter delta goes."""


class Labeling:
    """The label changes of one write transaction, applied in request order.

    A later actual sees the label an earlier one in the same request gave, so two actuals for one
    record move the aggregates once, by the net difference. `rows` holds each touched record as
    the write leaves it (with whether it is now correct); `deltas` the counter deltas per group.
    """

    __slots__ = ("deltas", "rows")

    def __init__(self) -> None:
        self.rows: dict[int, tuple[Row, bool | None]] = {}
        self.deltas: dict[GroupKey, dict[str, float]] = {}

    def current(self, row: Row) -> Row:
        """`row` as this write has left it so far."""
        touched = self.rows.get(row.ref)
        return row if touched is None else touched[0]

    def apply(self, monitor_id: int, row: Row, label: Label, spec: MonitorSpec) -> bool:
        """Label `row`; False when it already had that label. Raises `metrics.LabelError`."""
        row = self.current(row)
        label = still_reviewed(row, label)
        if row.label == label:
            return False
        group = (monitor_id, row.model_version, row.served_by, bucket_of(row.ts))
        if row.label is None and not row.segments:  # the common case: counted straight in
            counters = self.deltas.get(group)
            if counters is None:
                counters = {}
            right = _tally(counters, row, label, spec)
            self.deltas[group] = counters
        else:
            if row.label is None:
                delta: dict[str, float] = {}
                right = _tally(delta, row, label, spec)
            else:
                right, delta = _difference(row, label, spec)
            add(self.deltas, group, delta)
            for prefix in row.segments:
                add(self.deltas, group, {prefix + key: value for key, value in delta.items()})
        self.rows[row.ref] = (msgspec.structs.replace(row, label=label), right)
        return True

    def join(
        self, monitor_id: int, index: int, actual: Actual, rows: Sequence[Row], spec: MonitorSpec
    ) -> ItemError | None:
        """Label the `rows` item `index` of a request joined to; its error when the label does not
        fit the task (a regression value for a classifier, say): the request is then refused."""
        label = label_of(actual)
        for row in rows:
            try:
                self.apply(monitor_id, row, label, spec)
            except metrics.LabelError as e:
                field = "vote" if actual.vote is not None else "actual"
                return ItemError(index, field, str(e), "unusable_label")
        return None


def add(into: dict[K, dict[str, float]], group: K, counters: Mapping[str, float]) -> None:
    """Add counters into one write's per-group sums (zero deltas are dropped)."""
    target = into.setdefault(group, {})
    for key, value in counters.items():
        if value:
            target[key] = target.get(key, 0.0) + value
