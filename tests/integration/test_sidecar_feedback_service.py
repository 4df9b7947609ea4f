"""The sidecar against the real feedback service (SQLite) on 127.0.0.1: what clients saw is stored,
and the service's fallback switch reaches the sidecar."""

from __future__ import annotations

import itertools
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tests.integration import sidecar_harness as harness
from tests.integration.sidecar_harness import Client
from tests.support.churn_model import MONITOR, Model
from tests.support.feedback import Service
from tests.support.waiting import eventually
from truthloop.core.records import Limits
from truthloop.feedback import settings as feedback_settings
from truthloop.feedback.settings import HttpSettings
from truthloop.sidecar.app import SidecarSettings
from truthloop.sidecar.shipper import Shipper, ShipperSettings

pytest_plugins = ["tests.integration.sidecar_fixtures"]


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    store = f"sqlite:///{tmp_path / 'feedback.db'}"
    running = Service(feedback_settings.make(store=store, clock=time.time))
    await running.start()
    await running.put_monitor(MONITOR)
    yield running
    await running.stop()


def sidecar_settings(model: Model, service: Service, tmp_path: Path) -> SidecarSettings:
    """Short long-polls: the service holds one open until its `wait` ends, even at shutdown."""
    config = harness.settings(model, service.base, tmp_path / "spool")
    return replace(config, follower=replace(config.follower, wait=0.5))


def stored(tmp_path: Path) -> dict[tuple[str, str], tuple[str, Any, float | None]]:
    """(prediction_id, served_by) → (entity_id, prediction, score), read from the service's file
    (the prediction is stored as JSON text)."""
    with sqlite3.connect(f"file:{tmp_path / 'feedback.db'}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT prediction_id, served_by, entity_id, prediction, score FROM predictions"
        )
        return {
            (pid, by): (entity, json.loads(value), score) for pid, by, entity, value, score in rows
        }


async def test_ten_thousand_requests_are_stored_as_the_clients_saw_them(
    model: Model, service: Service, tmp_path: Path
) -> None:
    config = sidecar_settings(model, service, tmp_path)
    async with harness.running(config) as sidecar:
        client = Client(f"http://127.0.0.1:{sidecar.port}")
        await client.run(range(10_000), concurrency=32)
        assert {s.status for s in client.seen.values()} == {200}
        await eventually(lambda: sidecar.shipper.stats.shipped == 10_000, "10,000 shipped")
    records = stored(tmp_path)
    assert len(records) == 10_000
    for entity, seen in client.seen.items():
        assert records[(seen.prediction_id, "model")] == (
            entity,
            seen.body["prediction"],
            seen.body["score"],
        )
    assert not sidecar.shipper.stats.dropped


async def test_the_service_s_fallback_switch_reaches_the_sidecar_within_a_second(
    model: Model, service: Service, tmp_path: Path
) -> None:
    config = sidecar_settings(model, service, tmp_path)
    async with harness.running(config) as sidecar:
        client = Client(f"http://127.0.0.1:{sidecar.port}")
        await eventually(lambda: sidecar.follower.stats.polls >= 1, "a first state poll")
        await service.ok("POST", "/v1/monitors/ml/churn/fallback", json={"mode": "engaged"})
        await eventually(lambda: sidecar.live.current.fallback_active, "engaged", within=1.0)
        engaged = await client.run_one(2)
        assert engaged.served_by == "fallback"
        assert engaged.body == {"prediction": 1}

        await service.ok("POST", "/v1/monitors/ml/churn/fallback", json={"mode": "disengaged"})
        await eventually(lambda: not sidecar.live.current.fallback_active, within=1.0)
        released = await client.run_one(3)
        assert released.served_by is None
        assert released.body == Model.answer(Client.request(3))
        await eventually(lambda: sidecar.shipper.stats.shipped == 3, "three records shipped")
    records = stored(tmp_path)
    assert records[(engaged.prediction_id, "fallback")] == ("u2", 1, None)
    assert records[(engaged.prediction_id, "model")][:2] == ("u2", 1)
    assert (released.prediction_id, "model") in records


def capture_record(i: int, features: int) -> bytes:
    """A record of the churn monitor with `features` features (12: about 500 bytes, so that
    bytes cut a default batch before records do)."""
    record: dict[str, Any] = {
        "prediction_id": f"batch-{i:06d}.{i % 100}",
        "monitor": "ml/churn",
        "model_version": "v1",
        "entity_id": f"u-{i:06d}",
        "ts": time.time(),
        "prediction": i % 2,
        "score": 0.123456789012345,
        "served_by": "model",
    }
    if features:
        record["features"] = {f"predict.{k}": -1.234567 + k for k in range(features)}
    return msgspec.json.encode(record)


@pytest.mark.parametrize(("features", "cut_by"), [(0, "records"), (12, "bytes")])
async def test_a_batch_at_the_default_bounds_is_taken_whole_by_a_service_at_its_defaults(
    service: Service, tmp_path: Path, features: int, cut_by: str
) -> None:
    """The shipper's largest POST (the batches cut while it was away joined, up to its records
    or bytes, whichever is reached first) is within what the service takes by default: one POST,
    answered 2xx, not split."""
    settings = ShipperSettings(
        feedback_url=service.base, spool_dir=tmp_path / "spool", monitor="ml/churn", linger=30.0
    )
    assert settings.post_bytes <= HttpSettings().max_body_bytes
    assert settings.post_records <= Limits().max_items
    shipper = Shipper(settings)
    posts: list[tuple[int, int]] = []
    request = shipper._client.request

    async def counted(method: str, target: str, body: bytes | bytearray | None = None) -> Any:
        status, answer = await request(method, target, body)
        posts.append((status, len(body or b"")))
        return status, answer

    shipper._client.request = counted  # type: ignore[method-assign]
    shipper.start()
    records = [capture_record(i, features) for i in range(settings.post_records + 100)]
    for encoded in records:
        shipper.submit(encoded)
    await eventually(lambda: shipper.stats.shipped >= 1, "a batch shipped", within=30)
    await shipper.close(10.0)
    assert not shipper.stats.dropped
    assert shipper.stats.shipped == len(records)
    status, size = posts[0]
    assert status == 200
    if cut_by == "records":  # whole batches, as many records as fit in one POST
        sizes = itertools.accumulate(len(encoded) + 1 for encoded in records)
        taken = next(count for count, total in enumerate(sizes, 1) if total == size)
        assert settings.post_records - settings.batch_records < taken <= settings.post_records
    else:
        assert settings.post_bytes - settings.batch_bytes < size <= settings.post_bytes
    assert len(stored(tmp_path)) == len(records)
