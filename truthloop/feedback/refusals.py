"""What the engine refuses, as values: nothing of a refused request was stored.

The engine knows no HTTP. It raises one of these with the data of the answer (the monitor, each
bad item's index, field and reason code), and the HTTP boundary (`errors.refused`) answers it
with a status and the service's JSON error body. Each also inherits the built-in error it
resembles. The engine raises core's own errors too: `SpecError` for a spec that does not parse
and `registry.TaskChange` for a monitor that would change its task.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from truthloop.core.records import ItemError


class Refused(Exception):
    """A request the engine refuses."""


class UnknownMonitor(Refused, LookupError):
    """No monitor `key` is registered (`unknown_monitor`)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class NotJson(Refused, ValueError):
    """The body does not decode as JSON (`invalid_json`); `message` is the decoder's."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


Items = Literal["records", "actuals", "labels", "tasks", "minutes"]
"""What was refused: capture records, actuals, actuals that cannot label their predictions
(each valid on its own), Label Studio tasks (an import of review labels), or a sidecar's minute
counters."""


class InvalidItems(Refused, ValueError):
    """Items of a write that cannot be taken, all of them refused: `errors` names each problem
    (`index` into the request's items), `omitted` counts the problems found but not kept."""

    def __init__(self, items: Items, errors: Sequence[ItemError], omitted: int = 0) -> None:
        super().__init__(f"{len(errors) + omitted} invalid {items}")
        self.items: Items = items
        self.errors = errors
        self.omitted = omitted


class SeriesTooLong(Refused, ValueError):
    """A metrics series of `points` points, more than the service's `limit` (`too_long`)."""

    def __init__(self, points: int, limit: int) -> None:
        super().__init__(f"{points} points, at most {limit}")
        self.points = points
        self.limit = limit


class OutOfScope(Refused, PermissionError):
    """Items of monitors outside the namespace of the request's token (`wrong_namespace`), each
    named in `errors`: the whole body is refused."""

    def __init__(self, items: Items, namespace: str, errors: Sequence[ItemError]) -> None:
        super().__init__(f"{len(errors)} {items} outside namespace {namespace}")
        self.items: Items = items
        self.namespace = namespace
        self.errors = errors


class InvalidReference(Refused, ValueError):
    """A reference data set that cannot be used: `errors` names each problem (its line and
    column where it has them); nothing was stored."""

    def __init__(self, errors: Sequence[ItemError], omitted: int = 0) -> None:
        super().__init__(f"{len(errors) + omitted} problem(s) in the reference")
        self.errors = errors
        self.omitted = omitted


class NoReview(Refused, LookupError):
    """The review queue of a monitor without `spec.review` (`no_review`)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class TooManyWaiting(Refused, OverflowError):
    """A new CloudEvent of a monitor that has `limit` halves waiting for their other half
    already (`too_many_waiting`): nothing was stored."""

    def __init__(self, key: str, limit: int) -> None:
        super().__init__(key, limit)
        self.key = key
        self.limit = limit


class NotCaptured(Refused, ValueError):
    """A paired CloudEvent in which the monitor's capture spec finds no record (`not_captured`):
    `reason` and `detail` are `core.extract`'s."""

    def __init__(self, key: str, reason: str, detail: str | None) -> None:
        super().__init__(key, reason)
        self.key = key
        self.reason = reason
        self.detail = detail
