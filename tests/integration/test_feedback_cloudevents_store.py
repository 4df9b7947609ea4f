"""`Store.put_half` / `expire_halves` on both stores: the outcomes of each half, the cap on a
monitor's waiting halves, expiry counted in the lifetime totals, and the purge of a deleted
monitor's halves."""

from __future__ import annotations

import asyncio

from tests.support.feedback import T0, monitor_body
from truthloop.core.spec import parse_monitor
from truthloop.feedback.store.codec import UNPAIRED_KEYS
from truthloop.feedback.store.interface import HalfStored, Store

pytest_plugins = ["tests.support.feedback_fixtures"]


async def monitor_id(store: Store, name: str = "churn") -> int:
    body = monitor_body(name=name)
    registered, _ = await store.put_monitor(parse_monitor(body), body, T0)
    return registered.id


async def test_each_half_waits_pairs_once_and_repeats_are_duplicates(store: Store) -> None:
    mid = await monitor_id(store)
    assert await store.put_half(mid, "e1", "response", "R", T0, 10) == HalfStored("waiting")
    assert await store.put_half(mid, "e1", "response", "R", T0, 10) == HalfStored("duplicate")
    assert await store.put_half(mid, "e1", "request", "Q", T0 + 1, 10) == HalfStored(
        "paired", "Q", "R"
    )
    for half in ("request", "response"):
        assert await store.put_half(mid, "e1", half, "X", T0 + 2, 10) == HalfStored("duplicate")


async def test_a_full_monitor_refuses_new_events_but_pairs_waiting_ones(store: Store) -> None:
    mid = await monitor_id(store)
    other = await monitor_id(store, "fraud")
    for event_id in ("a", "b"):
        assert (await store.put_half(mid, event_id, "request", "Q", T0, 2)).outcome == "waiting"
    assert await store.put_half(mid, "c", "request", "Q", T0, 2) == HalfStored("full")
    assert (await store.put_half(other, "c", "request", "Q", T0, 2)).outcome == "waiting"
    assert (await store.put_half(mid, "a", "response", "R", T0, 2)).outcome == "paired"
    assert (await store.put_half(mid, "c", "request", "Q", T0, 2)).outcome == "waiting"


async def test_expiry_counts_the_halves_that_never_paired(store: Store) -> None:
    mid = await monitor_id(store)
    await store.put_half(mid, "alone", "request", "Q", T0, 10)
    await store.put_half(mid, "orphan", "response", "R", T0 + 1, 10)
    await store.put_half(mid, "done", "request", "Q", T0, 10)
    await store.put_half(mid, "done", "response", "R", T0, 10)
    await store.put_half(mid, "late", "request", "Q", T0 + 50, 10)
    assert await store.expire_halves(T0 + 10, 1) == {mid: 1}
    assert await store.expire_halves(T0 + 10, 100) == {mid: 1}
    assert await store.expire_halves(T0 + 10, 100) == {}
    totals = (await store.totals())[mid][("", "")]
    assert {k: totals.get(k) for k in UNPAIRED_KEYS.values()} == {
        "@cloudevents_unpaired/no_response": 1.0,
        "@cloudevents_unpaired/no_request": 1.0,
    }
    assert (await store.put_half(mid, "done", "request", "Q", T0 + 11, 10)).outcome == "waiting"
    assert (await store.put_half(mid, "late", "response", "R", T0 + 51, 10)).outcome == "paired"


async def test_the_purge_of_a_deleted_monitor_takes_its_halves(store: Store) -> None:
    mid = await monitor_id(store)
    await store.put_half(mid, "e1", "request", "Q", T0, 10)
    assert await store.delete_monitor("ml/churn", T0 + 1)
    assert await store.purge_deleted(T0 + 2, 1000) >= 1
    mid = await monitor_id(store)
    assert (await store.put_half(mid, "e1", "request", "Q", T0 + 3, 10)).outcome == "waiting"


async def test_halves_stored_at_once_pair_once(store: Store) -> None:
    """Many halves at once (SQLite writes them in groups, PostgreSQL on several connections):
    each event's pair is taken exactly once, every other half is waiting or a duplicate."""
    mid = await monitor_id(store)
    calls = [
        store.put_half(mid, f"e{n}", half, half, T0, 1000)
        for n in range(30)
        for half in ("request", "response", "request")
    ]
    found = await asyncio.gather(*calls)
    outcomes = [stored.outcome for stored in found]
    assert outcomes.count("paired") == 30
    assert outcomes.count("waiting") == 30
    assert outcomes.count("duplicate") == 30
    assert {(s.request, s.response) for s in found if s.outcome == "paired"} == {
        ("request", "response")
    }
