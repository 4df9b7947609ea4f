"""The demo's reviewer: people working through the monitor's review queue at a steady pace.

Every `TICK` wall seconds it leases up to `pace * TICK` items (`GET .../review?reviewer=&limit=`,
as a labeling tool would) and labels each with whether the customer really churns
(`POST /v1/feedback` with `source: review`, its name and the prediction ID), which the traffic
knows by the ID the answer carried (`Traffic.truth`), once `delay` seconds of service time have
passed since the prediction: the time a person takes to look into a customer, shorter than the
CRM's label delay, so the reviews come first. (Reviews at once would make the window's labeled
accuracy a mix that over-weighs the uncertain items, which fall first when the world drifts: the
reason the reviewed estimate weighs each item by its chance of being queued.) Until then, and
while the client has not read the answer's ID, an item is held (its lease outlasts that).
`drain` works through what is left in the queue at the end, without waiting.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

NAME = "demo-reviewer"
TICK = 0.25
"""Wall seconds between two leases."""
DRAIN_WITHIN = 5.0
"""Wall seconds the reviewer gets to empty the queue at the end."""


@dataclass(slots=True)
class Reviews:
    leased: int = 0
    """Items handed to the reviewer (an item returned and leased again counts twice)."""
    labeled: int = 0
    """Review labels the feedback service accepted."""
    reasons: collections.Counter[str] = field(default_factory=collections.Counter)
    """The labeled items by why they were queued (abstain, explore, outlier, random,
    borderline)."""


class Reviewer:
    """Leases and labels items of `monitor`'s queue; `reviews` says what it did."""

    def __init__(
        self,
        feedback_url: str,
        monitor: str,
        truth: Mapping[str, int],
        *,
        pace: float,
        delay: float,
        now: Callable[[], float],
        name: str = NAME,
    ) -> None:
        self.reviews = Reviews()
        self.name = name
        self._queue = f"{feedback_url}/v1/monitors/{monitor}/review"
        self._feedback = f"{feedback_url}/v1/feedback"
        self._monitor = monitor
        self._truth = truth
        self._per_tick = max(1, round(pace * TICK))
        self._delay = delay
        self._now = now
        """Service time."""
        self._held: dict[str, tuple[str, float]] = {}
        """Leased items not labeled yet: prediction ID -> (reason, prediction time)."""

    async def run(self) -> None:
        """Review at the steady pace until cancelled."""
        async with aiohttp.ClientSession() as session:
            while True:
                await self._review(session)
                await asyncio.sleep(TICK)

    async def drain(self, within: float = DRAIN_WITHIN) -> None:
        """Review until the queue is empty and nothing is held (`within` wall seconds at
        most), without pausing between leases."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        self._delay = 0.0
        async with aiohttp.ClientSession() as session:
            while loop.time() < deadline:
                leased = await self._review(session)
                if not leased and not self._held:
                    return
                if not leased:
                    await asyncio.sleep(TICK)

    async def _review(self, session: aiohttp.ClientSession) -> int:
        """One lease and its labels; the items leased (errors count none)."""
        try:
            items = await self._lease(session)
        except (aiohttp.ClientError, ValueError):
            return 0
        for item in items:
            self._held[item["prediction_id"]] = (item["reason"], float(item["ts"]))
        due = self._now() - self._delay
        known = [
            (pid, self._truth[pid])
            for pid, (_, ts) in self._held.items()
            if ts <= due and pid in self._truth
        ]
        if known:
            await self._label(session, known)
        return len(items)

    async def _lease(self, session: aiohttp.ClientSession) -> list[Mapping[str, Any]]:
        query = {"reviewer": self.name, "limit": str(self._per_tick)}
        async with session.get(self._queue, params=query) as response:
            response.raise_for_status()
            answer = await response.json()
        items: list[Mapping[str, Any]] = answer["items"]
        self.reviews.leased += len(items)
        return items

    async def _label(self, session: aiohttp.ClientSession, known: list[tuple[str, int]]) -> None:
        items = [
            {
                "monitor": self._monitor,
                "prediction_id": pid,
                "actual": churned,
                "source": "review",
                "reviewer": self.name,
            }
            for pid, churned in known
        ]
        try:
            async with session.post(self._feedback, json={"items": items}) as response:
                await response.read()
                accepted = response.status == 200
        except aiohttp.ClientError:
            return
        if accepted:
            self.reviews.labeled += len(known)
            for pid, _ in known:
                self.reviews.reasons[self._held.pop(pid)[0]] += 1
