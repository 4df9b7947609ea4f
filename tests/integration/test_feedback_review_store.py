"""The review queue in the store, backend by backend: selection at ingest with its known pi,
leasing, reviewers' labels and decisions, expiry, retention and the dataset's review columns."""

from __future__ import annotations

import asyncio
import dataclasses

import msgspec
import pytest

from tests.support.feedback import T0, monitor_body
from truthloop.core import review, windows
from truthloop.core.records import Actual, ItemError, PredictionRecord
from truthloop.core.spec import AbstainSpec, ReviewSpec, parse_monitor
from truthloop.feedback.store.interface import (
    DatasetQuery,
    LabelsRejected,
    QueueStats,
    Registered,
    Store,
    StoredPrediction,
)

pytest_plugins = ["tests.support.feedback_fixtures"]

KEY = "ml/churn"
EVERY = review.Design(uniform=1.0)
"""A design that queues every model record (pi = 1)."""
NONE = review.Design(uniform=0.0)
"""A design that queues none (outside an abstain band)."""
LEASE = 600.0


async def reviewed(store: Store, **options: object) -> Registered:
    """The test monitor, with `spec.review` (its `options` replacing the defaults)."""
    body = monitor_body()
    registered, _ = await store.put_monitor(parse_monitor(body), body, T0)
    spec = dataclasses.replace(
        registered.monitor.spec, review=ReviewSpec(**{"budget": 100.0, **options})
    )
    monitor = dataclasses.replace(registered.monitor, spec=spec)
    return dataclasses.replace(registered, monitor=monitor)


def records(
    n: int, ts: float = T0 - 60, prefix: str = "p", **fields: object
) -> list[PredictionRecord]:
    """`n` model records, predicted 1 with score 0.8 unless `fields` say otherwise."""
    values: dict[str, object] = {"score": 0.8, **fields}
    return [PredictionRecord(KEY, f"{prefix}{i}", "model", "v1", ts, 1, **values) for i in range(n)]


def label(pid: str, value: int = 1, reviewer: str | None = "ann", **fields: object) -> Actual:
    return Actual(KEY, T0, prediction_id=pid, value=value, reviewer=reviewer, **fields)


def decide(pid: str, decision: str, reviewer: str = "ann") -> Actual:
    return Actual(KEY, T0, prediction_id=pid, reviewer=reviewer, decision=decision)


async def rows(
    store: Store, monitor: Registered, **filters: bool | None
) -> dict[str, StoredPrediction]:
    """Every record of the monitor, by prediction id (the model's)."""
    query = DatasetQuery(monitor.id, T0 - 7200, T0 + 7200, labeled=False, **filters)
    found = await store.dataset(query, (T0 - 7200, 0), 10_000)
    return {r.prediction_id: r for r in found if r.served_by == "model"}


async def review_counters(store: Store, monitor: Registered) -> dict[str, float]:
    got = await store.window(monitor.id, windows.window(T0, 7200))
    return {k: v for k, v in got.get(("v1", "model"), {}).items() if review.is_counter(k) and v}


async def leased(
    store: Store, monitor: Registered, reviewer: str, now: float = T0, limit: int = 1000
) -> list[str]:
    return [
        i.prediction_id for i in await store.lease_review(monitor.id, reviewer, limit, now, LEASE)
    ]


async def lifetime(store: Store, monitor: Registered) -> dict[str, float]:
    return (await store.totals()).get(monitor.id, {}).get(("", ""), {})


async def test_records_are_queued_with_their_known_pi_and_a_duplicate_is_not_queued_again(
    store: Store,
) -> None:
    monitor = await reviewed(store, seed=3)
    known = {KEY: monitor}
    design = {monitor.id: review.Design(uniform=0.3)}
    batch = records(300)
    await store.insert_predictions(batch, known, T0, design)
    expected = {r.prediction_id for r in batch if review.draw(KEY, 3, r.prediction_id) < 0.3}
    assert 50 < len(expected) < 130  # the draw is the selection: about 30% of 300
    stored = await rows(store, monitor)
    assert {p for p, r in stored.items() if r.pi is not None} == expected
    assert {(r.pi, r.reason) for p, r in stored.items() if p in expected} == {(0.3, "random")}
    first = await review_counters(store, monitor)
    assert first  # the ingest counters of the selection

    # the same records again, a new one, and a fallback answer under a queued id
    again = [*batch, *records(1, prefix="q")]
    fallback = msgspec.structs.replace(batch[0], served_by="fallback")
    result = await store.insert_predictions([*again, fallback], known, T0, design)
    assert (result.accepted, result.duplicates) == (2, 300)
    queued = set(await leased(store, monitor, "ann"))
    new = {"q0"} if review.draw(KEY, 3, "q0") < 0.3 else set()
    assert queued == expected | new
    after = await review_counters(store, monitor)
    added = {k: after.get(k, 0.0) - first.get(k, 0.0) for k in after.keys() | first.keys()}
    single = review.select(records(1, prefix="q"), known, design, [None]).deltas()
    expected_counters = {k: v for group in single.values() for k, v in group.items() if v}
    assert {k: v for k, v in added.items() if abs(v) > 1e-9} == pytest.approx(expected_counters)


async def test_a_store_without_designs_selects_with_the_initial_one_and_abstained_is_kept(
    store: Store,
) -> None:
    monitor = await reviewed(store, abstain=AbstainSpec(low=0.4, high=0.6))
    batch = [*records(3, score=0.5, abstained=True, prefix="a"), *records(3, prefix="c")]
    await store.insert_predictions(batch, {KEY: monitor}, T0)
    stored = await rows(store, monitor)
    assert {p for p, r in stored.items() if r.abstained} == {"a0", "a1", "a2"}
    assert {(stored[p].pi, stored[p].reason) for p in ("a0", "a1", "a2")} == {(1.0, "abstain")}
    assert {"a0", "a1", "a2"} <= set(await leased(store, monitor, "ann"))
    assert [p for p in await rows(store, monitor, abstained=True)] == ["a0", "a1", "a2"]
    assert set(await rows(store, monitor, abstained=False)) == {"c0", "c1", "c2"}


async def test_leases_go_abstained_first_then_oldest_to_one_reviewer_until_they_run_out(
    store: Store,
) -> None:
    monitor = await reviewed(store, abstain=AbstainSpec(low=0.4, high=0.6))
    known, design = {KEY: monitor}, {monitor.id: EVERY}
    await store.insert_predictions(records(3, prefix="old"), known, T0 - 30, design)
    await store.insert_predictions(records(3, prefix="new"), known, T0 - 20, design)
    await store.insert_predictions(
        records(2, score=0.5, abstained=True, prefix="ab"), known, T0 - 10, design
    )

    assert await leased(store, monitor, "ann", limit=3) == ["ab0", "ab1", "old0"]
    bob = await store.lease_review(monitor.id, "bob", 3, T0, LEASE)
    assert [i.prediction_id for i in bob] == ["old1", "old2", "new0"]
    assert {(i.leased_to, i.lease_until, i.queued, i.reason) for i in bob} == {
        ("bob", T0 + LEASE, T0 - 30, "random"),
        ("bob", T0 + LEASE, T0 - 20, "random"),
    }
    item = bob[0]
    assert (item.prediction, item.score, item.model_version, item.abstained) == (
        1,
        0.8,
        "v1",
        False,
    )
    assert await leased(store, monitor, "cy") == ["new1", "new2"]
    assert await leased(store, monitor, "dee") == []
    stats = (await store.review_stats(T0))[monitor.id]
    assert stats == QueueStats(depth=8, leased=8, oldest=T0 - 30, expired=0)

    # the leases run out: the items go back, in the same order
    later = T0 + LEASE + 1
    assert await leased(store, monitor, "dee", later, limit=4) == ["ab0", "ab1", "old0", "old1"]


async def test_two_concurrent_leases_never_hand_one_item_twice(store: Store) -> None:
    monitor = await reviewed(store)
    await store.insert_predictions(records(60), {KEY: monitor}, T0, {monitor.id: EVERY})
    handed = await asyncio.gather(*(leased(store, monitor, f"r{i}", limit=7) for i in range(12)))
    every = [p for one in handed for p in one]
    assert len(every) == len(set(every)) == 60


async def test_a_review_label_moves_the_review_counters_and_a_relabel_by_the_difference(
    store: Store,
) -> None:
    monitor = await reviewed(store)
    known = {KEY: monitor}
    batch = records(4)
    await store.insert_predictions(batch, known, T0, {monitor.id: EVERY})
    mark = review.select(batch, known, {monitor.id: EVERY}, [None] * len(batch)).marks[0]
    assert mark is not None
    assert mark.pi == (await rows(store, monitor))["p0"].pi == 1.0
    before = await review_counters(store, monitor)
    await leased(store, monitor, "ann", limit=1)

    def moved(right: bool) -> dict[str, float]:
        return review.contribution(mark, "binary", 1, right, None)

    await store.apply_actuals([label("p0", 1, "ann")], known, T0)
    assert difference(await review_counters(store, monitor), before) == nonzero(moved(True))
    await store.apply_actuals([label("p0", 0, "bob")], known, T0)
    assert difference(await review_counters(store, monitor), before) == nonzero(moved(False))
    # a label from outside review (ground truth arriving) keeps the record reviewed, by bob:
    # the same value moves nothing, another the residual
    await store.apply_actuals([label("p0", 0, None)], known, T0)
    assert difference(await review_counters(store, monitor), before) == nonzero(moved(False))
    await store.apply_actuals([label("p0", 1, None)], known, T0)
    assert difference(await review_counters(store, monitor), before) == nonzero(moved(True))

    stored = (await rows(store, monitor))["p0"]
    assert (stored.reviewer, stored.label.reviewer, stored.label.value) == ("bob", "bob", 1)
    assert [(v.reviewer, v.value) for v in stored.votes] == [("ann", 1), ("bob", 0)]
    assert await leased(store, monitor, "cy") == ["p1", "p2", "p3"]  # p0 is reviewed
    totals = await lifetime(store, monitor)
    assert (totals["@review/labeled/ann"], totals["@review/labeled/bob"]) == (1, 1)
    assert (await rows(store, monitor, reviewed=False)).keys() == {"p1", "p2", "p3"}
    await store.apply_actuals([label("p1", 1, "ann")], known, T0)
    assert list(await rows(store, monitor, reviewed=True)) == ["p0", "p1"]
    assert (await rows(store, monitor, reviewed=True))["p1"].reviewer == "ann"


def difference(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    moved = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after.keys() | before.keys()}
    return {k: pytest.approx(v) for k, v in moved.items() if abs(v) > 1e-12}


def nonzero(counters: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in counters.items() if v}


async def test_a_review_for_an_unknown_prediction_is_refused_and_nothing_is_stored(
    store: Store,
) -> None:
    monitor = await reviewed(store)
    known = {KEY: monitor}
    await store.insert_predictions(records(2), known, T0, {monitor.id: EVERY})
    fallback_only = msgspec.structs.replace(records(1, prefix="f")[0], served_by="fallback")
    await store.insert_predictions([fallback_only], known, T0, {monitor.id: EVERY})
    with pytest.raises(LabelsRejected) as refused:
        await store.apply_actuals(
            [label("p0"), label("nope"), decide("p1", "skip"), label("f0")], known, T0
        )
    assert [(e.index, e.field, e.reason) for e in refused.value.errors] == [
        (1, "prediction_id", "unknown_prediction"),
        (3, "prediction_id", "unknown_prediction"),
    ]
    assert refused.value.errors[0] == ItemError(
        1, "prediction_id", "no prediction nope in monitor ml/churn", "unknown_prediction"
    )
    stored = await rows(store, monitor)
    assert stored["p0"].label is None
    assert stored["p0"].votes == ()
    assert await lifetime(store, monitor) == {}
    assert await leased(store, monitor, "ann") == ["p0", "p1"]  # nobody passed p1


async def test_skip_and_unsure_hand_the_item_back_to_the_others_and_three_unsure_close_it(
    store: Store,
) -> None:
    monitor = await reviewed(store)
    known = {KEY: monitor}
    await store.insert_predictions(records(2), known, T0, {monitor.id: NONE})
    await store.insert_predictions(records(2, prefix="q"), known, T0, {monitor.id: EVERY})
    assert await leased(store, monitor, "ann", limit=1) == ["q0"]
    await store.apply_actuals([decide("q0", "skip", "ann")], known, T0)
    assert await leased(store, monitor, "ann") == ["q1"]  # never q0 again
    assert await leased(store, monitor, "bob") == ["q0"]  # back in the queue for the others
    await store.apply_actuals(
        [decide("q0", "unsure", "bob"), decide("q0", "unsure", "cy")], known, T0
    )
    assert await leased(store, monitor, "dee", limit=1) == ["q0"]
    await store.apply_actuals([decide("q0", "unsure", "dee")], known, T0)
    assert await leased(store, monitor, "eve") == []  # closed as unsure; q1 is ann's
    stored = (await rows(store, monitor))["q0"]
    assert stored.label is None
    assert [(v.reviewer, v.decision) for v in stored.votes] == [
        ("bob", "unsure"),
        ("cy", "unsure"),
        ("dee", "unsure"),
    ]
    totals = await lifetime(store, monitor)
    assert {k: v for k, v in totals.items() if k.startswith("@review/")} == {
        "@review/skip/ann": 1,
        "@review/unsure/bob": 1,
        "@review/unsure/cy": 1,
        "@review/unsure/dee": 1,
    }
    # a decision on what is not waiting in the queue: never queued, or closed
    for pid in ("p0", "q0"):
        with pytest.raises(LabelsRejected) as refused:
            await store.apply_actuals([decide(pid, "skip", "eve")], known, T0)
        assert [(e.field, e.reason) for e in refused.value.errors] == [
            ("prediction_id", "not_queued")
        ]
    # a label for a record never queued is taken, and moves no review counter
    before = await review_counters(store, monitor)
    await store.apply_actuals([label("p0", 1, "eve")], known, T0)
    assert await review_counters(store, monitor) == before
    assert (await rows(store, monitor))["p0"].reviewer == "eve"


async def test_items_expire_with_their_attribution_window(store: Store) -> None:
    monitor = await reviewed(store)
    known = {KEY: monitor}
    await store.insert_predictions(records(3, ts=T0 - 3000), known, T0, {monitor.id: EVERY})
    await store.insert_predictions(records(2, ts=T0, prefix="q"), known, T0, {monitor.id: EVERY})
    await leased(store, monitor, "ann", limit=1)
    at = T0 + 601  # past the first three's hour (their lease too)
    assert (await store.review_stats(at))[monitor.id] == QueueStats(2, 0, T0, 3)
    assert await store.expire_reviews(at, 2) == {monitor.id: 2}
    assert await store.expire_reviews(at, 10) == {monitor.id: 1}
    assert await store.expire_reviews(at, 10) == {}
    assert await leased(store, monitor, "bob", at) == ["q0", "q1"]
    assert (await store.review_stats(at))[monitor.id] == QueueStats(2, 2, T0, 3)
    assert await store.review_stats(at, monitor.id) == {monitor.id: QueueStats(2, 2, T0, 3)}
    assert await store.review_stats(at, monitor.id + 1) == {}
    assert (await store.review_stats(T0 + 86400 + 1000))[monitor.id] == QueueStats(0, 0, None, 2)
    assert await store.expire_reviews(T0 + 2 * 86400, 10) == {monitor.id: 2}
    assert await store.review_stats(T0 + 2 * 86400) == {}
    # a label for an expired item is taken all the same
    await store.apply_actuals([label("p0")], known, at)
    assert [v.reviewer for v in (await rows(store, monitor))["p0"].votes] == ["ann"]


async def test_retention_and_the_purge_take_the_items_along(store: Store) -> None:
    monitor = await reviewed(store)
    known = {KEY: monitor}
    await store.insert_predictions(records(3, ts=T0 - 3000), known, T0, {monitor.id: EVERY})
    await store.insert_predictions(records(2, ts=T0, prefix="q"), known, T0, {monitor.id: EVERY})
    assert await store.delete_predictions(monitor.id, T0 - 1, 2) == 2
    assert len(await leased(store, monitor, "ann")) == 3  # one old record and its item remain
    assert await store.delete_predictions(monitor.id, T0 - 1, 10) == 1
    assert sorted(await leased(store, monitor, "bob", T0 + LEASE + 1)) == ["q0", "q1"]
    await store.delete_monitor(KEY, T0)
    await store.purge_deleted(T0 + 1, 1000)
    assert await store.review_stats(T0) == {}
