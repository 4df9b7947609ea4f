"""The fallback on the request path: rules answer while the monitor's fallback is engaged.

`respond` evaluates the compiled rules on the request's JSON body (on each row for a batch spec)
and returns a 200 JSON answer built by core/respond (the proxy adds `X-Served-By: fallback`
and `X-Prediction-ID`). Whenever the
rules cannot answer the request it returns None and the proxy asks the model instead (fail-open);
each such request is counted in `passed{reason}`: `no_spec`, `not_json` (an empty or non-JSON
body, a health check), `no_rows` (the batch pointer does not lead to an array), `no_rule` (no rule
gave a value for the request or for one of its rows, including rules that errored), `unbuildable`
(the spec's prediction pointer cannot hold an answer).
"""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass, field
from typing import Any

import msgspec

from truthloop.core import extract, pointer, respond
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

    def respond(self, headers: Headers, body: bytes) -> LocalResponse | None:
        current = self.live.current
        monitor, rules = current.monitor, current.rules
        if monitor is None or rules is None:
            self._pass("no_spec")
            return None
        request = extract.decode(body)
        if request is extract.NOT_JSON:
            self._pass("not_json")
            return None
        names = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in headers}
        capture = monitor.spec.capture
        if capture.batch is None:
            rows: list[Any] = [request]
        else:
            found = pointer.resolve(request, capture.batch.instances)
            if not isinstance(found, list):
                self._pass("no_rows")
                return None
            rows = found
        predictions = []
        for row in rows:
            decision = rules.evaluate(row, names)
            if decision is None:
                self._pass("no_rule")
                return None
            predictions.append(decision.value)
        try:
            answer = self._encode(respond.body(capture, predictions))
        except (ValueError, TypeError) as e:
            log.error("cannot build a fallback answer: %s", e)
            self._pass("unbuildable")
            return None
        self.stats.answered += 1
        return LocalResponse(200, HEADERS, answer)

    def _pass(self, reason: str) -> None:
        self.stats.passed[reason] += 1
