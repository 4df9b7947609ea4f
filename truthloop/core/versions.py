"""The model versions a monitor has seen: what the state keeps to announce a new one.

The leader notes, each tick, the versions whose model records are in the window; one not kept
yet joins the list with the start of the minute holding its first record in the window. The list
keeps the newest `wire.MAX_VERSIONS_SEEN` by first sight, oldest first; a version older than all
of a full list is not taken in (it would push out a newer one, then be pushed out again).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from truthloop.core.wire import MAX_VERSIONS_SEEN, VersionSeen


def new(kept: tuple[VersionSeen, ...], in_window: Iterable[str]) -> list[str]:
    """The versions of the window not kept yet, sorted."""
    known = {seen.version for seen in kept}
    return sorted(set(in_window) - known)


def noted(
    kept: tuple[VersionSeen, ...], found: Mapping[str, float], limit: int = MAX_VERSIONS_SEEN
) -> tuple[VersionSeen, ...]:
    """`kept` with the versions `found` (version → first seen) it lacks, the newest `limit`."""
    fresh = new(kept, found)
    if not fresh:
        return kept
    joined = [*kept, *(VersionSeen(v, found[v]) for v in fresh)]
    joined.sort(key=lambda seen: (seen.first_seen, seen.version))
    return tuple(joined[-limit:])
