"""Once per reason per interval: what keeps a log readable while the same failure repeats.

A full disk or a refused token fails every batch, thousands a minute; the first occurrence of a
reason is worth a line, the rest only a count. `Throttle.allow(reason, now)` says whether to
speak now and how many occurrences it held back since it last did. Reasons are reason codes
(a small set); past `max_reasons` distinct ones, the oldest is forgotten, so memory stays bounded.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class _Seen:
    spoke_at: float
    held: int = 0


@dataclass(slots=True)
class Throttle:
    """Lets a reason through at most once per `interval` seconds, counting what it holds back."""

    interval: float = 60.0
    max_reasons: int = 64
    _seen: dict[str, _Seen] = field(default_factory=dict)

    def allow(self, reason: str, now: float) -> int | None:
        """None: stay quiet. Otherwise speak, mentioning the returned count of occurrences held
        back since this reason last spoke."""
        seen = self._seen.get(reason)
        if seen is not None and now - seen.spoke_at < self.interval:
            seen.held += 1
            return None
        held = seen.held if seen is not None else 0
        self._seen.pop(reason, None)
        if len(self._seen) >= self.max_reasons:
            del self._seen[next(iter(self._seen))]
        self._seen[reason] = _Seen(now)
        return held

    def note(
        self, reason: str, now: float, message: str, *args: object
    ) -> tuple[object, ...] | None:
        """`allow` as a log call's arguments: None to stay quiet, else `message` (a %-format)
        and its `args`, the count held back said at the end."""
        held = self.allow(reason, now)
        if held is None:
            return None
        if held:
            return (message + " (and %d more times in the last minute)", *args, held)
        return (message, *args)
