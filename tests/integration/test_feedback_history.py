"""A monitor's history (the alert machine's transitions, kept by the leader) and series asked
for by their number of points, through a real server on each store."""

from __future__ import annotations

import itertools
from typing import Any

from tests.support.feedback import FakeClock, Service, monitor_body, record
from truthloop.core.alerts import Transition
from truthloop.core.spec import parse_monitor
from truthloop.feedback.store.interface import Store

pytest_plugins = ["tests.support.feedback_fixtures"]


async def history(service: Service, query: str = "") -> Any:
    return await service.ok("GET", f"/v1/monitors/ml/churn/history{query}")


async def labeled(service: Service, clock: FakeClock, prefix: str, n: int, right: bool) -> None:
    """`n` records labeled right or wrong (the model says 1), a few seconds ago."""
    ts = clock.now - 5
    await service.predictions([record(f"{prefix}{i}", 1, ts=ts) for i in range(n)])
    await service.feedback(
        *(
            {"monitor": "ml/churn", "prediction_id": f"{prefix}{i}", "actual": int(right)}
            for i in range(n)
        )
    )


async def test_the_history_shows_an_alert_and_the_fallback_as_transitions_and_periods(
    service: Service, clock: FakeClock
) -> None:
    await labeled(service, clock, "wrong", 6, right=False)
    await service.tick()
    fired = clock.now
    clock.advance(60)
    await labeled(service, clock, "right", 30, right=True)
    await service.tick()
    resolved = clock.advance(180)
    await service.tick()
    found = await history(service)
    assert found["monitor"] == "ml/churn"
    assert found["window"]["seconds"] == 30 * 86400
    assert found["truncated"] is False
    kinds = [(t["kind"], t["at"]) for t in found["transitions"]]
    assert kinds == [
        ("alert_firing", fired),
        ("fallback_engaged", fired),
        ("phase_changed", fired),
        ("alert_resolved", fired + 60),
        ("fallback_disengaged", resolved),
        ("phase_changed", resolved),
    ]
    assert found["transitions"][0]["alert"] == "accuracy-low"
    assert found["transitions"][2]["current"] == "FallbackActive"
    start = found["window"]["start"]
    assert found["periods"] == {
        "fallback": [[fired, resolved]],
        "alerts": {"accuracy-low": [[fired, fired + 60]]},
        "phases": [
            [start, fired, "Collecting"],
            [fired, resolved, "FallbackActive"],
            [resolved, None, "Healthy"],
        ],
    }
    newest = await history(service, "?limit=2")
    assert newest["truncated"] is True
    assert [t["kind"] for t in newest["transitions"]] == ["fallback_disengaged", "phase_changed"]
    assert newest["periods"]["fallback"] == [[resolved, resolved]]
    clock.advance(120)
    quiet = await history(service, "?window=1m")
    assert quiet["transitions"] == []
    assert quiet["periods"]["phases"] == [[quiet["window"]["start"], None, "Healthy"]]


async def test_two_steps_at_one_clock_reading_keep_both_their_transitions(
    service: Service, clock: FakeClock
) -> None:
    await labeled(service, clock, "wrong", 6, right=False)
    await service.tick()
    await service.ok("POST", "/v1/monitors/ml/churn/fallback", json={"mode": "disengaged"})
    kinds = [t["kind"] for t in (await history(service))["transitions"]]
    assert kinds[-2:] == ["fallback_disengaged", "phase_changed"]
    assert (await history(service))["periods"]["fallback"] == [[clock.now, clock.now]]


async def test_history_and_points_refuse_bad_parameters_by_name(service: Service) -> None:
    base = "/v1/monitors/ml/churn"
    for path, field in [
        (f"{base}/history?limit=0", "limit"),
        (f"{base}/history?limit=10001", "limit"),
        (f"{base}/history?window=1y", "window"),
        (f"{base}/history?since=1", "since"),
        (f"{base}/metrics?points=0", "points"),
        (f"{base}/metrics?points=10001", "points"),
        (f"{base}/metrics?points=10&series=1m", "points"),
        (f"{base}/drift?points=many", "points"),
        (f"{base}/drift?points=10&series=1m", "points"),
    ]:
        status, body = await service.call("GET", path)
        assert status == 400, (path, body)
        assert body["details"][0]["field"] == field, (path, body)
    status, body = await service.call("GET", "/v1/monitors/ml/nobody/history")
    assert status == 404


async def test_points_picks_a_nice_step_and_the_answer_says_it(
    service: Service, clock: FakeClock
) -> None:
    await labeled(service, clock, "r", 6, right=True)
    found = await service.metrics(query="?window=1d&points=100")
    assert found["step"] == 15 * 60  # 1440 minutes / 100 = 14.4: 15m
    assert 96 <= len(found["series"]) <= 101
    assert sum(p["labeled"] for p in found["series"]) == 6
    starts = [p["start"] for p in found["series"]]
    assert all(b - a == 900 for a, b in itertools.pairwise(starts))
    assert (await service.metrics(query="?window=5m&series=1m"))["step"] == 60
    assert "step" not in await service.metrics()
    drift = await service.ok("GET", "/v1/monitors/ml/churn/drift?window=1h&points=6")
    assert drift["step"] == 600
    assert len(drift["series"]) in (6, 7)


async def test_a_store_keeps_transitions_in_order_reads_the_newest_and_deletes_in_chunks(
    store: Store,
) -> None:
    body = monitor_body()
    registered, _ = await store.put_monitor(parse_monitor(body), body, 0.0)
    mid = registered.id
    first = [
        Transition("alert_pending", 100.0, "low", "low: accuracy 0.5 < 0.7"),
        Transition("phase_changed", 100.0, None, "Degraded", "Healthy", "Degraded"),
    ]
    await store.add_transitions(mid, first)
    later = Transition("fallback_engaged", 100.0, None, "manual")  # the same time, a later step
    await store.add_transitions(mid, [later])
    await store.add_transitions(mid, [Transition("alert_firing", 200.0, "low", "fired")])
    await store.add_transitions(mid, [])
    assert await store.transitions(mid, 0.0, 1000.0, 10) == [
        *first,
        later,
        Transition("alert_firing", 200.0, "low", "fired"),
    ]
    assert await store.transitions(mid, 0.0, 1000.0, 2) == [
        later,
        Transition("alert_firing", 200.0, "low", "fired"),
    ]
    assert await store.transitions(mid, 150.0, 200.0, 10) == []
    assert await store.delete_transitions(mid, 150.0, 2) == 2
    assert await store.delete_transitions(mid, 150.0, 2) == 1
    assert len(await store.transitions(mid, 0.0, 1000.0, 10)) == 1
    await store.delete_monitor(registered.monitor.key, 300.0)
    await store.purge_deleted(400.0, 1000)
    assert await store.transitions(mid, 0.0, 1000.0, 10) == []
