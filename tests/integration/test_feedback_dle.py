"""Direct loss estimation through the feedback service on each store: a regression reference
uploaded with `actual` gets its loss model, every captured prediction adds its predicted losses
to the window's buckets, and the window's estimate (read back from the store) tracks the MAE the
labels later show."""

from __future__ import annotations

import csv
import io

import numpy as np

from tests.support.feedback import FakeClock, ServiceFactory, monitor_body, record
from tests.unit.test_lossmodel import Data, generate
from truthloop.core import estimate, metrics, windows
from truthloop.feedback.engine import model_counters, reference_of
from truthloop.feedback.store.interface import Only

pytest_plugins = ["tests.support.feedback_fixtures"]

KEY = "ml/price"


def as_csv(data: Data) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["x0", "x1", "x2", "region", "prediction", "actual"])
    for (x0, x1, x2), region, p, a in zip(
        data.x.tolist(), data.region, data.prediction.tolist(), data.actual.tolist(), strict=True
    ):
        writer.writerow([x0, x1, x2, region, p, a])
    return out.getvalue().encode()


async def test_the_window_estimates_its_mae_from_what_ingest_summed(
    start_service: ServiceFactory, clock: FakeClock
) -> None:
    service = await start_service()
    body = monitor_body("price", task="regression", alerts=[], fallback={})
    body["spec"]["capture"]["features"] = {"pointer": "/features"}
    await service.put_monitor(body)
    reference = generate(np.random.default_rng(1), 5_000)
    stored = await service.ok(
        "POST",
        "/v1/monitors/ml/price/reference",
        data=as_csv(reference),
        headers={"Content-Type": "text/csv"},
    )
    assert stored["warnings"] == []

    window = generate(np.random.default_rng(2), 1_500, shift=1.0)  # noisier inputs
    records = window.records()
    ts = clock.now - 30
    payload = [
        record(r.prediction_id, r.prediction, ts=ts, monitor=KEY, features=r.features)
        for r in records
    ]
    await service.predictions(payload)

    engine = service.engine
    registered = engine.registered(KEY)
    ref = reference_of(registered, None)
    assert ref is not None
    assert ref.profile.loss is not None
    span = windows.window(clock.now, 3600)
    counters = model_counters(await engine.store.window(registered.id, span, Only(sketches=True)))
    found = estimate.evaluate(ref, counters, registered.monitor.spec)
    assert estimate.records(ref, counters) == 1_500

    realized: dict[str, float] = {}
    for p, a in zip(window.prediction.tolist(), window.actual.tolist(), strict=True):
        metrics.tally(realized, "regression", p, a)
    truth = metrics.evaluate("regression", realized)["mae"].value
    mae = found["mae"]
    assert truth is not None
    assert mae.value is not None
    assert mae.lower is not None
    assert mae.upper is not None
    assert mae.lower <= truth <= mae.upper
    calm = generate(np.random.default_rng(3), 1_500)
    assert mae.value > 1.1 * float(np.mean(np.abs(calm.prediction - calm.actual)))

    # thresholds from history: the reference's MAE over chunks of the window's size
    answer = await service.ok("GET", "/v1/monitors/ml/price/reference")
    spread = answer["chunks"]["metrics"]["mae"]
    assert answer["chunks"]["rows"] == 1_500
    assert spread["alert"] == "above"
    assert spread["threshold"] == spread["mean"] + 3 * spread["std"]
    assert mae.value > spread["mean"]
