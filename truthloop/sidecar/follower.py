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

Polls and fetches go over a kept-alive connection each (`client.Client`, on the proxy's loop, as
shipping does), a poll within `wait + slack` and a fetch within `slack`; an answer is read up to
`max_answer_bytes`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

import msgspec

from truthloop.core import wire
from truthloop.sidecar.backoff import Backoff, BackoffSettings
from truthloop.sidecar.client import Client, MiB
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
    max_answer_bytes: int = 8 * MiB
    """Longest answer read (the service takes monitors up to its 8 MiB body limit); a longer
    one is cut, does not decode and counts as `invalid_answer`."""


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

    def __init__(self, settings: FollowerSettings, live: Live) -> None:
        self.settings = settings
        self.live = live
        self.stats = FollowStats()
        url, limit = settings.feedback_url, settings.max_answer_bytes
        self._polls = Client(url, timeout=settings.wait + settings.slack, max_answer_bytes=limit)
        self._fetches = Client(url, timeout=settings.slack, max_answer_bytes=limit)
        self._spec_target = f"/v1/monitors/{settings.monitor}"
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
                except _FAILURES as e:
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
            self._polls.close()
            self._fetches.close()

    async def _poll(self) -> wire.MonitorState:
        target = f"{self._spec_target}/state"
        if self._version is not None:
            target += f"?since={self._version}&wait={self.settings.wait:g}"
        status, body = await self._polls.request("GET", target)
        self.stats.polls += 1
        if status != 200:
            raise _HttpError(status)
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
            except _FAILURES as e:
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
        status, body = await self._fetches.request("GET", self._spec_target)
        if status != 200:
            raise _HttpError(status)
        return msgspec.json.decode(body)


class _HttpError(ValueError):
    """The service answered, but not 200."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


_FAILURES = (OSError, TimeoutError, msgspec.DecodeError, _HttpError)
"""Why a poll or a fetch failed; all are retried with backoff (see `_reason`)."""


def _reason(error: Exception) -> str:
    if isinstance(error, _HttpError):
        return f"http_{error.status}"
    if isinstance(error, TimeoutError):
        return "timeout"
    if isinstance(error, msgspec.DecodeError):
        return "invalid_answer"
    return "unreachable"
