"""The running sidecar: the proxy, capture and shipping, the fallback follower and the admin port.

`start(settings)` brings the parts up in the order that keeps requests safe (monitoring before the
proxy takes traffic) and returns a `Sidecar`; `Sidecar.close()` takes them down in reverse: the
proxy stops taking requests first, the last minute's counters are posted (within a second), then
the shipper drains or spools within `drain_seconds`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from truthloop.sidecar import admin, live, metrics, server
from truthloop.sidecar.abstain import Abstain
from truthloop.sidecar.capture import Capture
from truthloop.sidecar.fallback import Fallback
from truthloop.sidecar.follower import Follower, FollowerSettings
from truthloop.sidecar.minutes import Minutes
from truthloop.sidecar.minutes import read as read_counters
from truthloop.sidecar.proxy import Proxy, ProxySettings, start_proxy
from truthloop.sidecar.shipper import Shipper, ShipperSettings
from truthloop.sidecar.tap import SidecarTap

log = logging.getLogger("truthloop.sidecar")


@dataclass(frozen=True, slots=True)
class AdminSettings:
    host: str = "0.0.0.0"
    """Address of the admin port (metrics, health, readiness)."""
    port: int = 9090
    """0 picks a free port (tests)."""
    ready_ttl: float = 1.0
    """Seconds a readiness probe of the model is reused."""
    limits: server.Limits = field(default_factory=server.Limits)
    """What one client of the admin port may ask of it."""


@dataclass(frozen=True, slots=True)
class SidecarSettings:
    proxy: ProxySettings
    """The data path: where to listen, where the model is, how much of a body to keep."""
    shipper: ShipperSettings
    """Where records go and how they wait."""
    follower: FollowerSettings
    """Which monitor's state to follow, and where."""
    admin: AdminSettings
    """The admin port."""
    model_version: str = ""
    """Written into every record (the operator sets it from the pod's version label)."""
    spec: Any = None
    """The ModelMonitor snapshot the sidecar starts with (None: fetched from the service)."""
    drain_seconds: float = 10.0
    """Budget at shutdown for sending (or spooling) what is queued."""
    clock: Callable[[], float] = time.time
    """Now, in seconds since the epoch (`truthloop demo` runs a time-lapse one, shared with its
    feedback service)."""
    stamp: Callable[[float], float] | None = None
    """Maps a request's wall-clock arrival to its records' `ts` on `clock` (a time-lapse's
    `TimeLapse.at`); None: `clock` runs at the wall's pace."""
    pod: str = ""
    """The pod's name (its host name), sent with the minute counters."""
    minutes_interval: float = 60.0
    """Wall seconds between posts of the minute counters (`minutes.Minutes`): a minute of
    `clock` (shorter for a time-lapse's, and in tests)."""


@dataclass(slots=True)
class Sidecar:
    """The parts of a running sidecar (tests read them) and how to stop it."""

    settings: SidecarSettings
    live: live.Live
    shipper: Shipper
    capture: Capture
    fallback: Fallback
    abstain: Abstain
    follower: Follower
    registry: CollectorRegistry
    proxy: Proxy
    admin: server.Server
    minutes: Minutes
    _follow: asyncio.Task[None]

    @property
    def port(self) -> int:
        return self.proxy.port

    @property
    def admin_port(self) -> int:
        return self.admin.port

    async def close(self) -> None:
        """Stop taking requests (in-flight ones get half the drain budget), then ship or spool
        what is queued in what is left of it."""
        loop = asyncio.get_running_loop()
        budget = self.settings.drain_seconds
        deadline = loop.time() + budget
        await self.proxy.close(grace=budget / 2)
        self._follow.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._follow
        await self.minutes.close(min(1.0, budget / 4))
        await self.shipper.close(max(deadline - loop.time(), budget / 2))
        await self.admin.close()


def initial_state(spec: Any) -> live.Current:
    """The snapshot's state, or none (capture waits, requests pass) if it cannot be used."""
    if spec is None:
        return live.Current()
    try:
        return live.initial(spec)
    except live.LoadError as e:
        log.error("the spec snapshot cannot be used, waiting for the service's: %s", e)
        return live.Current()


async def start(settings: SidecarSettings) -> Sidecar:
    """Start every part, the proxy and then the follower last; raises SpoolError or OSError
    (a port in use) before taking traffic, having stopped what it started."""
    async with contextlib.AsyncExitStack() as undo:
        state = live.Live(initial_state(settings.spec))
        shipper = Shipper(settings.shipper, clock=settings.clock)
        shipper.start()
        undo.push_async_callback(shipper.close, 0.0)
        capture = Capture(
            state,
            shipper,
            monitor=settings.follower.monitor,
            model_version=settings.model_version,
            clock=settings.clock,
            stamp=settings.stamp,
            max_body=settings.proxy.capture_max_bytes,
        )
        fallback = Fallback(state)
        abstain = Abstain(state)
        follower = Follower(settings.follower, state)
        registry = CollectorRegistry()
        latency = metrics.Latency(registry)
        probe = admin.ModelProbe(
            settings.proxy.model_host, settings.proxy.model_port, ttl=settings.admin.ready_ttl
        )
        pages = admin.routes(registry, probe, shipper.health)
        admin_server = await server.start(
            pages, settings.admin.host, settings.admin.port, settings.admin.limits
        )
        undo.push_async_callback(admin_server.close)
        proxy = await start_proxy(
            settings.proxy, SidecarTap(state, fallback, abstain, capture, latency)
        )
        minutes = Minutes(
            settings.follower.monitor,
            settings.pod,
            shipper,
            functools.partial(read_counters, proxy.stats, latency, shipper),
            interval=settings.minutes_interval,
            clock=settings.clock,
        )
        minutes.start()
        undo.push_async_callback(minutes.close, 0.0)
        # Followed once both ports are ours (the snapshot's state holds until the first poll):
        # a port in use ends the start before the follower says anything about the service.
        follow = asyncio.create_task(follower.run(), name="truthloop-follower")
        registry.register(
            metrics.PartsCollector(
                metrics.Parts(
                    state, shipper, capture, fallback, abstain, follower, proxy.stats, minutes.stats
                )
            )
        )
        undo.pop_all()
    return Sidecar(
        settings,
        state,
        shipper,
        capture,
        fallback,
        abstain,
        follower,
        registry,
        proxy,
        admin_server,
        minutes,
        follow,
    )
