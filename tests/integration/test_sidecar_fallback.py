"""The fallback end to end: the state flips, the rules answer (the model in shadow), then not."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import aiohttp

from tests.integration import sidecar_harness as harness
from tests.integration.sidecar_harness import Client
from tests.support.churn_model import Model, monitor
from tests.support.fake_feedback import FakeFeedback
from tests.support.waiting import eventually

pytest_plugins = ["tests.integration.sidecar_fixtures"]


async def test_the_rules_answer_within_a_second_of_engaging_and_stop_after(
    model: Model, feedback: FakeFeedback, tmp_path: Path
) -> None:
    async with harness.running(harness.settings(model, feedback.url, tmp_path)) as car:
        client = Client(f"http://127.0.0.1:{car.port}")
        await eventually(lambda: feedback.state_polls >= 2, "the follower long-polling")
        seen = await client.run_one(3)
        assert seen.served_by is None
        assert seen.body == Model.answer(Client.request(3))

        feedback.set_fallback("ml/churn", active=True)
        await eventually(lambda: car.live.current.fallback_active, "engaged", within=1.0)
        calls = model.calls
        await client.run(range(100, 140), concurrency=1)  # shadow calls stay under their limit
        for i in range(100, 140):
            seen = client.seen[f"u{i}"]
            assert seen.status == 200
            assert seen.served_by == "fallback"
            assert seen.body == {"prediction": 1 if i % 12 < 6 else 0}
        await eventually(lambda: model.calls == calls + 40, "the model's shadow answers")
        await eventually(lambda: len(feedback.records) == 1 + 80, "both answers captured")
        for i in range(100, 140):
            pid = client.seen[f"u{i}"].prediction_id
            fallback = feedback.records[(pid, "fallback")]
            shadow = feedback.records[(pid, "model")]
            assert fallback["prediction"] == client.seen[f"u{i}"].body["prediction"]
            assert fallback["entity_id"] == shadow["entity_id"] == f"u{i}"
            assert shadow["score"] == Model.answer(Client.request(i))["score"]

        feedback.set_fallback("ml/churn", active=False)
        await eventually(lambda: not car.live.current.fallback_active, "released", within=1.0)
        seen = await client.run_one(5)
        assert seen.served_by is None
        assert seen.body == Model.answer(Client.request(5))
        assert car.fallback.stats.answered == 40


async def test_rules_that_cannot_answer_send_the_request_to_the_model(
    model: Model, feedback: FakeFeedback, tmp_path: Path
) -> None:
    spec = monitor(
        fallback={
            "mode": "engaged",
            "rules": [
                {"when": "request.features.missing > 3", "prediction": "1"},
                {"prediction": "request.features.also_missing"},
            ],
        }
    )
    feedback.monitors["ml/churn"] = spec
    feedback.set_fallback("ml/churn", active=True)
    async with harness.running(harness.settings(model, feedback.url, tmp_path, spec=spec)) as car:
        assert car.live.current.fallback_active
        client = Client(f"http://127.0.0.1:{car.port}")
        for i in range(10):
            seen = await client.run_one(i)
            assert seen.status == 200
            assert seen.served_by is None
            assert seen.body == Model.answer(Client.request(i))
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"http://127.0.0.1:{car.port}/predict", data=b"not json") as response,
        ):
            assert response.status == 500  # the model's own answer to a body it cannot read
        assert car.fallback.stats.passed == {"no_rule": 10, "not_json": 1}
        assert car.fallback.stats.answered == 0


async def test_the_last_known_state_holds_while_the_service_is_away(
    model: Model, feedback: FakeFeedback, tmp_path: Path
) -> None:
    feedback.set_fallback("ml/churn", active=True)
    async with harness.running(harness.settings(model, feedback.url, tmp_path)) as car:
        await eventually(lambda: car.live.current.fallback_active, "engaged")
        await feedback.stop()
        await eventually(lambda: sum(car.follower.stats.poll_errors.values()) >= 3)
        seen = await Client(f"http://127.0.0.1:{car.port}").run_one(1)
        assert seen.served_by == "fallback"
        assert car.live.current.fallback_active


async def test_a_new_generation_reloads_the_spec_and_a_bad_one_keeps_the_old(
    model: Model, feedback: FakeFeedback, tmp_path: Path
) -> None:
    async with harness.running(harness.settings(model, feedback.url, tmp_path)) as car:
        await eventually(lambda: feedback.state_polls >= 2)
        assert car.live.current.monitor is not None
        renamed: dict[str, Any] = copy.deepcopy(feedback.monitors["ml/churn"])
        renamed["metadata"]["generation"] = 2
        renamed["spec"]["capture"]["prediction"] = {"pointer": "/score"}
        feedback.monitors["ml/churn"] = renamed
        feedback.set_state("ml/churn", generation=2)
        await eventually(lambda: car.live.current.monitor.generation == 2, "generation 2")
        assert car.live.current.monitor.spec.capture.prediction.pointer == "/score"

        broken = copy.deepcopy(renamed)
        broken["metadata"]["generation"] = 3
        broken["spec"]["task"] = "astrology"
        feedback.monitors["ml/churn"] = broken
        feedback.set_state("ml/churn", generation=3)
        await eventually(lambda: car.follower.stats.reload_errors["invalid_spec"] == 1)
        assert car.live.current.monitor.generation == 2
        fetches = feedback.spec_fetches
        feedback.set_fallback("ml/churn", active=True)  # same generation: not fetched again
        await eventually(lambda: car.live.current.fallback_active)
        assert feedback.spec_fetches == fetches
