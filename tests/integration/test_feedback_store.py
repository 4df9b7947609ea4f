"""The store contract, backend by backend: rollups, concurrent writers, deletion and its grace."""

from __future__ import annotations

import asyncio
import random

import pytest

from tests.support.feedback import T0, FakeClock, ServiceFactory, monitor_body, record
from truthloop.core import metrics, windows
from truthloop.core.join import PREDICTIONS_KEY
from truthloop.core.records import Actual, PredictionRecord
from truthloop.core.spec import parse_monitor
from truthloop.feedback.store import open_store
from truthloop.feedback.store.interface import DatasetQuery, Registered, Store

pytest_plugins = ["tests.support.feedback_fixtures"]

DAY = 86400.0


async def registered(store: Store) -> dict[str, Registered]:
    body = monitor_body()
    reg, _ = await store.put_monitor(parse_monitor(body), body, T0)
    return {reg.monitor.key: reg}


def recompute(rows: list[tuple[PredictionRecord, int]]) -> dict[str, float]:
    counters = metrics.total(metrics.observe("binary", r.prediction, a) for r, a in rows)
    return {k: v for k, v in counters.items() if v}


async def test_windows_read_through_rollups_equal_a_recomputation(store: Store) -> None:
    monitors = await registered(store)
    rng = random.Random(7)
    now = T0 + 3 * DAY
    rows = []
    for i in range(3000):
        ts = now - rng.uniform(0, 3 * DAY)
        rows.append(
            (
                PredictionRecord("ml/churn", f"p{i}", "model", "v1", ts, rng.randint(0, 1)),
                rng.randint(0, 1),
            )
        )
    for start in range(0, len(rows), 500):
        chunk = rows[start : start + 500]
        await store.insert_predictions([r for r, _ in chunk], monitors, now)
        await store.apply_actuals(
            [Actual("ml/churn", now, prediction_id=r.prediction_id, value=a) for r, a in chunk],
            monitors,
            now,
        )
    monitor_id = monitors["ml/churn"].id
    for _ in range(25):
        seconds = rng.uniform(60, 3 * DAY)
        at = now - rng.uniform(0, DAY)
        span = windows.window(at, seconds)
        lo, hi = windows.bucket_start(span.start), windows.bucket_start(span.end)
        inside = [(r, a) for r, a in rows if lo <= r.ts < hi]
        got = (await store.window(monitor_id, span)).get(("v1", "model"), {})
        assert got.get(PREDICTIONS_KEY, 0) == len(inside)
        labels = {k: v for k, v in got.items() if not k.startswith("@") and abs(v) > 1e-9}
        assert labels == pytest.approx(recompute(inside))


async def test_counters_a_process_wrote_but_never_folded_are_read_by_the_next(
    store: Store, store_url: str
) -> None:
    """Writes leave their counter deltas to a later fold; a process that dies before folding
    (here: one that never compacts or reads) must not take them along."""
    monitors = await registered(store)
    rng = random.Random(11)
    rows = [
        (PredictionRecord("ml/churn", f"p{i}", "model", "v1", T0 - 60 * (i % 7), 1), i % 3 % 2)
        for i in range(300)
    ]
    await store.insert_predictions([r for r, _ in rows], monitors, T0)
    for value in (1, 0):  # a relabel: the second delta undoes part of the first
        sample = rng.sample(rows, 100)
        await store.apply_actuals(
            [Actual("ml/churn", T0, prediction_id=r.prediction_id, value=value) for r, _ in sample],
            monitors,
            T0,
        )
    await store.apply_actuals(
        [Actual("ml/churn", T0, prediction_id=r.prediction_id, value=a) for r, a in rows],
        monitors,
        T0,
    )
    successor = open_store(store_url)
    await successor.open()
    try:
        monitor_id = monitors["ml/churn"].id
        got = (await successor.window(monitor_id, windows.window(T0, 3600)))[("v1", "model")]
        assert got[PREDICTIONS_KEY] == len(rows)
        assert {k: v for k, v in got.items() if not k.startswith("@") and v} == recompute(rows)
        lifetime = (await successor.totals())[monitor_id][("v1", "model")]
        assert lifetime["tp"] + lifetime["fp"] == len(rows)  # every prediction is 1
    finally:
        await successor.close()


async def test_concurrent_relabels_lose_no_update(store: Store) -> None:
    monitors = await registered(store)
    records = [PredictionRecord("ml/churn", f"p{i}", "model", "v1", T0 - 5, 1) for i in range(200)]
    await store.insert_predictions(records, monitors, T0)
    rng = random.Random(3)
    sent: dict[str, set[int]] = {}

    async def writer(seed: int) -> None:
        local = random.Random(seed)
        for _ in range(10):
            batch = local.sample(records, 50)
            labels = [local.randint(0, 1) for _ in batch]
            await store.apply_actuals(
                [
                    Actual("ml/churn", T0, prediction_id=r.prediction_id, value=v)
                    for r, v in zip(batch, labels, strict=True)
                ],
                monitors,
                T0,
            )
            for r, v in zip(batch, labels, strict=True):
                sent.setdefault(r.prediction_id, set()).add(v)

    await asyncio.gather(*(writer(rng.random()) for _ in range(4)))
    # Writers on separate connections commit in an order their callers cannot see, so the
    # oracle is the labels the store kept: the aggregates must equal a recomputation of them.
    monitor_id = monitors["ml/churn"].id
    kept = await store.dataset(DatasetQuery(monitor_id, T0 - 60, T0), (T0 - 60, 0), 1000)
    assert {k.prediction_id for k in kept} == set(sent)
    assert all(k.label and k.label.value in sent[k.prediction_id] for k in kept)
    by_id = {r.prediction_id: r for r in records}
    expected = recompute([(by_id[k.prediction_id], k.label.value) for k in kept if k.label])
    got = (await store.window(monitor_id, windows.window(T0, 3600)))[("v1", "model")]
    assert {k: v for k, v in got.items() if not k.startswith("@") and v} == expected


async def test_a_deleted_monitor_keeps_its_data_through_the_grace_then_is_purged(
    start_service: ServiceFactory, clock: FakeClock
) -> None:
    service = await start_service()
    await service.put_monitor(monitor_body())
    await service.predictions([record("p", 1, ts=clock.now - 5, entity_id="u")])
    await service.feedback({"monitor": "ml/churn", "prediction_id": "p", "actual": 1})
    await service.ok("DELETE", "/v1/monitors/ml/churn")
    status, _ = await service.call("POST", "/v1/predictions", json=[record("q", 1, ts=clock.now)])
    assert status == 400  # a deleted monitor takes no records
    await service.put_monitor(monitor_body())  # back within the grace: data intact
    assert (await service.metrics())["labeled"] == 1

    await service.ok("DELETE", "/v1/monitors/ml/churn")
    clock.advance(2 * DAY)
    await service.tick()
    store = service.engine.store
    assert await store.load_monitors() == []
    assert await store.totals() == {}
    await service.put_monitor(monitor_body())
    assert (await service.metrics())["labeled"] == 0


async def test_recreating_a_deleted_monitor_with_another_task_starts_afresh(
    start_service: ServiceFactory, clock: FakeClock
) -> None:
    service = await start_service()
    await service.put_monitor(monitor_body())
    await service.predictions([record("p", 1, ts=clock.now - 5, entity_id="u")])
    await service.ok("DELETE", "/v1/monitors/ml/churn")
    await service.put_monitor(monitor_body(task="regression", alerts=[]))
    metrics_now = await service.metrics()
    assert (metrics_now["task"], metrics_now["samples"]) == ("regression", 0)
    clock.advance(2 * DAY)
    await service.tick()
    assert [r.monitor.spec.task for r in await service.engine.store.load_monitors()] == [
        "regression"
    ]
