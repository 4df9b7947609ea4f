"""Which bearer token may do what: the operator's (admin) token everything, a namespace's token
only capture, feedback, reference uploads, the review queue and backtests for the monitors of its
namespace.

A namespace token is what sidecars and label sources of one namespace carry; with one shared
token a pod of namespace A could write, engage the fallback of, or delete namespace B's monitors.
Reads need no token (they never did), but those that lease review items to a reviewer. The
decisions are values with reason codes (`admin_only`, `wrong_namespace`), which the service
answers as 403 naming the field; a token that is no token the service knows is its own 401
(`unauthorized`), decided before these.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from truthloop.core.records import ItemError

MAX_TOKEN_LENGTH = 512
"""Longest bearer token looked at (a minted one is 43 characters): hashing stays bounded."""

SCOPED_WRITES = frozenset(
    {
        ("POST", "/v1/predictions"),
        ("POST", "/v1/feedback"),
        ("POST", "/v1/sidecar-stats"),
        ("POST", "/v1/cloudevents"),
    }
)
"""The writes a namespace token may make (capture, actuals, a sidecar's minute counters, KServe's
logged events), each item of its own namespace."""
REVIEW = "/v1/monitors/{namespace}/{name}/review"
LEASING_READS = frozenset(
    (method, route) for method in ("GET", "HEAD") for route in (REVIEW, REVIEW + "/export")
)
"""Reads that need a token all the same: they lease review items, so they change the queue."""
MONITOR_WRITES = frozenset(
    {
        ("POST", "/v1/monitors/{namespace}/{name}/reference"),
        ("POST", "/v1/monitors/{namespace}/{name}/backtest"),
        ("POST", REVIEW + "/import"),
        *LEASING_READS,
    }
)
"""The requests on one monitor's path a namespace token may make, for its namespace's monitors:
a reference data set is the model team's, as its capture is, and so are its review queue and
its backtests (a POST that writes nothing, but holds a replica's CPU for seconds)."""

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class Scope:
    """What a known token stands for: `namespace` None is the operator's (admin) token."""

    namespace: str | None = None

    @property
    def admin(self) -> bool:
        return self.namespace is None


ADMIN = Scope()


def digest(token: str) -> str:
    """The SHA-256 (hex) stored for a namespace token instead of the token. A minted token has
    256 random bits, so a plain hash is as good as a slow one, and one hash per request is cheap."""
    return hashlib.sha256(token.encode()).hexdigest()


def needs_token(method: str, route: str | None = None) -> bool:
    """Whether a request with this method on the route (its pattern) needs a token: writes do,
    reads do not, but those that lease review items (`LEASING_READS`)."""
    return method not in READ_METHODS or (method, route) in LEASING_READS


def route_refusal(
    scope: Scope, method: str, route: str, namespace: str | None = None
) -> ItemError | None:
    """Why `scope` may not make this request on the route (its pattern, e.g.
    `/v1/monitors/{namespace}/{name}`, and the path's `namespace` if it has one), or None when
    it may (item checks follow: `foreign_items`)."""
    if scope.admin or not needs_token(method, route) or (method, route) in SCOPED_WRITES:
        return None
    if (method, route) in MONITOR_WRITES:
        if namespace == scope.namespace:
            return None
        return ItemError(
            None,
            "namespace",
            f"{namespace} is not namespace {scope.namespace}, the token's",
            "wrong_namespace",
        )
    return ItemError(
        None,
        "Authorization",
        f"a token of namespace {scope.namespace} may capture and send feedback only:"
        f" {method} {route} needs the operator's token",
        "admin_only",
    )


def foreign_items(
    scope: Scope, monitors: Iterable[str], indices: Sequence[int | None]
) -> list[ItemError]:
    """The items whose monitor (`namespace/name`) is not of the scope's namespace, each named by
    its index in the request (`indices[i]` for the i-th monitor; None: the body names one); the
    admin's reads none of them."""
    if scope.admin:
        return []
    own = f"{scope.namespace}/"
    return [
        ItemError(
            index,
            "monitor",
            f"{monitor} is not in namespace {scope.namespace}, the token's",
            "wrong_namespace",
        )
        for monitor, index in zip(monitors, indices, strict=True)
        if not monitor.startswith(own)
    ]
