"""The scale-out store: PostgreSQL through asyncpg, shared by several feedback-service replicas.

`postgresql://user@host:5432/db` is asyncpg's DSN; query parameters other than `pool_size`
(connections per replica, default 10) are server settings, e.g. `?search_path=truthloop` to keep
the tables in that (existing) schema. Several deployments can share a database in different
schemas: the advisory-lock keys and the NOTIFY channel are derived from the schema's name.

How the replicas share one database, and why each write is shaped as it is:
docs/feedback-service.md ("PostgreSQL: several replicas") and BENCHMARKS.md.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from truthloop.feedback.store.codec import PREDICTION_COLUMNS
from truthloop.feedback.store.postgres.locks import Keys
from truthloop.feedback.store.postgres.schema import MIGRATIONS, migrate
from truthloop.feedback.store.postgres.store import PostgresStore

__all__ = ["MIGRATIONS", "PREDICTION_COLUMNS", "Keys", "PostgresStore", "migrate", "open_url"]


def open_url(url: str) -> PostgresStore:
    """`postgresql://user@host:port/db[?pool_size=N&search_path=schema&...]`."""
    parts = urlsplit(url)
    if not parts.hostname and "host=" not in parts.query:
        raise ValueError(f"bad PostgreSQL store URL {url!r}: expected postgresql://user@host/db")
    try:
        query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise ValueError(f"bad PostgreSQL store URL {url!r}: malformed query") from None
    options = dict(query)
    pool_size = options.pop("pool_size", "10")
    if not pool_size.isdigit() or not 2 <= int(pool_size) <= 1000:
        raise ValueError(f"bad PostgreSQL store URL {url!r}: pool_size must be 2 to 1000")
    options.setdefault("application_name", "truthloop-feedback")
    dsn = urlunsplit(parts._replace(query=urlencode(options)))
    return PostgresStore(dsn, pool_size=int(pool_size))
