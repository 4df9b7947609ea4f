"""The HTTP boundary's exception tree: what a client did wrong, as a 4xx JSON answer.

Handlers raise one of these, and `refused` makes one of what the engine refuses; the error
middleware turns it into `{"error": "...", "details": [{"index", "field", "message", "reason"}]}`
with the class's status (and its `headers`). Each class also inherits the built-in error it
resembles. Anything else that escapes a handler is a bug: it is logged and answered 500 with the
same JSON shape.

Every answer names at most `MAX_DETAILS` problems and counts the others in `truncated`: a body
of a million bad items must not be answered with a million details.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from truthloop.core.records import MAX_ERRORS, ItemError, Reason
from truthloop.feedback import refusals

MAX_DETAILS = MAX_ERRORS
"""Most details in one answer; validation keeps no more than this either."""


def bounded(details: Sequence[ItemError], omitted: int = 0) -> tuple[list[dict[str, Any]], int]:
    """The first `MAX_DETAILS` details as JSON, and how many more there were."""
    listed = [d.to_dict() for d in details[:MAX_DETAILS]]
    return listed, max(0, len(details) - MAX_DETAILS) + omitted


def body(error: str, details: Sequence[ItemError], omitted: int = 0) -> dict[str, Any]:
    """The JSON of every error answer: the first `MAX_DETAILS` details, and how many more there
    were (`truncated`, only when some were left out)."""
    listed, truncated = bounded(details, omitted)
    answer: dict[str, Any] = {"error": error, "details": listed}
    if truncated:
        answer["truncated"] = truncated
    return answer


class ClientError(Exception):
    """A request the service refuses; `details` names the problems found, `omitted` counts the
    ones found but not kept."""

    status: ClassVar[int] = 400
    headers: ClassVar[Mapping[str, str]] = {}
    """Response headers the status calls for."""

    def __init__(self, error: str, details: Sequence[ItemError] = (), omitted: int = 0) -> None:
        super().__init__(error)
        self.error = error
        self.details = details
        self.omitted = omitted

    def body(self) -> dict[str, Any]:
        return body(self.error, self.details, self.omitted)


class BadRequest(ClientError, ValueError):
    status = 400


class Unauthorized(ClientError, PermissionError):
    status = 401
    headers: ClassVar[Mapping[str, str]] = {"WWW-Authenticate": 'Bearer realm="truthloop"'}


class Forbidden(ClientError, PermissionError):
    """A known token that may not do this (another namespace's monitor, an admin route)."""

    status = 403


class NotFound(ClientError, LookupError):
    status = 404


class Conflict(ClientError):
    status = 409


class PayloadTooLarge(ClientError):
    status = 413


class TooManyRequests(ClientError):
    """The replica is busy with work it does one at a time (a backtest); retry later."""

    status = 429
    headers: ClassVar[Mapping[str, str]] = {"Retry-After": "30"}


class UnsupportedMediaType(ClientError):
    status = 415


class UnsupportedEncoding(UnsupportedMediaType):
    """A body in a content coding the service cannot decode (RFC 9110 §15.5.16)."""

    headers: ClassVar[Mapping[str, str]] = {"Accept-Encoding": "gzip, deflate"}


def detail(
    field: str, message: str, reason: Reason = "invalid", index: int | None = None
) -> ItemError:
    """One detail about the request as a whole (a query parameter, a header, the body)."""
    return ItemError(index, field, message, reason)


ITEMS_REFUSED: Mapping[refusals.Items, str] = {
    "records": "invalid capture records",
    "actuals": "invalid actuals",
    "labels": "actuals that cannot label their predictions",
    "tasks": "invalid Label Studio tasks; nothing was stored",
    "minutes": "invalid sidecar minutes; nothing was stored",
}


def refused(refusal: refusals.Refused) -> ClientError:
    """The answer to a request the engine refused (one it cannot answer is a bug: a 500)."""
    match refusal:
        case refusals.UnknownMonitor(key=key):
            return NotFound(
                f"no monitor {key} is registered",
                [detail("monitor", f"{key} is not registered", "unknown_monitor")],
            )
        case refusals.InvalidItems():
            return BadRequest(ITEMS_REFUSED[refusal.items], refusal.errors, refusal.omitted)
        case refusals.OutOfScope(items=items, namespace=namespace, errors=errors):
            return Forbidden(f"{items} of monitors outside namespace {namespace}", errors)
        case refusals.NotJson(message=message):
            return BadRequest(
                "request body is not valid JSON", [detail("body", message, "invalid_json")]
            )
        case refusals.InvalidReference(errors=errors, omitted=omitted):
            return BadRequest("invalid reference data set; nothing was stored", errors, omitted)
        case refusals.NoReview(key=key):
            return NotFound(
                f"monitor {key} has no review queue",
                [
                    detail(
                        "spec.review",
                        f"{key} has no spec.review: set one to queue records for review",
                        "no_review",
                    )
                ],
            )
        case refusals.TooManyWaiting(key=key, limit=limit):
            return TooManyRequests(
                f"monitor {key} has too many CloudEvents waiting for their other half",
                [
                    detail(
                        "monitor",
                        f"{key} keeps at most {limit} halves waiting; a new event is refused"
                        " until some pair or expire",
                        "too_many_waiting",
                    )
                ],
            )
        case refusals.NotCaptured(key=key, reason=reason, detail=where):
            return BadRequest(
                f"monitor {key}'s capture spec finds no record in the event's pair",
                [detail("data", f"{reason}: {where or 'see spec.capture'}", "not_captured")],
            )
        case refusals.SeriesTooLong(points=points, limit=limit):
            return BadRequest(
                f"a series of {points} points is too long",
                [detail("series", f"at most {limit} points", "too_long")],
            )
    raise TypeError(f"no answer for {refusal!r}") from refusal
