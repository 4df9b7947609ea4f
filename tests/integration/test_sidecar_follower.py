"""The follower against a service that answers badly: each failure is counted by its reason, the
last known state stays in force, and an answer too long to be a state or a spec is cut at the
bound instead of being read whole (or read until the long-poll times out)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import msgspec
from aiohttp import web

from tests.integration.sidecar_harness import FAST
from tests.support.churn_model import MONITOR
from tests.support.waiting import eventually
from truthloop.core import wire
from truthloop.sidecar.follower import Follower, FollowerSettings
from truthloop.sidecar.live import Current, Live

LIMIT = 64 * 1024


def state(version: int, active: bool) -> bytes:
    return msgspec.json.encode(
        wire.MonitorState(
            monitor="ml/churn",
            generation=1,
            version=version,
            phase="FallbackActive" if active else "Collecting",
            fallback=wire.FallbackState(active=active, mode="engaged" if active else "auto"),
        )
    )


async def endless(request: web.Request) -> web.StreamResponse:
    """A 200 whose chunked body never ends."""
    response = web.StreamResponse()
    response.enable_chunked_encoding()
    await response.prepare(request)
    with contextlib.suppress(ConnectionError):
        while True:
            await response.write(b" " * 65536)
    return response


class Scripted:
    """Answers the state polls and the spec fetches from lists, one entry per request; once a
    list is spent, a poll is held open (nothing changes) and a fetch gets the monitor."""

    def __init__(self, polls: list[bytes | int | None], fetches: list[int | None]) -> None:
        self.polls = polls
        """A state's body, a status to answer with, or None: an endless body."""
        self.fetches = fetches
        """A status to answer with, or None: an endless body."""
        self.queries: list[str] = []
        """Each poll's query string."""

    async def state(self, request: web.Request) -> web.StreamResponse:
        self.queries.append(request.query_string)
        if not self.polls:
            await asyncio.Event().wait()
        answer = self.polls.pop(0)
        if answer is None:
            return await endless(request)
        if isinstance(answer, int):
            return web.json_response({"error": "no"}, status=answer)
        return web.Response(body=answer, content_type="application/json")

    async def spec(self, request: web.Request) -> web.StreamResponse:
        answer = self.fetches.pop(0) if self.fetches else 200
        if answer is None:
            return await endless(request)
        return web.json_response(MONITOR, status=answer)


@contextlib.asynccontextmanager
async def follower(service: Scripted) -> AsyncIterator[Follower]:
    app = web.Application()
    app.router.add_get("/base/v1/monitors/ml/churn/state", service.state)
    app.router.add_get("/base/v1/monitors/ml/churn", service.spec)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/base"
    settings = FollowerSettings(
        url, "ml/churn", wait=30.0, slack=30.0, backoff=FAST, max_answer_bytes=LIMIT
    )
    running = Follower(settings, Live(Current()))
    task = asyncio.create_task(running.run())
    try:
        yield running
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await runner.cleanup()


async def test_bad_answers_are_counted_by_reason_and_the_last_state_holds() -> None:
    service = Scripted(
        polls=[state(1, active=True), 500, None, b"{not json", state(2, active=True)],
        fetches=[404, None],
    )
    async with follower(service) as running:
        await eventually(lambda: not service.polls, "every scripted poll answered")
        await eventually(lambda: running.stats.reloads == 1, "the spec loaded")
        assert running.stats.poll_errors == {"http_500": 1, "invalid_answer": 2}
        assert running.stats.reload_errors == {"http_404": 1, "invalid_answer": 1}
        assert running.live.current.fallback_active
        assert running.live.current.monitor is not None


async def test_a_poll_asks_to_be_held_past_the_known_version_while_the_spec_is_fetched() -> None:
    """A spec fetch goes on its own connection: the poll held open does not hold it up."""
    service = Scripted(polls=[state(1, active=False)], fetches=[])
    async with follower(service) as running:
        await eventually(lambda: len(service.queries) == 2, "the second poll held")
        await eventually(lambda: running.stats.reloads == 1, "the spec loaded")
        assert service.queries == ["", "since=1&wait=30"]
        assert running.stats.polls == 1
        assert running.live.current.monitor is not None
