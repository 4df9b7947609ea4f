"""Estimated performance where users look and where it acts, through the feedback service on
each store: the metrics API answers `estimated` next to the realized metrics (per group and per
point of a series), /metrics exports them with source="estimated", an alert on an estimate
engages the fallback before any label arrives and releases it once the estimate recovers, and
an `auto` alert reads the estimate until the window holds minSamples labels, then the realized
metric."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration import test_feedback_dle as dle_tests
from tests.integration.test_feedback_drift import CSV, REFERENCE, as_csv, capture, captured, rows
from tests.integration.test_feedback_reference_chunks import labeled
from tests.support.feedback import FakeClock, Service, monitor_body, record, sample
from tests.unit.test_lossmodel import generate

pytest_plugins = ["tests.support.feedback_fixtures"]

GROUP = {"namespace": "ml", "monitor": "churn", "model": "churn", "version": "*"}


def expected_accuracy(table: list[dict[str, Any]]) -> float:
    """CBPE's accuracy of calibrated scores, row by row: each row right with its class's
    probability."""
    right = [r["score"] if r["prediction"] == 1 else 1 - r["score"] for r in table]
    return float(np.mean(right))


def confident(n: int, seed: int) -> list[dict[str, Any]]:
    """Records the model is sure of (tenure far below 12: scores near 1, predicted 1)."""
    table = rows(n, seed=seed)
    for row in table:
        row["tenure"] = round(row["tenure"] - 12.0, 3)
        row["score"] = round(float(1 / (1 + np.exp(row["tenure"] - 12))), 6)
        row["prediction"] = int(row["score"] >= 0.5)
    return table


async def estimated_service(service: Service, alerts: list[dict[str, Any]], **spec: Any) -> None:
    await service.put_monitor(
        monitor_body(
            alerts=alerts,
            metrics={"window": "1h", "minSamples": 50},
            fallback={"recoverAfter": "0s", "rules": [{"prediction": "0"}]},
            **spec,
        )
    )
    await service.ok("POST", REFERENCE, data=as_csv(labeled(4000, seed=5)), headers=CSV)


async def test_the_metrics_api_and_prometheus_answer_the_estimate_next_to_the_realized_metrics(
    service: Service, clock: FakeClock
) -> None:
    await estimated_service(service, [{"name": "a", "metric": "accuracy", "below": 0.5}])
    table = rows(1000, seed=6)
    await capture(service, captured(table, clock.now, "a"))
    await service.tick()

    got = await service.metrics()
    assert got["labeled"] == 0
    assert got["metrics"]["accuracy"]["value"] is None
    accuracy = got["estimated"]["accuracy"]
    assert abs(accuracy["value"] - expected_accuracy(table)) < 0.03
    assert accuracy["lower"] < accuracy["value"] < accuracy["upper"]
    assert set(got["estimated"]) == {
        "accuracy", "precision", "recall", "f1", "specificity", "balanced_accuracy", "roc_auc"
    }  # fmt: skip
    model = got["served_by"]["model"]
    assert model["estimated"] == got["estimated"]
    assert model["versions"]["v1"]["estimated"]["accuracy"] == accuracy
    assert got["served_by"]["fallback"]["estimated"] == {}

    series = (await service.metrics(query="?series=10m"))["series"]
    last = series[-1]
    assert last["samples"] == 1000
    assert last["estimated"]["accuracy"] == pytest.approx(accuracy)
    assert all(p["estimated"]["accuracy"]["value"] is None for p in series[:-1])

    text = await service.scrape()
    estimated = {"metric": "accuracy", "served_by": "model", "source": "estimated"}
    value = sample(text, "truthloop_model_metric", **GROUP, **estimated, bound="value")
    assert value == accuracy["value"]
    assert (
        sample(text, "truthloop_model_metric", **GROUP, **estimated, bound="upper")
        == (accuracy["upper"])
    )
    # the realized series keep their labels (no `source`) next to the estimated ones
    await service.feedback(
        *({"monitor": "ml/churn", "prediction_id": f"a{i}", "actual": table[i]["prediction"]}
          for i in range(10))
    )  # fmt: skip
    await service.tick()
    found = {
        s.labels.get("source"): s.value
        for family in text_string_to_metric_families(await service.scrape())
        for s in family.samples
        if s.name == "truthloop_model_metric"
        and s.labels["metric"] == "accuracy"
        and s.labels["bound"] == "value"
        and s.labels["version"] == "*"
        and s.labels["served_by"] == "model"
    }
    assert found == {None: 1.0, "estimated": pytest.approx(accuracy["value"])}


async def test_without_a_calibrated_reference_nothing_is_estimated(
    service: Service, clock: FakeClock
) -> None:
    await service.put_monitor(monitor_body())
    await capture(service, captured(rows(100, seed=6), clock.now, "a"))
    await service.tick()
    got = await service.metrics()
    assert got["estimated"] == {}
    assert 'source="estimated"' not in await service.scrape()


async def test_an_estimated_alert_engages_the_fallback_before_labels_and_recovers(
    service: Service, clock: FakeClock
) -> None:
    alert = {"name": "est-low", "metric": "accuracy", "below": 0.9, "source": "estimated"}
    await estimated_service(service, [alert])

    await capture(service, captured(confident(600, seed=7), clock.now, "a"))
    await service.tick()
    calm = await service.state()
    assert calm["phase"] == "Collecting", "an estimate's predictions are not labels"
    assert calm["alerts"][0]["state"] == "ok"
    assert calm["alerts"][0]["samples"] == 600
    assert calm["alerts"][0]["value"] > 0.9

    clock.advance(7200)
    uncertain = rows(600, seed=8)
    assert expected_accuracy(uncertain) < 0.87
    await capture(service, captured(uncertain, clock.now, "b"))
    await service.tick()
    degraded = await service.state()
    assert degraded["phase"] == "FallbackActive"
    assert degraded["alerts"][0]["state"] == "firing"
    assert degraded["fallback"]["causes"] == [{"kind": "alert", "name": "est-low"}]
    assert degraded["alerts"][0]["value"] < 0.9

    clock.advance(7200)
    await capture(service, captured(confident(600, seed=9), clock.now, "c"))
    await service.tick()
    recovered = await service.state()
    assert recovered["alerts"][0]["state"] == "ok"
    assert recovered["fallback"]["active"] is False
    assert recovered["phase"] == "Collecting"


async def test_an_auto_alert_reads_the_estimate_until_the_window_has_min_samples_labels(
    service: Service, clock: FakeClock
) -> None:
    alert = {"name": "acc-low", "metric": "accuracy", "below": 0.9, "source": "auto"}
    await estimated_service(service, [alert])
    uncertain = rows(600, seed=8)
    await capture(service, captured(uncertain, clock.now, "a"))
    await service.tick()
    before = (await service.state())["alerts"][0]
    assert before["state"] == "firing"
    assert before["samples"] == 600  # the estimate's: every prediction of the window

    # labels for 49 of them (minSamples 50), all right: still the estimate
    right = [{"monitor": "ml/churn", "prediction_id": f"a{i}", "actual": r["prediction"]}
             for i, r in enumerate(uncertain)]  # fmt: skip
    await service.feedback(*right[:49])
    await service.tick()
    assert (await service.state())["alerts"][0]["samples"] == 600
    await service.feedback(right[49])
    await service.tick()
    after = await service.state()
    assert after["alerts"][0] == {**after["alerts"][0], "state": "ok", "value": 1.0, "samples": 50}
    assert after["phase"] == "Healthy"


async def test_a_regression_monitor_estimates_its_errors_and_alerts_on_them(
    service: Service, clock: FakeClock
) -> None:
    """DLE where users look: the metrics API's estimated mae, rmse and mean_error, and an alert
    on the estimated MAE (above) before any label."""
    body = monitor_body(
        "price",
        task="regression",
        metrics={"window": "1h", "minSamples": 50},
        alerts=[{"name": "mae-high", "metric": "mae", "above": 1e9, "source": "estimated"}],
        fallback={"recoverAfter": "0s", "rules": [{"prediction": "0"}]},
    )
    body["spec"]["capture"]["features"] = {"pointer": "/features"}
    await service.put_monitor(body)
    await service.ok(
        "POST",
        "/v1/monitors/ml/price/reference",
        data=dle_tests.as_csv(generate(np.random.default_rng(1), 5_000)),
        headers=CSV,
    )
    window = generate(np.random.default_rng(2), 600)
    await service.predictions(
        [
            record(
                r.prediction_id,
                r.prediction,
                ts=clock.now - 30,
                monitor="ml/price",
                features=r.features,
            )
            for r in window.records()
        ]
    )
    await service.tick()
    got = await service.metrics("ml/price")
    assert set(got["estimated"]) >= {"mae", "rmse", "mean_error"}
    mae = got["estimated"]["mae"]
    truth = float(np.mean(np.abs(window.prediction - window.actual)))
    assert mae["lower"] <= truth <= mae["upper"]
    state = await service.state("ml/price")
    assert state["alerts"][0] == {**state["alerts"][0], "state": "ok", "samples": 600}
    assert state["alerts"][0]["value"] == mae["value"]

    lowered = {**body["spec"]["alerts"][0], "above": mae["value"] / 2}
    body["spec"]["alerts"] = [lowered]
    await service.put_monitor(body)
    await service.tick()
    fired = await service.state("ml/price")
    assert fired["alerts"][0]["state"] == "firing"
    assert fired["phase"] == "FallbackActive"
