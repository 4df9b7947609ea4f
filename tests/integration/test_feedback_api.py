"""The feedback service's HTTP API, through a real server."""

from __future__ import annotations

import asyncio
import csv
import io

import msgspec

from tests.support.feedback import (
    FakeClock,
    Service,
    ServiceFactory,
    monitor_body,
    record,
    sample,
)
from tests.support.waiting import eventually
from truthloop.core import capture
from truthloop.core.extract import Row
from truthloop.core.spec import parse_monitor

pytest_plugins = ["tests.support.feedback_fixtures"]


async def test_monitors_are_created_read_listed_replaced_and_deleted(
    start_service: ServiceFactory,
) -> None:
    service = await start_service()
    status, created = await service.call("PUT", "/v1/monitors/ml/churn", json=monitor_body())
    assert status == 201
    assert created["metadata"]["generation"] == 1
    assert created["status"]["phase"] in ("Pending", "Collecting")
    got = await service.ok("GET", "/v1/monitors/ml/churn")
    assert got["spec"] == monitor_body()["spec"]
    status, replaced = await service.call(
        "PUT", "/v1/monitors/ml/churn", json=monitor_body(metrics={"window": "2h"})
    )
    assert status == 200
    assert replaced["metadata"]["generation"] == 2
    assert (await service.state())["generation"] == 2
    await service.put_monitor(monitor_body(name="fraud"))
    listed = await service.ok("GET", "/v1/monitors")
    assert [m["metadata"]["name"] for m in listed["items"]] == ["churn", "fraud"]
    assert await service.ok("DELETE", "/v1/monitors/ml/fraud") == {"deleted": "ml/fraud"}
    status, body = await service.call("GET", "/v1/monitors/ml/fraud")
    assert status == 404
    assert body["error"]
    assert [m["metadata"]["name"] for m in (await service.ok("GET", "/v1/monitors"))["items"]] == [
        "churn"
    ]


async def test_monitors_survive_a_restart(start_service: ServiceFactory) -> None:
    first = await start_service()
    await first.put_monitor(monitor_body())
    await first.stop()
    second = await start_service()
    assert (await second.ok("GET", "/v1/monitors/ml/churn"))["spec"] == monitor_body()["spec"]


async def test_a_monitor_stored_before_durations_were_bounded_still_serves_and_stays_editable(
    start_service: ServiceFactory, clock: FakeClock
) -> None:
    """After an upgrade a service holding one starts; the operator's PUT of the same spec is
    accepted, a changed spec must fit the bounds."""
    held = monitor_body(metrics={"window": "100d", "minSamples": 5})
    first = await start_service()
    await first.engine.store.put_monitor(parse_monitor(held, bounded=False), held, clock())
    await first.stop()
    second = await start_service()
    assert (await second.metrics())["window"]["seconds"] == 100 * 86400
    relabeled = {**held, "metadata": {**held["metadata"], "labels": {"team": "ml"}}}
    assert (await second.call("PUT", "/v1/monitors/ml/churn", json=relabeled))[0] == 200
    changed = monitor_body(metrics={"window": "100d", "minSamples": 6})
    status, body = await second.call("PUT", "/v1/monitors/ml/churn", json=changed)
    assert status == 400
    assert body["details"][0]["field"] == "spec.metrics.window"
    assert "at most 90d" in body["details"][0]["message"]


async def test_an_invalid_monitor_is_refused_with_the_field_path(
    start_service: ServiceFactory,
) -> None:
    service = await start_service()
    bad = monitor_body(alerts=[{"name": "a", "metric": "accuracy", "below": "high"}])
    status, body = await service.call("PUT", "/v1/monitors/ml/churn", json=bad)
    assert status == 400
    assert any(d["field"].startswith("spec.alerts[0]") for d in body["details"])
    status, body = await service.call("PUT", "/v1/monitors/ml/other", json=monitor_body())
    assert status == 400
    assert body["details"][0]["field"] == "metadata.name"
    assert (await service.ok("GET", "/v1/monitors"))["items"] == []


async def test_a_monitor_cannot_change_its_task_while_it_has_data(service: Service) -> None:
    status, body = await service.call(
        "PUT", "/v1/monitors/ml/churn", json=monitor_body(task="regression", alerts=[])
    )
    assert status == 409
    assert "delete" in body["error"]


async def test_writes_need_the_bearer_token_when_one_is_configured(
    start_service: ServiceFactory,
) -> None:
    service = await start_service(token="s3cret")
    await service.put_monitor(monitor_body())
    async with service.http.post(
        service.base + "/v1/predictions", json=[], headers={"Authorization": "Bearer wrong"}
    ) as response:
        assert response.status == 401
        assert (await response.json())["details"][0]["field"] == "Authorization"
    anonymous = {"Authorization": ""}
    async with service.http.put(
        service.base + "/v1/monitors/ml/x", json=monitor_body(name="x"), headers=anonymous
    ) as response:
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    async with service.http.get(service.base + "/v1/monitors/ml/churn", headers=anonymous) as r:
        assert r.status == 200
    assert await service.ok("POST", "/v1/predictions", json=[]) == {"accepted": 0, "duplicates": 0}


async def test_predictions_accept_a_json_array_or_ndjson_and_count_duplicates(
    service: Service, clock: FakeClock
) -> None:
    records = [record(f"p{i}", 1, ts=clock.now, entity_id=f"u{i}") for i in range(3)]
    assert await service.predictions(records) == {"accepted": 3, "duplicates": 0}
    ndjson = b"\n".join(msgspec.json.encode(r) for r in [*records, record("p9", 0, ts=clock.now)])
    status, body = await service.call(
        "POST",
        "/v1/predictions",
        data=ndjson + b"\n\n",
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert (status, body) == (200, {"accepted": 1, "duplicates": 3})
    repeated = [record("r", 1, ts=clock.now)] * 2
    assert await service.predictions(repeated) == {"accepted": 1, "duplicates": 1}


async def test_metrics_answer_every_metric_with_its_interval_per_version_and_overall(
    service: Service, clock: FakeClock
) -> None:
    ts = clock.now - 30
    await service.predictions(
        [record(f"a{i}", i % 2, ts=ts, entity_id=f"a{i}") for i in range(10)]
        + [record(f"b{i}", 1, ts=ts, entity_id=f"b{i}", model_version="v2") for i in range(10)]
    )
    await service.feedback(
        *({"monitor": "ml/churn", "prediction_id": f"a{i}", "actual": 1} for i in range(10)),
        *({"monitor": "ml/churn", "prediction_id": f"b{i}", "actual": 1} for i in range(10)),
    )
    metrics = await service.metrics()
    assert metrics["samples"] == 20
    assert metrics["labeled"] == 20
    accuracy = metrics["metrics"]["accuracy"]
    assert accuracy["value"] == 0.75
    assert accuracy["lower"] < 0.75 < accuracy["upper"]
    versions = metrics["served_by"]["model"]["versions"]
    assert versions["v1"]["metrics"]["accuracy"]["value"] == 0.5
    assert versions["v2"]["metrics"]["accuracy"]["value"] == 1.0
    assert metrics["served_by"]["fallback"]["labeled"] == 0
    series = await service.metrics(query="?window=5m&series=1m")
    assert len(series["series"]) == 5
    assert [p["labeled"] for p in series["series"]] == [0, 0, 0, 20, 0]  # 30s ago: last minute


async def test_state_long_poll_wakes_on_a_change_and_times_out_without_one(
    service: Service, clock: FakeClock
) -> None:
    state = await service.state()
    version = state["version"]
    assert (await service.state(query=f"?wait=0.05&since={version}"))["version"] == version
    assert (await service.state(query=f"?wait=30&since={version - 1}"))["version"] == version
    waiter = asyncio.create_task(service.state(query=f"?wait=30&since={version}"))
    await eventually(lambda: followers(service, 1))  # the long-poll waits at the service
    assert not waiter.done()
    await service.ok("POST", "/v1/monitors/ml/churn/fallback", json={"mode": "engaged"})
    woken = await asyncio.wait_for(waiter, 10)
    assert woken["version"] > version
    assert woken["fallback"] == {
        "active": True,
        "mode": "engaged",
        "since": clock.now,
        "causes": [{"kind": "manual", "name": None}],
        "reason": "manual",
    }
    await eventually(lambda: followers(service, 0))


async def followers(service: Service, count: int) -> bool:
    found = sample(await service.scrape(), "truthloop_state_followers", monitor="churn")
    return found == count


async def test_manual_fallback_modes_override_the_alerts(
    service: Service, clock: FakeClock
) -> None:
    ts = clock.now - 5
    await service.predictions([record(f"p{i}", 1, ts=ts, entity_id=f"u{i}") for i in range(6)])
    await service.feedback(
        *({"monitor": "ml/churn", "prediction_id": f"p{i}", "actual": 0} for i in range(6))
    )
    await service.tick()
    assert (await service.state())["fallback"]["active"] is True
    answer = await service.ok("POST", "/v1/monitors/ml/churn/fallback", json={"mode": "disengaged"})
    assert answer["fallback"]["active"] is False
    await service.tick()
    assert (await service.state())["fallback"] == {
        **(await service.state())["fallback"],
        "active": False,
        "mode": "disengaged",
    }
    await service.ok("POST", "/v1/monitors/ml/churn/fallback", json={"mode": "auto"})
    assert (await service.state())["fallback"]["active"] is True
    status, body = await service.call(
        "POST", "/v1/monitors/ml/churn/fallback", json={"mode": "sometimes"}
    )
    assert status == 400
    assert body["details"][0]["field"] == "mode"


async def test_alertmanager_firing_alerts_engage_the_fallback_until_resolved(
    service: Service, clock: FakeClock
) -> None:
    def payload(status: str) -> dict[str, object]:
        return {
            "version": "4",
            "status": status,
            "alerts": [
                {
                    "status": status,
                    "labels": {"alertname": "LatencyHigh", "truthloop_monitor": "ml/churn"},
                },
                {"status": status, "labels": {"alertname": "Other"}},
            ],
        }

    assert await service.ok("POST", "/v1/alertmanager", json=payload("firing")) == {
        "monitors": ["ml/churn"]
    }
    state = await service.state()
    assert state["fallback"]["active"] is True
    assert state["fallback"]["causes"] == [{"kind": "alertmanager", "name": "LatencyHigh"}]
    assert state["external"] == ["LatencyHigh"]
    await service.ok("POST", "/v1/alertmanager", json=payload("resolved"))
    clock.advance(3 * 60)
    await service.tick()
    state = await service.state()
    assert state["external"] == []
    assert state["fallback"]["active"] is False


async def test_an_entity_timeline_shows_predictions_with_their_actuals(
    service: Service, clock: FakeClock
) -> None:
    await service.predictions(
        [
            record(f"p{i}", i % 2, ts=clock.now - 100 + i, entity_id="u", features={"i": i})
            for i in range(5)
        ]
    )
    await service.feedback({"monitor": "ml/churn", "prediction_id": "p3", "actual": 0})
    body = await service.ok("GET", "/v1/monitors/ml/churn/predictions?entity_id=u&limit=3")
    assert [p["prediction_id"] for p in body["predictions"]] == ["p4", "p3", "p2"]
    p3 = body["predictions"][1]
    assert (p3["actual"], p3["correct"], p3["features"]) == (0, False, {"i": 3})


async def test_a_row_of_a_batch_is_labeled_by_its_row_id(
    service: Service, clock: FakeClock
) -> None:
    """A row-based capture's records are `<base>.<row>`: the client labels a row by the
    `X-Prediction-ID` it got and the row's place in its batch."""
    base = "0190c6e4-0000-7000-8000-000000000001"
    made = capture.records(
        [Row("u", i % 2, index=i) for i in range(3)],
        prediction_id=base,
        monitor="ml/churn",
        model_version="v1",
        served_by="model",
        ts=clock.now - 10,
        batch=True,
    )
    await service.predictions([msgspec.to_builtins(r) for r in made])
    await service.feedback({"monitor": "ml/churn", "prediction_id": f"{base}.1", "actual": 0})
    body = await service.ok("GET", "/v1/monitors/ml/churn/predictions?entity_id=u")
    labeled = {p["prediction_id"]: p["actual"] for p in body["predictions"]}
    assert labeled == {f"{base}.0": None, f"{base}.1": 0, f"{base}.2": None}


async def test_the_dataset_streams_labeled_rows_and_isolates_the_misses(
    service: Service, clock: FakeClock
) -> None:
    n = 5000  # more than one store round trip
    ts = clock.now - 60
    for start in range(0, n, 1000):
        await service.predictions(
            [
                record(f"p{i}", i % 2, ts=ts, entity_id=f"u{i}", features={"x": i})
                for i in range(start, start + 1000)
            ]
        )
        await service.feedback(
            *(
                {"monitor": "ml/churn", "prediction_id": f"p{i}", "actual": 1}
                for i in range(start, start + 1000)
            )
        )
    await service.predictions([record("unlabeled", 1, ts=ts)])
    status, body = await service.call("GET", "/v1/monitors/ml/churn/dataset?window=1h")
    assert status == 200
    rows = [msgspec.json.decode(line) for line in body.splitlines()]
    assert len(rows) == n
    assert rows[7]["features"] == {"x": 7}
    status, body = await service.call(
        "GET", "/v1/monitors/ml/churn/dataset?window=1h&correct=false&format=csv"
    )
    table = list(csv.DictReader(io.StringIO(body.decode())))
    assert len(table) == n // 2
    assert {row["correct"] for row in table} == {"false"}
    assert {row["prediction"] for row in table} == {"0"}
    assert msgspec.json.decode(table[0]["features"])["x"] % 2 == 0
    status, body = await service.call("GET", "/v1/monitors/ml/churn/dataset?window=1h&format=json")
    assert status == 200
    assert body == rows, "format=json: the same rows as one JSON array, across store chunks"
    status, body = await service.call(
        "GET", "/v1/monitors/ml/churn/dataset?window=1h&version=v0&format=json"
    )
    assert (status, body) == (200, [])


async def test_the_csv_export_defuses_text_a_spreadsheet_would_run_as_a_formula(
    service: Service, clock: FakeClock
) -> None:
    """OWASP's CSV injection advice: a text cell starting with = + - @ gets a leading quote;
    numbers stay numbers."""
    await service.put_monitor(monitor_body("kinds", task="multiclass", alerts=[]))
    await service.put_monitor(monitor_body("price", task="regression", alerts=[]))
    formula = '=HYPERLINK("http://example.com/x","click")'
    ts = clock.now - 60
    await service.predictions(
        [
            record(formula, "=1+1", ts=ts, monitor="ml/kinds", entity_id="@SUM(A1)", tag="+x"),
            record("plain", "cat", ts=ts, monitor="ml/kinds", entity_id="u", model_version="-v"),
            record("negative", -1.5, ts=ts, monitor="ml/price"),
        ]
    )
    await service.feedback(
        {"monitor": "ml/kinds", "prediction_id": formula, "actual": "-2"},
        {"monitor": "ml/kinds", "prediction_id": "plain", "actual": "cat"},
        {"monitor": "ml/price", "prediction_id": "negative", "actual": -2},
    )

    async def table(monitor: str) -> list[dict[str, str]]:
        _, body = await service.call("GET", f"/v1/monitors/ml/{monitor}/dataset?format=csv")
        return list(csv.DictReader(io.StringIO(body.decode())))

    defused, plain = await table("kinds")
    columns = ("prediction_id", "entity_id", "tag", "prediction", "actual")
    assert [defused[c] for c in columns] == ["'" + formula, "'@SUM(A1)", "'+x", "'=1+1", "'-2"]
    assert (plain["model_version"], plain["prediction"]) == ("'-v", "cat")
    [negative] = await table("price")
    assert (negative["prediction"], negative["actual"]) == ("-1.5", "-2")


async def test_prometheus_exposition_follows_the_design_names(
    service: Service, clock: FakeClock
) -> None:
    ts = clock.now - 5
    await service.predictions(
        [record(f"p{i}", 1, ts=ts, entity_id=f"u{i}") for i in range(6)]
        + [record("f", 0, ts=ts, entity_id="f", served_by="fallback")]
    )
    await service.feedback(
        *({"monitor": "ml/churn", "prediction_id": f"p{i}", "actual": i % 2} for i in range(6)),
        {"monitor": "ml/churn", "prediction_id": "f", "actual": 0},
    )
    await service.tick()
    text = await service.scrape()
    base = {"namespace": "ml", "monitor": "churn", "model": "churn"}
    assert sample(text, "truthloop_predictions_total", **base, version="v1", served_by="model") == 6
    assert sample(text, "truthloop_actuals_total", **base, outcome="matched") == 7
    model = {**base, "version": "v1", "served_by": "model"}
    assert sample(text, "truthloop_confusion_total", **model, cell="tp") == 3
    assert sample(text, "truthloop_confusion_total", **model, cell="fp") == 3
    accuracy = {"metric": "accuracy", "version": "*", "served_by": "model"}
    assert sample(text, "truthloop_model_metric", **base, **accuracy, bound="value") == 0.5
    assert sample(text, "truthloop_model_metric", **base, **accuracy, bound="lower") < 0.5
    fallback_accuracy = {**accuracy, "served_by": "fallback", "bound": "value"}
    assert sample(text, "truthloop_model_metric", **base, **fallback_accuracy) == 1.0
    assert sample(text, "truthloop_fallback_active", **base) == 1
    assert sample(text, "truthloop_alert_firing", **base, alert="accuracy-low") == 1


async def test_health_and_readiness(service: Service) -> None:
    assert await service.ok("GET", "/healthz") == {"status": "ok"}
    assert await service.ok("GET", "/readyz") == {"status": "ready"}


async def test_unicode_entity_ids_round_trip(service: Service, clock: FakeClock) -> None:
    entity = "用户-42 café 🚀"
    await service.predictions([record("u1", 1, ts=clock.now, entity_id=entity)])
    await service.feedback({"monitor": "ml/churn", "entity_id": entity, "actual": 1})
    status, body = await service.call(
        "GET", "/v1/monitors/ml/churn/predictions", params={"entity_id": entity}
    )
    assert status == 200
    assert [(p["entity_id"], p["actual"]) for p in body["predictions"]] == [(entity, 1)]


async def test_a_refused_capture_batch_shows_in_the_monitor_s_state_until_it_stops(
    start_service: ServiceFactory, clock: FakeClock
) -> None:
    service = await start_service(token="s3cret")
    await service.put_monitor(monitor_body())
    version = (await service.state())["version"]
    assert (await service.state())["capture"]["refused"] is None

    async def refused_batch() -> None:
        headers = {"Authorization": "Bearer rotated-away", "X-Truthloop-Monitor": "ml/churn"}
        status, _ = await service.call(
            "POST", "/v1/predictions", json=[record("p1", ts=clock.now)], headers=headers
        )
        assert status == 401

    await refused_batch()
    await eventually(lambda: _refused(service))
    state = await service.state()
    assert state["capture"] == {
        "refused": "unauthorized",
        "since": clock.now,
        "last": clock.now,
        "passthrough": None,
    }
    assert state["version"] > version  # the operator and the sidecars hear of it at once
    view = await service.ok("GET", "/v1/monitors/ml/churn")
    assert view["status"]["capture"]["refused"] == "unauthorized"
    first = clock.now
    clock.advance(90)
    await refused_batch()  # it goes on: `last` moves, `since` stays
    await eventually(lambda: _last_refused(service, clock.now))
    assert (await service.state())["capture"]["since"] == first
    clock.advance(301)  # no refusal for five minutes: over
    assert (await service.state())["capture"]["refused"] is None


async def _refused(service: Service) -> bool:
    return (await service.state())["capture"]["refused"] is not None


async def _last_refused(service: Service, when: float) -> bool:
    return (await service.state())["capture"]["last"] == when
