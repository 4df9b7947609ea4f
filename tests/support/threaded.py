"""A feedback service on an event loop of its own, in a thread, for synchronous callers.

Playwright's synchronous API refuses to run inside a running event loop, so the browser tests are
plain functions; the service they browse runs here, and they reach it over HTTP as the browser
does, or call its (async) `Service` helpers through `run`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from tests.support.feedback import FakeClock, Service, make_settings

T = TypeVar("T")

TIMEOUT = 60.0
"""Seconds a call into the loop may take before the caller gives up (a hung service)."""


class ThreadedService:
    """A `Service` on `store_url` with `clock`, served from a thread until `close`."""

    def __init__(self, store_url: str, clock: FakeClock, **settings: Any) -> None:
        self.clock = clock
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="feedback-service")
        self._thread.start()
        self.service = Service(make_settings(store_url, clock, **settings))
        try:
            self.run(self.service.start())
        except BaseException:
            self._end()
            raise

    @property
    def base(self) -> str:
        """http://127.0.0.1:port"""
        return self.service.base

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` on the service's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(TIMEOUT)

    def close(self) -> None:
        try:
            self.run(self.service.stop())
        finally:
            self._end()

    def _end(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(TIMEOUT)
        self.loop.close()
