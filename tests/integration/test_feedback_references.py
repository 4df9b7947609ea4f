"""The store's reference profiles, outlier scores and reads of every record, backend by backend."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.support.feedback import T0, monitor_body
from tests.support.waiting import eventually
from truthloop.core.profile import CategoricalProfile, NumericProfile, Profile
from truthloop.core.records import Actual, PredictionRecord
from truthloop.core.spec import parse_monitor
from truthloop.feedback.store import open_store
from truthloop.feedback.store.interface import DatasetQuery, MonitorsGone, Registered, Store

pytest_plugins = ["tests.support.feedback_fixtures"]

DAY = 86400.0


def profile(low: float = 0.0) -> Profile:
    return Profile(
        rows=100,
        columns=(
            NumericProfile(
                "age",
                (low, low + 10, low + 20),
                (0, 0.5, 0.5, 0),
                low + 10,
                5,
                low,
                low + 20,
                100,
                0,
            ),
            CategoricalProfile("plan", ("gold", "basic"), (0.6, 0.4, 0.0), (), 100, 0),
            CategoricalProfile("prediction", ("0", "1"), (0.5, 0.5, 0.0), (), 100, 0),
        ),
    )


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = open_store(store_url)
    await s.open()
    yield s
    await s.close()


async def register(store: Store, name: str = "churn") -> Registered:
    body = monitor_body(name)
    registered, _ = await store.put_monitor(parse_monitor(body), body, T0)
    return registered


def by_key(monitors: list[Registered]) -> dict[str, Registered]:
    return {m.monitor.key: m for m in monitors}


async def test_a_reference_is_stored_per_version_and_replaced_under_a_new_id(
    store: Store, store_url: str
) -> None:
    churn = await register(store)
    other = await register(store, "other")
    first = await store.put_reference(churn.id, "", "upload", profile(), T0)
    v2 = await store.put_reference(churn.id, "v2", "history", profile(5.0), T0 + 1)
    assert (first.version, first.source, first.created, first.profile) == (
        "",
        "upload",
        T0,
        profile(),
    )
    loaded = by_key(await store.load_monitors())
    assert loaded["ml/churn"].references == {"": first, "v2": v2}
    assert loaded["ml/other"].references == {}

    second = await store.put_reference(churn.id, "", "upload", profile(1.0), T0 + 2)
    assert second.id not in (first.id, v2.id)
    loaded = by_key(await store.load_monitors())
    assert loaded["ml/churn"].references == {"": second, "v2": v2}
    # a reference never takes an id another one had, whichever monitor
    third = await store.put_reference(other.id, "", "upload", profile(), T0 + 3)
    assert third.id not in (first.id, v2.id, second.id)

    # the spec PUT again keeps them; another process reads them
    body = monitor_body()
    kept, _ = await store.put_monitor(parse_monitor(body), body, T0 + 4)
    assert kept.references == {"": second, "v2": v2}
    again = open_store(store_url)
    await again.open()
    try:
        assert by_key(await again.load_monitors())["ml/churn"].references == {"": second, "v2": v2}
    finally:
        await again.close()


async def test_a_deleted_monitor_takes_no_reference_and_its_references_are_purged(
    store: Store,
) -> None:
    churn = await register(store)
    await store.put_reference(churn.id, "", "upload", profile(), T0)
    await store.delete_monitor("ml/churn", T0 + 1)
    with pytest.raises(MonitorsGone):
        await store.put_reference(churn.id, "v1", "upload", profile(), T0 + 2)
    with pytest.raises(MonitorsGone):
        await store.put_reference(churn.id + 1000, "", "upload", profile(), T0 + 2)
    assert (await store.load_monitors())[0].references.keys() == {""}
    await store.purge_deleted(T0 + 2, 1000)
    assert await store.load_monitors() == []
    revived = await register(store)
    assert revived.references == {}
    assert (await store.load_monitors())[0].references == {}


async def test_another_replica_hears_of_a_new_reference(store: Store, store_url: str) -> None:
    if not store.shared:
        pytest.skip("one process: nobody to hear from")
    churn = await register(store)
    other = open_store(store_url)
    await other.open()
    try:
        heard = asyncio.Event()
        other.watch(heard.set)
        assert by_key(await other.load_monitors())["ml/churn"].references == {}
        reference = await store.put_reference(churn.id, "", "upload", profile(), T0)
        await eventually(heard.is_set, "the other replica told of the reference")
        assert by_key(await other.load_monitors())["ml/churn"].references == {"": reference}
        replaced = await store.put_reference(churn.id, "", "upload", profile(2.0), T0)
        assert by_key(await other.load_monitors())["ml/churn"].references == {"": replaced}
    finally:
        await other.close()


async def test_a_dataset_read_of_every_record_takes_the_unlabeled_ones_too(store: Store) -> None:
    churn = await register(store)
    monitors = {churn.monitor.key: churn}
    records = [
        PredictionRecord("ml/churn", f"p{i}", "model", "v1", T0 - 100 + i, i % 2) for i in range(50)
    ]
    await store.insert_predictions(records, monitors, T0)
    labeled = {f"p{i}" for i in range(0, 50, 3)}
    await store.apply_actuals(
        [Actual("ml/churn", T0, prediction_id=p, value=1) for p in sorted(labeled)], monitors, T0
    )

    async def read(query: DatasetQuery, chunk: int = 7) -> list[str]:
        out, after = [], (query.start, 0)
        while rows := await store.dataset(query, after, chunk):
            out += [r.prediction_id for r in rows]
            after = rows[-1].cursor
        return out

    everything = DatasetQuery(churn.id, T0 - 100, T0, labeled=False)
    assert await read(everything) == [r.prediction_id for r in records]
    assert set(await read(DatasetQuery(churn.id, T0 - 100, T0))) == labeled
    assert await read(DatasetQuery(churn.id, T0 - 90, T0 - 80, labeled=False)) == [
        f"p{i}" for i in range(10, 20)
    ]
