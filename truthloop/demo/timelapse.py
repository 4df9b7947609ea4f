"""A clock that runs faster than the wall clock, so minutes of service time pass in seconds.

The feedback service keeps metrics in 1-minute buckets and its windows are sums of buckets, so a
demo shorter than a minute would never see a window move. The demo gives the service and the
sidecar one `TimeLapse` as their clock: from `start`, service time runs `speed` times faster than
the wall clock. `settle()` returns it to the wall clock's pace from the reading it has reached
(service time never goes back), for exploring the services after the demo.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class TimeLapse:
    """`now()` is `start + (wall - start) * speed` until `settle()`, then advances at 1×."""

    def __init__(
        self, speed: float, *, wall: Callable[[], float] = time.time, start: float | None = None
    ) -> None:
        if not speed >= 1:
            raise ValueError("speed must be at least 1")
        self.speed = speed
        self._wall = wall
        self.start = wall() if start is None else start
        self._origin = self.start
        """Wall time at which `_base` was the reading."""
        self._base = self.start

    def now(self) -> float:
        """Service time, in seconds since the epoch."""
        return self._base + (self._wall() - self._origin) * self.speed

    __call__ = now

    def at(self, wall: float) -> float:
        """Service time at wall-clock instant `wall` (on the current pace)."""
        return self._base + (wall - self._origin) * self.speed

    def elapsed(self) -> float:
        """Service seconds since `start`."""
        return self.now() - self.start

    def wall_elapsed(self) -> float:
        """Wall seconds since `start`."""
        return self._wall() - self.start

    def settle(self) -> None:
        """From now on, advance at the wall clock's pace."""
        now = self.now()
        self._origin, self._base, self.speed = self._wall(), now, 1.0
