"""core.versions: the versions a state keeps, newest 20 by first sight."""

from __future__ import annotations

from truthloop.core import versions
from truthloop.core.wire import MAX_VERSIONS_SEEN, VersionSeen


def test_a_new_version_joins_in_first_seen_order() -> None:
    kept = (VersionSeen("v1", 100.0),)
    assert versions.new(kept, ["v1", "v2"]) == ["v2"]
    assert versions.noted(kept, {"v1": 500.0, "v2": 50.0}) == (
        VersionSeen("v2", 50.0),
        VersionSeen("v1", 100.0),
    )
    assert versions.noted(kept, {"v1": 500.0}) is kept


def test_the_newest_are_kept_and_an_older_one_is_not_taken_in_again() -> None:
    kept = tuple(VersionSeen(f"v{i}", float(i)) for i in range(MAX_VERSIONS_SEEN))
    grown = versions.noted(kept, {"new": 1000.0})
    assert len(grown) == MAX_VERSIONS_SEEN
    assert grown[-1] == VersionSeen("new", 1000.0)
    assert grown[0] == VersionSeen("v1", 1.0)
    assert versions.noted(grown, {"v0": 0.0}) == grown
