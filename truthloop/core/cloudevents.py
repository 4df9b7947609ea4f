"""CloudEvents as KServe's payload logger sends them: one inference as two events sharing an id.

KServe's logger (the agent container beside an InferenceService's model) sends each inference
twice, in binary mode over HTTP: the attributes in `ce-*` headers, the payload as the body under
the inference request's own Content-Type (the response event's too). The attributes it sets:
`specversion` 1.0; `id`, the inference request's `Ce-Id` header or else a new UUID, the same in
the request and the response event; `type`, `org.kubeflow.serving.inference.request` or
`...response`; `source`, the pod's name; `time`, when the request arrived or the response was
written; and the extensions `inferenceservicename`, `namespace`, `component` (`predictor`...),
`endpoint` (`default` or `canary`), `metadata` (a JSON object of the request headers listed in
the InferenceService's `logger.metadataHeaders`, each a list of values), `recordedtime` and
`annotations`. It logs a response only when the model answered 200, and never retries.

Structured mode (`application/cloudevents+json`: the attributes and `data`, or `data_base64`,
in one JSON object) is read as well, for senders other than KServe's.

`parse` and `structured` turn a request into an `Event` or raise `EventError` naming the
attribute; `Half` is what waits in the store for the other half; `capture_records` turns a pair
into capture records with the monitor's capture spec (`core.extract`, `core.capture`), as the
sidecar does with an exchange it saw.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal
from urllib.parse import unquote

import msgspec

from truthloop.core import binary_tensors, capture, encoding, extract, records
from truthloop.core.spec import Monitor
from truthloop.core.wire import CaptureRecord

REQUEST_TYPE: Final = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE: Final = "org.kubeflow.serving.inference.response"
STRUCTURED: Final = "application/cloudevents+json"
"""The content type of an event in structured mode."""
BATCH: Final = "application/cloudevents-batch+json"

HalfName = Literal["request", "response"]
HALVES: Final[Mapping[str, HalfName]] = {REQUEST_TYPE: "request", RESPONSE_TYPE: "response"}

MAX_METADATA: Final = 64
"""Most header values the `metadata` extension may carry (KServe's: the headers a user lists)."""
MAX_ATTRIBUTE: Final = 8192
"""Longest attribute value read (the `metadata` JSON included)."""

MAX_COMPONENT: Final = 63
"""Longest `component` (KServe's are `predictor`, `transformer`, `explainer`)."""

Headers = tuple[tuple[str, str], ...]


class EventError(ValueError):
    """An event that cannot be taken: `field` names the attribute (`ce-id`, `data`...)."""

    def __init__(self, field: str, message: str, reason: records.Reason = "invalid") -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.reason: records.Reason = reason


@dataclass(frozen=True, slots=True)
class Event:
    """One event of an inference: which half it is and what the capture spec can read of it."""

    id: str
    half: HalfName
    component: str
    """KServe's component that logged it (`predictor`, `transformer`, ...; "" when none)."""
    time: float | None
    namespace: str | None
    inference_service: str | None
    endpoint: str | None
    headers: Headers
    """The request's headers the logger carried (`metadata`), as (name, value) pairs."""
    data: bytes


class Half(msgspec.Struct, frozen=True):
    """An event as it waits in the store for its other half (JSON text): the payload as text
    (None when it is not UTF-8, which no capture spec could read), its time (when it arrived
    if it has none) and headers."""

    time: float
    headers: Headers
    body: str | None
    endpoint: str | None = None

    @classmethod
    def of(cls, event: Event, received: float) -> Half:
        time = received if event.time is None else event.time
        return cls(time, event.headers, _text(event.data), event.endpoint)


def _text(data: bytes) -> str | None:
    """The data as JSON text: as it came, or an Open Inference Protocol body in the binary
    tensor data extension (KServe's and Triton's Python clients' default) read into JSON, its
    tensors' values as `data` (`core.binary_tensors`). The extension's header that says where
    the JSON ends is not among what the logger carries, so the JSON object's end is found."""
    if not data.rstrip().endswith(b"}"):
        head = _json_head(data)
        if head is not None:
            found = binary_tensors.read(data, head)
            if found is not None:
                return _encode(found).decode()
    try:
        return data.decode()
    except UnicodeDecodeError:
        return None


_HEAD_DECODER = json.JSONDecoder()


def _json_head(data: bytes) -> int | None:
    """The length of the JSON object `data` begins with, when bytes follow it; else None. The
    bytes are read as Latin-1, a character each, so where the decoder stops is a byte offset."""
    if not data.startswith(b"{"):
        return None
    try:
        end = _HEAD_DECODER.raw_decode(data.decode("latin-1"))[1]
    except (ValueError, RecursionError):
        return None
    return end if end < len(data) else None


_encode = msgspec.json.Encoder().encode
_decode_half = msgspec.json.Decoder(Half).decode


def encode_half(half: Half) -> str:
    return _encode(half).decode()


def decode_half(text: str) -> Half:
    return _decode_half(text)


def parse(headers: Mapping[str, str], body: bytes, max_id: int, max_bytes: int) -> Event:
    """A binary-mode event: attributes from the `ce-*` headers (`headers` looked up by lowercase
    names: aiohttp's are case-insensitive; percent-decoded, as the HTTP binding says a sender
    encodes them), the body its data (`inflated`)."""

    def attribute(name: str) -> str | None:
        value = headers.get(f"ce-{name}")
        if value is None:
            return None
        if len(value) > MAX_ATTRIBUTE:
            raise EventError(f"ce-{name}", f"longer than {MAX_ATTRIBUTE} characters", "too_long")
        return unquote(value) if "%" in value else value

    return _event(attribute, "ce-", inflated(body, max_bytes), max_id)


_decode_json = msgspec.json.Decoder().decode


def structured(body: bytes, max_id: int, max_bytes: int) -> Event:
    """A structured-mode event: one JSON object of its attributes and `data` (any JSON value)
    or `data_base64`."""
    try:
        document = _decode_json(body)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as e:
        raise EventError("body", f"not JSON: {e}", "invalid_json") from None
    if not isinstance(document, dict):
        raise EventError("body", "a structured event is a JSON object", "wrong_type")

    def attribute(name: str) -> str | None:
        value = document.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise EventError(name, "expected a string", "wrong_type")
        if len(value) > MAX_ATTRIBUTE:
            raise EventError(name, f"longer than {MAX_ATTRIBUTE} characters", "too_long")
        return value

    if "data_base64" in document:
        encoded = attribute("data_base64") or ""
        try:
            data = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise EventError("data_base64", "not base64", "invalid") from None
    elif "data" in document:
        data = _encode(document["data"])
    else:
        data = b""
    return _event(attribute, "", inflated(data, max_bytes), max_id)


GZIP_MAGIC: Final = b"\x1f\x8b"


def inflated(data: bytes, max_bytes: int) -> bytes:
    """The data as the model wrote it, gunzipped: the logger logs the bytes a model server sent,
    and MLServer gzips an answer of 500 bytes or more for a client that accepts gzip (the
    event's headers do not say so). At most `max_bytes` once inflated."""
    if not data.startswith(GZIP_MAGIC):
        return data
    found = encoding.inflate(data, b"gzip", max_bytes)
    if found == encoding.TOO_LARGE:
        raise EventError("data", f"inflates to more than {max_bytes} bytes", "too_large")
    if isinstance(found, str):
        raise EventError("data", "starts as gzip but does not inflate")
    return found


def _event(attribute: Callable[[str], str | None], prefix: str, data: bytes, max_id: int) -> Event:
    def required(name: str) -> str:
        value = attribute(name)
        if not value:
            raise EventError(prefix + name, "is missing (a CloudEvent needs it)", "missing")
        return value

    version = required("specversion")
    if version != "1.0":
        raise EventError(prefix + "specversion", f"is {version!r}; expected 1.0")
    event_id = required("id")
    problem = records.identifier_problem(event_id, max_id)
    if problem is not None:
        raise EventError(prefix + "id", problem[0], problem[1])
    kind = required("type")
    half = HALVES.get(kind)
    if half is None:
        raise EventError(
            prefix + "type",
            f"is {kind[:100]!r}; expected {REQUEST_TYPE} or {RESPONSE_TYPE}",
        )
    required("source")
    component = attribute("component") or ""
    if len(component) > MAX_COMPONENT:
        raise EventError(
            prefix + "component", f"longer than {MAX_COMPONENT} characters", "too_long"
        )
    return Event(
        id=event_id,
        half=half,
        component=component,
        time=_time(attribute("time"), prefix + "time"),
        namespace=attribute("namespace"),
        inference_service=attribute("inferenceservicename"),
        endpoint=attribute("endpoint"),
        headers=_metadata(attribute("metadata"), prefix + "metadata"),
        data=data,
    )


def _time(text: str | None, field: str) -> float | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise EventError(field, f"not an RFC 3339 timestamp: {text[:60]!r}") from None
    if moment.tzinfo is None:
        raise EventError(field, "an RFC 3339 timestamp needs an offset (Z or ±hh:mm)")
    return moment.timestamp()


def _metadata(text: str | None, field: str) -> Headers:
    """KServe's `metadata`: `{"X-Entity-Id": ["42"]}` → (("X-Entity-Id", "42"),)."""
    if not text:
        return ()
    try:
        found = _decode_json(text)
    except (msgspec.DecodeError, RecursionError):
        raise EventError(field, "not JSON", "invalid_json") from None
    if not isinstance(found, dict):
        raise EventError(field, "expected a JSON object of header names", "wrong_type")
    pairs: list[tuple[str, str]] = []
    for name, values in found.items():
        for value in values if isinstance(values, list) else [values]:
            if not isinstance(value, str):
                raise EventError(field, f"header {name[:60]!r}: expected strings", "wrong_type")
            pairs.append((name, value))
    if len(pairs) > MAX_METADATA:
        raise EventError(field, f"more than {MAX_METADATA} header values", "too_many_items")
    return tuple(pairs)


@dataclass(frozen=True, slots=True)
class NotCaptured:
    """A pair the capture spec finds nothing in: `core.extract`'s reason and where."""

    reason: str
    detail: str | None


def pair_key(event: Event) -> str:
    """What pairs an event's halves: its id within the component that logged it. A transformer
    and its predictor may both log one inference under the same id (the transformer passing
    `Ce-Id` on), each a request and a response of its own: never each other's half."""
    return f"{event.component}/{event.id}"


def model_version(asked: str | None, response: Any, endpoint: str | None) -> str:
    """The version records of a pair are stored under: the one the logger URL names
    (`?version=`), else the Open Inference Protocol response's `model_version`, else KServe's
    `endpoint` (`default` or `canary`, so a canary rollout compares as two versions), else ""."""
    if asked:
        return asked
    if isinstance(response, dict):
        found = response.get("model_version")
        if isinstance(found, str) and found:
            return found
    return endpoint or ""


def capture_records(
    monitor: Monitor,
    event_id: str,
    request: Half,
    response: Half,
    version: str | None = None,
) -> list[CaptureRecord] | NotCaptured:
    """The records of one paired inference, read with the monitor's capture spec as the sidecar
    reads an exchange: the event id is the prediction ID (a batch's rows `<id>.<row>`), `ts`
    the request's time, the request's headers the ones the logger carried."""
    spec = monitor.spec.capture
    request_json = extract.decode(None if request.body is None else request.body.encode())
    response_json = extract.decode(None if response.body is None else response.body.encode())
    found = extract.extract(
        spec, request.headers, request_json, response_json, monitor.spec.segments
    )
    if found.error is not None:
        return NotCaptured(found.error, found.detail)
    return capture.records(
        found.rows,
        prediction_id=event_id,
        monitor=monitor.key,
        model_version=model_version(version, response_json, response.endpoint or request.endpoint),
        served_by="model",
        ts=request.time,
        batch=spec.row_based,
    )
