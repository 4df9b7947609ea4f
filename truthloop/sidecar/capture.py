"""Capture: a finished request/response pair → encoded records on the shipper's queue.

Runs after the response has been sent (the proxy reports the exchange then), on the event loop,
without awaiting. What is not captured is counted, never raised:

- `skipped{reason}`: no spec known yet (`no_spec`), the proxy did not keep a body or skipped the
  exchange (its `skip_reason`, or `body_not_kept`), a non-2xx answer (`status_4xx`,
  `status_5xx`, ...), sampled out (`sampled_out`; an abstained exchange never is: the
  abstain decision leaves the sampled-out records to the model), or a body in a content coding
  not read (`content_encoding`: br, zstd, a broken stream) or inflating past the bound the proxy
  keeps bodies within (`body_too_large`); gzip and deflate bodies are read inflated
  (core/encoding);
- `errors{reason}`: the extraction failed (core/extract's reason: not JSON, missing pointer, ...);
- `dropped{reason}`: a segment's value left out of a captured record (`not_scalar`, `too_long`,
  `invalid`, `out_of_range`: core/extract); the record is captured without it.

The fallback's answers are read with the same spec less its score: the rules give no score. An
Open Inference Protocol body in the binary tensor extension (`Inference-Header-Content-Length`,
the default of Triton's and KServe's Python clients) is read with its binary tensors' values.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import msgspec

from truthloop.core import binary_tensors, capture, encoding, extract
from truthloop.core.spec import CaptureSpec
from truthloop.sidecar.exchange import Exchange
from truthloop.sidecar.live import Live
from truthloop.sidecar.shipper import Shipper


@dataclass(slots=True)
class CaptureStats:
    captured: int = 0
    skipped: collections.Counter[str] = field(default_factory=collections.Counter)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    dropped: collections.Counter[str] = field(default_factory=collections.Counter)


class Capture:
    """Turns exchanges into records for `monitor` at `model_version` and submits them.

    Records' `ts` is the request's arrival: the data path stamps arrivals on the wall clock, and
    `stamp` maps that instant to the records' clock (a time-lapse demo's `TimeLapse.at`). Without
    one, a `clock` other than the wall's is taken to run at the wall's pace: its now less the time
    since the arrival. A shadow answer is captured later than the fallback's answer to the same
    request, and both must carry the same `ts`: a faster clock needs its `stamp`.
    """

    def __init__(
        self,
        live: Live,
        shipper: Shipper,
        *,
        monitor: str,
        model_version: str,
        clock: Callable[[], float] = time.time,
        stamp: Callable[[float], float] | None = None,
        max_body: int,
    ) -> None:
        self.live = live
        self._max_body = max_body
        """The largest body read after inflating it: the proxy's `capture_max_bytes`."""
        self.stats = CaptureStats()
        self._submit = shipper.submit
        self._monitor = monitor
        self._model_version = model_version
        self._clock = clock
        self._stamp = stamp
        self._encode = msgspec.json.Encoder().encode
        self._spec: CaptureSpec | None = None
        self._without_score: CaptureSpec | None = None

    def _fallback_spec(self, spec: CaptureSpec) -> CaptureSpec:
        """The spec for the fallback's answers: the rules give a prediction, never a score."""
        if spec is not self._spec or self._without_score is None:
            self._spec, self._without_score = spec, replace(spec, score=None)
        return self._without_score

    def observe(self, exchange: Exchange) -> None:
        stats = self.stats
        monitor = self.live.current.monitor
        if monitor is None:
            stats.skipped["no_spec"] += 1
            return
        if exchange.skip_reason is not None:
            stats.skipped[exchange.skip_reason] += 1
            return
        if not 200 <= exchange.status < 300:
            stats.skipped[f"status_{exchange.status // 100}xx"] += 1
            return
        if exchange.response_body is None:
            stats.skipped["body_not_kept"] += 1
            return
        spec = monitor.spec.capture
        if exchange.served_by == "fallback":
            spec = self._fallback_spec(spec)
        if not exchange.abstained and not capture.sampled(exchange.prediction_id, spec.sample_rate):
            stats.skipped["sampled_out"] += 1
            return
        bodies = self._inflated(exchange, exchange.response_body)
        if isinstance(bodies, str):
            stats.skipped[bodies] += 1
            return
        extraction = extract.extract(
            spec,
            exchange.request_headers,
            binary_tensors.decode(bodies[0], exchange.request_headers),
            binary_tensors.decode(bodies[1], exchange.response_headers),
            monitor.spec.segments,
        )
        if extraction.error is not None:
            stats.errors[extraction.error] += 1
            return
        if extraction.dropped:
            stats.dropped.update(extraction.dropped)
        for record in capture.records(
            extraction.rows,
            prediction_id=exchange.prediction_id,
            monitor=self._monitor,
            model_version=self._model_version,
            served_by="fallback" if exchange.served_by == "fallback" else "model",
            ts=self._ts(exchange.started),
            batch=spec.row_based,
            abstained=exchange.abstained,
        ):
            self._submit(self._encode(record))
            stats.captured += 1

    def _inflated(self, exchange: Exchange, response: bytes) -> tuple[bytes | None, bytes] | str:
        """The exchange's bodies less their content codings, or why not (a skip reason)."""
        request = exchange.request_body
        if request:
            inflated = encoding.decoded(request, exchange.request_headers, self._max_body)
            if isinstance(inflated, str):
                return inflated
            request = inflated
        answer = encoding.decoded(response, exchange.response_headers, self._max_body)
        return answer if isinstance(answer, str) else (request, answer)

    def _ts(self, started: float) -> float:
        if self._stamp is not None:
            return self._stamp(started)
        if self._clock is time.time:
            return started
        return self._clock() - (time.time() - started)
