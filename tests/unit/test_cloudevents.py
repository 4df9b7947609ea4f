"""`core.cloudevents`: KServe's logged events read in binary and structured mode, what a bad one
is refused for, the model version a pair is stored under, and a pair read into records."""

from __future__ import annotations

import base64
import gzip
import json
import re
import struct
from pathlib import Path

import pytest
import yaml

from tests.support.kserve_logger import logged, rfc3339_nano
from truthloop.core import cloudevents
from truthloop.core.cloudevents import EventError, Half
from truthloop.core.spec import parse_monitor

T = 1_767_225_600.25


def test_a_binary_event_as_kserve_sends_it() -> None:
    headers, body = logged(
        "response", "e-1", {"predictions": [1]}, ts=T, metadata={"X-Entity-Id": ["c-1", "c-2"]}
    )
    event = cloudevents.parse({k.lower(): v for k, v in headers.items()}, body, 64, 1000)
    assert event == cloudevents.Event(
        id="e-1",
        half="response",
        component="predictor",
        time=T,
        namespace="ml",
        inference_service="churn",
        endpoint="default",
        headers=(("X-Entity-Id", "c-1"), ("X-Entity-Id", "c-2")),
        data=body,
    )


def test_go_writes_nanoseconds_and_a_percent_encoded_value_is_decoded() -> None:
    assert rfc3339_nano(T) == "2026-01-01T00:00:00.25Z"
    headers = {
        "ce-id": "e%2F1",
        "ce-specversion": "1.0",
        "ce-source": "pod",
        "ce-type": cloudevents.REQUEST_TYPE,
        "ce-time": "2026-01-01T00:00:00.250000001Z",
        "ce-metadata": "%7B%22X-Entity-Id%22%3A%5B%22c%201%22%5D%7D",
    }
    event = cloudevents.parse(headers, b"{}", 64, 1000)
    assert (event.id, event.time, event.headers) == ("e/1", T, (("X-Entity-Id", "c 1"),))


@pytest.mark.parametrize(
    ("changed", "field", "reason"),
    [
        ({"ce-id": None}, "ce-id", "missing"),
        ({"ce-id": "x" * 65}, "ce-id", "too_long"),
        ({"ce-source": None}, "ce-source", "missing"),
        ({"ce-component": "c" * 64}, "ce-component", "too_long"),
        ({"ce-type": "other"}, "ce-type", "invalid"),
        ({"ce-time": "2026-01-01T00:00:00"}, "ce-time", "invalid"),
        ({"ce-metadata": "{"}, "ce-metadata", "invalid_json"),
        ({"ce-metadata": '{"A": [1]}'}, "ce-metadata", "wrong_type"),
        ({"ce-metadata": json.dumps({f"H{i}": ["v"] for i in range(65)})}, "ce-metadata",
         "too_many_items"),
    ],
)  # fmt: skip
def test_a_bad_attribute_is_named(changed: dict[str, str | None], field: str, reason: str) -> None:
    headers, body = logged("request", "e-1", {}, ts=T)
    sent = {k.lower(): v for k, v in headers.items()}
    sent.update(changed)  # type: ignore[arg-type]
    with pytest.raises(EventError) as caught:
        cloudevents.parse({k: v for k, v in sent.items() if v is not None}, body, 64, 1000)
    assert (caught.value.field, caught.value.reason) == (field, reason)


def test_a_structured_event_carries_its_data_as_json_or_base64() -> None:
    attributes = {"specversion": "1.0", "id": "s", "source": "x", "type": cloudevents.RESPONSE_TYPE}
    event = cloudevents.structured(json.dumps({**attributes, "data": {"a": 1}}).encode(), 64, 1000)
    assert (event.half, json.loads(event.data)) == ("response", {"a": 1})
    encoded = base64.b64encode(b"\x89PNG").decode()
    event = cloudevents.structured(
        json.dumps({**attributes, "data_base64": encoded}).encode(), 64, 1000
    )
    assert event.data == b"\x89PNG"
    assert Half.of(event, T).body is None  # no capture spec reads a body that is not text
    with pytest.raises(EventError) as caught:
        cloudevents.structured(json.dumps({**attributes, "id": 7}).encode(), 64, 1000)
    assert (caught.value.field, caught.value.reason) == ("id", "wrong_type")


def test_the_model_version_is_the_urls_then_the_responses_then_the_endpoints() -> None:
    v2 = {"model_name": "churn", "model_version": "3", "outputs": []}
    assert cloudevents.model_version("rc1", v2, "canary") == "rc1"
    assert cloudevents.model_version(None, v2, "canary") == "3"
    assert cloudevents.model_version(None, {"predictions": []}, "canary") == "canary"
    assert cloudevents.model_version(None, [1], None) == ""


def test_a_pair_is_read_with_the_capture_spec_and_stamped_with_the_requests_time() -> None:
    monitor = parse_monitor(
        {
            "apiVersion": "truthloop.dev/v1alpha1",
            "kind": "ModelMonitor",
            "metadata": {"name": "churn", "namespace": "ml"},
            "spec": {
                "selector": {"matchLabels": {"truthloop.dev/source": "kserve-logger"}},
                "model": {"name": "churn"},
                "task": "binary",
                "capture": {
                    "entityId": {"header": "X-Entity-Id"},
                    "prediction": {"pointer": "/predictions/0"},
                },
                "fallback": {"rules": [{"prediction": "0"}]},
            },
        }
    )
    request = Half(T, (("X-Entity-Id", "c-1"),), '{"instances": [[1, 2]]}', "default")
    response = Half(T + 0.2, (), '{"predictions": [1]}', "default")
    (record,) = cloudevents.capture_records(monitor, "e-1", request, response)  # type: ignore[misc]
    assert (record.prediction_id, record.entity_id, record.ts) == ("e-1", "c-1", T)
    assert (record.prediction, record.model_version, record.monitor) == (1, "default", "ml/churn")
    broken = Half(T, (), "not json", None)
    assert cloudevents.capture_records(monitor, "e-1", request, broken) == (
        cloudevents.NotCaptured("not_json", "the response body is not JSON")
    )
    assert cloudevents.decode_half(cloudevents.encode_half(request)) == request


def test_the_guides_monitor_and_inferenceservice_go_together() -> None:
    """docs/kserve-logger.md's ModelMonitor parses, selects no pod KServe makes, and is named
    after its InferenceService, whose logger sends both halves here."""
    page = (Path(__file__).resolve().parents[2] / "docs" / "kserve-logger.md").read_text()
    documents = [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", page, re.S)]
    monitor, isvc = documents
    parsed = parse_monitor(monitor)
    assert parsed.spec.capture.protocol == "open-inference-v2"
    assert dict(parsed.spec.selector.match_labels) == {"truthloop.dev/source": "kserve-logger"}
    assert (isvc["kind"], isvc["metadata"]) == ("InferenceService", monitor["metadata"])
    logger = isvc["spec"]["predictor"]["logger"]
    assert (logger["mode"], logger["url"].rpartition(":8081")[2]) == ("all", "/v1/cloudevents")
    assert parsed.spec.capture.entity_id is not None
    assert logger["metadataHeaders"] == [parsed.spec.capture.entity_id.header]


def test_a_gzipped_body_is_inflated_within_the_bound() -> None:
    """MLServer gzips larger answers for clients that accept gzip; the logger logs those bytes."""
    answer = json.dumps({"outputs": [{"name": "predict", "data": [1] * 300}]}).encode()
    headers, _ = logged("response", "e-1", {}, ts=T)
    lowered = {k.lower(): v for k, v in headers.items()}
    event = cloudevents.parse(lowered, gzip.compress(answer), 64, 10_000)
    assert event.data == answer
    with pytest.raises(EventError) as caught:
        cloudevents.parse(lowered, gzip.compress(answer), 64, 500)
    assert (caught.value.field, caught.value.reason) == ("data", "too_large")
    with pytest.raises(EventError) as caught:
        cloudevents.parse(lowered, b"\x1f\x8bnot gzip", 64, 10_000)
    assert (caught.value.field, caught.value.reason) == ("data", "invalid")


def test_a_binary_tensor_body_is_read_into_json_without_its_header() -> None:
    """KServe's Python client sends v2 tensors as raw bytes after a JSON head whose length is
    in a header the logger does not carry: the head's end is found, the values read in."""
    head = {
        "inputs": [
            {"name": "input-0", "shape": [2, 2], "datatype": "FP32",
             "parameters": {"binary_data_size": 16}},
            {"name": "note", "shape": [2], "datatype": "BYTES",
             "parameters": {"binary_data_size": 12, "x": 'a "}\\ b'}},
        ]
    }  # fmt: skip
    body = json.dumps(head).encode() + struct.pack("<4f", 0.5, 1.5, 2.5, 3.5)
    body += struct.pack("<I", 2) + b"hi" + struct.pack("<I", 2) + b"yo"
    text = of(body)
    assert text is not None
    tensors = json.loads(text)["inputs"]
    assert [t["data"] for t in tensors] == [[0.5, 1.5, 2.5, 3.5], ["hi", "yo"]]
    assert of(json.dumps({"inputs": []}).encode() + b"\n") == '{"inputs": []}\n'
    short = json.dumps(head).encode() + b"\x00\x01"  # the parts do not add up: as it came
    assert of(short) == short.decode()
    assert of(short + b"\xff") is None  # and no text either: nothing to read


def of(body: bytes) -> str | None:
    """The text a request event's body waits in the store as."""
    return Half.of(cloudevents.Event("e", "request", "", T, None, None, None, (), body), T).body
