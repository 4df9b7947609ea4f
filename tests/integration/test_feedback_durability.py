"""Durability: SIGKILL the real service mid-stream; every acknowledged write survives the restart.

A client streams capture batches and actuals for what was already acknowledged, the process is
killed with SIGKILL while requests are in flight, and a new process on the same store must hold
every acknowledged record and label, with metrics equal to a recomputation from the stored rows
(writes committed just before the kill but never acknowledged may be there too; they count in
the recomputation like any other row).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import msgspec
import pytest

from tests.support.feedback import monitor_body
from tests.support.waiting import eventually

pytest_plugins = ["tests.support.feedback_fixtures"]

BATCH = 200


@dataclass
class Process:
    proc: asyncio.subprocess.Process
    base: str


@contextlib.asynccontextmanager
async def feedback_process(store_url: str, workdir: Path) -> AsyncIterator[Process]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "truthloop",
        "feedback",
        "--listen",
        "127.0.0.1:0",
        "--store",
        store_url,
        "--log-level",
        "WARNING",
        cwd=workdir,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line.startswith(b"listening on "), line
        yield Process(proc, line.split()[-1].decode())
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


@dataclass
class Acked:
    """What one writer was told is stored: its batches (entity `name-n`) and its labels."""

    name: str
    batches: dict[int, list[str]] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)


async def stream(session: aiohttp.ClientSession, base: str, acked: Acked) -> None:
    """Send batches (and actuals for acknowledged ones) until the service goes away."""
    n = 0
    headers = {"Content-Type": "application/json"}
    with contextlib.suppress(aiohttp.ClientError):
        while True:
            ids = [f"{acked.name}-{n}-{i}" for i in range(BATCH)]
            records = [
                {
                    "prediction_id": pid,
                    "monitor": "ml/churn",
                    "model_version": "v1",
                    "entity_id": f"{acked.name}-{n}",
                    "ts": time.time(),
                    "prediction": i % 2,
                }
                for i, pid in enumerate(ids)
            ]
            async with session.post(
                base + "/v1/predictions", data=msgspec.json.encode(records), headers=headers
            ) as response:
                assert response.status == 200, await response.text()
            acked.batches[n] = ids
            labels = {pid: (i // 2) % 2 for i, pid in enumerate(ids)}
            items = [
                {"monitor": "ml/churn", "prediction_id": pid, "actual": actual}
                for pid, actual in labels.items()
            ]
            async with session.post(
                base + "/v1/feedback", data=msgspec.json.encode({"items": items}), headers=headers
            ) as response:
                assert response.status == 200, await response.text()
            acked.labels.update(labels)
            n += 1


async def test_acknowledged_writes_survive_sigkill(store_url: str, tmp_path: Path) -> None:
    writers = [Acked(f"w{k}") for k in range(3)]
    async with feedback_process(store_url, tmp_path) as first, aiohttp.ClientSession() as session:
        async with session.put(
            first.base + "/v1/monitors/ml/churn", json=monitor_body(metrics={"window": "1h"})
        ) as response:
            assert response.status == 201
        tasks = [asyncio.create_task(stream(session, first.base, w)) for w in writers]

        async def enough() -> bool:
            return sum(len(w.batches) for w in writers) >= 20

        await eventually(enough, within=30)
        first.proc.send_signal(signal.SIGKILL)  # requests are in flight
        await first.proc.wait()
        await asyncio.gather(*tasks)
    assert sum(len(w.batches) for w in writers) >= 20

    async with feedback_process(store_url, tmp_path) as second, aiohttp.ClientSession() as session:
        stored: dict[str, dict[str, object]] = {}
        for writer in writers:
            for n in range(len(writer.batches) + 1):  # +1: committed, killed before the answer
                async with session.get(
                    second.base
                    + f"/v1/monitors/ml/churn/predictions?entity_id={writer.name}-{n}&limit=1000"
                ) as response:
                    for row in (await response.json())["predictions"]:
                        stored[row["prediction_id"]] = row
        for writer in writers:
            for ids in writer.batches.values():
                assert set(ids) <= set(stored)
            for pid, actual in writer.labels.items():
                assert stored[pid]["actual"] == actual
        async with session.get(second.base + "/v1/monitors/ml/churn/metrics") as response:
            metrics = await response.json()
        labeled = [row for row in stored.values() if row["actual"] is not None]
        assert metrics["samples"] == len(stored)
        assert metrics["labeled"] == len(labeled)
        right = sum(1 for row in labeled if row["prediction"] == row["actual"])
        assert metrics["metrics"]["accuracy"]["value"] == pytest.approx(right / len(labeled))
