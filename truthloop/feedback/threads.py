"""Heavy work off the event loop: parsing and profiling a reference data set takes seconds and
hundreds of megabytes, which must not stall the service's other requests.

`Feed` hands bytes (or rows) that arrive on the event loop to a worker thread as a plain
iterator, one piece at a time, so a 500 MB upload is parsed as it is received and never held
whole; `in_thread` runs the work on the loop's default executor.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

POLL = 0.5
"""Seconds a worker waits for a piece before it looks whether the feed was closed meanwhile."""
PULL_TIMEOUT = 3600.0
"""Seconds a worker waits for the next piece before giving up (a stalled loop is a bug; the
connection's own timeouts end a client that stops sending long before)."""


class Closed(Exception):
    """The feed was closed before its source ended (the request was answered or cancelled)."""


class Feed(Generic[T]):
    """An async iterator read from a worker thread, piece by piece: each `next` asks the loop for
    the next piece and waits for it. Errors of the source (a body too large, a connection cut)
    are raised in the worker, so the work stops; `close` makes the worker's next pull fail."""

    def __init__(self, source: AsyncIterator[T], loop: asyncio.AbstractEventLoop) -> None:
        self._source = source
        self._loop = loop
        self._closed = threading.Event()
        self.error: BaseException | None = None
        """What the source raised, for the caller to answer rather than the work's own error
        (a parser seeing a body cut short would blame the data)."""

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if self._closed.is_set():
            raise Closed
        future = asyncio.run_coroutine_threadsafe(self._pull(), self._loop)
        waited = 0.0
        while True:
            try:
                return future.result(POLL)
            except StopAsyncIteration:
                raise StopIteration from None
            except concurrent.futures.TimeoutError:
                waited += POLL
                if self._closed.is_set() or waited >= PULL_TIMEOUT:
                    # the request is over (or the loop stopped): a worker never outlives it
                    # by more than POLL, so a stopping service does not wait on it
                    future.cancel()
                    raise Closed from None

    async def _pull(self) -> T:
        try:
            return await anext(self._source)
        except StopAsyncIteration:
            raise
        except BaseException as e:
            self.error = e
            raise

    def close(self) -> None:
        self._closed.set()


async def in_thread(work: Callable[[], R]) -> R:
    """`work()` on the loop's default executor; the loop serves other requests meanwhile."""
    return await asyncio.get_running_loop().run_in_executor(None, work)


async def fed(source: AsyncIterator[T], work: Callable[[Iterator[T]], R]) -> R:
    """`work(pieces)` in a worker thread, `pieces` pulled from `source` on this loop as the work
    asks for them. A failure of the source is raised as itself, whatever the work made of it."""
    feed = Feed(source, asyncio.get_running_loop())
    try:
        result = await in_thread(lambda: work(feed))
    except asyncio.CancelledError:
        feed.close()  # the worker may be pulling still: it stops at its next piece
        raise
    except BaseException:
        feed.close()
        await _close(source)
        if feed.error is not None:
            raise feed.error from None
        raise
    feed.close()
    await _close(source)
    return result


async def _close(source: AsyncIterator[object]) -> None:
    """Finish an async generator the work left unfinished (its `finally` runs now, here)."""
    close = getattr(source, "aclose", None)
    if close is not None:
        await close()
