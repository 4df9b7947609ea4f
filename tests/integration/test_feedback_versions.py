"""Model versions through the feedback service on each store: GET .../versions lists each
version's first and last record (the minutes holding them, found in the rollups), traffic share
and metrics; GET .../compare tells a better version from a worse one and can't tell when the
interval covers 0; the state keeps the versions seen and Prometheus exports their first sight."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.feedback import T0, FakeClock, Service, record, sample

pytest_plugins = ["tests.support.feedback_fixtures"]

DAY = 86400.0
BASE = "/v1/monitors/ml/churn"


def minute(ts: float) -> float:
    return ts // 60 * 60


async def send(
    service: Service, version: str, n: int, accuracy: float, start: float, end: float
) -> None:
    """n records of `version` spread over [start, end], the first at start and the last at end,
    right at `accuracy` (predicted 1; the wrong ones labeled 0)."""
    right = round(n * accuracy)
    records = [
        record(f"{version}-{i}", 1, ts=start + (end - start) * i / (n - 1), model_version=version)
        for i in range(n)
    ]
    for chunk in range(0, n, 500):
        await service.predictions(records[chunk : chunk + 500])
    await service.feedback(
        *(
            {"monitor": "ml/churn", "prediction_id": f"{version}-{i}", "actual": int(i < right)}
            for i in range(n)
        )
    )


V1 = (T0 + DAY + 2 * 3600 + 5 * 60 + 30, T0 + 9 * DAY + 23 * 3600 + 50 * 60 + 5)
V2 = (T0 + 9 * DAY + 3 * 3600 + 7 * 60 + 10, T0 + 9 * DAY + 20 * 3600 + 60 + 59)
V3 = (T0 + 9 * DAY + 21 * 3600, T0 + 9 * DAY + 22 * 3600)
NOW = T0 + 10 * DAY


@pytest.fixture
async def versions(service: Service, clock: FakeClock) -> Service:
    clock.now = NOW
    await send(service, "v1", 400, 0.70, *V1)
    await send(service, "v2", 400, 0.90, *V2)
    await send(service, "v3", 40, 0.75, *V3)
    fallback = record("f1", 0, ts=NOW - 600, model_version="v9", served_by="fallback")
    await service.predictions([fallback])
    return service


async def test_versions_lists_each_versions_first_and_last_record_share_and_metrics(
    versions: Service,
) -> None:
    body = await versions.ok("GET", BASE + "/versions")
    assert body["window"]["seconds"] == 30 * DAY
    assert body["samples"] == 840
    listed = {v["version"]: v for v in body["versions"]}
    assert [v["version"] for v in body["versions"]] == ["v1", "v2", "v3"]  # oldest first
    for version, (first, last) in (("v1", V1), ("v2", V2), ("v3", V3)):
        assert listed[version]["first"] == minute(first), version
        assert listed[version]["last"] == minute(last), version
    assert listed["v1"]["share"] == pytest.approx(400 / 840)
    assert listed["v3"]["share"] == pytest.approx(40 / 840)
    assert (listed["v2"]["samples"], listed["v2"]["labeled"]) == (400, 400)
    accuracy = listed["v2"]["metrics"]["accuracy"]
    assert accuracy["value"] == pytest.approx(0.9)
    assert accuracy["lower"] < 0.9 < accuracy["upper"]
    assert body["truncated"] is False


async def test_a_shorter_window_clips_the_first_record_to_it(versions: Service) -> None:
    body = await versions.ok("GET", BASE + "/versions?window=1d")
    listed = {v["version"]: v for v in body["versions"]}
    assert set(listed) == {"v1", "v2", "v3"}
    start = body["window"]["start"]
    assert start == NOW - DAY + 60  # the window's buckets end with the one holding now
    v1 = [V1[0] + (V1[1] - V1[0]) * i / 399 for i in range(400)]
    assert listed["v1"]["first"] == minute(min(t for t in v1 if t >= start))
    assert listed["v1"]["last"] == minute(V1[1])
    assert listed["v1"]["samples"] == sum(1 for t in v1 if t >= start)
    assert listed["v2"]["first"] == minute(V2[0])


async def test_compare_tells_better_worse_and_cant_tell(versions: Service) -> None:
    body = await versions.ok("GET", BASE + "/compare?a=v1&b=v2")
    assert body["a"] == {"version": "v1", "samples": 400, "labeled": 400}
    assert body["source"] == "realized"
    accuracy = body["metrics"]["accuracy"]
    assert accuracy["difference"] == pytest.approx(0.2)
    assert 0 < accuracy["lower"] < 0.2 < accuracy["upper"]
    assert accuracy["verdict"] == "better"
    assert accuracy["more_labels"] is None
    worse = await versions.ok("GET", BASE + "/compare?a=v2&b=v1&window=30d")
    assert worse["metrics"]["accuracy"]["verdict"] == "worse"
    unsure = await versions.ok("GET", BASE + "/compare?a=v1&b=v3")
    accuracy = unsure["metrics"]["accuracy"]
    assert accuracy["lower"] < 0 < accuracy["upper"]
    assert accuracy["verdict"] == "cant_tell"
    assert accuracy["more_labels"] > 0


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("b=v2", "a"),
        ("a=v1", "b"),
        ("a=nope&b=v2", "a"),
        ("a=v1&b=v9", "b"),  # the fallback's records only: no model version
        ("a=v1&b=v2&source=guessed", "source"),
        ("a=v1&b=v2&window=forever", "window"),
        ("a=v1&b=v2&metric=accuracy", "metric"),
        ("a=v2&b=v1&window=1h", "a"),  # v2 has no record in the last hour
    ],
)
async def test_compare_refuses_naming_the_parameter(
    versions: Service, query: str, field: str
) -> None:
    status, body = await versions.call("GET", f"{BASE}/compare?{query}")
    assert status == 400, body
    assert [d["field"] for d in body["details"]] == [field]


async def test_versions_refuses_a_bad_window(versions: Service) -> None:
    for query, field in (("window=0s", "window"), ("since=1d", "since")):
        status, body = await versions.call("GET", f"{BASE}/versions?{query}")
        assert status == 400, body
        assert [d["field"] for d in body["details"]] == [field]


async def test_unknown_monitor_is_404(versions: Service) -> None:
    status, _ = await versions.call("GET", "/v1/monitors/ml/nope/compare?a=v1&b=v2")
    assert status == 404


def seen(state: dict[str, Any]) -> list[tuple[str, float]]:
    return [(v["version"], v["first_seen"]) for v in state["versions"]]


async def test_the_state_keeps_the_versions_seen_and_prometheus_their_first_sight(
    service: Service, clock: FakeClock
) -> None:
    await service.tick()
    before = await service.state()
    assert before["versions"] == []
    await service.predictions([record("a", ts=clock.now - 90), record("b", ts=clock.now - 30)])
    await service.tick()
    first = await service.state()
    assert seen(first) == [("v1", minute(clock.now - 90))]
    assert first["version"] > before["version"]
    clock.advance(120)
    await service.predictions([record("c", ts=clock.now - 10, model_version="v2")])
    await service.tick()
    second = await service.state()
    assert seen(second) == [("v1", minute(clock.now - 210)), ("v2", minute(clock.now - 10))]
    assert second["version"] > first["version"]
    await service.tick()
    assert (await service.state())["version"] == second["version"]  # nothing new: no move
    status = (await service.ok("GET", BASE))["status"]
    assert [v["version"] for v in status["versions"]] == ["v1", "v2"]
    text = await service.scrape()
    labels = {"namespace": "ml", "monitor": "churn", "model": "churn"}
    name = "truthloop_version_first_seen_timestamp_seconds"
    assert sample(text, name, **labels, version="v2") == minute(clock.now - 10)
    assert sample(text, name, **labels, version="v1") == minute(clock.now - 210)


async def test_a_restarted_service_remembers_the_versions_seen(
    start_service: Any, clock: FakeClock
) -> None:
    from tests.support.feedback import monitor_body

    first = await start_service()
    await first.put_monitor(monitor_body())
    await first.predictions([record("a", ts=clock.now - 30, model_version="v7")])
    await first.tick()
    await first.stop()
    second = await start_service()
    state = await second.state()
    assert seen(state) == [("v7", minute(clock.now - 30))]
    await second.tick()
    assert seen(await second.state()) == [("v7", minute(clock.now - 30))]
