"""The process's file-descriptor limit, fitted to the proxy's connection cap at start.

Each client connection is a descriptor, and so is the model connection it holds while the model
answers it (a tunnel holds one throughout); idle pooled model connections, shadow calls and the
rest of the process (`RESERVED`: standard streams, the event loop, the listening sockets, the admin
port, the feedback service's connections, spool files) need theirs. A process out of descriptors
fails in the worst places — accepting stops, and a request already taken cannot reach the model —
so the proxy asks at start for what its settings need: the soft RLIMIT_NOFILE is raised as far as
needed, up to the hard limit; if that is still too few, it serves fewer client connections than
`max_connections` (as many as fit) and says so in a warning.
"""

from __future__ import annotations

import logging
import resource
from dataclasses import dataclass

log = logging.getLogger("truthloop.sidecar.proxy")

RESERVED = 64
"""Descriptors kept for everything but the client and model connections."""


@dataclass(frozen=True, slots=True)
class Fit:
    soft: int
    """The soft limit to run with (raised from the current one, or the current one)."""
    connections: int
    """Client connections served at once: `max_connections`, or as many as `soft` allows."""


def needed(max_connections: int, pool_size: int, shadows: int) -> int:
    """Descriptors for `max_connections` clients each holding a model connection, `pool_size` idle
    model connections, `shadows` shadow calls and the rest of the process."""
    return 2 * max_connections + pool_size + shadows + RESERVED


def fit(soft: int, hard: int, max_connections: int, pool_size: int, shadows: int) -> Fit:
    """The soft limit to set and the client connections it serves, given the limits now (either
    may be `resource.RLIM_INFINITY`); never fewer than one connection, never above `hard`."""
    need = needed(max_connections, pool_size, shadows)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return Fit(soft, max_connections)
    if hard == resource.RLIM_INFINITY or hard >= need:
        return Fit(need, max_connections)
    spare = hard - needed(0, pool_size, shadows)
    return Fit(hard, max(1, min(max_connections, spare // 2)))


def fit_process(max_connections: int, pool_size: int, shadows: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE to what the settings need (up to the hard limit);
    returns the client connections it serves, with a warning if fewer than `max_connections`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = fit(soft, hard, max_connections, pool_size, shadows)
    if wanted.soft != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted.soft, hard))
        except (ValueError, OSError) as e:  # a platform that caps it lower than it says
            log.warning("cannot raise the file-descriptor limit to %d: %s", wanted.soft, e)
            wanted = fit(soft, soft, max_connections, pool_size, shadows)
    if wanted.connections < max_connections:
        log.warning(
            "file-descriptor limit %d (hard %s) is below the %d that max_connections %d needs: "
            "serving at most %d client connections",
            wanted.soft, "unlimited" if hard == resource.RLIM_INFINITY else hard,
            needed(max_connections, pool_size, shadows), max_connections, wanted.connections,
        )  # fmt: skip
    return wanted.connections
