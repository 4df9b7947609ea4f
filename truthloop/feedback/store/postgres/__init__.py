"""The scale-out store: PostgreSQL through asyncpg, shared by several feedback-service replicas."""

from __future__ import annotations

from truthloop.feedback.store.postgres.store import (
    MIGRATIONS,
    PREDICTION_COLUMNS,
    Keys,
    PostgresStore,
    open_url,
)

__all__ = ["MIGRATIONS", "PREDICTION_COLUMNS", "Keys", "PostgresStore", "open_url"]
