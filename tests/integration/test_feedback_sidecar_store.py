"""The sidecars' minute counters in both stores: added up over pods, read per step, deleted by
retention and with a purged monitor."""

from __future__ import annotations

from tests.support.feedback import T0, monitor_body
from truthloop.core import windows
from truthloop.core.spec import parse_monitor
from truthloop.feedback.store.interface import Store

pytest_plugins = ["tests.support.feedback_fixtures"]

B0 = windows.bucket_of(T0) // 60 * 60
"""An hour's first minute bucket."""


async def monitor_id(store: Store) -> int:
    body = monitor_body()
    registered, _ = await store.put_monitor(parse_monitor(body), body, T0)
    return registered.id


async def test_pods_add_up_per_minute_and_steps_sum_their_minutes(store: Store) -> None:
    mid = await monitor_id(store)
    await store.add_sidecar_minutes(mid, {B0: {"requests:model": 5, "latency_le:+Inf": 5}})
    await store.add_sidecar_minutes(
        mid, {B0: {"requests:model": 3, "errors:model_timeout": 1}, B0 + 7: {"requests:model": 2}}
    )
    minutes = await store.sidecar_minutes(mid, windows.BucketRange(B0, B0 + 10), 1)
    assert len(minutes) == 10
    assert minutes[0] == (
        windows.bucket_start(B0),
        {"requests:model": 8, "latency_le:+Inf": 5, "errors:model_timeout": 1},
    )
    assert minutes[7] == (windows.bucket_start(B0 + 7), {"requests:model": 2})
    assert all(counts == {} for _, counts in minutes[1:7] + minutes[8:])

    steps = await store.sidecar_minutes(mid, windows.BucketRange(B0, B0 + 10), 5)
    assert steps == [
        (windows.bucket_start(B0), {"requests:model": 8, "latency_le:+Inf": 5,
                                    "errors:model_timeout": 1}),
        (windows.bucket_start(B0 + 5), {"requests:model": 2}),
    ]  # fmt: skip


async def test_steps_are_aligned_and_keep_to_the_span(store: Store) -> None:
    mid = await monitor_id(store)
    await store.add_sidecar_minutes(mid, {B0 + m: {"requests:fallback": 1} for m in range(20)})
    steps = await store.sidecar_minutes(mid, windows.BucketRange(B0 + 3, B0 + 12), 5)
    assert [(start, counts.get("requests:fallback")) for start, counts in steps] == [
        (windows.bucket_start(B0), 2),  # minutes 3 and 4 of the step's 0..4
        (windows.bucket_start(B0 + 5), 5),
        (windows.bucket_start(B0 + 10), 2),
    ]


async def test_retention_deletes_old_minutes_in_chunks_and_other_monitors_keep_theirs(
    store: Store,
) -> None:
    mid = await monitor_id(store)
    body = monitor_body(name="other")
    other, _ = await store.put_monitor(parse_monitor(body), body, T0)
    minutes = {B0 + m: {"requests:model": 1, "latency_sum": 0.5} for m in range(10)}
    await store.add_sidecar_minutes(mid, minutes)
    await store.add_sidecar_minutes(other.id, minutes)
    before = windows.bucket_start(B0 + 6)
    assert await store.delete_sidecar_minutes(mid, before, 5) == 5
    assert await store.delete_sidecar_minutes(mid, before, 100) == 7
    assert await store.delete_sidecar_minutes(mid, before, 100) == 0
    span = windows.BucketRange(B0, B0 + 10)
    kept = await store.sidecar_minutes(mid, span, 1)
    assert [bool(counts) for _, counts in kept] == [False] * 6 + [True] * 4
    assert all(counts for _, counts in await store.sidecar_minutes(other.id, span, 1))


async def test_a_deleted_monitor_takes_no_minutes_and_its_purge_removes_them(
    store: Store,
) -> None:
    mid = await monitor_id(store)
    await store.add_sidecar_minutes(mid, {B0: {"requests:model": 4}})
    assert await store.delete_monitor("ml/churn", T0 + 1)
    await store.add_sidecar_minutes(mid, {B0: {"requests:model": 4}})
    span = windows.BucketRange(B0, B0 + 1)
    assert await store.sidecar_minutes(mid, span, 1) == [
        (windows.bucket_start(B0), {"requests:model": 4})
    ]
    await store.purge_deleted(T0 + 2, 1000)
    assert await store.sidecar_minutes(mid, span, 1) == [(windows.bucket_start(B0), {})]
