"""Capture end to end: client → real sidecar → model, records → a fake feedback service that
counts what it is sent (the real service's run is in test_sidecar_feedback_service)."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from tests.integration import sidecar_harness as harness
from tests.integration.sidecar_harness import Client
from tests.support.churn_model import Model, monitor
from tests.support.fake_feedback import FakeFeedback, Hang
from tests.support.waiting import eventually
from truthloop.sidecar.capture import CaptureStats

pytest_plugins = ["tests.integration.sidecar_fixtures"]


def assert_captured_what_clients_saw(client: Client, feedback: FakeFeedback) -> None:
    records = {pid: r for (pid, by), r in feedback.records.items() if by == "model"}
    assert len(records) == len(client.seen)
    for entity, seen in client.seen.items():
        record = records[seen.prediction_id]
        assert record["entity_id"] == entity
        assert record["prediction"] == seen.body["prediction"]
        assert record["score"] == seen.body["score"]
        assert record["monitor"] == "ml/churn"
        assert record["model_version"] == "v7"
        assert record["features"]["tenure"] == int(entity[1:]) % 12


async def test_an_outage_mid_run_loses_nothing_and_sends_nothing_twice(
    model: Model, feedback: FakeFeedback, tmp_path: Path
) -> None:
    async with harness.running(harness.settings(model, feedback.url, tmp_path)) as sidecar:
        client = Client(f"http://127.0.0.1:{sidecar.port}")
        await client.run(range(1000))
        await feedback.stop()
        await client.run(range(1000, 3000))
        await eventually(lambda: sidecar.shipper.spool.records > 0, "records spooled")
        await feedback.start()
        await client.run(range(3000, 4000))
        await eventually(lambda: len(feedback.records) == 4000, "every record")
    assert_captured_what_clients_saw(client, feedback)
    assert feedback.resent == 0
    assert not sidecar.shipper.stats.dropped


async def test_a_service_that_never_answers_slows_no_request(model: Model, tmp_path: Path) -> None:
    hang = Hang()
    await hang.start()
    bound = 256 * 1024
    config = harness.settings(model, hang.url, tmp_path, queue_bytes=bound, batch_bytes=16 * 1024)
    async with harness.running(config) as sidecar:
        client = Client(f"http://127.0.0.1:{sidecar.port}")
        await client.run(range(5000))
        assert {s.status for s in client.seen.values()} == {200}
        assert max(s.seconds for s in client.seen.values()) < 1.0
        await eventually(lambda: sidecar.shipper.spool.records > 4000, "the spool growing")
        # The queue cannot pass its bound (it refuses records); none was refused: it spilled.
        assert sidecar.shipper.buffer.bytes <= bound
        assert sidecar.shipper.stats.dropped["queue_full"] == 0
    await hang.stop()
    assert sidecar.shipper.spool.records == 5000


def sampled(stats: CaptureStats) -> dict[str, int]:
    return {"sampled_out": stats.skipped["sampled_out"]}


async def test_failures_and_samples_are_counted_not_captured(
    model: Model, feedback: FakeFeedback, tmp_path: Path
) -> None:
    spec = monitor(
        capture={
            "entityId": {"pointer": "/user_id"},
            "prediction": {"pointer": "/missing"},
            "sampleRate": 0.5,
        }
    )
    async with harness.running(harness.settings(model, feedback.url, tmp_path, spec=spec)) as car:
        url = f"http://127.0.0.1:{car.port}"
        client = Client(url)
        await client.run(range(200), concurrency=8)
        async with aiohttp.ClientSession() as session:
            for code in (404, 500, 503):
                async with session.get(f"{url}/status/{code}") as response:
                    assert response.status == code
        stats = car.capture.stats
        await eventually(
            lambda: stats.skipped == {"status_5xx": 2, "status_4xx": 1, **sampled(stats)}
        )
        assert stats.captured == 0
        assert 60 < stats.skipped["sampled_out"] < 140
        assert sum(stats.errors.values()) == 200 - stats.skipped["sampled_out"]
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{car.admin_port}/metrics") as response,
        ):
            text = await response.text()
        assert 'truthloop_sidecar_capture_skipped_total{reason="status_5xx"} 2.0' in text
        assert "truthloop_sidecar_request_seconds_count" in text
    assert feedback.records == {}


async def test_a_batch_request_gives_one_record_per_row(
    model: Model, feedback: FakeFeedback, tmp_path: Path
) -> None:
    spec = monitor(
        capture={
            "entityId": {"pointer": "/user_id"},
            "prediction": {"pointer": "/prediction"},
            "batch": {"instances": "/instances", "predictions": "/predictions"},
        }
    )
    async with harness.running(harness.settings(model, feedback.url, tmp_path, spec=spec)) as car:
        rows = [Client.request(i) for i in range(5)]
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"http://127.0.0.1:{car.port}/predict", json={"instances": rows}) as r,
        ):
            pid = r.headers["X-Prediction-ID"]
            answer = await r.json()
        await eventually(lambda: len(feedback.records) == 5)
    for i in range(5):
        record = feedback.records[(f"{pid}.{i}", "model")]
        assert record["entity_id"] == f"u{i}"
        assert record["prediction"] == answer["predictions"][i]["prediction"]


async def test_a_gzipped_answer_is_captured_from_the_json_inside(
    model: Model, feedback: FakeFeedback, tmp_path: Path
) -> None:
    model.gzip = True
    async with harness.running(harness.settings(model, feedback.url, tmp_path)) as sidecar:
        client = Client(f"http://127.0.0.1:{sidecar.port}")
        await client.run(range(20), concurrency=4)
        await eventually(lambda: len(feedback.records) == 20, "every record")
    assert_captured_what_clients_saw(client, feedback)
    assert sidecar.capture.stats.errors.total() == 0


async def test_refused_capture_shows_in_readiness_and_metrics_and_serving_goes_on(
    model: Model, feedback: FakeFeedback, tmp_path: Path
) -> None:
    feedback.status_override = 401
    async with harness.running(harness.settings(model, feedback.url, tmp_path)) as sidecar:
        client = Client(f"http://127.0.0.1:{sidecar.port}")
        await client.run(range(200))
        await eventually(lambda: sidecar.shipper.refused is not None, "capture refused")
        admin = f"http://127.0.0.1:{sidecar.admin_port}"
        async with aiohttp.ClientSession() as session:
            async with session.get(admin + "/readyz") as r:
                assert r.status == 200  # the model keeps its Service
                assert (await r.json())["capture"]["refused"] == "unauthorized"
            async with session.get(admin + "/metrics") as r:
                metrics = await r.text()
        assert 'truthloop_sidecar_capture_refused{reason="unauthorized"} 1.0' in metrics
        assert all(seen.status == 200 for seen in client.seen.values())
        feedback.status_override = None
        await eventually(lambda: len(feedback.records) == 200, "the refused records delivered")
        assert sidecar.shipper.refused is None
    assert_captured_what_clients_saw(client, feedback)
    assert not sidecar.shipper.stats.dropped


async def test_a_request_without_its_entity_is_captured_without_one(
    model: Model, feedback: FakeFeedback, tmp_path: Path
) -> None:
    """The entity header is only needed for joins by entity: a request without it is still
    captured (entity_id null) under the X-Prediction-ID its client got, to be labeled by that."""
    spec = monitor(
        capture={"entityId": {"header": "X-Entity-ID"}, "prediction": {"pointer": "/prediction"}}
    )
    async with harness.running(harness.settings(model, feedback.url, tmp_path, spec=spec)) as car:
        pids = {}
        async with aiohttp.ClientSession() as session:
            for entity in ("u1", None):
                headers = {"X-Entity-ID": entity} if entity else {}
                async with session.post(
                    f"http://127.0.0.1:{car.port}/predict",
                    json=Client.request(1),
                    headers=headers,
                ) as r:
                    assert r.status == 200
                    pids[entity] = r.headers["X-Prediction-ID"]
        await eventually(lambda: len(feedback.records) == 2, "both requests captured")
        assert not car.capture.stats.errors
    for entity, pid in pids.items():
        record = feedback.records[(pid, "model")]
        assert (record["entity_id"], record["prediction"]) == (entity, 1)


async def test_a_requests_segment_values_from_a_header_and_the_body_are_captured(
    model: Model, feedback: FakeFeedback, tmp_path: Path
) -> None:
    spec = monitor(
        segments=[
            {"name": "country", "header": "X-Country"},
            {"name": "plan", "pointer": "/features/plan"},
            {"name": "tenure", "pointer": "/features/tenure", "buckets": [6, 12]},
        ]
    )
    async with harness.running(harness.settings(model, feedback.url, tmp_path, spec=spec)) as car:
        url = f"http://127.0.0.1:{car.port}/predict"
        pids = []
        async with aiohttp.ClientSession() as session:
            for headers, body in (
                ({"X-Country": "DE"}, Client.request(3)),
                ({}, {"user_id": "u4", "features": {"tenure": 4, "plan": {"tier": "gold"}}}),
            ):
                async with session.post(url, json=body, headers=headers) as r:
                    assert r.status == 200
                    pids.append(r.headers["X-Prediction-ID"])
            await eventually(lambda: len(feedback.records) == 2, "both requests captured")
            async with session.get(f"http://127.0.0.1:{car.admin_port}/metrics") as r:
                metrics = await r.text()
        assert not car.capture.stats.errors
    with_both, without = (feedback.records[pid, "model"] for pid in pids)
    assert with_both["segments"] == {"country": "DE", "plan": "basic", "tenure": 3}
    # no header, an object where the plan was: the record is captured without them
    assert without["segments"] == {"tenure": 4}
    assert 'truthloop_sidecar_segment_values_dropped_total{reason="not_scalar"} 1.0' in metrics
