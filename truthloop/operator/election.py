"""Leader election's I/O: read the Lease, write what `lease.decide` says, lead while renewed.

`Elector.run()` reads the Lease every `retry_period` (or sooner, when it could expire) and creates,
renews or takes it over with a write guarded by its resourceVersion. Becoming the leader calls
`on_lead`, ceasing to be calls `on_follow` (the supervisor starts and stops the monitors' loops).
Leadership ends when another replica's write wins (a conflict, or another holder read back) and at
`lease.lead_until` unless renewed: a timer on the event loop, so a request that hangs cannot
stretch it. `release()`, on a clean stop, clears the holder, so another replica takes over at its
next read instead of after the Lease's duration. Both replicas serve webhooks either way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from truthloop.operator import lease
from truthloop.operator.kube import COORDINATION, Conflict, Kube, KubeError, NotFound
from truthloop.operator.lease import Record, Seen
from truthloop.operator.metrics import Metrics
from truthloop.operator.settings import Settings

log = logging.getLogger("truthloop.operator.election")


class Elector:
    def __init__(
        self,
        kube: Kube,
        settings: Settings,
        identity: str,
        metrics: Metrics,
        on_lead: Callable[[], None],
        on_follow: Callable[[], None],
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.kube = kube
        self.settings = settings.lease
        self.namespace = settings.operator_namespace
        self.identity = identity
        self.metrics = metrics
        self.leading = False
        self._on_lead = on_lead
        self._on_follow = on_follow
        self._wall = wall
        self._seen: Seen | None = None
        self._written: dict[str, Any] | None = None
        self._holder: str | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.metrics.leader.set(0)

    @property
    def where(self) -> str:
        return f"{self.namespace}/{self.settings.name}"

    async def run(self) -> None:
        while True:
            delay = await self.step()
            await asyncio.sleep(delay)

    async def step(self) -> float:
        """One read and, when decided, one write; returns the seconds until the next."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        retry = self.settings.retry_period
        try:
            try:
                body: dict[str, Any] | None = await self.kube.get_lease(
                    self.namespace, self.settings.name
                )
            except NotFound:
                body = None
            current = Record.parse(body) if body is not None else None
            decision = lease.decide(self._seen, current, self.identity, started, self.settings)
            self._seen = decision.seen
            if decision.action == "wait":
                assert current is not None
                self._follow(current.holder)
                return decision.look_again
            spec = lease.claim(current, self.identity, self._wall(), self.settings)
            if body is None:
                written = await self.kube.create_lease(self.namespace, self._new(spec))
            else:
                written = await self.kube.replace_lease(self.namespace, {**body, "spec": spec})
        except Conflict:
            self._follow(None)  # another replica wrote first: it leads
            return retry
        except KubeError as e:
            log.warning("lease %s not read or written: %s", self.where, e)
            return retry
        self._written = written
        self._seen = Seen(Record.parse(written), started)
        self._lead(lease.lead_until(started, self.settings), decision.reason)
        return decision.look_again

    async def release(self) -> None:
        """Stop leading and, if this replica held the Lease, clear its holder."""
        written, self._written = self._written, None
        held = self.leading
        self._lose()
        if not held or written is None:
            return
        spec = lease.release(Record.parse(written), self._wall())
        try:
            await self.kube.replace_lease(self.namespace, {**written, "spec": spec})
        except KubeError as e:
            log.warning("lease %s not released (%s): it expires instead", self.where, e)
        else:
            log.info("lease %s released", self.where)

    def _new(self, spec: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": f"{COORDINATION}/v1",
            "kind": "Lease",
            "metadata": {"name": self.settings.name, "namespace": self.namespace},
            "spec": spec,
        }

    def _lead(self, until: float, reason: str) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_at(until, self._expired)
        self._holder = self.identity
        if self.leading:
            return
        self.leading = True
        self.metrics.leader.set(1)
        log.info("leading: lease %s taken (%s); monitors are handled here", self.where, reason)
        self._on_lead()

    def _expired(self) -> None:
        log.warning("lease %s not renewed in time: monitors stop here", self.where)
        self._lose()

    def _follow(self, holder: str | None) -> None:
        self._lose()
        if holder is not None and holder != self._holder:
            log.info("following: lease %s is held by %s", self.where, holder)
        self._holder = holder

    def _lose(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.leading:
            return
        self.leading = False
        self.metrics.leader.set(0)
        log.info("no longer leading: monitors are left to the holder of lease %s", self.where)
        self._on_follow()
