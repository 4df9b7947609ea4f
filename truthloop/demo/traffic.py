"""The demo's clients: customers asking the model through the sidecar, and their labels arriving.

Each request is a new customer (`X-Entity-ID: customer-00042`) drawn from the world as it is at
that moment; whether that customer churns is drawn then too, and sent to the feedback service by
entity ID `label_delay` later, as a CRM would report it (and kept by the prediction ID the answer
carries, for the reviewer: `truth`). During the scenario's burst a customer's
`monthly_charges` is sent as the broken meter reads it; whether they churn follows what they
really pay. Customers and labels come from one
generator seeded by `--seed`, drawn in request order, so a seed always makes the same customers.
Requests are paced at `rate` per second without catching up in bursts after a stall.

With a canary, each request goes to the canary's sidecar (the model's second version) with
probability `canary_share`, drawn from a generator of its own, so the customers stay the seed's.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import numpy as np

from truthloop.demo.scenario import BROKEN_CHARGES, Scenario
from truthloop.examples import churn_model

PREDICT_PATH = "/predict"
MAX_IN_FLIGHT = 32
ACTUALS_INTERVAL = 0.1
"""Wall seconds between posts of the actuals that have come due."""


@dataclass(slots=True)
class Counts:
    requests: int = 0
    """Sent."""
    answered: int = 0
    """Answered 200."""
    by_fallback: int = 0
    """Answered with `X-Served-By: fallback`."""
    failed: int = 0
    """Answered otherwise, or not at all."""
    actuals: int = 0
    """Actuals accepted by the feedback service."""
    actuals_for_fallback: int = 0
    """Of them, for customers the fallback answered."""
    broken: int = 0
    """Requests sent with the broken meter's reading."""
    drifted_actuals: int = 0
    """Actuals accepted for customers of the drifted world."""
    abstained: int = 0
    """Answered "I don't know" by the sidecar (`X-Truthloop-Abstain: true`)."""
    canary: int = 0
    """Sent to the canary's sidecar."""


@dataclass(frozen=True, slots=True)
class _Due:
    at: float
    entity: str
    churned: int
    by_fallback: bool
    drifted: bool


class Traffic:
    """Drives `scenario` against the sidecar at `proxy_url`; `counts` says what happened."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        proxy_url: str,
        feedback_url: str,
        monitor: str,
        seed: int,
        elapsed: Callable[[], float],
        canary_url: str | None = None,
        canary_share: float = 0.0,
    ) -> None:
        self.scenario = scenario
        self.counts = Counts()
        self._proxy = proxy_url + PREDICT_PATH
        self._feedback = feedback_url + "/v1/feedback"
        self._monitor = monitor
        self._rng = np.random.default_rng(seed)
        self._canary = None if canary_url is None else canary_url + PREDICT_PATH
        self._canary_share = canary_share
        self._route = np.random.default_rng([seed, 1])
        self._elapsed = elapsed
        """Wall seconds since the start."""
        self._due: collections.deque[_Due] = collections.deque()
        self._in_flight: set[asyncio.Task[None]] = set()
        self.truth: dict[str, int] = {}
        """Whether each answered customer churns, by the prediction ID of the answer (the
        model's shadow record of a fallback answer carries the same ID)."""
        self.drifted_labels: list[tuple[float, int]] = [(0.0, 0)]
        """(wall seconds since the start, `counts.drifted_actuals` from then on), each stamped
        when its post was sent: at any moment, at least as many labels of the drifted world as the
        service had."""

    async def run(self) -> None:
        """Send requests for the scenario's duration and actuals as they come due; then wait for
        the last answers and send every actual still owed at once."""
        connector = aiohttp.TCPConnector(limit=MAX_IN_FLIGHT)
        async with aiohttp.ClientSession(connector=connector) as session:
            poster = asyncio.create_task(self._post_due(session))
            try:
                await self._send_all(session)
                if self._in_flight:
                    await asyncio.wait(self._in_flight)
            finally:
                poster.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await poster
                for task in self._in_flight:
                    task.cancel()
            await self._post(session, list(self._due))
            self._due.clear()

    async def _send_all(self, session: aiohttp.ClientSession) -> None:
        scenario = self.scenario
        gap = 1.0 / scenario.rate
        next_at = self._elapsed()
        while (now := self._elapsed()) < scenario.duration:
            if next_at > now:
                await asyncio.sleep(next_at - now)
            next_at = max(next_at + gap, self._elapsed() - 0.25)
            if len(self._in_flight) >= MAX_IN_FLIGHT:
                continue
            elapsed = self._elapsed()
            world = scenario.world(elapsed)
            customer = (
                churn_model.sample_newcomer(self._rng)
                if world == "newcomers"
                else churn_model.sample_customer(self._rng, drifted=world == "price")
            )
            churned = churn_model.label(customer, self._rng, drifted=world == "price")
            if elapsed >= scenario.burst and self.counts.broken < scenario.burst_size:
                customer = {**customer, "monthly_charges": BROKEN_CHARGES}
                self.counts.broken += 1
            self.counts.requests += 1
            entity = f"customer-{self.counts.requests:05d}"
            url = self._proxy
            if self._canary is not None and self._route.random() < self._canary_share:
                url = self._canary
                self.counts.canary += 1
            task = asyncio.create_task(
                self._ask(session, url, entity, customer, churned, world != "usual")
            )
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    async def _ask(
        self,
        session: aiohttp.ClientSession,
        url: str,
        entity: str,
        customer: dict[str, float | int | str],
        churned: int,
        drifted: bool,
    ) -> None:
        counts = self.counts
        try:
            async with session.post(
                url, json={"features": customer}, headers={"X-Entity-ID": entity}
            ) as response:
                await response.read()
                ok = response.status == 200
                by_fallback = response.headers.get("X-Served-By") == "fallback"
                abstained = response.headers.get("X-Truthloop-Abstain") == "true"
                prediction_id = response.headers.get("X-Prediction-ID")
        except aiohttp.ClientError:
            ok = by_fallback = abstained = False
            prediction_id = None
        if not ok:
            counts.failed += 1
            return
        counts.answered += 1
        counts.by_fallback += by_fallback
        counts.abstained += abstained
        if prediction_id is not None:
            self.truth[prediction_id] = churned
        due = self._elapsed() + self.scenario.label_wait
        self._due.append(_Due(due, entity, churned, by_fallback, drifted))

    async def _post_due(self, session: aiohttp.ClientSession) -> None:
        while True:
            await asyncio.sleep(ACTUALS_INTERVAL)
            now = self._elapsed()
            due = []
            while self._due and self._due[0].at <= now:
                due.append(self._due.popleft())
            await self._post(session, due)

    async def _post(self, session: aiohttp.ClientSession, due: list[_Due]) -> None:
        if not due:
            return
        sent = self._elapsed()
        items = [
            {"monitor": self._monitor, "entity_id": d.entity, "actual": d.churned} for d in due
        ]
        try:
            async with session.post(self._feedback, json={"items": items}) as response:
                await response.read()
                accepted = response.status == 200
        except aiohttp.ClientError:
            accepted = False
        if accepted:
            self.counts.actuals += len(due)
            self.counts.actuals_for_fallback += sum(d.by_fallback for d in due)
            drifted = sum(d.drifted for d in due)
            if drifted:
                self.counts.drifted_actuals += drifted
                self.drifted_labels.append((sent, self.counts.drifted_actuals))
