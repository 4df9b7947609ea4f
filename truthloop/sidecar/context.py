"""What every connection of one running proxy shares, and the sweep that times them out.

Timeouts cost next to nothing per request: a client connection only writes a `deadline` (from
`clock`, the loop's time as of the last sweep) when it starts waiting on its client — for a
request, for the rest of a body that did not come in one read — and a `send_deadline` when the
client stops reading; one timer per proxy sweeps the connections every `tick` seconds, and each
with a deadline checks it then (and whether its client made progress meanwhile). A timeout is
thus honoured to within a tick or so either way.

The context knows the connections and shadow calls it holds only by what it asks of them
(`Connection`, `ShadowCall`): the modules above it make them (`downstream`, `shadow`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Generic, Protocol, TypeVar

from truthloop.sidecar.exchange import Exchange, Tap
from truthloop.sidecar.ids import PredictionIds
from truthloop.sidecar.stats import ProxyStats
from truthloop.sidecar.upstream import Pool

log = logging.getLogger("truthloop.sidecar.proxy")


FEED_SLICE = 16 * 1024
"""Bytes fed to httptools at once. A read (up to 256 KiB) is fed in slices so that a head begun
after a request ends mid-read is checked against its limit within a slice, not a whole read."""

HEAD_SLACK = 1024
"""Bytes a head may take on the wire beyond its URL and header limits: the method, the version,
separators and whitespace, which the limits do not count."""


class Connection(Protocol):
    """A client connection, as the sweep sees it (`downstream.Downstream`)."""

    deadline: float
    """Loop time when what it waits for runs out; 0 for none."""
    send_deadline: float
    """Loop time when a client that reads nothing more is cut; 0 for none."""

    def sweep(self, now: float) -> None:
        """Check the deadlines (called about every tick while it has one)."""
        ...


class ShadowCall(Protocol):
    """A call to the model off the request path (`shadow.Shadow`)."""

    def drop_call(self) -> None:
        """Abandon it: the proxy stops."""
        ...


ConnectionT = TypeVar("ConnectionT", bound=Connection)


class Context(Generic[ConnectionT]):
    """What the connections of one proxy share; `ConnectionT` is the kind of client connection
    they are, which the context only sweeps."""

    __slots__ = (
        "_sweeper",
        "body_timeout",
        "capture_max",
        "clock",
        "closing",
        "connections",
        "drained",
        "header_timeout",
        "host",
        "keepalive_timeout",
        "loop",
        "max_connections",
        "max_head_bytes",
        "max_header_bytes",
        "max_header_fields",
        "max_url_bytes",
        "measure_above",
        "model_timeout",
        "new_id",
        "pool",
        "refusals",
        "send_timeout",
        "shadow_limit",
        "shadows",
        "stats",
        "tap",
        "tick",
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
        *,
        max_url_bytes: int,
        max_header_bytes: int,
        max_header_fields: int,
        header_timeout: float,
        keepalive_timeout: float,
        body_timeout: float,
        send_timeout: float,
        max_connections: int,
        refusals: dict[str, bytes],
    ) -> None:
        self.loop = loop
        self.tap = tap
        self.pool = pool
        self.stats = stats
        self.capture_max = capture_max
        self.model_timeout = model_timeout
        self.shadow_limit = shadow_limit
        self.max_url_bytes = max_url_bytes
        self.max_header_bytes = max_header_bytes
        self.max_header_fields = max_header_fields
        self.max_head_bytes = max_url_bytes + max_header_bytes + HEAD_SLACK
        """Bytes a head may take on the wire before it is whole; past them it is cut off (the
        limits above count what httptools hands over, and it holds a field until it is whole)."""
        self.measure_above = max_header_bytes - FEED_SLICE - max_header_fields
        """A head whose fields are measured when complete, since they may be over the limit: one
        that took more bytes than this, as `Downstream._unparsed` counts them (which leaves out
        up to a slice, and a field may count a byte more than it took: `Name:value`)."""
        self.header_timeout = header_timeout
        self.keepalive_timeout = keepalive_timeout
        self.body_timeout = body_timeout
        self.send_timeout = send_timeout
        self.max_connections = max_connections
        """Client connections served at once: the setting, or fewer if the process may not open
        enough file descriptors for them (see `descriptors`)."""
        self.refusals = refusals
        """The whole response (head and JSON body) for each reason a request is refused."""
        timeouts = (header_timeout, keepalive_timeout, body_timeout, send_timeout)
        self.tick = max(0.01, min(1.0, *(t / 4 for t in timeouts)))
        """Seconds between sweeps: a second, or less for timeouts shorter than four."""
        self.clock = loop.time()
        """The loop's time at the last sweep, for setting deadlines without a clock call."""
        self._sweeper: asyncio.TimerHandle | None = None
        self.shadows: set[ShadowCall] = set()
        """Shadow calls in flight."""
        self.connections: set[ConnectionT] = set()
        """Open client connections."""
        self.host = b"%s:%d" % (pool.host.encode(), pool.port)
        """Host field for requests that came without one (HTTP/1.0)."""
        self.new_id = PredictionIds().__call__
        """A fresh prediction ID (the bound method: cheaper to call than the instance)."""
        self.closing = False
        """Set by Proxy.close: answer in-flight requests with `Connection: close`."""
        self.drained: asyncio.Event | None = None
        """Set by Proxy.close; set when the last client connection is gone."""

    def start_sweeping(self) -> None:
        self._sweep()

    def stop_sweeping(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    def _sweep(self) -> None:
        """Let each client connection with a deadline check it, and come back in a tick."""
        now = self.clock = self.loop.time()
        self._sweeper = self.loop.call_at(now + self.tick, self._sweep)
        for conn in [c for c in self.connections if c.deadline or c.send_deadline]:
            conn.sweep(now)

    def report(self, exchange: Exchange, counted_as: str) -> None:
        """Count a finished exchange and hand it to the tap, which may not fail the proxy."""
        self.stats.requests[counted_as] += 1
        try:
            self.tap.observe(exchange)
        except Exception:
            self.stats.observe_errors += 1
            log.debug("Tap.observe failed", exc_info=True)
