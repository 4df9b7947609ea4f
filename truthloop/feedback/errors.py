"""The HTTP boundary's exception tree: what a client did wrong, as a 4xx JSON answer.

Handlers raise one of these; the error middleware turns it into
`{"error": "...", "details": [{"index", "field", "message", "reason"}]}` with the class's status.
Each class also inherits the built-in error it resembles, so code below the boundary can catch
`ValueError` or `LookupError` without knowing about HTTP. Anything else that escapes a handler
is a bug: it is logged and answered 500 with the same JSON shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from truthloop.core.records import ItemError


class ClientError(Exception):
    """A request the service refuses; `details` names every problem found."""

    status: ClassVar[int] = 400

    def __init__(self, error: str, details: Sequence[ItemError] = ()) -> None:
        super().__init__(error)
        self.error = error
        self.details = tuple(details)

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "details": [d.to_dict() for d in self.details]}


class BadRequest(ClientError, ValueError):
    status = 400


class Unauthorized(ClientError, PermissionError):
    status = 401


class NotFound(ClientError, LookupError):
    status = 404


class Conflict(ClientError):
    status = 409


class PayloadTooLarge(ClientError):
    status = 413


class UnsupportedMediaType(ClientError):
    status = 415


def detail(
    field: str, message: str, reason: str = "invalid", index: int | None = None
) -> ItemError:
    """One detail about the request as a whole (a query parameter, a header, the body)."""
    return ItemError(index, field, message, reason)
