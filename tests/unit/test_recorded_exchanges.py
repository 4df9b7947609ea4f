"""Recorded exchanges with model servers (tests/servers/recorded: MLServer's, KServe's and
MLflow's real answers, and examples from Seldon's, MLflow's, TF Serving's and TorchServe's
documentation) read with each protocol's preset: every row's entity, prediction, score and
features as a sidecar in front of that server captures them; and the fallback's answer to each
request, built from those predictions, is read back by the same capture (an Open Inference
Protocol answer also passes the protocol's own schema). tests/servers replays the real ones
against the servers."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from tests.servers import exchanges
from tests.support import open_inference
from tests.support.feedback import monitor_body
from truthloop.core import extract, respond, spec
from truthloop.core.spec import CaptureSpec


def parsed(exchange: dict[str, Any]) -> CaptureSpec:
    return spec.parse_spec(monitor_body(capture=exchanges.capture(exchange))["spec"]).capture


def captured(
    exchange: dict[str, Any], capture: CaptureSpec | None = None, response: Any = None
) -> list[dict[str, Any]]:
    """The rows `capture` (the exchange's own by default) finds in the exchange, or in its request
    with `response` in place of the server's, as the exchange lists them."""
    capture = capture or parsed(exchange)
    request = extract.NOT_JSON if exchange["request"] is None else exchange["request"]
    answered = exchange["response"] if response is None else response
    found = extract.extract(capture, exchange["headers"], request, answered)
    assert found.error is None, (found.error, found.detail)
    return [
        {
            "entity_id": r.entity_id,
            "prediction": r.prediction,
            "score": r.score,
            "features": r.features,
        }
        for r in found.rows
    ]


@pytest.mark.parametrize("name", exchanges.names())
def test_a_preset_captures_each_row_of_a_recorded_exchange(name: str) -> None:
    exchange = exchanges.load(name)
    assert captured(exchange) == exchange["rows"]


@pytest.mark.parametrize("name", exchanges.names())
def test_the_fallback_answers_each_recorded_request_in_a_shape_its_capture_reads_back(
    name: str,
) -> None:
    exchange = exchanges.load(name)
    capture = parsed(exchange)
    guesses = [(7 * i) % 3 for i in range(len(exchange["rows"]))]
    request = None if exchange["request"] is None else exchange["request"]
    answer = respond.answer(capture, guesses, request, exchange["path"])
    if exchange["protocol"] == "open-inference-v2":
        assert open_inference.problems(answer) == []
    read = captured(exchange, replace(capture, score=None), answer)
    assert read == [
        {**row, "prediction": g, "score": None}
        for row, g in zip(exchange["rows"], guesses, strict=True)
    ]


def test_the_recordings_cover_every_protocol_and_both_real_servers() -> None:
    loaded = [exchanges.load(name) for name in exchanges.names()]
    assert {e["protocol"] for e in loaded} == {
        "open-inference-v2",
        "kserve-v1",
        "tfserving",
        "seldon-v1",
        "mlflow",
        "torchserve",
    }
    assert {"mlserver", "kserve", "mlflow"} <= {e["server"] for e in loaded}
    assert all(e["server"] != "docs" or e["source"].startswith("https://") for e in loaded)
