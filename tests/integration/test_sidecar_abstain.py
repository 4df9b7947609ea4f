"""The abstain end to end: client → real sidecar → churn model, records → fake feedback service.

With `spec.review.abstain`, a score in the band is answered "I don't know" (the configured
response, `X-Truthloop-Abstain: true`, the prediction ID) and captured with the model's own
prediction and score, flagged `abstained`; outside the band the model answers, but for the
explored share, which is exactly the prediction IDs `review.draw` puts under `explore`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp

from tests.integration import sidecar_harness as harness
from tests.integration.sidecar_harness import Client
from tests.support.churn_model import Model, monitor
from tests.support.fake_feedback import FakeFeedback
from tests.support.waiting import eventually
from truthloop.core import capture, review
from truthloop.core.spec import AbstainResponse, AbstainSpec, ReviewSpec
from truthloop.sidecar import live
from truthloop.sidecar.app import Sidecar

pytest_plugins = ["tests.integration.sidecar_fixtures"]


KEY = "ml/churn"
RESPONSE = AbstainResponse(status=202, body='{"answer":"unsure"}', headers=(("X-Foo", "bar"),))
NOWHERE = 0.9
"""A band no churn score falls in (they are 1 / (1 + tenure))."""


def abstaining(car: Sidecar, low: float, high: float, explore: float = 0.0, seed: int = 0) -> None:
    """Give the spec in force a `review.abstain` (as a reloaded spec would)."""
    current = car.live.current
    assert current.monitor is not None
    assert current.rules is not None
    band = AbstainSpec(low=low, high=high, explore=explore, response=RESPONSE)
    spec = replace(current.monitor.spec, review=ReviewSpec(budget=100, seed=seed, abstain=band))
    car.live.use(live.Loaded(replace(current.monitor, spec=spec), current.rules))


@dataclass
class Answer:
    status: int
    headers: Any
    body: Any

    @property
    def pid(self) -> str:
        return str(self.headers["X-Prediction-ID"])

    @property
    def abstained(self) -> bool:
        return self.headers.get("X-Truthloop-Abstain") == "true"


async def ask(car: Sidecar, indices: range, concurrency: int = 16) -> dict[int, Answer]:
    """Each churn request once, over `concurrency` kept-alive connections."""
    answers: dict[int, Answer] = {}
    todo = iter(indices)
    url = f"http://127.0.0.1:{car.port}/predict"
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for i in todo:
                async with session.post(url, json=Client.request(i)) as r:
                    answers[i] = Answer(r.status, r.headers, await r.json())

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return answers


async def test_a_score_in_the_band_is_answered_i_dont_know_and_captured_as_the_models(
    model: Model, feedback: FakeFeedback, tmp_path: Path
) -> None:
    band = {"low": 0.3, "high": 0.6}  # tenure 1 (0.5) and 2 (0.333) are in it
    response = {"status": 202, "body": {"answer": "unsure"}, "headers": {"X-Foo": "bar"}}
    spec = monitor(review={"budget": 100, "abstain": {"band": band, "response": response}})
    async with harness.running(harness.settings(model, feedback.url, tmp_path, spec=spec)) as car:
        answers = await ask(car, range(48))
        await eventually(lambda: len(feedback.records) == 48, "every record")
        text = await harness.scrape(car)

    for i, answer in answers.items():
        tenure = i % 12
        expected = Model.answer(Client.request(i))
        record = feedback.records[(answer.pid, "model")]
        assert (record["prediction"], record["score"]) == (
            expected["prediction"],
            expected["score"],
        )
        if tenure in (1, 2):
            assert answer.status == 202
            assert answer.body == {"answer": "unsure"}
            assert answer.abstained
            assert answer.headers["X-Foo"] == "bar"
            assert answer.headers["Content-Type"] == "application/json"
            assert record["abstained"] is True
        else:
            assert (answer.status, answer.body) == (200, expected)
            assert "X-Truthloop-Abstain" not in answer.headers
            assert record["abstained"] is False
    assert car.abstain.stats.abstained == {"band": 8}
    assert car.abstain.stats.checked == 48
    assert 'truthloop_sidecar_abstained_total{reason="band"} 8.0' in text
    assert "truthloop_sidecar_abstain_checked_total 48.0" in text


async def test_the_explored_share_is_exactly_the_ids_review_draw_puts_under_explore(
    model: Model, feedback: FakeFeedback, tmp_path: Path
) -> None:
    async with harness.running(harness.settings(model, feedback.url, tmp_path)) as car:
        abstaining(car, NOWHERE, NOWHERE, explore=0.05, seed=7)
        answers = await ask(car, range(2000), concurrency=32)
        await eventually(lambda: len(feedback.records) == 2000, "every record")

    expected = {a.pid for a in answers.values() if review.draw(KEY, 7, a.pid) < 0.05}
    abstained = {a.pid for a in answers.values() if a.abstained}
    assert abstained == expected
    assert 50 < len(expected) < 150  # about 5% of 2000
    flagged = {pid for (pid, _), record in feedback.records.items() if record["abstained"]}
    assert flagged == expected
    assert car.abstain.stats.abstained == {"explore": len(expected)}
    assert {a.status for a in answers.values() if not a.abstained} == {200}


async def test_nothing_abstains_while_the_fallback_is_engaged(
    model: Model, feedback: FakeFeedback, tmp_path: Path
) -> None:
    async with harness.running(harness.settings(model, feedback.url, tmp_path)) as car:
        abstaining(car, 0.0, 1.0)  # every score
        feedback.set_fallback(KEY, True)
        await eventually(lambda: car.live.current.fallback_active, "the fallback engaged")
        engaged = await ask(car, range(40))
        # Its shadow calls are the model's, and never abstain either.
        stats = car.proxy.stats
        await eventually(
            lambda: (
                len(feedback.ids("fallback")) == 40
                and len(feedback.ids("model")) == 40 - stats.shadow_skipped - stats.shadow_failed
            ),
            "the answers and the shadow answers captured",
        )
        feedback.set_fallback(KEY, False)
        await eventually(lambda: not car.live.current.fallback_active, "the fallback released")
        released = await ask(car, range(40, 44))

    assert {a.headers["X-Served-By"] for a in engaged.values()} == {"fallback"}
    assert not any(a.abstained for a in engaged.values())
    ids = {a.pid for a in engaged.values()}
    assert not any(r["abstained"] for (pid, _), r in feedback.records.items() if pid in ids)
    assert car.abstain.stats.checked == 4
    assert all(a.abstained and a.status == 202 for a in released.values())


async def test_a_record_sampled_out_of_capture_is_never_abstained(
    model: Model, feedback: FakeFeedback, tmp_path: Path
) -> None:
    spec = monitor(capture={**harness.MONITOR["spec"]["capture"], "sampleRate": 0.5})
    async with harness.running(harness.settings(model, feedback.url, tmp_path, spec=spec)) as car:
        abstaining(car, 0.0, 1.0)
        answers = await ask(car, range(200))

    kept = {a.pid for a in answers.values() if capture.sampled(a.pid, 0.5)}
    assert {a.pid for a in answers.values() if a.abstained} == kept
    assert car.abstain.stats.passed == {"sampled_out": 200 - len(kept)}


async def test_a_response_over_the_capture_bound_passes_through(
    model: Model, feedback: FakeFeedback, tmp_path: Path
) -> None:
    config = harness.settings(model, feedback.url, tmp_path)
    config = replace(config, proxy=replace(config.proxy, capture_max_bytes=16))
    async with harness.running(config) as car:
        abstaining(car, 0.0, 1.0)
        answers = await ask(car, range(10))
        text = await harness.scrape(car)

    assert all(a.status == 200 and not a.abstained for a in answers.values())
    assert [a.body for a in answers.values()] == [Model.answer(Client.request(i)) for i in answers]
    assert 'truthloop_sidecar_abstain_passed_total{reason="too_large"} 10.0' in text
