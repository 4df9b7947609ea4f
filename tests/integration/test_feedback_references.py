"""The store's reference profiles, outlier scores and reads of every record, backend by backend."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import pytest

from tests.support.feedback import T0, FakeClock, ServiceFactory, monitor_body, record
from tests.support.postgres import admin
from tests.support.waiting import eventually
from truthloop.core import windows
from truthloop.core.profile import CategoricalProfile, NumericProfile, Profile
from truthloop.core.records import Actual, PredictionRecord
from truthloop.core.spec import parse_monitor
from truthloop.feedback.store import codec, open_store
from truthloop.feedback.store.interface import (
    DatasetQuery,
    MonitorsGone,
    Only,
    Registered,
    Store,
)
from truthloop.feedback.store.postgres import PREDICTION_COLUMNS

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


def sketched_batch(
    prefix: str, ages: list[float | None], ts: float = T0 - 30
) -> list[PredictionRecord]:
    return [
        PredictionRecord(
            "ml/churn",
            f"{prefix}{i}",
            "model",
            "v1",
            ts,
            i % 2,
            features={"age": age, "plan": "gold"},
        )
        for i, age in enumerate(ages)
    ]


def sketches(counters: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in counters.items() if k.startswith("~") and v}


async def test_records_are_sketched_once_and_keep_their_outlier_score(store: Store) -> None:
    churn = await register(store)
    ref = await store.put_reference(churn.id, "", "upload", profile(), T0 - 100)
    monitors = by_key(await store.load_monitors())
    first = sketched_batch("a", [5.0, 15.0, 25.0, None])
    await store.insert_predictions(first, monitors, T0)
    await store.compact()  # folded or not, reads are the same
    # a retried batch and one holding a known record: the duplicates are not counted again
    again = await store.insert_predictions(first, monitors, T0)
    assert (again.accepted, again.duplicates) == (0, 4)
    mixed = [first[0], *sketched_batch("b", [-5.0])]
    assert (await store.insert_predictions(mixed, monitors, T0)).accepted == 1

    span = windows.window(T0, 3600)
    got = sketches((await store.window(churn.id, span))["v1", "model"])
    r = ref.id
    assert got == {
        f"~{r}:@rows": 5,
        f"~{r}:@outliers": 2,  # 25 and -5 lie outside [0, 20]
        f"~{r}:age:0": 1,
        f"~{r}:age:1": 1,
        f"~{r}:age:2": 1,
        f"~{r}:age:3": 1,
        f"~{r}:age:oor": 2,
        f"~{r}:age:missing": 1,
        f"~{r}:plan:0": 5,
        f"~{r}:prediction:0": 3,
        f"~{r}:prediction:1": 2,
    }
    series = await store.series(churn.id, windows.Steps(windows.bucket_of(T0) - 60, 60, 1, "hour"))
    assert sketches(series[0]["v1", "model"]) == got
    totals = (await store.totals())[churn.id]["v1", "model"]
    assert not any(k.startswith("~") for k in totals)
    # a metrics read leaves the sketches out, a drift read takes only them
    whole = (await store.window(churn.id, span))["v1", "model"]
    metrics_only = (await store.window(churn.id, span, Only(sketches=False)))["v1", "model"]
    assert metrics_only == {k: v for k, v in whole.items() if not k.startswith("~")}
    assert metrics_only["@predictions"] == 5
    drift_only = await store.window(churn.id, span, Only("v1", sketches=True))
    assert drift_only == {("v1", "model"): {k: v for k, v in whole.items() if k.startswith("~")}}
    steps = windows.Steps(windows.bucket_of(T0) - 60, 60, 1, "hour")
    assert (await store.series(churn.id, steps, Only(sketches=True)))[0]["v1", "model"] == got
    assert (await store.series(churn.id, steps, Only(sketches=False)))[0]["v1", "model"] == (
        metrics_only
    )

    everything = DatasetQuery(churn.id, T0 - 100, T0, labeled=False)
    rows = await store.dataset(everything, (T0 - 100, 0), 100)
    assert {x.prediction_id: x.outlier for x in rows} == {
        "a0": 0.0,
        "a1": 0.0,
        "a2": 0.5,  # one of its two features
        "a3": 0.0,
        "b0": 0.5,
    }
    outliers = DatasetQuery(churn.id, T0 - 100, T0, labeled=False, outlier=True)
    assert [x.prediction_id for x in await store.dataset(outliers, (T0 - 100, 0), 100)] == [
        "a2",
        "b0",
    ]
    inliers = DatasetQuery(churn.id, T0 - 100, T0, labeled=False, outlier=False)
    assert len(await store.dataset(inliers, (T0 - 100, 0), 100)) == 3
    await store.apply_actuals([Actual("ml/churn", T0, prediction_id="a2", value=1)], monitors, T0)
    labeled = await store.dataset(
        DatasetQuery(churn.id, T0 - 100, T0, outlier=True), (T0 - 100, 0), 9
    )
    assert [(x.prediction_id, x.outlier) for x in labeled] == [("a2", 0.5)]


async def test_records_without_a_reference_are_not_sketched(store: Store) -> None:
    churn = await register(store)
    await store.put_reference(churn.id, "v2", "upload", profile(), T0 - 100)
    monitors = by_key(await store.load_monitors())
    await store.insert_predictions(sketched_batch("a", [5.0, 50.0]), monitors, T0)
    got = (await store.window(churn.id, windows.window(T0, 3600)))["v1", "model"]
    assert sketches(got) == {}
    rows = await store.dataset(
        DatasetQuery(churn.id, T0 - 100, T0, labeled=False), (T0 - 100, 0), 9
    )
    assert [x.outlier for x in rows] == [None, None]


async def test_records_posted_to_the_service_are_sketched_and_metrics_unchanged(
    store_url: str, start_service: ServiceFactory, clock: FakeClock
) -> None:
    """The engine hands the store the references it read: a record through the HTTP API is
    sketched, and the monitor's metrics are those of its labels alone."""
    prepared = open_store(store_url)
    await prepared.open()
    try:
        churn = await register(prepared)
        ref = await prepared.put_reference(churn.id, "", "upload", profile(), clock.now)
    finally:
        await prepared.close()
    service = await start_service()
    sent = [
        record(f"p{i}", i % 2, ts=clock.now - 5, features={"age": age, "plan": "gold"})
        for i, age in enumerate([5, 15, 99, None])
    ]
    await service.predictions(sent)
    await service.feedback(
        *({"monitor": "ml/churn", "prediction_id": f"p{i}", "actual": 1} for i in range(4))
    )
    store = service.engine.store
    span = windows.window(clock.now, 3600)
    got = (await store.window(churn.id, span, Only(sketches=True)))["v1", "model"]
    assert (got[f"~{ref.id}:@rows"], got[f"~{ref.id}:@outliers"]) == (4, 1)
    assert got[f"~{ref.id}:age:missing"] == 1
    await service.tick()
    metrics_now = await service.metrics()
    assert (metrics_now["samples"], metrics_now["labeled"]) == (4, 4)
    assert metrics_now["metrics"]["accuracy"]["value"] == 0.5


async def test_an_older_replica_still_stores_records_after_the_migration(
    store: Store, store_url: str
) -> None:
    """During a rolling update a replica of the previous release COPYs records without the
    outlier column: they are stored, unscored, and read back as records without a score."""
    if not store.shared:
        pytest.skip("one process: no older replica beside it")
    churn = await register(store)
    schema = dict(p.split("=") for p in urlsplit(store_url).query.split("&"))["search_path"]
    old = [c for c in PREDICTION_COLUMNS if c != "outlier"]
    row = [
        v
        for c, v in zip(
            PREDICTION_COLUMNS,
            codec.prediction_values(churn.id, sketched_batch("o", [5.0])[0]),
            strict=True,
        )
        if c != "outlier"
    ]
    conn = await admin()
    try:
        await conn.copy_records_to_table(
            "predictions", schema_name=schema, records=[row], columns=old
        )
    finally:
        await conn.close()
    rows = await store.dataset(
        DatasetQuery(churn.id, T0 - 100, T0, labeled=False), (T0 - 100, 0), 9
    )
    assert [(x.prediction_id, x.outlier, x.features) for x in rows] == [
        ("o0", None, {"age": 5.0, "plan": "gold"})
    ]
