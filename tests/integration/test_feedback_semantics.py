"""Join semantics (docs/feedback-service.md), each rule a test, through the real HTTP API."""

from __future__ import annotations

import dataclasses
from typing import Any

from tests.support.feedback import (
    T0,
    FakeClock,
    Service,
    ServiceFactory,
    monitor_body,
    record,
    sample,
)
from tests.support.waiting import eventually

pytest_plugins = ["tests.support.feedback_fixtures"]

MINUTE = 60.0
HOUR = 3600.0


def confusion(metrics: dict[str, Any], served_by: str = "model") -> tuple[int, int]:
    """(labeled, correct) of a metrics answer, from accuracy and the labeled count."""
    part = metrics["served_by"][served_by]
    labeled = part["labeled"]
    accuracy = part["metrics"]["accuracy"]["value"]
    return labeled, round((accuracy or 0) * labeled)


async def labels(service: Service, entity_id: str) -> dict[tuple[str, str], Any]:
    body = await service.ok("GET", f"/v1/monitors/ml/churn/predictions?entity_id={entity_id}")
    return {(p["prediction_id"], p["served_by"]): p["actual"] for p in body["predictions"]}


async def test_an_actual_by_prediction_id_labels_every_record_with_that_id(
    service: Service, clock: FakeClock
) -> None:
    ts = clock.now - 10
    await service.predictions(
        [
            record("p1", 1, ts=ts, entity_id="u1", served_by="fallback"),
            record("p1", 0, ts=ts, entity_id="u1", served_by="model"),
            record("p2", 1, ts=ts, entity_id="u2"),
        ]
    )
    assert await service.feedback({"monitor": "ml/churn", "prediction_id": "p1", "actual": 1}) == {
        "matched": 1,
        "pending": 0,
    }
    assert await labels(service, "u1") == {("p1", "fallback"): 1, ("p1", "model"): 1}
    metrics = await service.metrics()
    assert confusion(metrics, "model") == (1, 0)
    assert confusion(metrics, "fallback") == (1, 1)
    assert metrics["served_by"]["model"]["samples"] == 2


async def test_an_entity_actual_labels_the_latest_prediction_in_its_window_per_served_by(
    service: Service, clock: FakeClock
) -> None:
    now = clock.now
    await service.predictions(
        [
            record("old", 0, ts=now - 2 * HOUR, entity_id="u"),  # outside the 1h window
            record("a", 0, ts=now - 30 * MINUTE, entity_id="u"),
            record("b", 1, ts=now - 20 * MINUTE, entity_id="u"),
            record("b", 0, ts=now - 20 * MINUTE, entity_id="u", served_by="fallback"),
            record("after", 1, ts=now - 1 * MINUTE, entity_id="u"),  # after the actual's time
        ]
    )
    result = await service.feedback(
        {"monitor": "ml/churn", "entity_id": "u", "timestamp": now - 10 * MINUTE, "actual": 1}
    )
    assert result == {"matched": 1, "pending": 0}
    assert await labels(service, "u") == {
        ("after", "model"): None,
        ("b", "model"): 1,
        ("b", "fallback"): 1,
        ("a", "model"): None,
        ("old", "model"): None,
    }


async def test_match_all_labels_every_prediction_of_the_entity_in_the_window(
    start_service: ServiceFactory, clock: FakeClock
) -> None:
    service = await start_service()
    await service.put_monitor(monitor_body(feedback={"attributionWindow": "1h", "match": "all"}))
    now = clock.now
    await service.predictions(
        [
            record("old", 0, ts=now - 2 * HOUR, entity_id="u"),
            record("a", 0, ts=now - 30 * MINUTE, entity_id="u"),
            record("b", 1, ts=now - 20 * MINUTE, entity_id="u"),
        ]
    )
    await service.feedback({"monitor": "ml/churn", "entity_id": "u", "actual": 1})
    assert await labels(service, "u") == {
        ("b", "model"): 1,
        ("a", "model"): 1,
        ("old", "model"): None,
    }
    assert confusion(await service.metrics(query="?window=3h")) == (2, 1)


async def test_tags_keep_label_streams_apart(service: Service, clock: FakeClock) -> None:
    ts = clock.now - MINUTE
    await service.predictions(
        [
            record("plain", 1, ts=ts, entity_id="u"),
            record("click", 1, ts=ts, entity_id="u", tag="click"),
            record("buy", 0, ts=ts, entity_id="u", tag="buy"),
        ]
    )
    await service.feedback({"monitor": "ml/churn", "entity_id": "u", "tag": "buy", "actual": 1})
    assert await labels(service, "u") == {
        ("plain", "model"): None,
        ("click", "model"): None,
        ("buy", "model"): 1,
    }
    await service.feedback({"monitor": "ml/churn", "entity_id": "u", "actual": 0})
    assert (await labels(service, "u"))["plain", "model"] == 0
    assert (await labels(service, "u"))["click", "model"] is None


async def test_an_actual_that_arrives_first_waits_and_joins_when_its_prediction_arrives(
    service: Service, clock: FakeClock
) -> None:
    now = clock.now
    assert await service.feedback(
        {"monitor": "ml/churn", "prediction_id": "early", "actual": 1},
        {"monitor": "ml/churn", "entity_id": "u9", "timestamp": now, "actual": 0},
    ) == {"matched": 0, "pending": 2}
    known = record("known", 1, ts=now - 20, entity_id="someone")
    await service.predictions([known])
    clock.advance(30)
    # A batch with a record already stored (PostgreSQL upserts it rather than COPY it): the
    # actuals waiting for its other records join all the same.
    assert await service.predictions(
        [
            known,
            record("early", 1, ts=now - 5, entity_id="someone"),
            record("ent", 1, ts=now - 5, entity_id="u9"),
            record("too-late", 0, ts=now + 10, entity_id="u9"),  # after the actual's timestamp
        ]
    ) == {"accepted": 3, "duplicates": 1}
    assert (await labels(service, "someone"))["early", "model"] == 1
    assert await labels(service, "u9") == {("too-late", "model"): None, ("ent", "model"): 0}
    await service.tick()
    text = await service.scrape()
    assert sample(text, "truthloop_actuals_total", monitor="churn", outcome="pending") == 2
    assert sample(text, "truthloop_actuals_total", monitor="churn", outcome="matched") == 2


async def test_an_early_actual_labels_the_fallback_answer_and_then_the_model_s_shadow_answer(
    service: Service, clock: FakeClock
) -> None:
    """While the fallback answers, the model's shadow answer to the same request arrives after
    the fallback's, in another batch: an actual waiting by prediction_id labels both."""
    now = clock.now
    await service.feedback({"monitor": "ml/churn", "prediction_id": "p1", "actual": 1})
    fallback = record("p1", 1, ts=now - 5, entity_id="u1", served_by="fallback")
    assert await service.predictions([fallback]) == {"accepted": 1, "duplicates": 0}
    assert await service.predictions([record("p1", 0, ts=now - 5, entity_id="u1")]) == {
        "accepted": 1,
        "duplicates": 0,
    }
    assert await labels(service, "u1") == {("p1", "fallback"): 1, ("p1", "model"): 1}
    metrics = await service.metrics()
    assert confusion(metrics, "fallback") == (1, 1)
    assert confusion(metrics, "model") == (1, 0)
    clock.advance(HOUR + 1)
    await service.tick()
    text = await service.scrape()
    assert sample(text, "truthloop_actuals_total", monitor="churn", outcome="matched") == 1
    assert sample(text, "truthloop_actuals_total", monitor="churn", outcome="expired") == 0


async def test_a_waiting_actual_that_labeled_the_fallback_answer_is_not_counted_expired(
    service: Service, clock: FakeClock
) -> None:
    now = clock.now
    await service.feedback({"monitor": "ml/churn", "prediction_id": "p1", "actual": 1})
    await service.predictions([record("p1", 1, ts=now - 5, entity_id="u1", served_by="fallback")])
    clock.advance(HOUR + 1)
    await service.tick()
    text = await service.scrape()
    assert sample(text, "truthloop_actuals_total", monitor="churn", outcome="matched") == 1
    assert sample(text, "truthloop_actuals_total", monitor="churn", outcome="expired") == 0
    assert sample(text, "truthloop_actuals_total", monitor="churn", outcome="pending") == 1


async def test_pending_actuals_expire_after_the_window_and_are_counted(
    service: Service, clock: FakeClock
) -> None:
    await service.feedback({"monitor": "ml/churn", "prediction_id": "never", "actual": 1})
    clock.advance(HOUR + 1)
    await service.tick()
    await service.predictions([record("never", 1, ts=clock.now - 5, entity_id="x")])
    assert await labels(service, "x") == {("never", "model"): None}
    text = await service.scrape()
    assert sample(text, "truthloop_actuals_total", monitor="churn", outcome="expired") == 1
    assert sample(text, "truthloop_actuals_total", monitor="churn", outcome="matched") == 0


async def test_the_same_actual_twice_counts_once(service: Service, clock: FakeClock) -> None:
    await service.predictions([record("p", 1, ts=clock.now - 5, entity_id="u")])
    actual = {"monitor": "ml/churn", "prediction_id": "p", "actual": 1}
    await service.feedback(actual)
    await service.feedback(actual)
    await service.feedback(actual, actual)
    assert confusion(await service.metrics()) == (1, 1)
    await service.tick()
    text = await service.scrape()
    assert sample(text, "truthloop_confusion_total", version="v1", cell="tp") == 1


async def test_a_different_value_replaces_the_old_and_moves_aggregates_by_the_difference(
    service: Service, clock: FakeClock
) -> None:
    ts = clock.now - 5
    await service.predictions([record(f"p{i}", 1, ts=ts, entity_id=f"u{i}") for i in range(4)])
    await service.feedback(
        *({"monitor": "ml/churn", "prediction_id": f"p{i}", "actual": 1} for i in range(4))
    )
    assert confusion(await service.metrics()) == (4, 4)
    await service.feedback({"monitor": "ml/churn", "prediction_id": "p0", "actual": 0})
    assert confusion(await service.metrics()) == (4, 3)
    await service.feedback({"monitor": "ml/churn", "prediction_id": "p0", "actual": 1})
    assert confusion(await service.metrics()) == (4, 4)
    await service.tick()
    text = await service.scrape()
    assert sample(text, "truthloop_confusion_total", version="v1", cell="tp") == 4
    assert sample(text, "truthloop_confusion_total", version="v1", cell="fp") == 0


async def test_votes_mark_predictions_right_or_wrong(service: Service, clock: FakeClock) -> None:
    ts = clock.now - 5
    await service.predictions(
        [record("up", 1, ts=ts, entity_id="a"), record("down", 1, ts=ts, entity_id="b")]
    )
    await service.feedback(
        {"monitor": "ml/churn", "prediction_id": "up", "vote": "up"},
        {"monitor": "ml/churn", "prediction_id": "down", "vote": "down"},
    )
    assert confusion(await service.metrics()) == (2, 1)
    await service.tick()
    text = await service.scrape()
    assert sample(text, "truthloop_confusion_total", version="v1", cell="tp") == 1
    assert sample(text, "truthloop_confusion_total", version="v1", cell="fp") == 1


async def test_missing_actual_assume_labels_a_prediction_once_its_window_has_passed(
    start_service: ServiceFactory, clock: FakeClock
) -> None:
    service = await start_service()
    await service.put_monitor(
        monitor_body(
            feedback={"attributionWindow": "10m", "missingActual": {"policy": "assume", "value": 0}}
        )
    )
    await service.put_monitor(monitor_body(name="ignored"))
    start = clock.now
    await service.predictions(
        [
            record("a", 1, ts=start, entity_id="u"),
            record("b", 0, ts=start + 1, entity_id="v"),
            record("c", 1, ts=start, entity_id="w", monitor="ml/ignored"),
        ]
    )
    clock.advance(5 * MINUTE)
    await service.tick()
    assert confusion(await service.metrics()) == (0, 0)
    clock.advance(6 * MINUTE)
    await service.tick()
    assert confusion(await service.metrics()) == (2, 1)
    assert confusion(await service.metrics("ml/ignored")) == (0, 0)
    # a real actual still replaces the assumed one
    await service.feedback({"monitor": "ml/churn", "prediction_id": "a", "actual": 1})
    assert confusion(await service.metrics()) == (2, 2)
    # a record arriving after its window passed is assumed on arrival
    await service.predictions([record("late", 1, ts=start, entity_id="z")])
    assert confusion(await service.metrics()) == (3, 2)
    timeline = await service.ok("GET", "/v1/monitors/ml/churn/predictions?entity_id=z")
    assert timeline["predictions"][0]["assumed"] is True


async def test_metrics_are_attributed_to_the_prediction_time_per_version_and_served_by(
    service: Service, clock: FakeClock
) -> None:
    then = clock.now
    await service.predictions(
        [
            record("v1", 1, ts=then, entity_id="a"),
            record("v2", 0, ts=then, entity_id="b", model_version="v2"),
            record("fb", 1, ts=then, entity_id="c", served_by="fallback"),
        ]
    )
    clock.advance(3 * HOUR)  # the actuals come much later
    await service.feedback(
        *({"monitor": "ml/churn", "prediction_id": p, "actual": 1} for p in ("v1", "v2", "fb"))
    )
    assert (await service.metrics(query="?window=1h"))["labeled"] == 0
    metrics = await service.metrics(query="?window=4h")
    assert confusion(metrics) == (2, 1)
    assert metrics["served_by"]["model"]["versions"]["v1"]["metrics"]["accuracy"]["value"] == 1
    assert metrics["served_by"]["model"]["versions"]["v2"]["metrics"]["accuracy"]["value"] == 0
    assert confusion(metrics, "fallback") == (1, 1)
    only_v2 = await service.metrics(query="?window=4h&version=v2&served_by=model")
    assert only_v2["labeled"] == 1
    assert list(only_v2["served_by"]) == ["model"]
    series = await service.metrics(query="?window=4h&series=1h")
    # hour-aligned points; the first one holds the window's ragged start
    assert [point["labeled"] for point in series["series"]] == [0, 2, 0, 0, 0]


async def test_alert_state_survives_a_restart(
    start_service: ServiceFactory, clock: FakeClock
) -> None:
    first = await start_service()
    await first.put_monitor(monitor_body())
    ts = clock.now - 5
    await first.predictions([record(f"p{i}", 1, ts=ts, entity_id=f"u{i}") for i in range(6)])
    await first.feedback(
        *({"monitor": "ml/churn", "prediction_id": f"p{i}", "actual": 0} for i in range(6))
    )
    await first.tick()
    # the report on the alert that fired is made in the background and linked in the state
    before = await eventually(
        lambda: _with_report(first), "the fired alert's report linked in the state"
    )
    assert before["fallback"]["active"] is True
    await first.stop()
    second = await start_service()
    after = await second.state()
    assert after == before


async def _with_report(service: Service) -> dict[str, Any] | None:
    """The state once its report link is stored too (the link is visible while it is saved)."""
    state: dict[str, Any] = await service.state()
    engine = service.engine
    stored = (await engine.store.load_states()).get(engine.registered("ml/churn").id)
    if stored is None or not stored.state.get("report") or not state.get("report"):
        return None
    return state


async def test_a_state_stored_by_the_previous_release_restores_its_causes(
    start_service: ServiceFactory, clock: FakeClock
) -> None:
    first = await start_service()
    await first.put_monitor(monitor_body())
    fallback = "/v1/monitors/ml/churn/fallback"
    await first.ok("POST", fallback, json={"mode": "disengaged"})
    labels = {"alertname": "LatencyHigh", "truthloop_monitor": "ml/churn"}
    firing = {
        "version": "4",
        "status": "firing",
        "alerts": [{"status": "firing", "labels": labels}],
    }
    await first.ok("POST", "/v1/alertmanager", json=firing)
    ts = clock.now - 5
    await first.predictions([record(f"p{i}", 1, ts=ts, entity_id=f"u{i}") for i in range(6)])
    await first.feedback(
        *({"monitor": "ml/churn", "prediction_id": f"p{i}", "actual": 0} for i in range(6))
    )
    await first.tick()
    await eventually(lambda: _with_report(first), "the fired alert's report linked and stored")
    await first.ok("POST", fallback, json={"mode": "auto"})  # both causes at once
    before = await first.state()
    assert before["fallback"]["causes"] == [
        {"kind": "alert", "name": "accuracy-low"},
        {"kind": "alertmanager", "name": "LatencyHigh"},
    ]
    assert before["fallback"]["reason"] == "accuracy-low, alertmanager: LatencyHigh"
    store = first.engine.store
    monitor_id = first.engine.registered("ml/churn").id
    stored = (await store.load_states())[monitor_id]
    previous = {k: v for k, v in stored.state.items() if k != "fallback_causes"}
    assert previous["fallback_reason"] == "accuracy-low, alertmanager: LatencyHigh"
    await store.save_state(monitor_id, dataclasses.replace(stored, state=previous))
    await first.stop()
    second = await start_service()
    assert await second.state() == before


async def test_retention_deletes_raw_predictions_and_keeps_aggregates(
    start_service: ServiceFactory, clock: FakeClock
) -> None:
    service = await start_service(retention=2 * HOUR)
    await service.put_monitor(monitor_body())
    await service.predictions([record("p", 1, ts=clock.now - 5, entity_id="u")])
    await service.feedback({"monitor": "ml/churn", "prediction_id": "p", "actual": 1})
    clock.advance(3 * HOUR)
    await service.tick()
    assert (await labels(service, "u")) == {}
    assert confusion(await service.metrics(query="?window=4h")) == (1, 1)
    assert clock.now > T0
