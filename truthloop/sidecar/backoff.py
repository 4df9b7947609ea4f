"""Exponential backoff with jitter, for everything the sidecar retries against the feedback service.

Delays double from `base` up to `cap`; each is drawn from its upper half ("equal jitter"), so
sidecars that lost the service together do not come back in lockstep, yet none retries at once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BackoffSettings:
    base: float = 0.2
    """First delay, in seconds."""
    cap: float = 10.0
    """Longest delay, in seconds."""


class Backoff:
    """Delays for consecutive failures; `reset()` after a success."""

    __slots__ = ("_failures", "_random", "settings")

    def __init__(self, settings: BackoffSettings, rng: random.Random | None = None) -> None:
        self.settings = settings
        self._failures = 0
        self._random = rng or random.Random()

    @property
    def failures(self) -> int:
        return self._failures

    def next_delay(self) -> float:
        """Seconds to wait after one more failure."""
        ceiling = min(self.settings.cap, self.settings.base * 2.0 ** min(self._failures, 62))
        self._failures += 1
        return ceiling / 2 + self._random.uniform(0.0, ceiling / 2)

    def reset(self) -> None:
        self._failures = 0
