"""Waiting in a test: on a condition, with a deadline, never a sleep "to give it time".

`eventually` polls a probe until it returns something true. The probe may be a plain function or
a coroutine function (a lambda that returns a coroutine counts), so one helper serves a counter
read off a fake and an HTTP request to a service alike. A probe that may fail while the thing it
looks at is not there yet says so itself (it catches the error and returns False): nothing is
swallowed here. A synchronous test waits with `asyncio.run(eventually(...))`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, overload

T = TypeVar("T")

INTERVAL = 0.01
"""Seconds between two looks: short next to any deadline, long enough not to load the loop."""


@overload
async def eventually(
    probe: Callable[[], Awaitable[T]], what: str = "", *, within: float = 10.0
) -> T: ...
@overload
async def eventually(probe: Callable[[], T], what: str = "", *, within: float = 10.0) -> T: ...
async def eventually(
    probe: Callable[[], T | Awaitable[T]], what: str = "", *, within: float = 10.0
) -> T:
    """The first true result of `probe`, looked at every INTERVAL; after `within` seconds, an
    AssertionError naming `what` it waited for (else the probe's source) and its last result."""
    deadline = time.monotonic() + within
    while True:
        result = probe()
        last = await result if inspect.isawaitable(result) else result
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(
                f"not within {within}s: {what or _described(probe)}; last {last!r}"
            )
        await asyncio.sleep(INTERVAL)


def _described(probe: Callable[..., object]) -> str:
    """A function by its name, a lambda by the line that holds it."""
    name = getattr(probe, "__qualname__", repr(probe))
    if name.endswith("<lambda>"):
        with contextlib.suppress(OSError, TypeError):
            return inspect.getsource(probe).strip()
    return str(name)
