"""Where the feedback service keeps predictions, actuals and aggregates.

`open_store(url)` picks the backend from the URL's scheme; the service only sees `Store`.
"""

from __future__ import annotations

from truthloop.feedback.store.interface import Store


def open_store(url: str) -> Store:
    """A (not yet opened) store for `url`; ValueError names what is wrong with it."""
    if url.startswith("sqlite://"):
        from truthloop.feedback.store import sqlite

        return sqlite.open_path(url)
    if url.startswith(("postgresql://", "postgres://")):
        from truthloop.feedback.store import postgres

        return postgres.open_url(url)
    if "://" not in url:
        raise ValueError(
            f"store {url!r} is not a URL: expected sqlite:///absolute/path.db,"
            " sqlite://relative/path.db or postgresql://user@host:5432/db"
        )
    scheme = url.partition(":")[0]
    raise ValueError(
        f"unsupported store {scheme!r}: expected sqlite:///path/to/file.db"
        " or postgresql://user@host:5432/db"
    )
