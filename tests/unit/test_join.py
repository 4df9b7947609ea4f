"""Join semantics as pure functions: what an actual labels, and the counter deltas it causes."""

from __future__ import annotations

import dataclasses

import msgspec
import pytest

from tests.support.monitors import churn_monitor
from truthloop.core import join, metrics
from truthloop.core.join import Label, Labeling, Row
from truthloop.core.records import Actual, PredictionRecord
from truthloop.core.spec import FeedbackSpec, MissingActual, MonitorSpec

NOW = 1_767_225_600.0
MONITOR = churn_monitor(feedback={"attributionWindow": "1h", "match": "latest"})
SPEC = MONITOR.spec
ALL = dataclasses.replace(SPEC, feedback=dataclasses.replace(SPEC.feedback, match="all"))


def row(ref: int, ts: float, served_by: str = "model", prediction: int = 1, **kw: object) -> Row:
    return Row(ref, f"p{ref}", served_by, "v1", ts, prediction, **kw)  # type: ignore[arg-type]


def by_entity(timestamp: float = NOW, **kw: object) -> Actual:
    return Actual("ml/churn", timestamp, entity_id="u", value=1, **kw)  # type: ignore[arg-type]


def test_latest_is_the_newest_per_served_by_and_ties_go_to_the_later_arrival() -> None:
    rows = [
        row(1, NOW - 300),
        row(2, NOW - 100),
        row(3, NOW - 200, "fallback"),
        row(4, NOW - 100),
    ]
    assert {r.ref for r in join.choose(by_entity(), rows, SPEC)} == {4, 3}
    assert {r.ref for r in join.choose(by_entity(), rows, ALL)} == {1, 2, 3, 4}
    by_id = Actual("ml/churn", NOW, prediction_id="p1", value=1)
    assert join.choose(by_id, rows, SPEC) == rows


def test_a_pending_actual_accepts_records_by_id_or_entity_tag_and_window() -> None:
    def record(ts: float, entity: str = "u", tag: str | None = None) -> PredictionRecord:
        return PredictionRecord("ml/churn", "p1", "model", "v1", ts, 1, entity, tag)

    actual = by_entity()
    assert join.accepts(actual, record(NOW), SPEC)
    assert join.accepts(actual, record(NOW - 3600), SPEC)
    assert not join.accepts(actual, record(NOW - 3601), SPEC)
    assert not join.accepts(actual, record(NOW + 1), SPEC)
    assert not join.accepts(actual, record(NOW, "v"), SPEC)
    assert not join.accepts(actual, record(NOW, tag="buy"), SPEC)
    assert join.accepts(by_entity(tag="buy"), record(NOW, tag="buy"), SPEC)
    assert join.accepts(Actual("ml/churn", 0.0, prediction_id="p1", value=0), record(NOW), SPEC)
    assert join.expiry(NOW, SPEC) == NOW + 3600


def relabel(
    record: Row, label: Label, spec: MonitorSpec = SPEC
) -> tuple[bool | None, dict[str, float]] | None:
    """What one write labeling `record` does: (whether it is now right, the counters' delta), or
    None when it already had that label."""
    labeling = Labeling()
    if not labeling.apply(1, record, label, spec):
        return None
    ((_, correct),) = labeling.rows.values()
    (delta,) = labeling.deltas.values()
    return correct, delta


def test_relabeling_is_idempotent_and_moves_counters_by_the_difference() -> None:
    fresh = row(1, NOW)
    right = relabel(fresh, Label(1))
    assert right is not None
    assert right[0] is True
    assert right[1] == metrics.observe("binary", 1, 1, threshold=SPEC.threshold)
    labeled = msgspec.structs.replace(fresh, label=Label(1))
    assert relabel(labeled, Label(1)) is None
    wrong = relabel(labeled, Label(0))
    assert wrong is not None
    assert wrong[0] is False
    assert _clean(metrics.add(right[1], wrong[1])) == _clean(metrics.observe("binary", 1, 0))


def test_a_real_actual_replaces_an_assumed_one() -> None:
    assume = dataclasses.replace(
        SPEC,
        feedback=FeedbackSpec(3600.0, "latest", MissingActual("assume", 0)),
    )
    label = join.assumed_label(assume)
    assert label == Label(0, assumed=True)
    assert join.assumed_label(SPEC) is None
    assumed = msgspec.structs.replace(row(1, NOW), label=label)
    change = relabel(assumed, Label(0), assume)
    assert change is not None
    assert _clean(change[1]) == {}


def test_a_write_that_labels_a_record_twice_moves_counters_once_by_the_net_difference() -> None:
    labeling = Labeling()
    record = row(7, NOW)
    assert labeling.apply(1, record, Label(0), SPEC)
    assert labeling.apply(1, record, Label(1), SPEC)
    assert not labeling.apply(1, record, Label(1), SPEC)
    assert labeling.current(record).label == Label(1)
    (group,) = labeling.deltas
    assert group == (1, "v1", "model", int(NOW // 60))
    assert _clean(labeling.deltas[group]) == _clean(metrics.observe("binary", 1, 1))
    assert labeling.rows[7][1] is True


def test_a_vote_down_on_a_binary_prediction_counts_the_other_class() -> None:
    change = relabel(row(1, NOW, prediction=1), Label(vote="down"))
    assert change is not None
    assert change[0] is False
    assert _clean(change[1]) == _clean({**metrics.observe("binary", 1, 0), "votes": 1})


def test_unusable_labels_raise_label_error() -> None:
    with pytest.raises(metrics.LabelError):
        relabel(row(1, NOW), Label("cat"))


def _clean(counters: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in counters.items() if v}
