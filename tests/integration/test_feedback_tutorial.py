"""The `/feedback` → Prometheus tutorial that truthloop replaces, replayed against the service.

The tutorial labels 20 binary predictions in four phases of five — good (all right), mixed (about
half), poor (mostly wrong), recovery (all right) — and watches an accuracy gauge that it computes
over all time, so while the model fails the gauge barely moves. Here each phase is stamped in its
own 5-minute window on a fake clock, and the monitor alerts on `accuracy below 0.7, for: 0s,
minSamples: 5`: the windowed gauge reads each phase's own accuracy, the fallback is engaged while
the model is failing, and alert and fallback clear once recovery has held for `recoverAfter`.

With five samples "about half" is 3 of 5 (0.6), already under the 0.7 line, so the alert fires at
the end of "mixed" and is still firing, with the fallback engaged, through "poor".
"""

from __future__ import annotations

from tests.support.feedback import FakeClock, Service, ServiceFactory, monitor_body, record, sample

pytest_plugins = ["tests.support.feedback_fixtures"]

PHASES = [  # (name, actual labels; every prediction is 1, so a 1 is a right prediction)
    ("good", [1, 1, 1, 1, 1]),
    ("mixed", [1, 0, 1, 0, 1]),
    ("poor", [0, 0, 1, 0, 0]),
    ("recovery", [1, 1, 1, 1, 1]),
]
PHASE_SECONDS = 300.0
BASE = {"namespace": "ml", "monitor": "churn", "model": "churn"}


async def gauge(service: Service) -> float | None:
    text = await service.scrape()
    return sample(
        text,
        "truthloop_model_metric",
        **BASE,
        metric="accuracy",
        bound="value",
        version="*",
        served_by="model",
    )


async def firing(service: Service) -> tuple[float | None, float | None]:
    text = await service.scrape()
    return (
        sample(text, "truthloop_alert_firing", **BASE, alert="accuracy-low"),
        sample(text, "truthloop_fallback_active", **BASE),
    )


async def test_windowed_accuracy_catches_the_poor_phase_and_the_recovery(
    start_service: ServiceFactory, clock: FakeClock
) -> None:
    service = await start_service()
    await service.put_monitor(
        monitor_body(
            metrics={"window": "5m", "minSamples": 5},
            alerts=[{"name": "accuracy-low", "metric": "accuracy", "below": 0.7, "for": "0s"}],
            fallback={"recoverAfter": "2m", "rules": [{"prediction": "0"}]},
        )
    )
    start = clock.now
    seen: dict[str, tuple[float | None, tuple[float | None, float | None]]] = {}
    for k, (name, actuals) in enumerate(PHASES):
        clock.now = start + k * PHASE_SECONDS
        ids = [f"{name}-{i}" for i in range(5)]
        await service.predictions(
            [record(pid, 1, ts=clock.now + 10 * i, entity_id=pid) for i, pid in enumerate(ids)]
        )
        clock.advance(60)  # the phase ends a minute after it began
        await service.feedback(
            *(
                {"monitor": "ml/churn", "prediction_id": pid, "actual": actual}
                for pid, actual in zip(ids, actuals, strict=True)
            )
        )
        await service.tick()
        seen[name] = (await gauge(service), await firing(service))

    assert seen["good"] == (1.0, (0.0, 0.0))
    assert seen["mixed"] == (0.6, (1.0, 1.0))
    assert seen["poor"] == (0.2, (1.0, 1.0))
    assert seen["recovery"][0] == 1.0
    assert seen["recovery"][1] == (0.0, 1.0), "the alert clears; the fallback waits recoverAfter"
    assert (await service.state())["phase"] == "FallbackActive"

    clock.advance(2 * 60 + 1)
    await service.tick()
    assert await gauge(service) == 1.0
    assert await firing(service) == (0.0, 0.0)
    state = await service.state()
    assert state["fallback"]["active"] is False
    assert state["phase"] == "Healthy"
