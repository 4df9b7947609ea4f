"""Helpers for the feedback service's tests; the fixtures are in `feedback_fixtures`.

`store_url` is parametrized over the store backends, so every test that runs a service or a
store runs on each of them (PostgreSQL joins the params with its store). Services run for real
on 127.0.0.1 with a port chosen by the OS, and take a `FakeClock` so tests advance time instead
of waiting; the engine's background tick is slowed to an hour and tests call `tick()` when they
want one.
"""

from __future__ import annotations

import copy
import csv
import io
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import msgspec

from tests.support import sites
from tests.support.waiting import eventually
from truthloop.feedback import api
from truthloop.feedback import app as feedback_app
from truthloop.feedback import settings as feedback_settings
from truthloop.feedback.engine import Engine
from truthloop.feedback.settings import EngineSettings, Settings

T0 = 1_767_225_600.0
"""2026-01-01T00:00:00Z: tests start their clocks here (a minute boundary)."""

STORES = ["sqlite", "postgres"]


class FakeClock:
    """A clock that moves only when told."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def as_csv(table: list[dict[str, Any]]) -> bytes:
    """Rows (dicts with the same keys) as a CSV data set, a header line first."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(table[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    return out.getvalue().encode()


def monitor_body(name: str = "churn", namespace: str = "ml", **spec: Any) -> dict[str, Any]:
    """A ModelMonitor object; keyword arguments replace top-level spec fields."""
    body: dict[str, Any] = {
        "apiVersion": "truthloop.dev/v1alpha1",
        "kind": "ModelMonitor",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "selector": {"matchLabels": {"app": f"{name}-model"}},
            "model": {"name": name},
            "task": "binary",
            "capture": {"prediction": {"pointer": "/prediction"}},
            "feedback": {"attributionWindow": "1h", "match": "latest"},
            "metrics": {"window": "1h", "minSamples": 5},
            "alerts": [{"name": "accuracy-low", "metric": "accuracy", "below": 0.7, "for": "0s"}],
            "fallback": {"recoverAfter": "2m", "rules": [{"prediction": "0"}]},
        },
    }
    body["spec"].update(copy.deepcopy(spec))
    return body


def record(
    prediction_id: str,
    prediction: Any = 1,
    *,
    ts: float,
    monitor: str = "ml/churn",
    **fields: Any,
) -> dict[str, Any]:
    """A capture record as a sidecar sends it (model v1, served by the model)."""
    return {
        "prediction_id": prediction_id,
        "monitor": monitor,
        "model_version": "v1",
        "ts": ts,
        "prediction": prediction,
        "served_by": "model",
        **fields,
    }


class Service:
    """A feedback service on 127.0.0.1 and a client session for it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = feedback_app.build(settings)
        self.runner = feedback_app.Runner(self.app, access_log=None)
        self.session: aiohttp.ClientSession | None = None
        self.base = ""
        self.listening: socket.socket | None = None

    @property
    def engine(self) -> Engine:
        return self.app[api.ENGINE]

    @property
    def http(self) -> aiohttp.ClientSession:
        assert self.session is not None
        return self.session

    async def start(self, port: int = 0) -> None:
        """Serve on `port` (0: one the OS picks; a stopped service's port again)."""
        await self.runner.setup()
        self.listening = await sites.serve(self.runner, port)
        self.base = f"http://127.0.0.1:{self.listening.getsockname()[1]}"
        headers = {"Authorization": f"Bearer {self.settings.token}"} if self.settings.token else {}
        self.session = aiohttp.ClientSession(headers=headers)

    async def stop(self) -> None:
        if self.session is not None:
            await self.session.close()
        if self.listening is not None:
            listening, self.listening = self.listening, None
            await sites.stop(self.runner, listening)

    async def tick(self) -> None:
        await self.engine.tick()

    async def call(
        self, method: str, path: str, *, json: Any = None, data: Any = None, **kwargs: Any
    ) -> tuple[int, Any]:
        """(status, decoded JSON body) of one request."""
        if json is not None:
            data = msgspec.json.encode(json)
            kwargs.setdefault("headers", {})["Content-Type"] = "application/json"
        async with self.http.request(method, self.base + path, data=data, **kwargs) as response:
            body = await response.read()
            ctype = response.content_type
            return response.status, msgspec.json.decode(
                body
            ) if ctype == "application/json" else body

    async def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        status, body = await self.call(method, path, **kwargs)
        assert status < 300, (status, body)
        return body

    async def put_monitor(self, body: dict[str, Any]) -> Any:
        meta = body["metadata"]
        return await self.ok("PUT", f"/v1/monitors/{meta['namespace']}/{meta['name']}", json=body)

    async def predictions(self, records: list[dict[str, Any]]) -> Any:
        return await self.ok("POST", "/v1/predictions", json=records)

    async def feedback(self, *items: dict[str, Any]) -> Any:
        return await self.ok("POST", "/v1/feedback", json={"items": list(items)})

    async def metrics(self, key: str = "ml/churn", query: str = "") -> Any:
        return await self.ok("GET", f"/v1/monitors/{key}/metrics{query}")

    async def state(self, key: str = "ml/churn", query: str = "") -> Any:
        return await self.ok("GET", f"/v1/monitors/{key}/state{query}")

    async def scrape(self) -> str:
        async with self.http.get(self.base + "/metrics") as response:
            assert response.status == 200
            return await response.text()


ServiceFactory = Callable[..., Awaitable[Service]]


async def adopted(replica: Service, key: str, holds: Callable[[Any], bool], what: str) -> None:
    """Wait until `replica` runs monitor `key` with what the leader chose: its runtime (the
    engine's, private) passes `holds`."""

    def known() -> bool:
        runtime = replica.engine._runtimes.get(key)
        return runtime is not None and holds(runtime)

    await eventually(known, what)


def make_settings(store_url: str, clock: FakeClock, **overrides: Any) -> Settings:
    engine = overrides.pop("engine", EngineSettings(tick_interval=3600.0))
    return feedback_settings.make(store=store_url, clock=clock, engine=engine, **overrides)


def sample(text: str, name: str, **labels: str) -> float | None:
    """One sample's value from Prometheus exposition text, or None if absent."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None
