"""Drift per segment through the feedback service on each store (`spec.segments[].drift`): a
feature that drifts in one value only shows drift there, not in the others nor in the monitor's
share; a drift alert on the segment fires naming that value; the drift API ranks the values and
gives one value's whole report against the monitor's reference; a segment without drift keeps no
feature sketch, and the API refuses it."""

from __future__ import annotations

from typing import Any

import numpy as np

from tests.support.feedback import FakeClock, Service, as_csv, monitor_body, record
from truthloop.core import segments, windows
from truthloop.feedback.store.interface import Only

pytest_plugins = ["tests.support.feedback_fixtures"]

KEY = "ml/churn"
DRIFT = f"/v1/monitors/{KEY}/drift"
REFERENCE = f"/v1/monitors/{KEY}/reference"
PLAN_DRIFT = {
    "name": "plan-drift-somewhere",
    "metric": "feature_drift",
    "feature": "plan",
    "above": 0.3,
    "for": "0s",
    "segment": "country",
}
SHIFTED = {"name": "inputs-shifted", "metric": "drift_share", "above": 0.4, "for": "0s"}


def body() -> dict[str, Any]:
    return monitor_body(
        metrics={"window": "1h", "minSamples": 50},
        alerts=[SHIFTED, PLAN_DRIFT],
        segments=[
            {"name": "country", "pointer": "/country", "maxValues": 5, "drift": True},
            {"name": "device", "pointer": "/device"},
        ],
    )


def rows(n: int, *, seed: int, team: bool = False) -> list[dict[str, Any]]:
    """Churn inputs: tenure around 12 months, plan mostly basic (only team when `team`)."""
    rng = np.random.default_rng(seed)
    tenure = rng.normal(12.0, 3.0, n)
    plans = ["team"] * n if team else rng.choice(["basic", "pro", "team"], n, p=[0.7, 0.2, 0.1])
    return [
        {"tenure": round(float(t), 3), "plan": str(p), "prediction": int(t < 12)}
        for t, p in zip(tenure, plans, strict=True)
    ]


async def capture(
    service: Service, table: list[dict[str, Any]], ts: float, prefix: str, country: str
) -> None:
    made = [
        record(
            f"{prefix}{i}",
            row["prediction"],
            ts=ts,
            features={"tenure": row["tenure"], "plan": row["plan"]},
            segments={"country": country, "device": "ios"},
        )
        for i, row in enumerate(table)
    ]
    for i in range(0, len(made), 1000):
        await service.predictions(made[i : i + 1000])


async def setup(service: Service, clock: FakeClock) -> None:
    """The monitor and its reference; value sets chosen from a little traffic; then a window
    where only DE's plans are all `team` (5% of the records)."""
    await service.put_monitor(body())
    reference = as_csv(rows(3000, seed=1))
    await service.ok("POST", REFERENCE, data=reference, headers={"Content-Type": "text/csv"})
    for i, country in enumerate(["FR", "US", "DE"]):
        await capture(service, rows(5 - i, seed=9), clock.now, f"warm-{country}-", country)
    await service.tick()
    clock.advance(7200)
    await capture(service, rows(950, seed=2), clock.now, "fr", "FR")
    await capture(service, rows(950, seed=3), clock.now, "us", "US")
    await capture(service, rows(100, seed=4, team=True), clock.now, "de", "DE")
    await service.tick()


async def test_a_feature_drifting_in_one_value_fires_the_segment_alert_naming_it(
    service: Service, clock: FakeClock
) -> None:
    await setup(service, clock)
    state = await service.state()
    alerts = {a["name"]: a for a in state["alerts"]}
    assert alerts["inputs-shifted"]["state"] == "ok", "the monitor's share stays low"
    low = alerts["plan-drift-somewhere"]
    assert (low["state"], low["values"], low["samples"]) == ("firing", ["DE"], 100)
    assert low["value"] > 0.3
    assert state["drift"]["drifted"] is False
    assert state["drift"]["share"] < 0.5

    whole = await service.ok("GET", DRIFT)
    assert whole["drift"]["dataset"]["drifted"] is False
    assert whole["drift"]["samples"] == 2000

    sliced = await service.ok("GET", DRIFT + "?segment=country")
    shown = sliced["segment"]
    assert (shown["name"], shown["by"]) == ("country", "feature_drift:plan")
    order = [v["value"] for v in shown["values"]]
    assert order[0] == "DE", "worst first"
    assert set(order) == {"DE", "FR", "US"}
    by_value = {v["value"]: v for v in shown["values"]}
    de = by_value["DE"]
    assert (de["samples"], de["features"], de["share"], de["drifted"]) == (100, ["plan"], 0.5, True)
    assert de["metric"] > 0.3
    for calm in ("FR", "US"):
        assert (by_value[calm]["samples"], by_value[calm]["features"]) == (950, []), calm
        assert by_value[calm]["share"] == 0.0

    one = await service.ok("GET", DRIFT + "?segment=country&value=DE")
    assert one["segment"] == {"name": "country", "value": "DE"}
    report = one["drift"]
    assert report["reference"] == whole["drift"]["reference"], "the monitor's reference"
    assert report["samples"] == 100
    assert report["dataset"]["names"] == ["plan"]
    plan = next(c for c in report["features"] if c["name"] == "plan")
    assert plan["drifted"] is True
    assert plan["distance"] == low["value"]

    clock.advance(7200)
    await capture(service, rows(950, seed=5), clock.now, "fr2", "FR")
    await capture(service, rows(100, seed=6), clock.now, "de2", "DE")
    await service.tick()
    calm = {a["name"]: a for a in (await service.state())["alerts"]}["plan-drift-somewhere"]
    assert calm["state"] == "ok"
    assert "values" not in calm


async def test_a_segment_without_drift_keeps_no_sketch_and_the_api_refuses_it(
    service: Service, clock: FakeClock
) -> None:
    await setup(service, clock)
    registered = service.engine.registered(KEY)
    span = windows.window(clock.now, 3600)

    async def sketches(segment: str) -> dict[str, float]:
        groups = await service.engine.store.window(
            registered.id, span, Only(segment=segment, sketches=True)
        )
        return {k: v for counters in groups.values() for k, v in counters.items()}

    assert await sketches("device") == {}, "no drift: no feature sketch per value"
    country = await sketches("country")
    assert set(segments.split(country, "country")) == {"DE", "FR", "US"}
    assert all(k.startswith("^country=") for k in country)

    status, answer = await service.call("GET", DRIFT + "?segment=device")
    assert status == 400
    assert answer["details"][0]["field"] == "segment"
    assert "with drift: true: country" in answer["details"][0]["message"]
    status, answer = await service.call("GET", DRIFT + "?value=DE")
    assert (status, answer["details"][0]["field"]) == (400, "value")
    status, answer = await service.call("GET", DRIFT + "?segment=country&series=1m")
    assert (status, answer["details"][0]["field"]) == (400, "series")
    status, answer = await service.call("GET", DRIFT + "?segment=country&value=Atlantis")
    assert status == 404
    assert answer["details"][0]["reason"] == "unknown_value"
    empty = await service.ok("GET", DRIFT + "?segment=country&value=other")
    assert empty["drift"]["status"] == "no_data"
