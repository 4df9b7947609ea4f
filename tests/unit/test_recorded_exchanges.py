"""Recorded exchanges with model servers (tests/servers/recorded: MLServer's and KServe's real
answers, and examples from Seldon's, MLflow's, TF Serving's and TorchServe's documentation) read
with each protocol's preset: every row's entity, prediction, score and features as a sidecar in
front of that server captures them. tests/servers replays the real ones against the servers."""

from __future__ import annotations

from typing import Any

import pytest

from tests.servers import exchanges
from tests.support.feedback import monitor_body
from truthloop.core import extract, spec


def captured(exchange: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows the exchange's capture spec finds in it, as the exchange lists them."""
    capture = spec.parse_spec(monitor_body(capture=exchanges.capture(exchange))["spec"]).capture
    request = extract.NOT_JSON if exchange["request"] is None else exchange["request"]
    found = extract.extract(capture, exchange["headers"], request, exchange["response"])
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
    assert {"mlserver", "kserve"} <= {e["server"] for e in loaded}
    assert all(e["server"] != "docs" or e["source"].startswith("https://") for e in loaded)
