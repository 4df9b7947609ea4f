"""What the operator's handlers share while it runs: clients, indexes, loops, metrics.

A `Runtime` is built before kopf starts (`handlers.build` closes over it) and `start`ed in kopf's
startup activity, inside kopf's event loop: it opens the Kubernetes and feedback-service clients,
decides native sidecars from the cluster's version (or the setting), prepares the webhook
certificate, serves the admin port (/healthz, /readyz, /metrics) and joins the leader election
(`election.py`: the holder of the Lease handles monitors; every replica serves webhooks and is
ready). `stop` closes it all, releasing the Lease after the monitors' loops have stopped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import itertools
import logging
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import kopf
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from truthloop.operator import census, inject
from truthloop.operator.admission import AdmissionServer
from truthloop.operator.census import Census, Owner
from truthloop.operator.client import FeedbackClient
from truthloop.operator.election import Elector
from truthloop.operator.kube import GROUP, VERSION, Kube, KubeError
from truthloop.operator.metrics import Metrics
from truthloop.operator.monitors import Supervisor
from truthloop.operator.settings import Settings, SidecarSettings
from truthloop.operator.status import Event
from truthloop.operator.tls import Tls

log = logging.getLogger("truthloop.operator")

NATIVE_SINCE = (1, 29)

MONITORS = "tl_monitors"
PODS = "tl_pods"
SERVICES = "tl_services"
"""The ids of kopf's indexes, by namespace: valid monitors as injection targets, pod facts and
Service facts. kopf passes each index to every handler as the keyword of its id."""

T = TypeVar("T")
ByNamespace = kopf.Index[str | None, T]
"""An index keyed by the namespace kopf tells an indexing handler (None for cluster-wide objects,
which none of these are)."""


class Indices:
    """kopf's indexes, captured from the handler calls that receive them."""

    def __init__(self) -> None:
        self._monitors: ByNamespace[inject.Target] | None = None
        self._pods: ByNamespace[dict[str, Any]] | None = None
        self._services: ByNamespace[dict[str, Any]] | None = None

    def capture(self, kwargs: Mapping[str, Any]) -> None:
        """Keep the indexes among a handler's keywords."""
        self._monitors = kwargs[MONITORS]
        self._pods = kwargs[PODS]
        self._services = kwargs[SERVICES]

    def targets(self, namespace: str | None) -> list[inject.Target]:
        return _values(self._monitors, namespace)

    def pods(self, namespace: str) -> list[dict[str, Any]]:
        return _values(self._pods, namespace)

    def services(self, namespace: str) -> list[dict[str, Any]]:
        return _values(self._services, namespace)


def _values(index: ByNamespace[T] | None, key: str | None) -> list[T]:
    if index is None or key not in index:
        return []
    return list(index[key])


class Runtime:
    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.metrics = Metrics()
        self.indices = Indices()
        self.sidecar: SidecarSettings = settings.sidecar
        self.kube = Kube(self._login)
        self.feedback = FeedbackClient(settings.feedback)
        self.tls = Tls(settings, self.kube, clock)
        self.admission = AdmissionServer(settings.webhook, self.tls.context, self.metrics)
        self.supervisor = Supervisor(self)
        self._instance = socket.gethostname()
        self.elector = Elector(
            self.kube,
            settings,
            settings.lease.identity or f"{self._instance}_{uuid.uuid4().hex[:10]}",
            self.metrics,
            self.supervisor.lead,
            self.supervisor.follow,
            clock,
        )
        self.ready = False
        self._kopf_settings: kopf.OperatorSettings | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._admin: web.AppRunner | None = None
        self._serial = itertools.count()

    def kopf_settings(self) -> kopf.OperatorSettings:
        """kopf's settings for this operator: no scanning, no posting, our admission server."""
        if self._kopf_settings is None:
            settings = kopf.OperatorSettings()
            settings.scanning.disabled = True
            settings.posting.enabled = False
            settings.admission.server = self.admission
            settings.admission.managed = None
            settings.watching.server_timeout = 300
            settings.networking.request_timeout = 330
            self._kopf_settings = settings
        return self._kopf_settings

    async def _login(self) -> kopf.ConnectionInfo:
        info = kopf.login_via_client(logger=log, settings=self.kopf_settings())
        if info is None:
            raise kopf.LoginError("no Kubernetes credentials (in-cluster or kubeconfig)")
        return info

    async def start(self) -> None:
        """Open everything; on failure, close what was opened (kopf retries the startup)."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        await self.feedback.__aenter__()
        native = self.settings.native_sidecar
        if native is None:
            try:
                native = await self.kube.version() >= NATIVE_SINCE
            except (KubeError, KeyError, ValueError) as e:
                log.warning("cannot read the cluster's version (%s): regular sidecars", e)
                native = False
        self.sidecar = dataclasses.replace(self.settings.sidecar, native=native)
        log.info("sidecars are %s", "native (init containers)" if native else "regular containers")
        await self.tls.refresh()
        await self._serve_admin()
        self._tasks = [
            asyncio.create_task(self._every(self.tls.interval, self.tls.refresh), name="tls"),
            asyncio.create_task(self.supervisor.sweeper(), name="sweep"),
            asyncio.create_task(self.elector.run(), name="lease"),
        ]
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.supervisor.stop()
        await self.elector.release()
        self._tasks = []
        if self._admin is not None:
            await self._admin.cleanup()
            self._admin = None
        await self.feedback.__aexit__(None, None, None)
        await self.kube.close()
        self.tls.close()

    def census(self, chosen: inject.Target, created: str | None) -> Census:
        namespace = chosen.monitor.namespace
        return census.count(
            chosen,
            self.indices.targets(namespace),
            self.indices.pods(namespace),
            self.indices.services(namespace),
            self.sidecar,
            created,
        )

    async def post_event(self, body: Mapping[str, Any], event: Event) -> None:
        """Post a core/v1 Event about a ModelMonitor; failures are logged, never raised."""
        meta = body.get("metadata") or {}
        namespace, name = meta.get("namespace"), meta.get("name")
        now = datetime.datetime.fromtimestamp(self.clock(), datetime.UTC)
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        suffix = f"{time.time_ns():x}{next(self._serial):x}"
        posted = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{name}.{suffix}", "namespace": namespace},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "ModelMonitor",
                "name": name,
                "namespace": namespace,
                "uid": meta.get("uid"),
            },
            "type": event.type,
            "reason": event.reason,
            "message": event.message[:1024],
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "source": {"component": "truthloop-operator"},
            "reportingComponent": "truthloop.dev/operator",
            "reportingInstance": self._instance,
        }
        try:
            await self.kube.create_event(str(namespace), posted)
        except KubeError as e:
            log.warning("event %s on %s/%s not posted: %s", event.reason, namespace, name, e)
            return
        self.metrics.events.labels(event.reason).inc()
        log.info("%s/%s: %s %s: %s", namespace, name, event.type, event.reason, event.message)

    async def workload_of(self, namespace: str, owner: Owner) -> tuple[str, str] | None:
        """The Deployment or StatefulSet behind a pod's controller, or None (other owners)."""
        if owner.kind == "StatefulSet":
            return owner.kind, owner.name
        replicaset = await self.kube.get_replicaset(namespace, owner.name)
        for ref in (replicaset.get("metadata") or {}).get("ownerReferences") or []:
            if ref.get("controller") and ref.get("kind") == "Deployment":
                return "Deployment", str(ref["name"])
        return None

    async def _every(self, seconds: float, action: Callable[[], Any]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await action()
            except Exception:
                log.exception("periodic %s failed", getattr(action, "__name__", action))

    async def _serve_admin(self) -> None:
        async def healthz(request: web.Request) -> web.Response:
            return web.json_response({"status": "ok"})

        async def readyz(request: web.Request) -> web.Response:
            ok = self.ready
            return web.json_response(
                {"status": "ready" if ok else "starting"}, status=200 if ok else 503
            )

        async def metrics(request: web.Request) -> web.Response:
            body = generate_latest(self.metrics.registry)
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

        app = web.Application()
        app.add_routes(
            [web.get("/healthz", healthz), web.get("/readyz", readyz), web.get("/metrics", metrics)]
        )
        self._admin = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._admin.setup()
        site = web.TCPSite(self._admin, self.settings.admin_host, self.settings.admin_port)
        await site.start()
