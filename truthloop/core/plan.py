"""The plan of one write: which records it labels, how the counters move, which actuals wait.

A store reads what a write needs inside its transaction — the records a batch stored, the
actuals waiting for them, the records an actual may label — and hands it to one of these pure
functions; the `Plan` that comes back is everything the write then stores. Both stores call
them, so the join semantics (`core.join`) and their bookkeeping are written once.

- `plan_arrivals`: a batch of new records joins the pending actuals that name them, records
  that arrive after their attribution window get `missingActual: assume`'s label, and every
  record counts as a prediction. The plan names new records by their index in the batch: a store
  looks their ids up only when the plan labels some.
- `plan_actuals`: each actual labels the records it chooses among its candidates, or waits; a
  reviewer's label or decision also answers its review item (`core.queue`).
- `plan_assumed`: the missing-actual sweep labels records left unlabeled past their window.

A prediction_id actual that labeled only a fallback answer keeps waiting for the model's shadow
answer to the same request, which the sidecar sends later under the same id; any other actual is
done once it has labeled something.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import msgspec
import numpy as np

from truthloop.core import join, metrics, queue, review, segmented, sketch
from truthloop.core.join import GroupKey, Labeling, Row
from truthloop.core.records import Actual, ItemError, PredictionRecord
from truthloop.core.registry import Known
from truthloop.core.windows import bucket_of

ACTUALS_MATCHED = "@actuals_matched"
ACTUALS_PENDING = "@actuals_pending"
ACTUALS_EXPIRED = "@actuals_expired"
"""Lifetime counters of actual outcomes, kept in the totals under the group ("", "")."""

Lifetime = tuple[int, str, str]
"""(monitor id, model version, served_by): a group of the lifetime totals."""

SHADOWED = "fallback"
"""The served_by whose answers the model's shadow answer follows under the same prediction id."""


class Waiting(msgspec.Struct, frozen=True, gc=False):
    """A pending actual as stored: `ref` is the store's handle for it, `labeled` the served_by
    values of the records it has labeled so far (it waits on for the others)."""

    ref: int
    actual: Actual
    labeled: tuple[str, ...] = ()


class NewPending(msgspec.Struct, frozen=True, gc=False):
    """An actual that labeled nothing: it waits until `expires`."""

    monitor_id: int
    actual: Actual
    expires: float


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything one write stores besides the records themselves."""

    labels: Mapping[int, tuple[Row, bool | None]] = field(default_factory=dict)
    """Record ref → the record with its new label, and whether its prediction is now right."""
    deltas: Mapping[GroupKey, Mapping[str, float]] = field(default_factory=dict)
    """Counter deltas of minute buckets."""
    totals: Mapping[Lifetime, Mapping[str, float]] = field(default_factory=dict)
    """Counters kept only in the lifetime totals (actual outcomes)."""
    waiting: tuple[NewPending, ...] = ()
    """Actuals to keep as pending."""
    done: tuple[int, ...] = ()
    """Refs of pending actuals that stop waiting."""
    partly: tuple[tuple[int, tuple[str, ...]], ...] = ()
    """Refs of pending actuals that labeled something and wait on, with all they labeled."""
    errors: tuple[ItemError, ...] = ()
    """Actuals whose label does not fit a prediction they matched: nothing may be stored."""
    matched: int = 0
    """Actuals that labeled something for the first time."""
    reviews: tuple[queue.Item, ...] = ()
    """Review items as the reviewers' answers leave them."""


def by_monitor(records: Iterable[PredictionRecord]) -> dict[str, list[PredictionRecord]]:
    """Records grouped by the monitor they name, in order: a store reads per monitor."""
    grouped: dict[str, list[PredictionRecord]] = {}
    for record in records:
        grouped.setdefault(record.monitor, []).append(record)
    return grouped


def plan_arrivals(
    batch: Sequence[PredictionRecord],
    known: Mapping[str, Known],
    waiting: Mapping[int, Sequence[Waiting]],
    now: float,
    sketched: sketch.Sketched | None = None,
    stored: Sequence[int] | None = None,
    selected: review.Selected | None = None,
    assigned: segmented.Assigned | None = None,
) -> Plan:
    """The plan for a batch of records just stored (`batch`, whose refs are their indices).

    `waiting` holds, per monitor id, the pending actuals that may name a record of the batch (by
    id or by entity), oldest first; a monitor with none may be left out. `sketched` is the
    sketch of the batch as it came (`sketch.sketch`, before it was stored: the outlier scores
    are stored with the records), of which `batch` holds the records at positions `stored`
    (None: all): only theirs join the counter deltas, so a duplicate is not counted twice;
    `selected`, the batch's review selection (`review.select`), adds its counters alike.
    `assigned` holds the segment prefixes of the batch as it came (`segmented.assign`): each
    ingest counter is added under each of a record's prefixes too, and its labels move them.
    """
    deltas: dict[GroupKey, dict[str, float]] = {}
    if sketched is not None:
        deltas = sketched.deltas(stored, assigned)
    if selected is not None:
        for group, counters in selected.deltas(stored, assigned).items():
            join.add(deltas, group, counters)
    by_monitor: dict[str, list[int]] = {}
    groups: dict[GroupKey, list[int]] = {}
    for index, record in enumerate(batch):
        bucket = (
            known[record.monitor].id,
            record.model_version,
            record.served_by,
            bucket_of(record.ts),
        )
        counts = deltas.setdefault(bucket, {})
        counts[join.PREDICTIONS_KEY] = counts.get(join.PREDICTIONS_KEY, 0.0) + 1.0
        if assigned is not None:
            groups.setdefault(bucket, []).append(index)
        by_monitor.setdefault(record.monitor, []).append(index)
    rows = _Arrived(batch, assigned, stored)
    for group, indices in groups.items():
        counts = deltas[group]
        for prefix, n in rows.prefixed(indices):
            key = prefix + join.PREDICTIONS_KEY
            counts[key] = counts.get(key, 0.0) + n
    labeling = Labeling()
    done: list[int] = []
    partly: list[tuple[int, tuple[str, ...]]] = []
    totals: dict[Lifetime, dict[str, float]] = {}
    for key, indices in by_monitor.items():
        registered = known[key]
        mid, spec = registered.id, registered.monitor.spec
        matched = 0
        for pending in waiting.get(mid, ()):
            wanted = pending.actual
            candidates = [
                rows.row(i)
                for i in indices
                if batch[i].served_by not in pending.labeled
                and join.accepts(wanted, batch[i], spec)
            ]
            if not candidates:
                continue
            label = join.label_of(wanted)
            labeled = set(pending.labeled)
            for row in join.choose(wanted, candidates, spec):
                try:
                    labeling.apply(mid, row, label, spec)
                except metrics.LabelError:
                    continue  # an actual this prediction cannot use labels nothing
                labeled.add(row.served_by)
            matched += not pending.labeled
            if wanted.prediction_id is not None and labeled == {SHADOWED}:
                partly.append((pending.ref, tuple(sorted(labeled))))
            else:
                done.append(pending.ref)
        if matched:
            totals[mid, "", ""] = {ACTUALS_MATCHED: float(matched)}
        _assume_late(registered, rows, indices, now, labeling)
    for group, counters in labeling.deltas.items():
        join.add(deltas, group, counters)
    return Plan(
        labels=labeling.rows,
        deltas=deltas,
        totals=totals,
        done=tuple(done),
        partly=tuple(partly),
        matched=sum(int(c[ACTUALS_MATCHED]) for c in totals.values()),
    )


@dataclass(frozen=True, slots=True)
class _Arrived:
    """The records a batch stored (`batch`, at positions `stored` of the batch as it came, None:
    all) with their segment prefixes (`assigned`, of the batch as it came; None: none)."""

    batch: Sequence[PredictionRecord]
    assigned: segmented.Assigned | None
    stored: Sequence[int] | None

    def position(self, index: int) -> int:
        return index if self.stored is None else self.stored[index]

    def row(self, index: int) -> Row:
        found = self.assigned
        prefixes = () if found is None else found.prefixes(self.position(index))
        return Row.of(index, self.batch[index], prefixes)

    def prefixed(self, indices: Sequence[int]) -> list[tuple[str, int]]:
        """How many of the records at `indices` have each prefix."""
        found = self.assigned
        if found is None:
            return []
        at = indices if self.stored is None else [self.stored[i] for i in indices]
        counts = np.bincount(found.ids[at].reshape(-1), minlength=found.width)
        return [(found.names[i], int(counts[i])) for i in np.flatnonzero(counts).tolist() if i]


def _assume_late(
    registered: Known,
    rows: _Arrived,
    indices: Iterable[int],
    now: float,
    labeling: Labeling,
) -> None:
    """Records that arrive after their window passed get the assumed label right away."""
    spec = registered.monitor.spec
    label = join.assumed_label(spec)
    if label is None:
        return
    cutoff = now - spec.feedback.attribution_window
    batch = rows.batch
    for i in indices:
        if batch[i].ts < cutoff:
            row = labeling.current(rows.row(i))
            if row.label is None:
                labeling.apply(registered.id, row, label, spec)


def plan_actuals(
    actuals: Sequence[Actual],
    known: Mapping[str, Known],
    candidates: Mapping[int, Sequence[Row]],
    now: float,
    items: Mapping[tuple[int, str], queue.Item] | None = None,
) -> Plan:
    """The plan for a request's actuals; `candidates[i]` are the records actual `i` may label
    (by id, or by entity and tag within its span), in arrival order, with their labels.

    A reviewer's actual (`Actual.reviewer`) must name a model record (else the request is
    refused: `queue.refusal`); it answers its review item, if any, of `items` (by monitor id and
    prediction id), and counts in its reviewer's lifetime totals. A decision labels nothing."""
    labeling = Labeling()
    errors: list[ItemError] = []
    waiting: list[NewPending] = []
    totals: dict[Lifetime, dict[str, float]] = {}
    answered: dict[tuple[int, str], queue.Item] = {}
    for index, actual in enumerate(actuals):
        registered = known[actual.monitor]
        mid, spec = registered.id, registered.monitor.spec
        rows = candidates.get(index, ())
        outcome = totals.setdefault((mid, "", ""), {})
        if actual.reviewer is not None:
            key = (mid, actual.prediction_id or "")
            item = answered.get(key, (items or {}).get(key))
            error = queue.refusal(index, actual, rows, item)
            if error is not None:
                errors.append(error)
                continue
            if item is not None:
                answered[key] = queue.answer(item, actual, now)
            counted = queue.total_key(queue.outcome(actual), actual.reviewer)
            outcome[counted] = outcome.get(counted, 0.0) + 1.0
            if actual.decision is not None:
                continue
        chosen = join.choose(actual, rows, spec)
        if not chosen:
            waiting.append(NewPending(mid, actual, join.expiry(now, spec)))
            outcome[ACTUALS_PENDING] = outcome.get(ACTUALS_PENDING, 0.0) + 1.0
            continue
        outcome[ACTUALS_MATCHED] = outcome.get(ACTUALS_MATCHED, 0.0) + 1.0
        error = labeling.join(mid, index, actual, chosen, spec)
        if error is not None:
            errors.append(error)
    return Plan(
        labels=labeling.rows,
        deltas=labeling.deltas,
        totals=totals,
        waiting=tuple(waiting),
        errors=tuple(errors),
        matched=sum(int(c.get(ACTUALS_MATCHED, 0)) for c in totals.values()),
        reviews=tuple(answered.values()),
    )


def plan_assumed(registered: Known, rows: Sequence[Row]) -> Plan:
    """The plan of the missing-actual sweep over unlabeled `rows` past their window."""
    spec = registered.monitor.spec
    label = join.assumed_label(spec)
    labeling = Labeling()
    if label is not None:
        for row in rows:
            try:
                labeling.apply(registered.id, row, label, spec)
            except metrics.LabelError:
                continue  # the assumed value does not fit this prediction: leave it unlabeled
    return Plan(labels=labeling.rows, deltas=labeling.deltas)
