"""Drift where users look and where it acts, through the feedback service on each store: a drift
alert fires and engages the fallback with no label in the window (and without labels the phase
stays Collecting while the drift is calm), the state carries the drift summary the operator
mirrors, and /metrics exports the drift gauges."""

from __future__ import annotations

from typing import Any

import numpy as np

from tests.support.feedback import FakeClock, Service, as_csv, monitor_body, record, sample

pytest_plugins = ["tests.support.feedback_fixtures"]

REFERENCE = "/v1/monitors/ml/churn/reference"
BASE = {"namespace": "ml", "monitor": "churn", "model": "churn", "version": "*"}
ALERTS = [
    {"name": "tenure-drift", "metric": "feature_drift", "feature": "tenure", "above": 0.1},
    {"name": "inputs-shifted", "metric": "drift_share", "above": 0.9},
    {"name": "plan-missing", "metric": "missing_ratio", "feature": "plan", "above": 0.5},
]


def rows(n: int, *, seed: int, shift: bool = False) -> list[dict[str, Any]]:
    """Churn inputs: tenure around 12 months (30 when shifted), plan mostly basic (mostly pro)."""
    rng = np.random.default_rng(seed)
    tenure = rng.normal(30.0 if shift else 12.0, 3.0, n)
    plans = rng.choice(["basic", "pro", "team"], n, p=[0.1, 0.8, 0.1] if shift else [0.7, 0.2, 0.1])
    return [
        {"tenure": round(float(t), 3), "plan": str(p), "prediction": int(t < 12)}
        for t, p in zip(tenure, plans, strict=True)
    ]


async def capture(service: Service, table: list[dict[str, Any]], ts: float, prefix: str) -> None:
    records = [
        record(
            f"{prefix}{i}",
            row["prediction"],
            ts=ts,
            features={"tenure": row["tenure"], "plan": row["plan"]},
        )
        for i, row in enumerate(table)
    ]
    for i in range(0, len(records), 1000):
        await service.predictions(records[i : i + 1000])


async def test_a_drift_alert_engages_the_fallback_before_any_label_arrives(
    service: Service, clock: FakeClock
) -> None:
    await service.put_monitor(
        monitor_body(alerts=ALERTS, metrics={"window": "1h", "minSamples": 50})
    )
    state = await service.state()
    assert state["drift"]["status"] == "no_reference"
    csv_body = as_csv(rows(3000, seed=1))
    await service.ok("POST", REFERENCE, data=csv_body, headers={"Content-Type": "text/csv"})

    await capture(service, rows(1500, seed=2), clock.now, "a")
    await service.tick()
    calm = await service.state()
    assert calm["phase"] == "Collecting", "records compared with the reference are not labels"
    assert [a["state"] for a in calm["alerts"]] == ["ok", "ok", "ok"]
    assert calm["drift"] == {
        "status": "ok",
        "drifted": False,
        "share": 0.0,
        "threshold": 0.5,
        "features": [],
        "profiled": 2,
        "prediction": False,
        "reason": None,
    }
    text = await service.scrape()
    tenure = sample(text, "truthloop_feature_drift", **BASE, feature="tenure", method="wasserstein")
    assert tenure is not None
    assert 0 <= tenure < 0.1
    assert sample(text, "truthloop_feature_missing_ratio", **BASE, feature="plan") == 0.0
    assert sample(text, "truthloop_drift_share", **BASE) == 0.0
    assert sample(text, "truthloop_outlier_ratio", **BASE) is not None
    assert sample(text, "truthloop_prediction_drift", **BASE, method="jensenshannon") is not None

    clock.advance(7200)
    await capture(service, rows(1500, seed=3, shift=True), clock.now, "b")
    await service.tick()
    shifted = await service.state()
    assert shifted["version"] > calm["version"]
    assert shifted["phase"] == "FallbackActive"
    assert shifted["fallback"]["causes"] == [
        {"kind": "alert", "name": "tenure-drift"},
        {"kind": "alert", "name": "inputs-shifted"},
    ]
    by_name = {a["name"]: a for a in shifted["alerts"]}
    assert by_name["tenure-drift"]["state"] == "firing"
    assert by_name["tenure-drift"]["samples"] == 1500
    assert by_name["plan-missing"]["state"] == "ok"
    assert shifted["drift"]["drifted"] is True
    assert shifted["drift"]["features"] == ["tenure", "plan"]
    assert shifted["drift"]["share"] == 1.0
    text = await service.scrape()
    assert sample(text, "truthloop_drift_share", **BASE) == 1.0
    tenure = sample(text, "truthloop_feature_drift", **BASE, feature="tenure", method="wasserstein")
    assert tenure is not None
    assert tenure > 1.0
    monitor = {k: v for k, v in BASE.items() if k != "version"}
    assert sample(text, "truthloop_alert_firing", **monitor, alert="tenure-drift") == 1.0

    view = await service.ok("GET", "/v1/monitors/ml/churn")
    assert view["status"]["drift"] == shifted["drift"]


async def test_the_sketches_are_read_again_only_when_the_window_changed_and_not_too_often(
    service: Service, clock: FakeClock
) -> None:
    """Within one minute bucket (the clock starts on one): the same buckets and counters reuse
    the report; new records read the sketches again, at most every `drift_interval` (15 s)."""
    await service.ok(
        "POST", REFERENCE, data=as_csv(rows(500, seed=1)), headers={"Content-Type": "text/csv"}
    )

    async def report_after(seconds: float) -> Any:
        clock.advance(seconds)
        await service.tick()
        return service.engine.snapshots["ml/churn"].drift

    await capture(service, rows(200, seed=2), clock.now, "a")
    first = await report_after(0)
    assert first is not None
    assert first.samples == 200
    tenure = next(c for c in first.features if c.name == "tenure")
    assert tenure.method == "ks", "below 1,000 values a test decides"
    text = await service.scrape()
    assert sample(text, "truthloop_feature_drift", **BASE, feature="tenure", method="ks") is None
    shown = sample(text, "truthloop_feature_drift", **BASE, feature="tenure", method="wasserstein")
    assert shown == tenure.distance, "the gauge keeps the distance's scale at every size"
    assert await report_after(20) is first, "nothing new: not read again"
    await capture(service, rows(10, seed=3), clock.now, "b")
    second = await report_after(5)
    assert second is not None
    assert second.samples == 210
    await capture(service, rows(5, seed=4), clock.now, "c")
    assert await report_after(5) is second, "read at most every 15 s"
    third = await report_after(11)
    assert third is not None
    assert third.samples == 215


async def test_without_a_reference_no_drift_is_evaluated_nor_exported(
    service: Service, clock: FakeClock
) -> None:
    await capture(service, rows(20, seed=2), clock.now, "a")
    await service.tick()
    assert service.engine.snapshots["ml/churn"].drift is None
    assert (await service.state())["drift"]["status"] == "no_reference"
    text = await service.scrape()
    assert "truthloop_drift_share{" not in text
    assert "truthloop_feature_drift{" not in text


async def test_a_version_with_its_own_reference_is_exported_under_its_version(
    service: Service, clock: FakeClock
) -> None:
    """v1's records are sketched against v1's reference only: without their own series they
    would show nowhere (`version="*"` is the default reference's)."""
    await service.ok(
        "POST",
        REFERENCE + "?version=v1",
        data=as_csv(rows(2000, seed=1)),
        headers={"Content-Type": "text/csv"},
    )
    await capture(service, rows(1200, seed=3, shift=True), clock.now, "a")
    await service.tick()
    text = await service.scrape()
    v1 = {**BASE, "version": "v1"}
    assert sample(text, "truthloop_drift_share", **v1) == 1.0
    tenure = sample(text, "truthloop_feature_drift", **v1, feature="tenure", method="wasserstein")
    assert tenure is not None
    assert tenure > 1.0
    assert sample(text, "truthloop_drift_share", **BASE) is None, "no default reference"
    await service.ok(
        "POST", REFERENCE, data=as_csv(rows(2000, seed=2)), headers={"Content-Type": "text/csv"}
    )
    clock.advance(1)
    await service.tick()
    text = await service.scrape()
    assert sample(text, "truthloop_drift_share", **v1) == 1.0
    assert sample(text, "truthloop_drift_share", **BASE) is None, "v1's records are not its"
