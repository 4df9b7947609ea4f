"""CloudEvents shaped as KServe's payload logger sends them (its agent, pkg/logger).

Binary mode, as the CloudEvents Go SDK writes it: each attribute a `Ce-*` header (the Go
canonical spelling), the inference payload as the body under the inference request's own
Content-Type (the response event's too). `id` is the inference request's `Ce-Id` or a UUID,
shared by the request and response event; `source` the pod's name; `time` in RFC 3339 with
nanoseconds; `metadata` the JSON of the request headers the InferenceService lists in
`logger.metadataHeaders` (`{}` when it lists none); `endpoint` `default` or `canary` (empty
where the pod has no such label).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

REQUEST = "org.kubeflow.serving.inference.request"
RESPONSE = "org.kubeflow.serving.inference.response"
POD = "churn-predictor-00001-deployment-5d8f9c7b4-x2x9q"


def rfc3339_nano(ts: float) -> str:
    """`time` as Go's RFC3339Nano writes it: UTC, up to nine fraction digits, trailing zeros
    dropped."""
    whole = int(ts)
    nanos = round((ts - whole) * 1e9)
    text = datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{nanos:09d}".rstrip("0")
    return f"{text}.{fraction}Z" if fraction else f"{text}Z"


def logged(
    half: str,
    event_id: str,
    payload: Any,
    *,
    ts: float,
    isvc: str = "churn",
    namespace: str = "ml",
    endpoint: str = "default",
    component: str = "predictor",
    metadata: dict[str, list[str]] | None = None,
    content_type: str = "application/json",
) -> tuple[dict[str, str], bytes]:
    """(headers, body) of the `half` ("request" or "response") event of inference `event_id`."""
    headers = {
        "Ce-Id": event_id,
        "Ce-Specversion": "1.0",
        "Ce-Source": POD,
        "Ce-Type": REQUEST if half == "request" else RESPONSE,
        "Ce-Time": rfc3339_nano(ts),
        "Ce-Recordedtime": rfc3339_nano(ts + 0.0004),
        "Ce-Inferenceservicename": isvc,
        "Ce-Namespace": namespace,
        "Ce-Component": component,
        "Ce-Endpoint": endpoint,
        "Ce-Metadata": json.dumps(metadata or {}, separators=(",", ":")),
        "Content-Type": content_type,
    }
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return headers, body
