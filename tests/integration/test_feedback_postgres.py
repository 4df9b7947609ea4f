"""What only PostgreSQL has: several replicas on one database, and the database going away.

Every other feedback-service test also runs on PostgreSQL (the `store_url` fixture); these start
two services on one schema — two replicas behind one Service — or put a relay between a service
and the server that can cut it off.
"""

from __future__ import annotations

import asyncio
import io
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import msgspec
import pytest

from tests.support.feedback import (
    FakeClock,
    Service,
    make_settings,
    monitor_body,
    record,
    sample,
)
from tests.support.postgres import (
    Outage,
    admin,
    fresh_schema,
    kill_connections,
    server_url,
    with_query,
)
from tests.support.waiting import eventually
from truthloop.core import metrics, scopes, windows
from truthloop.core.records import Actual, PredictionRecord
from truthloop.core.spec import parse_monitor
from truthloop.feedback.settings import EngineSettings, HttpSettings
from truthloop.feedback.store import open_store, postgres
from truthloop.feedback.store.interface import Store, StoreError, StoreUnavailable
from truthloop.feedback.store.postgres import MIGRATIONS, Keys, PostgresStore, connection, open_url

pytest_plugins = ["tests.support.feedback_fixtures"]

Replicas = Callable[..., Awaitable[Service]]
JSON = "application/json"
FAST = EngineSettings(tick_interval=0.1)
"""Replicas that tick on their own, for leadership to move without the test's help."""


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with fresh_schema() as url:
        yield url


@pytest.fixture
async def replicas(pg_url: str, clock: FakeClock) -> AsyncIterator[Replicas]:
    """Start feedback services on one schema (by default each ticks only when told)."""
    started: list[Service] = []

    async def start(url: str = pg_url, **overrides: Any) -> Service:
        service = Service(make_settings(url, clock, **overrides))
        await service.start()
        started.append(service)
        return service

    yield start
    for service in reversed(started):
        await service.stop()


def schema_of(url: str) -> str:
    return dict(p.split("=") for p in urlsplit(url).query.split("&"))["search_path"]


async def knows(service: Service, key: str = "ml/churn") -> bool:
    status, _ = await service.call("GET", f"/v1/monitors/{key}")
    return status == 200


async def stored_labels(url: str) -> dict[str, tuple[Any, Any]]:
    """prediction_id → (prediction, actual) of every stored record, read straight from SQL."""
    conn = await admin()
    try:
        found = await conn.fetch(
            f"SELECT prediction_id, prediction, actual FROM {schema_of(url)}.predictions"
            f" LEFT JOIN {schema_of(url)}.labels ON prediction_ref = id"
        )
    finally:
        await conn.close()
    decode = msgspec.json.decode
    return {r[0]: (decode(r[1]), None if r[2] is None else decode(r[2])) for r in found}


def recompute(labels: dict[str, tuple[Any, Any]]) -> dict[str, float]:
    counters = metrics.total(
        metrics.observe("binary", p, a) for p, a in labels.values() if a is not None
    )
    return {k: v for k, v in counters.items() if v}


# -- replicas ----------------------------------------------------------------------------------


async def test_two_replicas_relabeling_the_same_predictions_lose_no_update(
    replicas: Replicas, pg_url: str, clock: FakeClock
) -> None:
    a, b = await replicas(), await replicas()
    await a.put_monitor(monitor_body(feedback={"attributionWindow": "1h", "match": "all"}))
    await eventually(lambda: knows(b))
    ts = clock.now - 30
    n = 300
    await a.predictions(
        [record(f"p{i}", i % 2, ts=ts + i % 7, entity_id=f"u{i % 30}") for i in range(n)]
    )

    async def relabel(service: Service, seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(12):
            items: list[dict[str, Any]] = [
                {"monitor": "ml/churn", "prediction_id": f"p{i}", "actual": rng.randint(0, 1)}
                for i in rng.sample(range(n), 50)
            ]
            items += [  # an entity actual labels all of that entity's ten records
                {"monitor": "ml/churn", "entity_id": f"u{i}", "actual": rng.randint(0, 1)}
                for i in rng.sample(range(30), 3)
            ]
            await service.feedback(*items)

    await asyncio.gather(*(relabel(s, k) for k, s in enumerate([a, b, a, b])))

    labels = await stored_labels(pg_url)
    assert len(labels) == n
    assert all(actual is not None for _, actual in labels.values())
    store = a.engine.store
    mid = a.engine.registered("ml/churn").id
    got = (await store.window(mid, windows.window(clock.now, 3600)))["v1", "model"]
    assert got["@predictions"] == n
    assert {k: v for k, v in got.items() if not k.startswith("@") and v} == pytest.approx(
        recompute(labels)
    )
    for service in (a, b):
        answer = await service.metrics()
        right = sum(1 for p, actual in labels.values() if p == actual)
        assert answer["labeled"] == n
        assert answer["metrics"]["accuracy"]["value"] == pytest.approx(right / n)


async def test_when_the_leader_goes_the_other_replica_leads_within_seconds(
    replicas: Replicas, clock: FakeClock
) -> None:
    a = await replicas(engine=FAST)
    b = await replicas(engine=FAST)
    store_a, store_b = a.engine.store, b.engine.store
    assert isinstance(store_a, PostgresStore)
    assert isinstance(store_b, PostgresStore)
    assert (store_a.leading, store_b.leading) == (True, False)
    await a.put_monitor(monitor_body())
    await eventually(lambda: knows(b))
    await a.stop()

    async def b_leads() -> bool:
        return store_b.leading

    await eventually(b_leads, within=5)
    # ... and does the leader's work: it steps the alert machine on a breach.
    ts = clock.now - 5
    await b.predictions([record(f"p{i}", 1, ts=ts) for i in range(6)])
    await b.feedback(
        *({"monitor": "ml/churn", "prediction_id": f"p{i}", "actual": 0} for i in range(6))
    )

    async def engaged() -> bool:
        return (await b.state())["fallback"]["active"]

    await eventually(engaged, within=5)


async def test_a_killed_leader_session_leaves_exactly_one_leader(
    replicas: Replicas, pg_url: str
) -> None:
    a = await replicas(engine=FAST)
    b = await replicas(engine=FAST)
    stores = [s for s in (a.engine.store, b.engine.store) if isinstance(s, PostgresStore)]
    assert len(stores) == 2
    leader_key = Keys.of(schema_of(pg_url)).leader
    conn = await admin()
    try:
        holder = await conn.fetchval(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid::int = $1"
            " AND granted",
            leader_key,
        )
        assert holder is not None
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", holder)

        async def one_new_leader() -> bool:
            pids = await conn.fetch(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid::int = $1"
                " AND granted",
                leader_key,
            )
            leading = [s.leading for s in stores]
            return len(pids) == 1 and pids[0][0] != holder and leading.count(True) == 1

        await eventually(one_new_leader, within=5)
    finally:
        await conn.close()


async def test_a_state_change_on_one_replica_wakes_the_other_replicas_long_poll(
    replicas: Replicas,
) -> None:
    a, b = await replicas(), await replicas()  # no ticks: only the notification can tell b
    await a.put_monitor(monitor_body())

    async def same_version() -> bool:
        return await knows(b) and (await a.state())["version"] == (await b.state())["version"]

    await eventually(same_version)
    version = (await b.state())["version"]
    waiter = asyncio.create_task(b.state(query=f"?wait=30&since={version}"))
    await eventually(lambda: waiting_at(b))
    assert not waiter.done()
    await a.ok("POST", "/v1/monitors/ml/churn/fallback", json={"mode": "engaged"})
    woken = await asyncio.wait_for(waiter, 1.0)
    assert woken["version"] > version
    assert woken["fallback"]["active"] is True
    assert woken == await a.state()

    # And back: Alertmanager tells b, a hears it (the override was stored: b starts from it).
    version = woken["version"]
    waiter = asyncio.create_task(a.state(query=f"?wait=30&since={version}"))
    await b.ok("POST", "/v1/monitors/ml/churn/fallback", json={"mode": "auto"})
    alert = {"status": "firing", "labels": {"alertname": "Down", "truthloop_monitor": "ml/churn"}}
    await b.ok("POST", "/v1/alertmanager", json={"alerts": [alert]})
    woken = await asyncio.wait_for(waiter, 1.0)
    assert woken["version"] > version

    async def agree() -> bool:
        seen_a, seen_b = await a.state(), await b.state()
        return seen_a == seen_b and seen_a["external"] == ["Down"]

    await eventually(agree, within=1)


async def unfolded_deltas(store: Store, now: float, task: str) -> int:
    """A monitor with records, labels and a pending actual whose counter deltas are not folded
    yet (minute buckets over a day, two versions; lifetime-only totals); its id."""
    body = monitor_body(task=task, alerts=[])
    registered, _ = await store.put_monitor(parse_monitor(body), body, now)
    monitors = {"ml/churn": registered}
    rng = random.Random(5)
    binary = task == "binary"
    batch = []
    for i in range(600):
        score = rng.random()
        prediction = int(score >= 0.5) if binary else score
        batch.append(
            PredictionRecord(
                "ml/churn",
                f"p{i}",
                "model",
                f"v{i % 2}",
                now - i * 97.3,
                prediction,
                score=score if binary else None,
            )
        )
    await store.insert_predictions(batch, monitors, now)
    labels = [
        Actual(
            "ml/churn",
            now,
            prediction_id=r.prediction_id,
            value=int(rng.random() < 0.4) if binary else rng.random(),
        )
        for r in batch
    ]
    await store.apply_actuals(labels[:400], monitors, now)
    relabels = [
        msgspec.structs.replace(a, value=1 - a.value if binary else rng.random())
        for a in labels[:100]
    ]
    await store.apply_actuals(relabels, monitors, now)  # deltas that undo some of the first
    await store.apply_actuals(
        [Actual("ml/churn", now, prediction_id="later", value=1)], monitors, now
    )
    return registered.id


async def reads(store: Store, monitor_id: int, now: float) -> dict[str, float]:
    """Every counter the window, series and totals reads return, flat."""
    span = windows.window(now, 86400)
    flat = {}
    for (v, s), counters in (await store.window(monitor_id, span)).items():
        flat.update({f"window/{v}/{s}/{k}": x for k, x in counters.items()})
    for point, groups in (await store.series(monitor_id, windows.steps(span, 60))).items():
        for (v, s), counters in groups.items():
            flat.update({f"series/{point}/{v}/{s}/{k}": x for k, x in counters.items()})
    for mid, groups in (await store.totals()).items():
        for (v, s), counters in groups.items():
            flat.update({f"totals/{mid}/{v}/{s}/{k}": x for k, x in counters.items()})
    return {k: x for k, x in flat.items() if abs(x) > 1e-9}


@pytest.mark.parametrize("task", ["regression", "binary"])
async def test_folding_the_counter_deltas_changes_no_read(
    pg_url: str, clock: FakeClock, task: str
) -> None:
    store = open_store(pg_url)
    await store.open()
    try:
        monitor_id = await unfolded_deltas(store, clock.now, task)
        before = await reads(store, monitor_id, clock.now)
        deltas = await count_rows(pg_url, "agg_delta")
        assert deltas > 0
        folded = await asyncio.gather(store.compact(), store.compact())  # two leaders at once
        assert sum(folded) == deltas
        assert await count_rows(pg_url, "agg_delta") == 0
        assert await reads(store, monitor_id, clock.now) == pytest.approx(before)
    finally:
        await store.close()


async def test_unfolded_deltas_of_a_version_1_database_survive_its_migration(
    pg_url: str, clock: FakeClock
) -> None:
    """Version 1 stored a delta row per counter; migrated, the same deltas read the same."""
    async with fresh_schema() as current_url:
        current = open_store(current_url)
        await current.open()
        try:
            monitor_id = await unfolded_deltas(current, clock.now, "binary")
            expected = await reads(current, monitor_id, clock.now)
        finally:
            await current.close()
        per_counter = await table_rows(current_url, "agg_delta", per_counter=True)
    await migrate_to(pg_url, 1)
    await put_rows(pg_url, "agg_delta", per_counter)

    store = open_store(pg_url)
    await store.open()
    try:
        assert 0 < await count_rows(pg_url, "agg_delta") < len(per_counter)
        assert await reads(store, monitor_id, clock.now) == pytest.approx(expected)
        await store.compact()
        assert await count_rows(pg_url, "agg_delta") == 0
        assert await reads(store, monitor_id, clock.now) == pytest.approx(expected)
    finally:
        await store.close()


async def test_aggregates_of_a_version_2_database_survive_its_migration(
    pg_url: str, clock: FakeClock
) -> None:
    """Version 2 stored an aggregate row per counter; migrated, the same aggregates read the
    same, and folds add to them."""
    levels = [f"agg_{level}" for level in windows.LEVEL_MINUTES]
    async with fresh_schema() as current_url:
        current = open_store(current_url)
        await current.open()
        try:
            monitor_id = await unfolded_deltas(current, clock.now, "binary")
            deltas = await table_rows(current_url, "agg_delta")
            await current.compact()
            expected = await reads(current, monitor_id, clock.now)
        finally:
            await current.close()
        per_counter = {
            table: await table_rows(current_url, table, per_counter=True) for table in levels
        }
        totals = await table_rows(current_url, "totals")
    await migrate_to(pg_url, 2)
    for table, rows in (*per_counter.items(), ("totals", totals)):
        await put_rows(pg_url, table, rows)

    store = open_store(pg_url)
    await store.open()
    try:
        for table in levels:
            assert 0 < await count_rows(pg_url, table) < len(per_counter[table])
        assert await reads(store, monitor_id, clock.now) == pytest.approx(expected)
        await put_rows(pg_url, "agg_delta", deltas)  # the same deltas once more
        doubled = {key: 2 * value for key, value in expected.items()}
        assert await reads(store, monitor_id, clock.now) == pytest.approx(doubled)
        assert await store.compact() == len(deltas)
        assert await reads(store, monitor_id, clock.now) == pytest.approx(doubled)
    finally:
        await store.close()


async def migrate_to(url: str, version: int) -> None:
    """Give `url` the schema of an older build, at migration `version`."""
    conn = await admin()
    try:
        await conn.execute(f"SET search_path = {schema_of(url)}")
        await postgres.migrate(conn, Keys.of(schema_of(url)).migrate, MIGRATIONS[:version])
    finally:
        await conn.close()


async def table_rows(url: str, table: str, *, per_counter: bool = False) -> list[Any]:
    """The rows of a table; `per_counter`: a row per counter of its `counters` objects, as
    versions before 2 (deltas) and 3 (aggregates) stored them."""
    columns = "monitor_id, bucket, version, served_by, c.key, c.value::float8"
    source = f"{schema_of(url)}.{table}"
    conn = await admin()
    try:
        if per_counter:
            return await conn.fetch(
                f"SELECT {columns} FROM {source}, jsonb_each_text(counters) AS c"
            )
        return await conn.fetch(f"SELECT * FROM {source}")
    finally:
        await conn.close()


async def put_rows(url: str, table: str, rows: list[Any]) -> None:
    conn = await admin()
    try:
        await conn.copy_records_to_table(table, schema_name=schema_of(url), records=rows)
    finally:
        await conn.close()


async def count_rows(url: str, table: str) -> int:
    conn = await admin()
    try:
        return await conn.fetchval(f"SELECT count(*) FROM {schema_of(url)}.{table}")
    finally:
        await conn.close()


# -- the database going away -------------------------------------------------------------------


@pytest.fixture
async def relayed(pg_url: str) -> AsyncIterator[tuple[Outage, str]]:
    """A relay in front of the server, and the store URL that goes through it."""
    parts = urlsplit(pg_url)
    assert parts.hostname is not None
    relay = Outage(parts.hostname, parts.port or 5432)
    await relay.start()
    user, at, _ = parts.netloc.rpartition("@")
    netloc = f"{user}{at}127.0.0.1:{relay.port}"
    yield relay, urlunsplit(parts._replace(netloc=netloc))
    await relay.stop()


async def test_while_the_database_is_away_writes_answer_503_and_nothing_acknowledged_is_lost(
    replicas: Replicas, relayed: tuple[Outage, str], pg_url: str, clock: FakeClock
) -> None:
    relay, url = relayed
    parts = urlsplit(url)
    service = await replicas(url)
    await service.put_monitor(monitor_body())
    acked: dict[str, int] = {}
    refusals: list[tuple[int, str | None]] = []
    stop = asyncio.Event()

    async def post(path: str, body: Any) -> None:
        """Send until stored, as a sidecar's spool does; note every refusal."""
        while True:
            async with service.http.post(service.base + path, json=body) as response:
                if response.status == 200:
                    return
                refusals.append((response.status, response.headers.get("Retry-After")))
            await asyncio.sleep(0.01)

    async def stream(name: str) -> None:
        batch = 0
        while not stop.is_set():
            ids = [f"{name}-{batch}-{i}" for i in range(50)]
            await post(
                "/v1/predictions",
                [record(pid, i % 2, ts=clock.now - 5) for i, pid in enumerate(ids)],
            )
            labels = {pid: (i // 3) % 2 for i, pid in enumerate(ids)}
            await post(
                "/v1/feedback",
                {
                    "items": [
                        {"monitor": "ml/churn", "prediction_id": p, "actual": v}
                        for p, v in labels.items()
                    ]
                },
            )
            acked.update(labels)
            batch += 1

    writers = [asyncio.create_task(stream(f"w{k}")) for k in range(3)]

    async def progress(at_least: int) -> bool:
        return len(acked) >= at_least

    await eventually(lambda: progress(300))
    # The server kills the service's sessions mid-stream: the pool reconnects by itself.
    application_name = dict(p.split("=") for p in parts.query.split("&"))["application_name"]
    assert await kill_connections(application_name) > 0
    target = len(acked) + 300
    await eventually(lambda: progress(target))
    # The database goes away: writes are refused with 503 and Retry-After, nothing is stored.
    await relay.cut()

    async def refused() -> bool:
        return len(refusals) >= 3

    await eventually(refused)
    assert {status for status, _ in refusals} == {503}
    assert all(retry_after is not None and int(retry_after) > 0 for _, retry_after in refusals)
    await relay.restore()
    target = len(acked) + 300
    await eventually(lambda: progress(target))
    stop.set()
    await asyncio.gather(*writers)
    await service.stop()

    labels = await stored_labels(pg_url)
    assert all(labels.get(pid, (None, None))[1] == actual for pid, actual in acked.items())
    restarted = await replicas()
    answer = await restarted.metrics()
    labeled = {pid: pa for pid, pa in labels.items() if pa[1] is not None}
    assert answer["samples"] == len(labels)
    assert answer["labeled"] == len(labeled)
    right = sum(1 for p, actual in labeled.values() if p == actual)
    assert answer["metrics"]["accuracy"]["value"] == pytest.approx(right / len(labeled))


async def test_a_dataset_asked_for_while_the_database_is_away_answers_503(
    replicas: Replicas, relayed: tuple[Outage, str]
) -> None:
    """The first chunk is read before the answer begins: a failure there is still a 503."""
    relay, url = relayed
    service = await replicas(url)
    await service.put_monitor(monitor_body())
    await relay.cut()
    status, body = await service.call(
        "GET", "/v1/monitors/ml/churn/dataset", timeout=aiohttp.ClientTimeout(total=30)
    )
    assert (status, [d["reason"] for d in body["details"]]) == (503, ["store_unavailable"])


async def test_a_dataset_export_the_database_cuts_short_ends_truncated(
    replicas: Replicas, relayed: tuple[Outage, str], clock: FakeClock
) -> None:
    """Once the answer has begun an error cannot be answered: the connection is cut, so the
    client sees a truncated body rather than an error response inside it (or nothing)."""
    relay, url = relayed
    service = await replicas(url, http=HttpSettings(dataset_chunk=1))
    await service.put_monitor(monitor_body())
    rows = 24  # 24 MiB: more than the sockets buffer, so the export is still running at the cut
    for i in range(rows):
        big = record(f"p{i}", 1, ts=clock.now - 60, features={"blob": "x" * (1 << 20)})
        body = io.BytesIO(msgspec.json.encode([big]))
        await service.ok("POST", "/v1/predictions", data=body, headers={"Content-Type": JSON})
        await service.feedback({"monitor": "ml/churn", "prediction_id": f"p{i}", "actual": 1})
    timeout = aiohttp.ClientTimeout(total=30)
    async with service.http.get(
        service.base + "/v1/monitors/ml/churn/dataset", timeout=timeout
    ) as response:
        assert response.status == 200
        assert (await response.content.readexactly(1 << 16)).startswith(b'{"prediction_id":"p0"')
        await relay.cut()
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()


# -- schema and URL ----------------------------------------------------------------------------


async def test_replicas_starting_together_migrate_once(pg_url: str) -> None:
    stores = [open_store(pg_url) for _ in range(3)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        body = monitor_body()
        await stores[0].put_monitor(parse_monitor(body), body, 0.0)
        assert [r.monitor.key for r in await stores[2].load_monitors()] == ["ml/churn"]
    finally:
        await asyncio.gather(*(s.close() for s in stores))
    conn = await admin()
    try:
        versions = await conn.fetch(
            f"SELECT version FROM {schema_of(pg_url)}.truthloop_migrations ORDER BY version"
        )
        assert [v[0] for v in versions] == list(range(1, len(MIGRATIONS) + 1))
        await conn.execute(
            f"INSERT INTO {schema_of(pg_url)}.truthloop_migrations (version) VALUES (999)"
        )
    finally:
        await conn.close()
    newer = open_store(pg_url)
    with pytest.raises(StoreError, match="version 999, newer than this build"):
        await newer.open()


async def test_a_store_that_cannot_open_says_why() -> None:
    await (await admin()).close()  # a server to be refused by (else: skip)
    with pytest.raises(StoreUnavailable, match="unavailable"):
        await open_store("postgresql://postgres@127.0.0.1:1/test").open()
    with pytest.raises(StoreError, match="does not exist"):
        await open_store(urlunsplit(urlsplit(server_url())._replace(path="/tl_none"))).open()
    with pytest.raises(StoreError, match="no schema to create tables in"):
        await open_store(with_query(server_url(), search_path="tl_no_such_schema")).open()


def test_an_outage_without_a_message_is_named_by_its_kind() -> None:
    """A connect that times out raises a TimeoutError with no text: say what it was."""
    assert str(connection.unavailable(TimeoutError())) == (
        "the database is unavailable: TimeoutError"
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql:///db", "expected postgresql://user@host/db"),
        ("postgresql://u@h/db?pool_size=1", "pool_size must be 2 to 1000"),
        ("postgresql://u@h/db?pool_size=many", "pool_size must be 2 to 1000"),
        ("postgresql://u@h/db?pool_size", "malformed query"),
    ],
)
def test_a_bad_postgresql_url_is_refused_with_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        open_url(url)


def test_a_postgresql_url_keeps_server_settings_and_names_its_connections() -> None:
    store = open_url("postgres://u@h:5433/db?pool_size=4&search_path=tl")
    assert store.pool_size == 4
    query = dict(p.split("=") for p in urlsplit(store.dsn).query.split("&"))
    assert query == {"search_path": "tl", "application_name": "truthloop-feedback"}


# -- the registry is the database's ---------------------------------------------------------------


async def waiting_at(service: Service) -> bool:
    """Whether a long-poll of ml/churn's state is waiting at `service`."""
    return sample(await service.scrape(), "truthloop_state_followers", monitor="churn") == 1


def deaf(service: Service) -> None:
    """Keep `service` from hearing other replicas' notifications: every request then meets the
    moment before a notification arrives (up to a few hundred ms on a busy server)."""
    service.engine.store._watchers.clear()  # type: ignore[attr-defined]


async def test_a_monitor_put_on_one_replica_is_known_to_another_at_once(
    replicas: Replicas, clock: FakeClock
) -> None:
    """Writes and reads on B right after a PUT on A: B looks a name it does not know up in the
    database before refusing it, instead of waiting for the notification."""
    a, b = await replicas(), await replicas()
    deaf(b)
    for i in range(10):
        name = f"m{i}"
        await a.put_monitor(monitor_body(name=name))
        batch = [record(f"p{i}", 1, ts=clock.now - 5, monitor=f"ml/{name}")]
        assert await b.predictions(batch) == {"accepted": 1, "duplicates": 0}
        assert (await b.call("GET", f"/v1/monitors/ml/{name}/state"))[0] == 200
        await a.put_monitor(monitor_body(name=f"n{i}"))
        assert (await b.call("GET", f"/v1/monitors/ml/n{i}"))[0] == 200


async def status_with_token(service: Service, token: str, batch: list[Any]) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    async with service.http.post(
        service.base + "/v1/predictions", json=batch, headers=headers
    ) as response:
        return response.status


async def test_a_token_registered_on_one_replica_is_accepted_and_rotated_on_another(
    replicas: Replicas, clock: FakeClock
) -> None:
    """B looks a token it does not know up in the database before refusing it (even without
    the notification), and drops a rotated one when A's notification arrives."""
    a, b = await replicas(token="admin"), await replicas(token="admin")
    await a.put_monitor(monitor_body(namespace="team-a"))
    batch = [record("p1", 1, ts=clock.now - 5, monitor="team-a/churn")]
    assert await status_with_token(b, "team-a token", batch) == 401
    deaf(b)
    await a.ok("PUT", "/v1/tokens/team-a", json={"sha256": scopes.digest("team-a token")})
    assert await status_with_token(b, "team-a token", batch) == 200
    c = await replicas(token="admin")
    await a.ok("PUT", "/v1/tokens/team-a", json={"sha256": scopes.digest("rotated")})
    assert await status_with_token(c, "rotated", []) == 200

    async def old_refused() -> bool:
        return await status_with_token(c, "team-a token", []) == 401

    await eventually(old_refused, "the old token refused by a replica that had it")


async def test_the_database_not_a_replica_s_memory_decides_task_changes_and_deletes(
    replicas: Replicas, clock: FakeClock
) -> None:
    a, b = await replicas(), await replicas()
    deaf(b)
    for i in range(10):
        name = f"m{i}"
        await a.put_monitor(monitor_body(name=name))
        regression = monitor_body(name=name, task="regression", alerts=[])
        status, body = await b.call("PUT", f"/v1/monitors/ml/{name}", json=regression)
        assert status == 409, body
        assert body["details"][0]["field"] == "spec.task"
        await b.predictions([record(f"p{i}", 1, ts=clock.now - 5, monitor=f"ml/{name}")])
        assert await a.ok("DELETE", f"/v1/monitors/ml/{name}") == {"deleted": f"ml/{name}"}
        late = [record(f"q{i}", 1, ts=clock.now - 5, monitor=f"ml/{name}")]
        status, body = await b.call("POST", "/v1/predictions", json=late)
        assert status == 400, body
        assert body["details"][0]["reason"] == "unknown_monitor"
        actual = {"monitor": f"ml/{name}", "prediction_id": f"p{i}", "actual": 1}
        status, body = await b.call("POST", "/v1/feedback", json=actual)
        assert status == 400, body
        assert body["details"][0]["reason"] == "unknown_monitor"
        status, _ = await b.call("DELETE", f"/v1/monitors/ml/{name}")
        assert status == 404
