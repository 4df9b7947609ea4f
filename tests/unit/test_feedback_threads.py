"""Work fed from the event loop to a worker thread (`feedback.threads`): pieces in order, the
source's own errors, and a worker that never outlives its request."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.support.waiting import eventually
from truthloop.feedback import threads


async def pieces(*items: bytes) -> AsyncIterator[bytes]:
    for item in items:
        await asyncio.sleep(0)
        yield item


async def test_the_work_gets_every_piece_in_order_off_the_loop() -> None:
    loop_thread = threading.get_ident()
    seen: list[int] = []

    def work(chunks: Iterator[bytes]) -> bytes:
        seen.append(threading.get_ident())
        return b"".join(chunks)

    assert await threads.fed(pieces(b"a", b"bc", b"", b"d"), work) == b"abcd"
    assert seen != [loop_thread]


async def test_a_failing_source_is_raised_as_itself_whatever_the_work_made_of_it() -> None:
    class TooLarge(Exception):
        pass

    async def source() -> AsyncIterator[bytes]:
        yield b"1,2\n"
        raise TooLarge

    def work(chunks: Iterator[bytes]) -> int:
        try:
            return len(b"".join(chunks))
        except TooLarge:
            raise ValueError("the data set breaks off") from None

    with pytest.raises(TooLarge):
        await threads.fed(source(), work)


async def test_the_work_s_own_error_is_raised() -> None:
    def work(chunks: Iterator[bytes]) -> int:
        next(chunks)
        raise ValueError("line 1: not CSV")

    with pytest.raises(ValueError, match="line 1"):
        await threads.fed(pieces(b"x"), work)


async def test_a_cancelled_request_stops_its_worker_at_its_next_wait() -> None:
    """The client went away while the worker waits for a piece that will never come: the worker
    stops (a stopping service waits for no thread of a request that is over)."""
    pulling = asyncio.Event()
    stopped = threading.Event()

    async def stalled() -> AsyncIterator[bytes]:
        yield b"a"
        pulling.set()
        await asyncio.Event().wait()
        yield b"never"

    def work(chunks: Iterator[bytes]) -> int:
        try:
            return sum(len(c) for c in chunks)
        finally:
            stopped.set()

    task = asyncio.create_task(threads.fed(stalled(), work))
    await pulling.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await eventually(stopped.is_set, "the worker stopped", within=5)
