"""Thresholds from history over HTTP, on each store: GET .../reference reports each metric's
mean and spread over reference chunks of the window's size (the model's predictions in its
window, or ?chunk=) and the alert threshold it suggests; a reference with actuals and scores
carries its calibration."""

from __future__ import annotations

import math

import numpy as np

from tests.integration.test_feedback_drift import CSV, REFERENCE, as_csv, capture, captured, rows
from tests.support.feedback import FakeClock, Service

pytest_plugins = ["tests.support.feedback_fixtures"]


def labeled(n: int, seed: int) -> list[dict[str, object]]:
    """Reference rows whose actual is drawn with the (calibrated) score's probability."""
    rng = np.random.default_rng(seed)
    table = rows(n, seed=seed)
    for row in table:
        row["actual"] = int(rng.uniform() < float(row["score"]))  # type: ignore[arg-type]
    return table


async def test_the_reference_reports_metrics_over_chunks_of_the_windows_size(
    service: Service, clock: FakeClock
) -> None:
    table = labeled(4000, seed=5)
    await service.ok("POST", REFERENCE, data=as_csv(table), headers=CSV)
    accuracy = np.mean([int(r["prediction"] == r["actual"]) for r in table])

    got = await service.ok("GET", REFERENCE + "?chunk=500")
    assert got["profile"]["calibration"]["type"] == "binary"
    assert got["profile"]["calibration"]["rows"] == 4000
    chunks = got["chunks"]
    assert (chunks["rows"], chunks["count"]) == (500, 200)
    assert set(chunks["metrics"]) == {
        "accuracy", "precision", "recall", "f1", "specificity", "balanced_accuracy", "roc_auc"
    }  # fmt: skip
    spread = chunks["metrics"]["accuracy"]
    assert abs(spread["mean"] - accuracy) < 0.01
    assert abs(spread["std"] / math.sqrt(accuracy * (1 - accuracy) / 500) - 1) < 0.25
    assert spread["threshold"] == max(spread["mean"] - 3 * spread["std"], 0.0)
    assert spread["alert"] == "below"

    # by default: chunks as large as the model's predictions in its window
    await capture(service, captured(rows(800, seed=6), clock.now, "a"))
    assert (await service.ok("GET", REFERENCE))["chunks"]["rows"] == 800
    smaller = (await service.ok("GET", REFERENCE + "?chunk=100"))["chunks"]["metrics"]
    assert smaller["accuracy"]["std"] > spread["std"]


async def test_without_actuals_or_predictions_there_are_no_chunks(service: Service) -> None:
    await service.ok("POST", REFERENCE, data=as_csv(rows(500, seed=1)), headers=CSV)
    got = await service.ok("GET", REFERENCE + "?chunk=100")
    assert got["profile"]["calibration"] is None
    assert got["chunks"] is None
    await service.ok("POST", REFERENCE, data=as_csv(labeled(500, seed=2)), headers=CSV)
    assert (await service.ok("GET", REFERENCE))["chunks"] is None  # no prediction in the window


async def test_a_bad_chunk_is_refused_by_name(service: Service) -> None:
    await service.ok("POST", REFERENCE, data=as_csv(labeled(500, seed=2)), headers=CSV)
    for bad in ("0", "x", "100000001"):
        status, body = await service.call("GET", REFERENCE + f"?chunk={bad}")
        assert status == 400
        assert body["details"][0]["field"] == "chunk"
