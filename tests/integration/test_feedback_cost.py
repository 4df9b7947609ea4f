"""What mistakes cost, through the feedback service on each store: the metrics API shows the
window's cost per prediction with its interval, and an alert on it (in money) fires and engages
the fallback."""

from __future__ import annotations

from tests.support.feedback import FakeClock, Service, monitor_body, record

pytest_plugins = ["tests.support.feedback_fixtures"]

KEY = "ml/price"


async def test_a_cost_alert_fires_when_the_predictions_cost_too_much(
    service: Service, clock: FakeClock
) -> None:
    await service.put_monitor(
        monitor_body(
            "price",
            task="regression",
            metrics={
                "window": "1h",
                "minSamples": 5,
                "cost": {"overPrediction": 1, "underPrediction": 10},
            },
            alerts=[{"name": "too-costly", "metric": "cost", "above": 20}],
        )
    )
    ts = clock.now - 30
    # over-predicted by 2 each: 2 per prediction, cheap
    await service.predictions([record(f"o{i}", 12.0, ts=ts, monitor=KEY) for i in range(10)])
    await service.feedback(
        *({"monitor": KEY, "prediction_id": f"o{i}", "actual": 10.0} for i in range(10))
    )
    await service.tick()
    metrics = await service.metrics(KEY)
    cost = metrics["metrics"]["cost"]
    assert cost["value"] == 2.0
    assert metrics["metrics"]["cost_total"]["value"] == 20.0
    assert (await service.state(KEY))["phase"] == "Healthy"

    # under-predicted by 5 each: 50 per prediction
    await service.predictions([record(f"u{i}", 5.0, ts=ts, monitor=KEY) for i in range(10)])
    await service.feedback(
        *({"monitor": KEY, "prediction_id": f"u{i}", "actual": 10.0} for i in range(10))
    )
    await service.tick()
    metrics = await service.metrics(KEY)
    cost = metrics["metrics"]["cost"]
    assert cost["value"] == 26.0
    assert cost["lower"] < 26.0 < cost["upper"]
    state = await service.state(KEY)
    assert state["phase"] == "FallbackActive"
    (alert,) = state["alerts"]
    assert alert["name"] == "too-costly"
    assert alert["state"] == "firing"
    assert alert["value"] == 26.0
