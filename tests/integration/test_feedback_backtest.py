"""POST .../backtest through a real server on each store: the replay of the stored minute
counters makes exactly the transitions the live engine made ticking over the same traffic, and
the endpoint refuses bad requests by field and a second backtest while one runs."""

from __future__ import annotations

from typing import Any

import msgspec

from tests.integration import test_feedback_drift_alerts as drift_alerts
from tests.integration import test_feedback_estimates as estimates
from tests.integration.test_feedback_drift import CSV, REFERENCE, as_csv, capture, captured, rows
from tests.integration.test_feedback_reference_chunks import labeled
from tests.support.feedback import T0, FakeClock, Service, monitor_body, record
from truthloop.core.backtest import Backtest
from truthloop.feedback import api

pytest_plugins = ["tests.support.feedback_fixtures"]

SPEC: dict[str, Any] = {
    "metrics": {"window": "5m", "minSamples": 10},
    "alerts": [{"name": "accuracy-low", "metric": "accuracy", "below": 0.7, "for": "6m"}],
    "fallback": {"recoverAfter": "3m", "rules": [{"prediction": "0"}]},
}
MINUTES = 60
BAD = range(20, 32)
"""The minutes the model is wrong 3 times in 4 (right 3 in 4 otherwise)."""
FLICKER = (45,)
"""A wrong minute: the window breaches for 5 minutes, a pending alert that never fires."""


async def live(service: Service, clock: FakeClock) -> None:
    """MINUTES of traffic, 4 labeled records a minute, the engine ticking at each minute's end."""
    for minute in range(MINUTES):
        clock.now = T0 + 60 * minute + 10
        wrong = 3 if minute in BAD else 4 if minute in FLICKER else 1
        ids = [f"m{minute}-{i}" for i in range(4)]
        await service.predictions([record(p, 1, ts=clock.now) for p in ids])
        await service.feedback(
            *(
                {"monitor": "ml/churn", "prediction_id": p, "actual": int(i >= wrong)}
                for i, p in enumerate(ids)
            )
        )
        clock.now = T0 + 60 * minute + 59
        await service.tick()


async def backtest(service: Service, **body: Any) -> tuple[int, Any]:
    return await service.call("POST", "/v1/monitors/ml/churn/backtest", json=body)


async def replays_the_live_engine(service: Service, minutes: int) -> tuple[Backtest, list[str]]:
    """The backtest of the first `minutes` from T0 with the registered spec, having checked
    that its transitions are those the live engine made (as its history keeps them), reasons
    and times included; the kinds of those transitions."""
    made = (await service.ok("GET", "/v1/monitors/ml/churn/history"))["transitions"]
    status, answer = await backtest(service, **{"from": T0, "to": T0 + 60 * minutes})
    assert status == 200, answer
    found = msgspec.convert(answer, Backtest)
    replayed = [msgspec.to_builtins(t) for t in found.result.transitions]
    assert replayed == [{k: t[k] for k in replayed[0]} for t in made]
    return found, [t["kind"] for t in made]


async def test_the_replay_makes_the_live_engines_transitions(
    start_service: Any, clock: FakeClock
) -> None:
    service = await start_service()
    await service.put_monitor(monitor_body(**SPEC))
    await live(service, clock)
    found, kinds = await replays_the_live_engine(service, MINUTES)
    assert "fallback_engaged" in kinds
    assert "alert_pending" in kinds[kinds.index("fallback_disengaged") :]  # the flicker
    (episode,) = found.result.episodes
    assert episode.predictions == 4 * (round(episode.period.seconds) // 60)
    assert found.result.minutes == MINUTES


async def test_a_backtest_of_another_spec_and_its_sweep(
    start_service: Any, clock: FakeClock
) -> None:
    service = await start_service()
    await service.put_monitor(monitor_body(**SPEC))
    await live(service, clock)
    lax = monitor_body(**{**SPEC, "alerts": [{**SPEC["alerts"][0], "for": "10m"}]})
    status, answer = await backtest(
        service,
        monitor=lax,  # fires too
        **{"from": "1h", "to": T0 + 60 * MINUTES},
        sweeps=["alerts[accuracy-low].for=0s,2m,10m"],
        suggest=True,
    )
    assert status == 200, answer
    found = msgspec.convert(answer, Backtest)
    assert found.result.period.start == T0
    assert len(found.result.episodes) == 1
    assert found.sweep is not None
    delays = [c.score.mean_delay for c in found.sweep.candidates]
    assert delays[0] is not None
    assert delays == sorted(delays)  # waiting longer never detects sooner
    assert [s.alert for s in found.suggestions] == ["accuracy-low"]


async def test_bad_backtests_are_refused_by_field(service: Service) -> None:
    bad_alert = monitor_body(alerts=[{"name": "a", "metric": "accuracy", "below": "x"}])
    for body, field in [
        ({"sweeps": ["alerts[nope].below=0.5"]}, "sweeps[0]"),
        ({"from": "yesterday"}, "from"),
        ({"from": "91d"}, "from"),
        ({"to": "soon"}, "to"),
        ({"suggest": "yes"}, "suggest"),
        ({"sweeps": "x"}, "sweeps"),
        ({"sweeps": ["fallback.recoverAfter=1m"] * 11}, "sweeps"),
        ({"window": "1h"}, "window"),
        ({"monitor": bad_alert}, "monitor.spec.alerts[0].below"),
        ({"monitor": monitor_body(name="other")}, "monitor.metadata"),
    ]:
        status, answer = await backtest(service, **body)
        assert status == 400, (body, answer)
        assert answer["details"][0]["field"] == field, (body, answer)
    status, answer = await service.call("POST", "/v1/monitors/ml/nope/backtest", json={})
    assert status == 404
    status, answer = await service.call("POST", "/v1/monitors/ml/churn/backtest", json=[1])
    assert status == 400


async def test_a_second_backtest_while_one_runs_is_told_to_retry(service: Service) -> None:
    async with service.app[api.BACKTESTS]:
        status, answer = await backtest(service)
    assert status == 429
    assert answer["details"][0]["reason"] == "busy"
    status, _ = await backtest(service)
    assert status == 200


SEGMENTED: dict[str, Any] = {
    **SPEC,
    "alerts": [
        SPEC["alerts"][0],
        {"name": "new-low", "metric": "accuracy", "below": 0.7, "for": "1m", "segment": "tenure"},
    ],
    "segments": [{"name": "tenure", "pointer": "/tenure", "buckets": [12]}],
}


async def test_the_replay_of_a_segment_alert_makes_the_live_engines_transitions(
    start_service: Any, clock: FakeClock
) -> None:
    """The newer customers (tenure < 12) degrade while the overall accuracy holds: the segment
    alert fires and names them, in the engine as in the replay."""
    service = await start_service()
    await service.put_monitor(monitor_body(**SEGMENTED))
    for minute in range(40):
        clock.now = T0 + 60 * minute + 10
        ids = [f"m{minute}-{i}" for i in range(8)]
        made = [
            record(p, 1, ts=clock.now, segments={"tenure": 3 if i < 3 else 30})
            for i, p in enumerate(ids)
        ]
        await service.predictions(made)
        wrong = {0, 1} if 10 <= minute < 20 else set()
        await service.feedback(
            *(
                {"monitor": "ml/churn", "prediction_id": p, "actual": int(i not in wrong)}
                for i, p in enumerate(ids)
            )
        )
        clock.now = T0 + 60 * minute + 59
        await service.tick()
    found, _ = await replays_the_live_engine(service, 40)
    assert any(t.alert == "new-low" and t.kind == "alert_firing" for t in found.result.transitions)
    assert found.result.unread == ()


async def test_the_replay_of_an_estimated_alert_makes_the_live_engines_transitions(
    start_service: Any, clock: FakeClock
) -> None:
    """Scored traffic without labels, estimated against the calibrated reference: confident,
    then uncertain, then confident again; the estimate's alert engages and releases the
    fallback in the engine as in the replay (the registered references estimate it)."""
    service = await start_service()
    alert = {"name": "est-low", "metric": "accuracy", "below": 0.9, "source": "estimated"}
    await service.put_monitor(
        monitor_body(
            alerts=[alert],
            metrics={"window": "5m", "minSamples": 50},
            fallback={"recoverAfter": "1m", "rules": [{"prediction": "0"}]},
        )
    )
    await service.ok("POST", REFERENCE, data=as_csv(labeled(4000, seed=5)), headers=CSV)
    for minute in range(24):
        clock.now = T0 + 60 * minute + 10
        uncertain = 8 <= minute < 16
        table = rows(100, seed=minute) if uncertain else estimates.confident(100, seed=minute)
        await capture(service, captured(table, clock.now, f"m{minute}-"))
        clock.now = T0 + 60 * minute + 59
        await service.tick()
    found, kinds = await replays_the_live_engine(service, 24)
    assert "fallback_engaged" in kinds
    assert "fallback_disengaged" in kinds
    (episode,) = found.result.episodes
    around = episode.metrics["estimated:accuracy"]
    assert around.before is not None
    assert around.before.value is not None
    assert around.before.value < 0.9


async def test_the_replay_of_drift_alerts_makes_the_live_engines_transitions(
    start_service: Any, clock: FakeClock
) -> None:
    """Inputs that drift from the reference for a while, no label at all: the drift alerts
    engage the fallback and release it in the engine as in the replay."""
    service = await start_service()
    await service.put_monitor(
        monitor_body(
            alerts=drift_alerts.ALERTS,
            metrics={"window": "5m", "minSamples": 50},
            fallback={"recoverAfter": "1m", "rules": [{"prediction": "0"}]},
        )
    )
    reference = as_csv(drift_alerts.rows(3000, seed=1))
    await service.ok("POST", REFERENCE, data=reference, headers=CSV)
    for minute in range(24):
        clock.now = T0 + 60 * minute + 10
        table = drift_alerts.rows(60, seed=minute + 2, shift=8 <= minute < 14)
        await drift_alerts.capture(service, table, clock.now, f"m{minute}-")
        clock.now = T0 + 60 * minute + 59
        await service.tick()
    found, kinds = await replays_the_live_engine(service, 24)
    assert "fallback_engaged" in kinds
    assert "fallback_disengaged" in kinds
    assert found.result.unread == ()
