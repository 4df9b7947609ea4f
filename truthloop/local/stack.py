"""A feedback service and a sidecar in front of a model, started and stopped together.

`running(settings)` serves the feedback service (SQLite by default), registers the monitor with it
over HTTP as the operator would (`PUT /v1/monitors/{ns}/{name}`), then starts the sidecar with the
registered object as its spec snapshot, so capture begins with the first request. On exit the
sidecar stops first (it ships what it captured to the service, which is still up), then the
service. Startup that fails part-way closes what it opened.

A `canary` is a second version of the model with a sidecar of its own, as a second Deployment
would have in a cluster: its records carry its version, and clients choose which sidecar to ask.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from truthloop.feedback import app as feedback_app
from truthloop.feedback import settings as feedback_settings
from truthloop.feedback.settings import EngineSettings
from truthloop.feedback.store.interface import StoreError
from truthloop.sidecar import app as sidecar_app
from truthloop.sidecar.app import AdminSettings, SidecarSettings
from truthloop.sidecar.follower import FollowerSettings
from truthloop.sidecar.proxy import ProxySettings
from truthloop.sidecar.shipper import ShipperSettings

Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Canary:
    """Another version of the model, served at `model`, behind a sidecar of its own."""

    model: Address
    version: str


class StartError(Exception):
    """A part could not start (the store, a port in use, the monitor refused); the message
    says which, in one line."""


@dataclass(frozen=True, slots=True)
class StackSettings:
    monitor: Mapping[str, Any]
    """The ModelMonitor object; `metadata.namespace` defaults to `default`."""
    model: Address
    """Where the model serves HTTP."""
    workdir: Path
    """Holds the sidecar's spool and, unless `store` says otherwise, the SQLite database."""
    model_version: str = ""
    """The version the sidecar puts in the model's records."""
    canary: Canary | None = None
    store: str | None = None
    """The feedback service's store URL; None: `sqlite:///<workdir>/feedback.db`."""
    listen: Address = ("127.0.0.1", 0)
    """The sidecar's proxy: where clients send their requests (port 0: any free port)."""
    feedback: Address = ("127.0.0.1", 0)
    """The feedback service."""
    admin: Address = ("127.0.0.1", 0)
    """The sidecar's admin port (`/metrics`, `/healthz`, `/readyz`)."""
    clock: Callable[[], float] = time.time
    """Now, for both parts: the service's windows and the records' `ts`."""
    stamp: Callable[[float], float] | None = None
    """A request's wall-clock arrival on `clock` (`TimeLapse.at`); None: `clock` runs at the
    wall's pace."""
    engine: EngineSettings = field(default_factory=EngineSettings)
    """The feedback engine's tick and housekeeping."""
    shadow_concurrency: int | None = None
    """Shadow calls to the model in flight at most while the fallback answers (None: the
    sidecar's default)."""
    linger: float | None = None
    """Longest wait, in seconds, for a capture batch to fill (None: the sidecar's default)."""
    minutes_interval: float = 60.0
    """Wall seconds between the sidecars' posts of their minute counters: a minute of `clock`
    (a time-lapse's is shorter)."""


@dataclass(frozen=True, slots=True)
class Stack:
    """Where the running parts serve."""

    monitor: str
    """`namespace/name`."""
    proxy_url: str
    """The sidecar: clients send their model requests here."""
    feedback_url: str
    admin_url: str
    """The sidecar's admin port."""
    store: str
    """The feedback service's store URL."""
    canary_url: str | None = None
    """The canary's sidecar, when there is one."""


def monitor_key(monitor: Mapping[str, Any]) -> tuple[str, str]:
    """(namespace, name) of a ModelMonitor object; a missing namespace is `default`."""
    metadata = monitor.get("metadata") or {}
    return str(metadata.get("namespace") or "default"), str(metadata.get("name", ""))


def _url(address: Any) -> str:
    host, port = address[0], address[1]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


@contextlib.asynccontextmanager
async def running(settings: StackSettings) -> AsyncIterator[Stack]:
    """The feedback service and the sidecar, serving until the block exits."""
    namespace, name = monitor_key(settings.monitor)
    store = settings.store or f"sqlite:///{settings.workdir / 'feedback.db'}"
    try:
        service = feedback_app.build(
            feedback_settings.make(store=store, clock=settings.clock, engine=settings.engine)
        )
    except ValueError as e:  # the store's URL
        raise StartError(str(e)) from None
    async with contextlib.AsyncExitStack() as stack:
        runner = feedback_app.Runner(service, handle_signals=False, access_log=None)
        try:
            await runner.setup()
        except StoreError as e:
            raise StartError(f"cannot open the store: {e}") from None
        stack.push_async_callback(runner.cleanup)
        try:
            await web.TCPSite(runner, *settings.feedback, backlog=1024).start()
        except OSError as e:
            raise StartError(
                f"feedback service: cannot listen on {_url(settings.feedback)}: {e.strerror or e}"
            ) from None
        feedback_url = _url(runner.addresses[0])
        registered = await _register(feedback_url, namespace, name, settings.monitor)
        sidecar = await _sidecar(
            settings, registered, feedback_url, settings.model, settings.model_version, "spool"
        )
        stack.push_async_callback(sidecar.close)
        canary = None
        if settings.canary is not None:
            canary = await _sidecar(
                settings,
                registered,
                feedback_url,
                settings.canary.model,
                settings.canary.version,
                "spool-canary",
                listen=(settings.listen[0], 0),
                admin=(settings.admin[0], 0),
            )
            stack.push_async_callback(canary.close)
        yield Stack(
            monitor=f"{namespace}/{name}",
            proxy_url=_url((settings.listen[0], sidecar.port)),
            feedback_url=feedback_url,
            admin_url=_url((settings.admin[0], sidecar.admin_port)),
            store=store,
            canary_url=None if canary is None else _url((settings.listen[0], canary.port)),
        )


async def _register(
    feedback_url: str, namespace: str, name: str, monitor: Mapping[str, Any]
) -> dict[str, Any]:
    """PUT the monitor to the service, as the operator does; the registered object comes back."""
    url = f"{feedback_url}/v1/monitors/{namespace}/{name}"
    async with aiohttp.ClientSession() as session, session.put(url, json=monitor) as response:
        body: dict[str, Any] = await response.json()
        if response.status >= 300:
            details = "; ".join(
                f"{d.get('field')}: {d.get('message')}" for d in body.get("details", [])
            )
            raise StartError(f"the feedback service refused the monitor: {details or body}")
    return body


async def _sidecar(
    settings: StackSettings,
    registered: dict[str, Any],
    feedback_url: str,
    model: Address,
    version: str,
    spool_name: str,
    *,
    listen: Address | None = None,
    admin: Address | None = None,
) -> sidecar_app.Sidecar:
    """A sidecar in front of `model` at `version` with its spool in `spool_name`, started with
    the registered monitor as its spec snapshot (`listen`, `admin`: the settings' by default)."""
    listen = listen or settings.listen
    admin = admin or settings.admin
    spool = settings.workdir / spool_name
    spool.mkdir(parents=True, exist_ok=True)
    proxy = ProxySettings(
        listen_host=listen[0], listen_port=listen[1], model_host=model[0], model_port=model[1]
    )
    if settings.shadow_concurrency is not None:
        proxy = replace(proxy, shadow_concurrency=settings.shadow_concurrency)
    shipper = ShipperSettings(feedback_url=feedback_url, spool_dir=spool)
    if settings.linger is not None:
        shipper = replace(shipper, linger=settings.linger)
    namespace, name = monitor_key(settings.monitor)
    config = SidecarSettings(
        proxy=proxy,
        shipper=shipper,
        follower=FollowerSettings(feedback_url=feedback_url, monitor=f"{namespace}/{name}"),
        admin=AdminSettings(host=admin[0], port=admin[1]),
        spec=registered,
        drain_seconds=5.0,
        clock=settings.clock,
        stamp=settings.stamp,
        model_version=version,
        minutes_interval=settings.minutes_interval,
    )
    try:
        return await sidecar_app.start(config)
    except OSError as e:  # a port in use, or the spool (SpoolError)
        raise StartError(f"sidecar: cannot start: {e}") from None
