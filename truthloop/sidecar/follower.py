"""Following the monitor's fallback state and spec from the feedback service.

One long-poll loop: `GET /v1/monitors/{ns}/{name}/state?wait=30&since=V` answers when the state's
version moves past V (or after `wait`), so a switch reaches the sidecar within a round trip. When
the service is away or answers garbage the last known state stays in force and the loop retries
with backoff: the fallback never flips because the service is gone.

When the state reports a spec `generation` other than the one in force, a reload task fetches
`GET /v1/monitors/{ns}/{name}` (the ModelMonitor as the body, or under `monitor`) and swaps the
spec in; it retries fetch failures with backoff, while polling goes on. A spec that does not load
keeps the old one, is logged and counted, and is not fetched again until the generation moves.
Generations are compared as the state reports them, so a body without `metadata.generation` does
not cause a fetch on every poll.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgspec

from truthloop.core import wire
from truthloop.sidecar.backoff import Backoff, BackoffSettings
from truthloop.sidecar.live import Live, LoadError, load

log = logging.getLogger("truthloop.sidecar.follower")


@dataclass(frozen=True, slots=True)
class FollowerSettings:
    feedback_url: str
    """Base URL of the feedback service."""
    monitor: str
    """`namespace/name` of the monitor to follow."""
    wait: float = 30.0
    """Seconds the service may hold one long-poll."""
    slack: float = 10.0
    """Seconds past `wait` before a long-poll counts as failed."""
    backoff: BackoffSettings = field(default_factory=BackoffSettings)
    """Delays between attempts while the service is away."""


@dataclass(slots=True)
class FollowStats:
    """Counts for the admin port."""

    polls: int = 0
    poll_errors: collections.Counter[str] = field(default_factory=collections.Counter)
    reloads: int = 0
    reload_errors: collections.Counter[str] = field(default_factory=collections.Counter)


_decode_state = msgspec.json.Decoder(wire.MonitorState).decode


class Follower:
    """Keeps `live` in step with the service; run `run()` as a task and cancel it to stop."""

    def __init__(
        self, settings: FollowerSettings, session: aiohttp.ClientSession, live: Live
    ) -> None:
        self.settings = settings
        self.live = live
        self.stats = FollowStats()
        self._session = session
        base = f"{settings.feedback_url.rstrip('/')}/v1/monitors/{settings.monitor}"
        self._spec_url = base
        self._state_url = base + "/state"
        self._version: int | None = None
        self._wanted: int | None = None
        self._generation = live.current.monitor.generation if live.current.monitor else None
        self._reloader: asyncio.Task[None] | None = None

    async def run(self) -> None:
        backoff = Backoff(self.settings.backoff)
        failing = False
        try:
            while True:
                try:
                    state = await self._poll()
                except (aiohttp.ClientError, OSError, TimeoutError, msgspec.DecodeError) as e:
                    reason = _reason(e)
                    self.stats.poll_errors[reason] += 1
                    if not failing:
                        log.warning("cannot read the monitor's state (%s); keeping the last", e)
                    failing = True
                    await asyncio.sleep(backoff.next_delay())
                    continue
                if failing:
                    log.info("reading the monitor's state again")
                failing = False
                backoff.reset()
                self._apply(state)
        finally:
            if self._reloader is not None:
                self._reloader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._reloader

    async def _poll(self) -> wire.MonitorState:
        params: dict[str, str] = {}
        if self._version is not None:
            params = {"since": str(self._version), "wait": f"{self.settings.wait:g}"}
        timeout = aiohttp.ClientTimeout(total=self.settings.wait + self.settings.slack)
        async with self._session.get(self._state_url, params=params, timeout=timeout) as response:
            body = await response.read()
            self.stats.polls += 1
            if response.status != 200:
                raise _HttpError(response.status)
        return _decode_state(body)

    def _apply(self, state: wire.MonitorState) -> None:
        self._version = state.version
        active = state.fallback.active
        if active != self.live.current.fallback_active:
            log.info("fallback %s", "engaged: the rules answer" if active else "released")
        self.live.set_active(active)
        if state.generation != self._generation:
            self._wanted = state.generation
            if self._reloader is None or self._reloader.done():
                self._reloader = asyncio.create_task(self._reload(), name="truthloop-spec-reload")

    async def _reload(self) -> None:
        """Fetch and load the spec until the wanted generation is in force or refused."""
        backoff = Backoff(self.settings.backoff)
        while True:
            wanted = self._wanted
            try:
                body = await self._fetch()
            except (aiohttp.ClientError, OSError, TimeoutError, msgspec.DecodeError) as e:
                self.stats.reload_errors[_reason(e)] += 1
                log.warning("cannot fetch the monitor's spec (%s); will retry", e)
                await asyncio.sleep(backoff.next_delay())
                continue
            try:
                loaded = load(body)
            except LoadError as e:
                self.stats.reload_errors[e.reason] += 1
                log.error("spec generation %s refused, keeping the one in force: %s", wanted, e)
            else:
                self.live.use(loaded)
                self.stats.reloads += 1
                log.info("spec generation %s in force", wanted)
            self._generation = wanted
            if self._wanted == wanted:
                return

    async def _fetch(self) -> Any:
        timeout = aiohttp.ClientTimeout(total=self.settings.slack)
        async with self._session.get(self._spec_url, timeout=timeout) as response:
            body = await response.read()
            if response.status != 200:
                raise _HttpError(response.status)
        return msgspec.json.decode(body)


class _HttpError(aiohttp.ClientError):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


def _reason(error: Exception) -> str:
    if isinstance(error, _HttpError):
        return f"http_{error.status}"
    if isinstance(error, TimeoutError):
        return "timeout"
    if isinstance(error, msgspec.DecodeError):
        return "invalid_answer"
    return "unreachable"
