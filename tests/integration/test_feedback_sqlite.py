"""The SQLite store's schema versions: a file written before migrations were numbered opens,
is migrated in place, and reads and joins as before; a file from a newer build is refused."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.support.feedback import T0, monitor_body
from truthloop.core import windows
from truthloop.core.records import Actual, PredictionRecord
from truthloop.core.spec import parse_monitor
from truthloop.feedback.store import sqlite
from truthloop.feedback.store.interface import Registered, StoreError
from truthloop.feedback.store.sqlite import MIGRATIONS, SQLiteStore

NOW = T0 + 600.0


async def written_by_the_current_version(path: Path) -> Registered:
    """A file as the build before numbered migrations wrote it: its schema is migration 1
    (`user_version` 0), holding labels, folded and unfolded aggregates and a pending actual."""
    current = SQLiteStore(path.with_suffix(".current.db"))
    await current.open()
    body = monitor_body()
    registered, _ = await current.put_monitor(parse_monitor(body), body, T0)
    monitors = {registered.monitor.key: registered}
    records = [
        PredictionRecord("ml/churn", f"p{i}", "model", "v1", NOW - 60 * i, i % 2, f"u{i}")
        for i in range(6)
    ]
    await current.insert_predictions(records, monitors, NOW)
    labels = [Actual("ml/churn", NOW, prediction_id=f"p{i}", value=1) for i in range(4)]
    await current.apply_actuals(labels[:2], monitors, NOW)
    await current.compact()
    await current.apply_actuals(labels[2:], monitors, NOW)  # deltas left unfolded
    early = Actual("ml/churn", NOW, prediction_id="later", value=0)
    await current.apply_actuals([early], monitors, NOW)
    await current.close()

    old = sqlite3.connect(path, isolation_level=None)
    old.executescript(MIGRATIONS[0])
    old.execute("ATTACH DATABASE ? AS current", (str(path.with_suffix(".current.db")),))
    for (table,) in old.execute(
        "SELECT name FROM main.sqlite_master WHERE type = 'table'"
    ).fetchall():
        columns = [c[1] for c in old.execute(f"PRAGMA main.table_info({table})")]
        names = ", ".join(columns)
        old.execute(f"INSERT INTO main.{table} ({names}) SELECT {names} FROM current.{table}")
    old.execute("DETACH DATABASE current")
    assert old.execute("PRAGMA user_version").fetchone() == (0,)
    old.close()
    return registered


async def test_a_file_from_before_numbered_migrations_is_migrated_and_reads_the_same(
    tmp_path: Path,
) -> None:
    path = tmp_path / "feedback.db"
    registered = await written_by_the_current_version(path)
    monitors = {registered.monitor.key: registered}
    store = SQLiteStore(path)
    await store.open()
    try:
        span = windows.window(NOW, 3600)
        counters = (await store.window(registered.id, span))["v1", "model"]
        assert counters["@predictions"] == 6
        assert sum(counters.get(cell, 0) for cell in ("tp", "fp", "tn", "fn")) == 4  # labeled
        result = await store.insert_predictions(
            [PredictionRecord("ml/churn", "later", "model", "v1", NOW - 5, 1, "x")], monitors, NOW
        )
        assert result.matched == 1  # the pending actual, from before, still joins
        timeline = await store.timeline(registered.id, "x", 10)
        assert timeline[0].label is not None
        assert timeline[0].label.value == 0
    finally:
        await store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS),)
    conn.close()


async def test_a_file_from_a_newer_build_is_refused_not_misread(tmp_path: Path) -> None:
    path = tmp_path / "feedback.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    store = sqlite.SQLiteStore(path)
    with pytest.raises(StoreError, match="newer than this build knows"):
        await store.open()
    await store.close()
