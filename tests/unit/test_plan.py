"""The write plans, pure: what a batch or a request labels and how the counters move, without a
database. The stores' own tests run the same behaviour through SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.feedback import monitor_body
from truthloop.core import join, plan
from truthloop.core.join import GroupKey, Label, Row
from truthloop.core.records import Actual, PredictionRecord
from truthloop.core.spec import Monitor, parse_monitor
from truthloop.core.windows import bucket_of

NOW = 1_767_225_600.0
HOUR = 3600.0


def monitor(**feedback: Any) -> Monitor:
    return parse_monitor(
        monitor_body(feedback={"attributionWindow": "1h", "match": "latest", **feedback})
    )


@dataclasses.dataclass(frozen=True)
class Known:
    id: int
    monitor: Monitor


CHURN = {"ml/churn": Known(7, monitor())}


def record(pid: str, served_by: str = "model", ts: float = NOW - 60, **kw: Any) -> PredictionRecord:
    fields = {"entity_id": "u1", "prediction": 1, **kw}
    return PredictionRecord(
        "ml/churn", pid, served_by, "v1", ts, fields.pop("prediction"), **fields
    )


def by_id(pid: str, value: Any = 1) -> Actual:
    return Actual("ml/churn", NOW, prediction_id=pid, value=value)


class World:
    """A store in memory: records and pending actuals in lists, each write a plan applied."""

    def __init__(self, known: Mapping[str, Known] = CHURN) -> None:
        self.known = known
        self.records: list[tuple[PredictionRecord, Label | None]] = []
        self.pending: dict[int, plan.Waiting] = {}
        self.expires: dict[int, float] = {}
        self.aggregates: dict[GroupKey, dict[str, float]] = {}
        self.totals: dict[plan.Lifetime, dict[str, float]] = {}
        self._next_pending = 0

    def row(self, ref: int) -> Row:
        stored, label = self.records[ref]
        return msgspec.structs.replace(Row.of(ref, stored), label=label)

    def arrive(self, batch: Sequence[PredictionRecord], now: float = NOW) -> plan.Plan:
        keys = {(r.prediction_id, r.served_by) for r, _ in self.records}
        new = []
        for r in batch:
            if (r.prediction_id, r.served_by) not in keys:
                keys.add((r.prediction_id, r.served_by))
                new.append(r)
        first = len(self.records)
        self.records.extend((r, None) for r in new)
        waiting = {7: sorted(self.pending.values(), key=lambda w: w.ref)} if self.pending else {}
        result = plan.plan_arrivals(new, self.known, waiting, now)
        self._apply(result, refs={i: first + i for i in range(len(new))})
        return result

    def label(self, actuals: Sequence[Actual], now: float = NOW) -> plan.Plan:
        spec = CHURN["ml/churn"].monitor.spec
        candidates: dict[int, list[Row]] = {}
        for index, actual in enumerate(actuals):
            lo, hi = join.entity_span(actual, spec)
            candidates[index] = [
                self.row(ref)
                for ref, (r, _) in enumerate(self.records)
                if (
                    r.prediction_id == actual.prediction_id
                    if actual.prediction_id is not None
                    else r.entity_id == actual.entity_id
                    and r.tag == actual.tag
                    and lo <= r.ts <= hi
                )
            ]
        result = plan.plan_actuals(actuals, self.known, candidates, now)
        if not result.errors:
            self._apply(result, refs=None)
        return result

    def _apply(self, result: plan.Plan, refs: Mapping[int, int] | None) -> None:
        for ref, (row, _) in result.labels.items():
            at = ref if refs is None else refs[ref]
            self.records[at] = (self.records[at][0], row.label)
        for group, counters in result.deltas.items():
            join.add(self.aggregates, group, counters)
        for group, counters in result.totals.items():
            join.add(self.totals, group, counters)
        for new in result.waiting:
            self.pending[self._next_pending] = plan.Waiting(self._next_pending, new.actual)
            self._next_pending += 1
        for ref in result.done:
            del self.pending[ref]
        for ref, labeled in result.partly:
            self.pending[ref] = msgspec.structs.replace(self.pending[ref], labeled=labeled)

    def recount(self) -> dict[GroupKey, dict[str, float]]:
        """The aggregates computed again from every record and its final label."""
        spec = CHURN["ml/churn"].monitor.spec
        out: dict[GroupKey, dict[str, float]] = {}
        for ref, (r, label) in enumerate(self.records):
            group = (7, r.model_version, r.served_by, bucket_of(r.ts))
            join.add(out, group, {join.PREDICTIONS_KEY: 1.0})
            if label is not None:
                join.add(out, group, join.contribution(self.row(ref), label, spec))
        return out

    def labels(self) -> dict[tuple[str, str], Any]:
        return {
            (r.prediction_id, r.served_by): None if label is None else label.value
            for r, label in self.records
        }


def same(
    a: Mapping[GroupKey, Mapping[str, float]], b: Mapping[GroupKey, Mapping[str, float]]
) -> bool:
    keys = set(a) | set(b)
    for group in keys:
        x, y = a.get(group, {}), b.get(group, {})
        for counter in set(x) | set(y):
            if not math.isclose(x.get(counter, 0.0), y.get(counter, 0.0), abs_tol=1e-9):
                return False
    return True


def test_a_batch_counts_its_records_and_labels_what_waits_for_them() -> None:
    world = World()
    world.label([by_id("p1", 0)])
    result = world.arrive([record("p1"), record("p2")])
    assert result.matched == 1
    assert result.done == (0,)
    assert set(result.labels) == {0}  # refs of new records are their batch indices
    assert world.labels() == {("p1", "model"): 0, ("p2", "model"): None}
    assert world.totals == {(7, "", ""): {plan.ACTUALS_PENDING: 1.0, plan.ACTUALS_MATCHED: 1.0}}
    assert same(world.aggregates, world.recount())


def test_an_id_actual_that_labeled_a_fallback_answer_waits_for_the_shadow_answer() -> None:
    world = World()
    world.label([by_id("p1", 1)])
    first = world.arrive([record("p1", "fallback")])
    assert (first.done, first.partly, first.matched) == ((), ((0, ("fallback",)),), 1)
    second = world.arrive([record("p1", "model", prediction=0)])
    assert (second.done, second.partly, second.matched) == ((0,), (), 0)
    assert world.labels() == {("p1", "fallback"): 1, ("p1", "model"): 1}
    assert not world.pending
    assert same(world.aggregates, world.recount())


def test_an_entity_actual_is_done_once_it_labeled_something() -> None:
    world = World()
    world.label([Actual("ml/churn", NOW, entity_id="u1", value=1)])
    result = world.arrive([record("p1", "fallback", ts=NOW - 30)])
    assert result.done == (0,)
    world.arrive([record("p1", "model", ts=NOW - 30)])
    assert world.labels() == {("p1", "fallback"): 1, ("p1", "model"): None}


def test_a_record_past_its_window_gets_the_assumed_label_at_once() -> None:
    assuming = {"ml/churn": Known(7, monitor(missingActual={"policy": "assume", "value": 0}))}
    world = World(assuming)
    result = world.arrive([record("late", ts=NOW - 2 * HOUR), record("fresh")])
    assert {ref: row.label for ref, (row, _) in result.labels.items()} == {
        0: Label(value=0, assumed=True)
    }


def test_an_actual_unusable_for_a_matched_prediction_is_an_error() -> None:
    world = World()
    world.arrive([record("p1")])
    result = world.label([by_id("p1", 1), by_id("p1", "yes")])
    assert [(e.index, e.field, e.reason) for e in result.errors] == [
        (1, "actual", "unusable_label")
    ]
    assert world.labels() == {("p1", "model"): None}


def test_the_missing_actual_sweep_labels_only_what_the_assumed_value_fits() -> None:
    assuming = Known(7, monitor(missingActual={"policy": "assume", "value": 0}))
    rows = [Row.of(0, record("a")), Row.of(1, record("b", prediction=1))]
    result = plan.plan_assumed(assuming, rows)
    assert set(result.labels) == {0, 1}
    assert all(row.label == Label(value=0, assumed=True) for row, _ in result.labels.values())
    assert plan.plan_assumed(Known(7, monitor()), rows) == plan.Plan()


pids = st.sampled_from(["p1", "p2", "p3", "p4"])
records = st.builds(
    record,
    pids,
    st.sampled_from(["model", "fallback"]),
    ts=st.floats(NOW - 2 * HOUR, NOW, allow_nan=False),
    entity_id=st.sampled_from(["u1", "u2"]),
    prediction=st.sampled_from([0, 1]),
    score=st.one_of(st.none(), st.floats(0, 1)),
)
actuals = st.one_of(
    st.builds(by_id, pids, st.sampled_from([0, 1])),
    st.builds(
        lambda pid, vote: Actual("ml/churn", NOW, prediction_id=pid, vote=vote),
        pids,
        st.sampled_from(["up", "down"]),
    ),
    st.builds(
        lambda entity, value, back: Actual("ml/churn", NOW - back, entity_id=entity, value=value),
        st.sampled_from(["u1", "u2"]),
        st.sampled_from([0, 1]),
        st.floats(0, HOUR),
    ),
)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("arrive"), st.lists(records, min_size=1, max_size=4)),
        st.tuples(st.just("label"), st.lists(actuals, min_size=1, max_size=4)),
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(steps)
def test_any_sequence_of_writes_leaves_the_aggregates_a_recount_would_give(
    sequence: list[tuple[str, list[Any]]],
) -> None:
    world = World()
    for kind, items in sequence:
        if kind == "arrive":
            world.arrive(items)
        else:
            world.label(items)
        assert same(world.aggregates, world.recount())
    matched = world.totals.get((7, "", ""), {}).get(plan.ACTUALS_MATCHED, 0.0)
    pending = world.totals.get((7, "", ""), {}).get(plan.ACTUALS_PENDING, 0.0)
    assert matched <= sum(len(items) for kind, items in sequence if kind == "label")
    assert len(world.pending) <= pending


@pytest.mark.parametrize("match", ["latest", "all"])
def test_a_relabel_moves_the_counters_by_the_difference(match: str) -> None:
    world = World({"ml/churn": Known(7, monitor(match=match))})
    world.arrive([record("p1", prediction=1), record("p2", prediction=0)])
    world.label([by_id("p1", 1), by_id("p2", 1)])
    before = {k: dict(v) for k, v in world.aggregates.items()}
    world.label([by_id("p1", 0)])
    assert world.labels() == {("p1", "model"): 0, ("p2", "model"): 1}
    assert same(world.aggregates, world.recount())
    assert not same(world.aggregates, before)
