"""The proxy's tap: where the data path hands over to monitoring.

The proxy asks `wants_local`/`shadow` per request, calls `local_response` while the fallback is
engaged, asks `wants_verdict` when it calls the model and then `verdict` with the model's held
response (the abstain, while the spec has `review.abstain`), and reports every finished exchange
to `observe`. `observe` only queues the exchange: the
proxy reports while its writes to the client may still be corked, so capture (JSON decoding,
extraction, encoding) runs in a callback of its own on the next loop iteration and never delays
the bytes of a response. Capture is fail-open: an error is counted
(`capture_errors{reason="internal"}`), logged once, and the other exchanges carry on.
"""

from __future__ import annotations

import asyncio
import logging

from truthloop.sidecar.abstain import Abstain
from truthloop.sidecar.capture import Capture
from truthloop.sidecar.exchange import Exchange, Headers, LocalResponse
from truthloop.sidecar.fallback import Fallback
from truthloop.sidecar.live import Live
from truthloop.sidecar.metrics import Latency

log = logging.getLogger("truthloop.sidecar.tap")


class SidecarTap:
    __slots__ = (
        "_abstain",
        "_capture",
        "_fallback",
        "_latency",
        "_live",
        "_logged",
        "_loop",
        "_pending",
    )

    def __init__(
        self,
        live: Live,
        fallback: Fallback,
        abstain: Abstain,
        capture: Capture,
        latency: Latency,
    ) -> None:
        self._live = live
        self._fallback = fallback
        self._abstain = abstain
        self._capture = capture
        self._latency = latency
        self._loop = asyncio.get_running_loop()
        self._pending: list[Exchange] = []
        self._logged = False

    @property
    def wants_local(self) -> bool:
        return self._live.current.fallback_active

    @property
    def shadow(self) -> bool:
        """The model keeps answering, unseen, while the fallback serves: that is how its recovery
        is measured."""
        return self._live.current.fallback_active

    def local_response(
        self, method: str, path: str, headers: Headers, body: bytes
    ) -> LocalResponse | None:
        return self._fallback.respond(path, headers, body)

    @property
    def wants_verdict(self) -> bool:
        """Not while the fallback is engaged: the rules answer then, and what they pass to the
        model is answered by it as it is."""
        return self._live.current.abstaining

    def verdict(
        self, prediction_id: str, status: int, headers: Headers, body: bytes
    ) -> LocalResponse | None:
        return self._abstain.verdict(prediction_id, body)

    def observe(self, exchange: Exchange) -> None:
        if not self._pending:
            self._loop.call_soon(self._drain)
        self._pending.append(exchange)

    def _drain(self) -> None:
        pending, self._pending = self._pending, []
        for exchange in pending:
            try:
                self._latency.observe(exchange)
                self._capture.observe(exchange)
            except Exception:
                self._capture.stats.errors["internal"] += 1
                if not self._logged:
                    self._logged = True
                    log.exception("capture failed (counted; further failures only counted)")
