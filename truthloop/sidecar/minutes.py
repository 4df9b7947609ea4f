"""The sidecar's minute counters, posted to the feedback service (`POST /v1/sidecar-stats`).

Once a minute, on the wall clock's minute, `Minutes` reads what the sidecar counts anyway — the
proxy's requests, model errors and connections passed through uncaptured, its latency
histograms, the shipper's dropped records, the numbers Prometheus scrapes — and posts what they
grew by since its last look (`core.sidecar_stats` names the keys), with the minutes an earlier
post could not deliver. The request path is not touched: nothing is counted twice, the counters
are read once a minute by a task of its own, over a connection of its own (a long batch of
records never holds it up).

Fail-open: the service only ever costs a counter. A minute waits for the next post while the
service is away (unreachable, 408, 429, 5xx), at most `MAX_MINUTES` of them (older ones are
dropped, `too_many`); a post that may have been stored (a timeout, a connection lost mid-answer)
is not sent again (`lost`: the service adds minutes up, so a repeat would count twice), nor is
one the service refuses (`http_<status>`). Failures are logged once a minute per reason.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import msgspec

from truthloop.core import sidecar_stats, windows, wire
from truthloop.core.throttle import Throttle
from truthloop.sidecar.client import Client, ClientError
from truthloop.sidecar.shipper import Shipper
from truthloop.sidecar.stats import ProxyStats

if TYPE_CHECKING:  # metrics exports MinuteStats
    from truthloop.sidecar.metrics import Latency

log = logging.getLogger("truthloop.sidecar.minutes")

PATH = "/v1/sidecar-stats"
MAX_MINUTES = sidecar_stats.MAX_MINUTES


@dataclass(slots=True)
class MinuteStats:
    """What became of the minutes; the admin port exports them."""

    posted: int = 0
    dropped: collections.Counter[str] = field(default_factory=collections.Counter)


def read(proxy: ProxyStats, latency: Latency, shipper: Shipper) -> dict[str, float]:
    """The sidecar's cumulative counters now, as `core.sidecar_stats` keys."""
    counts = {sidecar_stats.REQUESTS + by: float(proxy.requests[by]) for by in sidecar_stats.SERVED}
    for reason, n in proxy.upstream_errors.items():
        counts[sidecar_stats.ERRORS + reason] = float(n)
    for protocol, n in proxy.passthrough.items():
        counts[sidecar_stats.PASSTHROUGH + protocol] = float(n)
    for reason, n in shipper.stats.dropped.items():
        counts[sidecar_stats.DROPPED + reason] = float(n)
    counts.update(latency.cumulative())
    return counts


class Minutes:
    """Reads the counters every `interval` seconds and posts the minutes they grew in."""

    def __init__(
        self,
        monitor: str,
        pod: str,
        shipper: Shipper,
        counters: Callable[[], dict[str, float]],
        *,
        interval: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.stats = MinuteStats()
        self.pending: list[wire.SidecarMinute] = []
        """Minutes not delivered yet, oldest first."""
        self._monitor = monitor
        self._pod = pod
        self._shipper = shipper
        self._counters = counters
        self._interval = interval
        self._clock = clock
        self._headers = {"Content-Type": "application/json"}
        self._client = Client(
            shipper.settings.feedback_url, self._headers, timeout=shipper.settings.timeout
        )
        self._throttle = Throttle()
        self._before = counters()
        self._last = clock()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="truthloop-minutes")

    async def close(self, budget: float) -> None:
        """Stop, and post what the counters grew by since the last look within `budget`."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(budget):
                await self.tick()
        self._client.close()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval - time.time() % self._interval)
            await self.tick()

    async def tick(self) -> None:
        """Take the minute the counters grew in since the last look, then post the pending
        ones; never raises (but cancellation)."""
        try:
            self._take()
            if self.pending:
                await self._post()
        except Exception as e:  # fail-open: a bug here costs minutes, never the proxy
            self._drop("error", len(self.pending), "%r", e)
            self.pending.clear()

    def _take(self) -> None:
        now, after = self._clock(), self._counters()
        grown = sidecar_stats.growth(self._before, after)
        start = windows.bucket_start(windows.bucket_of((self._last + now) / 2))
        self._before, self._last = after, now
        if not grown:
            return
        if self.pending and self.pending[-1].start == start:
            sidecar_stats.add(self.pending[-1].counts, grown)
        else:
            self.pending.append(wire.SidecarMinute(start=start, counts=grown))
        if len(self.pending) > MAX_MINUTES:
            over = len(self.pending) - MAX_MINUTES
            del self.pending[:over]
            self._drop("too_many", over, "the feedback service is away")

    async def _post(self) -> None:
        minutes = tuple(self.pending)
        body = msgspec.json.encode(
            wire.SidecarMinutes(monitor=self._monitor, pod=self._pod, minutes=minutes)
        )
        authorization = self._shipper.authorization
        if authorization is None:
            self._headers.pop("Authorization", None)
        else:
            self._headers["Authorization"] = authorization
        try:
            status, _ = await self._client.request("POST", PATH, body)
        except (TimeoutError, ClientError) as e:
            self._settle(minutes, "lost", f"{type(e).__name__}: {e}")
            return
        except asyncio.CancelledError:  # stopped mid-post: it may have been stored
            self._settle(minutes, "lost", "stopped while posting")
            raise
        except OSError as e:  # not connected: nothing was sent
            self._say("away", "cannot post sidecar minutes (kept): %s", e)
            return
        if 200 <= status < 300:
            self._settle(minutes)
        elif status in (408, 429) or status >= 500:
            self._say("away", "the feedback service answered HTTP %d (minutes kept)", status)
        else:
            self._settle(minutes, f"http_{status}", f"the feedback service refused them ({status})")

    def _settle(
        self, minutes: tuple[wire.SidecarMinute, ...], dropped: str = "", why: str = ""
    ) -> None:
        """Done with `minutes` (the oldest pending): posted, or dropped for `dropped`."""
        del self.pending[: len(minutes)]
        if dropped:
            self._drop(dropped, len(minutes), "%s", why)
        else:
            self.stats.posted += len(minutes)

    def _drop(self, reason: str, count: int, message: str, *args: object) -> None:
        self.stats.dropped[reason] += count
        self._say(reason, f"%d sidecar minutes dropped ({reason}): {message}", count, *args)

    def _say(self, key: str, message: str, *args: object) -> None:
        said = self._throttle.note(key, time.monotonic(), message, *args)
        if said is not None:
            log.warning(*said)
