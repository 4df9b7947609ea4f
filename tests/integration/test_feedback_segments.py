"""Segments through the feedback service on each store: the leader chooses the value sets every
replica assigns with and adapts them to the traffic; a segment that degrades while the overall
metric holds fires its segment alert, which names the values (state and API); the metrics API
ranks a segment's values worst first; only segments marked `export: true` reach Prometheus.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.support.feedback import FakeClock, Service, adopted, monitor_body, record, sample
from truthloop.feedback import engine as engine_module

pytest_plugins = ["tests.support.feedback_fixtures"]

KEY = "ml/churn"
COUNTRY_LOW = {
    "name": "country-low",
    "metric": "accuracy",
    "below": 0.8,
    "for": "0s",
    "segment": "country",
}
OVERALL_LOW = {"name": "accuracy-low", "metric": "accuracy", "below": 0.7, "for": "0s"}


def segmented_body(**spec: Any) -> dict[str, Any]:
    spec.setdefault("metrics", {"window": "1h", "minSamples": 20})
    spec.setdefault("alerts", [OVERALL_LOW, COUNTRY_LOW])
    spec.setdefault(
        "segments",
        [
            {"name": "country", "pointer": "/country", "maxValues": 5},
            {"name": "device", "pointer": "/device", "export": True},
            {"name": "tenure", "pointer": "/tenure", "buckets": [6, 12]},
        ],
    )
    return monitor_body(**spec)


def records(
    prefix: str, n: int, ts: float, right: float = 1.0, **segments: Any
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """`n` records with `segments` (prediction 1) and their actuals: the first `right` share
    right (1), the others wrong (0)."""
    made, labels = [], []
    for i in range(n):
        pid = f"{prefix}{i}"
        made.append(record(pid, 1, ts=ts, segments=dict(segments)))
        labels.append({"monitor": KEY, "prediction_id": pid, "actual": int(i < right * n)})
    return made, labels


async def send(service: Service, made: list[dict[str, Any]], labels: list[dict[str, Any]]) -> None:
    for i in range(0, len(made), 500):
        await service.predictions(made[i : i + 500])
    for i in range(0, len(labels), 500):
        await service.feedback(*labels[i : i + 500])


async def warm(service: Service, clock: FakeClock, countries: list[str], most: int = 10) -> None:
    """Unlabeled traffic of `countries` (`most` records of the first, one fewer of each next),
    then a tick: the leader chooses the value sets from it."""
    for rank, country in enumerate(countries):
        made, _ = records(f"warm-{country}-", most - rank, clock.now, country=country, device="ios")
        await service.predictions(made)
    await service.tick()


def sets(service: Service) -> dict[str, tuple[str, ...]]:
    kept = service.engine._runtimes[KEY].segments
    assert kept is not None
    return kept.sets


async def segment(service: Service, query: str) -> Any:
    return (await service.metrics(KEY, "?" + query))["segment"]


async def test_a_degraded_segment_fires_its_alert_naming_the_values_while_the_overall_holds(
    service: Service, clock: FakeClock
) -> None:
    await service.put_monitor(segmented_body())
    await warm(service, clock, ["DE", "IT", "FR", "US", "ES"])
    assert sets(service) == {"country": ("DE", "ES", "FR", "IT", "US"), "device": ("ios",)}

    now = clock.advance(60)
    batches = [
        records("de", 100, now, 0.4, country="DE", device="ios", tenure=3),
        records("it", 100, now, 0.7, country="IT", device="android", tenure=8),
        records("fr", 100, now, 1.0, country="FR", device="ios", tenure=30),
        records("us", 100, now, 1.0, country="US", device="ios", tenure="x"),
        records("es", 5, now, 0.0, country="ES", device="ios"),  # too few to tell
        records("jp", 10, now, 1.0, country="JP", device="ios"),  # not kept: other
        records("no", 10, now, 1.0, device="ios"),  # no country: missing
    ]
    for made, labels in batches:
        await send(service, made, labels)
    await service.tick()

    state = await service.state()
    alerts = {a["name"]: a for a in state["alerts"]}
    assert alerts["accuracy-low"]["state"] == "ok", "the overall accuracy holds"
    low = alerts["country-low"]
    assert (low["state"], low["values"]) == ("firing", ["DE", "IT"]), "worst first, ES too few"
    assert (low["value"], low["samples"]) == (pytest.approx(0.4), 100)
    assert state["phase"] in ("Degraded", "FallbackActive")

    answer = await service.metrics(KEY, "?segment=country")
    assert answer["labeled"] == 425
    assert answer["metrics"]["accuracy"]["value"] > 0.7
    shown = answer["segment"]
    assert (shown["name"], shown["by"]) == ("country", "accuracy")
    order = [v["value"] for v in shown["values"]]
    assert order[:4] == ["DE", "IT", "FR", "US"], "worst first, ties by name"
    assert order[4:] == ["ES", "missing", "other"], "fewer than minSamples (10, 10, 5) after"
    other = shown["values"][-1]
    assert (other["samples"], other["labeled"]) == (40 + 10, 10), "the warm-up came before sets"
    de = shown["values"][0]
    assert (de["samples"], de["labeled"]) == (100, 100)
    assert de["metrics"]["accuracy"]["value"] == pytest.approx(0.4)
    assert de["metrics"]["accuracy"]["lower"] < 0.4 < de["metrics"]["accuracy"]["upper"]
    assert set(de) == {"value", "samples", "labeled", "metrics", "estimated", "reviewed"}

    one = await segment(service, "segment=country&value=IT")
    assert [v["value"] for v in one["values"]] == ["IT"]
    buckets = await segment(service, "segment=tenure")
    assert {v["value"]: v["labeled"] for v in buckets["values"]} == {
        "<6": 100,
        "[6,12)": 100,
        ">=12": 100,
        "other": 100,
        "missing": 25,
    }

    for made, labels in [records("de-fix", 400, clock.now, 1.0, country="DE", device="ios")]:
        await send(service, made, labels)
    for made, labels in [records("it-fix", 400, clock.now, 1.0, country="IT", device="ios")]:
        await send(service, made, labels)
    await service.tick()
    low = {a["name"]: a for a in (await service.state())["alerts"]}["country-low"]
    assert low["state"] == "ok"
    assert "values" not in low


async def test_the_metrics_api_refuses_an_unknown_segment_or_value(
    service: Service, clock: FakeClock
) -> None:
    await service.put_monitor(segmented_body())
    await warm(service, clock, ["DE", "FR"])
    path = f"/v1/monitors/{KEY}/metrics"
    status, body = await service.call("GET", path + "?segment=planet")
    assert status == 400
    assert body["details"][0]["field"] == "segment"
    assert "country, device, tenure" in body["details"][0]["message"]
    status, body = await service.call("GET", path + "?value=DE")
    assert (status, body["details"][0]["field"]) == (400, "value")
    status, body = await service.call("GET", path + "?segment=country&value=" + "x" * 129)
    assert (status, body["details"][0]["field"]) == (400, "value")
    status, body = await service.call("GET", path + "?segment=country&value=Atlantis")
    assert status == 404
    assert (body["details"][0]["field"], body["details"][0]["reason"]) == (
        "value",
        "unknown_value",
    )
    kept = await segment(service, "segment=country&value=FR")  # kept, none labeled: empty
    (fr,) = kept["values"]
    assert (fr["value"], fr["labeled"], fr["metrics"]["accuracy"]["value"]) == ("FR", 0, None)
    nothing = await segment(service, "segment=tenure&value=%5B6%2C12%29")  # "[6,12)"
    assert [(v["value"], v["samples"]) for v in nothing["values"]] == [("[6,12)", 0)]


async def test_the_leader_chooses_value_sets_at_once_and_adapts_them_to_the_traffic(
    service: Service, clock: FakeClock
) -> None:
    await service.put_monitor(segmented_body())
    await service.tick()
    assert sets(service) == {"country": (), "device": ()}, "no record yet: no value"
    await warm(service, clock, ["DE", "FR"])
    assert sets(service)["country"] == ("DE", "FR"), "chosen at once once records came"

    clock.advance(60)
    await warm(service, clock, ["BR", "JP", "MX", "IN", "KR", "CN"], most=20)
    assert sets(service)["country"] == ("DE", "FR"), "kept for ten minutes"

    clock.advance(engine_module.SEGMENTS_EVERY)
    await service.tick()
    assert sets(service)["country"] == ("BR", "IN", "JP", "KR", "MX"), "the 5 most frequent"

    changed = segmented_body(segments=[{"name": "country", "pointer": "/country", "maxValues": 2}])
    changed["spec"]["alerts"] = [COUNTRY_LOW]
    await service.put_monitor(changed)
    await service.tick()
    assert sets(service) == {"country": ("BR", "JP")}, "a changed spec chooses at once"


async def test_only_segments_marked_export_reach_prometheus(
    service: Service, clock: FakeClock
) -> None:
    await service.put_monitor(segmented_body())
    await warm(service, clock, ["DE"])
    for made, labels in [
        records("a", 30, clock.now, 0.5, country="DE", device="ios"),
        records("b", 30, clock.now, 1.0, country="DE", device="android"),
    ]:
        await send(service, made, labels)
    await service.tick()
    text = await service.scrape()
    base = {"namespace": "ml", "monitor": "churn", "model": "churn", "segment": "device"}
    assert sample(text, "truthloop_segment_predictions", **base, value="ios") == 30
    accuracy = {"metric": "accuracy", "source": "realized"}
    assert sample(
        text, "truthloop_segment_metric", **base, value="ios", bound="value", **accuracy
    ) == pytest.approx(0.5)
    assert sample(
        text, "truthloop_segment_metric", **base, value="other", bound="value", **accuracy
    ) == pytest.approx(1.0), "android was not kept when the set was chosen"
    segments_seen = {
        line.split('segment="')[1].split('"')[0]
        for line in text.splitlines()
        if line.startswith("truthloop_segment_")
    }
    assert segments_seen == {"device"}, "country (alerted) and tenure are not exported"


async def test_two_replicas_assign_with_the_leader_s_value_sets(
    replicas: tuple[Service, Service], clock: FakeClock
) -> None:
    a, b = replicas
    await a.put_monitor(segmented_body())
    await warm(a, clock, ["DE", "FR", "IT"])  # a ticks first: it leads
    chosen = sets(a)
    assert chosen["country"] == ("DE", "FR", "IT")

    def same_sets(known: Any) -> bool:
        return known.segments is not None and known.segments.sets == chosen

    await adopted(b, KEY, same_sets, "replica b assigning with the leader's value sets")
    made, labels = records("x", 60, clock.now, 1.0, country="IT", device="ios")
    await send(a, made[::2], labels[::2])
    await send(b, made[1::2], labels[1::2])
    shown = await segment(b, "segment=country&value=IT")
    assert shown["values"][0]["labeled"] == 60, "every replica assigned IT, none other"


async def test_a_thirty_day_segment_read_is_measured(service: Service, clock: FakeClock) -> None:
    """A month of traffic (a record of each of 20 countries every 30 minutes, compacted as the
    leader does), then the metrics API's segment read over 30 days; its time is reported."""
    countries = [f"c{i:02d}" for i in range(20)]
    declared = [{"name": "country", "pointer": "/country"}, {"name": "device", "pointer": "/d"}]
    await service.put_monitor(segmented_body(segments=declared))
    start = clock.now
    clock.advance(30 * 86400)
    await warm(service, clock, countries, most=30)
    made, labels = [], []
    for step in range(30 * 48):
        ts = start + 600 + step * 1800
        for country in countries:
            pid = f"m{step}-{country}"
            made.append(record(pid, 1, ts=ts, segments={"country": country}))
            labels.append(
                {"monitor": KEY, "prediction_id": pid, "actual": step % 2, "timestamp": ts + 60}
            )
    await send(service, made, labels)
    await service.tick()
    await service.engine.store.compact()
    best = float("inf")
    for _ in range(5):
        began = time.perf_counter()
        found = await service.engine.segment_metrics(
            KEY, "country", 30 * 86400.0, version=None, served_by=None
        )
        best = min(best, time.perf_counter() - began)
    assert {r.value for r in found.ranked} >= set(countries)
    print(f"\n30-day segment read, 20 values, {len(made)} records: {best * 1000:.1f} ms")
