"""Sampling what the running parts show, through their HTTP interfaces, for `truthloop run`'s
event lines (`core.events` decides what to say).

One loop: a long-poll of the monitor's state (`state?since=V&wait=1`) answers at once when the
state moves, so a phase change is told as it happens, and else paces the loop at a second; each
turn also reads the sidecar's `/metrics` (its counters) and `/readyz` (whether the model accepts
connections). A part that does not answer keeps what was last seen.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace

import aiohttp
import msgspec
from prometheus_client.parser import text_string_to_metric_families

from truthloop.core import events, wire
from truthloop.core.throttle import Throttle
from truthloop.local.stack import Stack

WAIT = 1.0
"""Seconds a state long-poll may be held: the pace of the loop while nothing moves."""
PREFIX = "truthloop_sidecar_"
_FAILURES = (aiohttp.ClientError, TimeoutError, ValueError)


async def follow(stack: Stack, say: Callable[[str], None]) -> None:
    """Call `say` with each event line, until cancelled."""
    throttle = Throttle()
    seen = events.Observed()
    version: int | None = None
    timeout = aiohttp.ClientTimeout(total=WAIT + 10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while True:
            now = seen
            state_url = f"{stack.feedback_url}/v1/monitors/{stack.monitor}/state"
            query = {"wait": f"{WAIT:g}"} | ({"since": str(version)} if version is not None else {})
            try:
                async with session.get(state_url, params=query) as answer:
                    answer.raise_for_status()
                    state = msgspec.json.decode(await answer.read(), type=wire.MonitorState)
                version = state.version
                now = replace(
                    now,
                    phase=state.phase,
                    fallback=state.fallback.active,
                    fallback_reason=state.fallback.reason,
                    drift=state.drift,
                )
            except _FAILURES:
                await asyncio.sleep(WAIT)
            try:
                async with session.get(f"{stack.admin_url}/readyz") as answer:
                    now = replace(now, model_up=answer.status == 200)
                async with session.get(f"{stack.admin_url}/metrics") as answer:
                    answer.raise_for_status()
                    now = replace(now, counts=counts(await answer.text()))
            except _FAILURES:
                pass
            for line in events.lines(seen, now, time.time(), throttle):
                say(line)
            seen = now


def counts(exposition: str) -> dict[tuple[str, str], float]:
    """The `core.events.COUNTED` counters of a `/metrics` page, by (counter, reason)."""
    found = {}
    for family in text_string_to_metric_families(exposition):
        counter = family.name.removeprefix(PREFIX)
        if family.name.startswith(PREFIX) and counter in events.COUNTED:
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    found[counter, sample.labels.get("reason", "")] = sample.value
    return found
