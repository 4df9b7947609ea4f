"""The sidecar's admin port: `/metrics`, `/healthz`, `/readyz` (served by `server`).

`/healthz` answers while the process serves; `/readyz` answers 200 only while the model accepts
TCP connections (so the pod's readiness follows the model's, as a Service expects), probed at most
once per `ttl` seconds however often the kubelet asks. Its body also says whether the feedback
service refuses capture — without failing the probe: a monitoring problem must never take the
model out of its Service. `/metrics` is the sidecar's own registry in Prometheus' text format.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from truthloop.sidecar import server


class ModelProbe:
    """Whether a TCP connection to the model succeeds, cached for `ttl` seconds."""

    def __init__(self, host: str, port: int, *, ttl: float = 1.0, timeout: float = 0.5) -> None:
        self.host = host
        self.port = port
        self.ttl = ttl
        self.timeout = timeout
        self._until = float("-inf")
        self._last = False
        self._pending: asyncio.Future[bool] | None = None

    async def ready(self) -> bool:
        loop = asyncio.get_running_loop()
        if loop.time() < self._until:
            return self._last
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._connect())
            self._pending.add_done_callback(self._done)
        return await asyncio.shield(self._pending)

    def _done(self, future: asyncio.Future[bool]) -> None:
        self._pending = None
        if not future.cancelled():
            self._last = future.result()
            self._until = asyncio.get_running_loop().time() + self.ttl

    async def _connect(self) -> bool:
        try:
            async with asyncio.timeout(self.timeout):
                _, writer = await asyncio.open_connection(self.host, self.port)
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True


def routes(
    registry: CollectorRegistry, probe: ModelProbe, capture: Callable[[], dict[str, Any]]
) -> dict[bytes, server.Handler]:
    """The admin port's paths; `capture` gives the capture's health for `/readyz`'s body:
    `{"refused": reason | None, "since": ..., "spooled_records": ...}`."""

    async def metrics() -> server.Answer:
        return server.Answer(200, generate_latest(registry), CONTENT_TYPE_LATEST)

    async def healthz() -> server.Answer:
        return server.json(200, {"status": "ok"})

    async def readyz() -> server.Answer:
        health = capture()
        if await probe.ready():
            return server.json(200, {"status": "ready", "capture": health})
        status = "the model does not accept connections"
        return server.json(503, {"status": status, "capture": health})

    return {b"/metrics": metrics, b"/healthz": healthz, b"/readyz": readyz}
