"""What every connection of one running proxy shares."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from truthloop.sidecar.exchange import Exchange, Tap
from truthloop.sidecar.ids import PredictionIds
from truthloop.sidecar.stats import ProxyStats
from truthloop.sidecar.upstream import Pool

if TYPE_CHECKING:
    from truthloop.sidecar.downstream import Downstream
    from truthloop.sidecar.shadow import Shadow

log = logging.getLogger("truthloop.sidecar.proxy")


class Context:
    __slots__ = (
        "capture_max",
        "closing",
        "connections",
        "drained",
        "host",
        "loop",
        "model_timeout",
        "new_id",
        "pool",
        "shadow_limit",
        "shadows",
        "stats",
        "tap",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        tap: Tap,
        pool: Pool,
        stats: ProxyStats,
        capture_max: int,
        model_timeout: float | None,
        shadow_limit: int,
    ) -> None:
        self.loop = loop
        self.tap = tap
        self.pool = pool
        self.stats = stats
        self.capture_max = capture_max
        self.model_timeout = model_timeout
        self.shadow_limit = shadow_limit
        self.shadows: set[Shadow] = set()
        """Shadow calls in flight."""
        self.connections: set[Downstream] = set()
        """Open client connections."""
        self.host = b"%s:%d" % (pool.host.encode(), pool.port)
        """Host field for requests that came without one (HTTP/1.0)."""
        self.new_id = PredictionIds().__call__
        """A fresh prediction ID (the bound method: cheaper to call than the instance)."""
        self.closing = False
        """Set by Proxy.close: answer in-flight requests with `Connection: close`."""
        self.drained: asyncio.Event | None = None
        """Set by Proxy.close; set when the last client connection is gone."""

    def report(self, exchange: Exchange, counted_as: str) -> None:
        """Count a finished exchange and hand it to the tap, which may not fail the proxy."""
        self.stats.requests[counted_as] += 1
        try:
            self.tap.observe(exchange)
        except Exception:
            self.stats.observe_errors += 1
            log.debug("Tap.observe failed", exc_info=True)
