"""The fallback on the request path: rules answer while the monitor's fallback is engaged.

`respond` evaluates the compiled rules on each row the capture's protocol reads in the request's
JSON body (`protocols.request_rows`: the body itself for a request that is not row-based; an Open
Inference Protocol body's binary tensors read in, core/binary_tensors) and returns a 200 JSON answer
in the protocol's shape, built by core/respond from the request and its path (the proxy adds
`X-Served-By: fallback` and `X-Prediction-ID`). Whenever the rules cannot answer the request it
returns None and the proxy asks the model instead (fail-open); each such request is counted in
`passed{reason}`: `no_spec`, `not_inference` (an open-inference-v2 request to a path other than
`/v2/models/{name}[/versions/{v}]/infer`), `not_json` (an empty or non-JSON body, a health check),
`no_rows` (the protocol finds no rows in the body), `no_rule` (no rule gave a value for the request
or for one of its rows, including rules that errored), `unbuildable` (the answer cannot be built: a
prediction pointer that cannot hold one, values a v2 tensor cannot hold; logged at most once a
minute, as it may be every request).
"""

from __future__ import annotations

import collections
import logging
import time
from dataclasses import dataclass, field

import msgspec

from truthloop.core import binary_tensors, extract, protocols, respond
from truthloop.core.throttle import Throttle
from truthloop.sidecar.exchange import Headers, LocalResponse
from truthloop.sidecar.live import Live

log = logging.getLogger("truthloop.sidecar.fallback")

HEADERS: tuple[tuple[bytes, bytes], ...] = ((b"content-type", b"application/json"),)


@dataclass(slots=True)
class FallbackStats:
    answered: int = 0
    passed: collections.Counter[str] = field(default_factory=collections.Counter)


class Fallback:
    """Answers requests from the rules in force in `live`."""

    def __init__(self, live: Live) -> None:
        self.live = live
        self.stats = FallbackStats()
        self._encode = msgspec.json.Encoder().encode
        self._throttle = Throttle()

    def respond(self, path: str, headers: Headers, body: bytes) -> LocalResponse | None:
        current = self.live.current
        monitor, rules = current.monitor, current.rules
        if monitor is None or rules is None:
            self._pass("no_spec")
            return None
        capture = monitor.spec.capture
        if capture.protocol == "open-inference-v2" and respond.v2_model(path) is None:
            self._pass("not_inference")
            return None
        request = binary_tensors.decode(body, headers)
        if request is extract.NOT_JSON:
            self._pass("not_json")
            return None
        rows = protocols.request_rows(capture, request)
        if rows is None:
            rows = [request]
        elif isinstance(rows, protocols.RowsError):
            self._pass("no_rows")
            return None
        names = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in headers}
        predictions = []
        for row in rows:
            decision = rules.evaluate(row, names)
            if decision is None:
                self._pass("no_rule")
                return None
            predictions.append(decision.value)
        try:
            answer = self._encode(respond.answer(capture, predictions, request, path))
        except (ValueError, TypeError) as e:
            message = "cannot build a fallback answer, the model answers: %s"
            said = self._throttle.note("unbuildable", time.monotonic(), message, e)
            if said is not None:
                log.error(*said)
            self._pass("unbuildable")
            return None
        self.stats.answered += 1
        return LocalResponse(200, HEADERS, answer)

    def _pass(self, reason: str) -> None:
        self.stats.passed[reason] += 1
