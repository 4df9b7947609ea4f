"""Every Kubernetes API call the operator makes, in one place (aiohttp).

`api_calls(settings)` lists them as (verb, API group, resource, scope, resource names): kopf's own
watches first, then the requests of `Kube`, whose methods are the only other way this package
reaches the API. The chart's RBAC follows this list and a test holds the two equal, so a new call
goes here — in `api_calls` and as a `Kube` method — or nowhere.

Scopes: `cluster` (cluster-scoped objects), `served` (the namespaces the operator serves: all of
them when it runs cluster-wide), `own` (the operator's namespace).

Errors: `KubeError` with the apiserver's status, reason and message; `NotFound` (also a
LookupError), `Conflict`, `Forbidden` (also a PermissionError), and `KubeUnavailable` (also a
ConnectionError) for no connection, timeouts and 5xx. A 401 logs in again once and retries.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

import aiohttp
import kopf

from truthloop.operator.settings import Settings

Scope = Literal["cluster", "served", "own"]

GROUP = "truthloop.dev"
VERSION = "v1alpha1"
PLURAL = "modelmonitors"
COORDINATION = "coordination.k8s.io"

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"


@dataclass(frozen=True, slots=True)
class ApiCall:
    verb: Literal["get", "list", "watch", "create", "update", "patch"]
    group: str
    resource: str
    scope: Scope
    names: tuple[str, ...] = ()
    """resourceNames the call is limited to (RBAC cannot limit `create`, `list` or `watch`)."""
    why: str = ""


def api_calls(settings: Settings) -> tuple[ApiCall, ...]:
    """The operator's API calls with the names its settings give to its own objects."""
    web = settings.webhook
    token = settings.sidecar.token_secret
    lease = settings.lease.name
    calls = [
        ApiCall("list", GROUP, PLURAL, "served", why="kopf: watch ModelMonitors"),
        ApiCall("watch", GROUP, PLURAL, "served", why="kopf: watch ModelMonitors"),
        ApiCall("list", "", "pods", "served", why="kopf: the pod index"),
        ApiCall("watch", "", "pods", "served", why="kopf: the pod index"),
        ApiCall("list", "", "services", "served", why="kopf: the Service index (bypass)"),
        ApiCall("watch", "", "services", "served", why="kopf: the Service index (bypass)"),
        ApiCall("patch", GROUP, f"{PLURAL}/status", "served", why="status"),
        ApiCall("create", "", "events", "served", why="Events on ModelMonitors"),
        ApiCall("get", COORDINATION, "leases", "own", (lease,), why="leader election"),
        ApiCall("create", COORDINATION, "leases", "own", why="leader election (first start)"),
        ApiCall("update", COORDINATION, "leases", "own", (lease,), why="renew, take over, release"),
    ]
    if settings.restart_existing:
        calls += [
            ApiCall("get", "apps", "replicasets", "served", why="restartExisting: the Deployment"),
            ApiCall("get", "apps", "deployments", "served", why="restartExisting: rolled yet?"),
            ApiCall("get", "apps", "statefulsets", "served", why="restartExisting: rolled yet?"),
            ApiCall("patch", "apps", "deployments", "served", why="restartExisting"),
            ApiCall("patch", "apps", "statefulsets", "served", why="restartExisting"),
        ]
    if token:
        calls += [
            ApiCall("get", "", "secrets", "served", (token,), why="the namespace's token"),
            ApiCall("create", "", "secrets", "served", why="mint the namespace's token"),
            ApiCall("patch", "", "secrets", "served", (token,), why="rotate the token, owners"),
        ]
    if web.insecure:
        return tuple(calls)
    if web.cert_dir is None:
        calls += [
            ApiCall("get", "", "secrets", "own", (web.cert_secret,), why="webhook certificate"),
            ApiCall("create", "", "secrets", "own", why="webhook certificate (first start)"),
            ApiCall("patch", "", "secrets", "own", (web.cert_secret,), why="renew certificate"),
        ]
    for kind in ("mutatingwebhookconfigurations", "validatingwebhookconfigurations"):
        for verb in ("get", "patch"):
            calls.append(
                ApiCall(
                    verb,
                    "admissionregistration.k8s.io",
                    kind,
                    "cluster",
                    (web.configuration,),
                    why="caBundle",
                )
            )
    return tuple(calls)


class KubeError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class NotFound(KubeError, LookupError):
    pass


class Conflict(KubeError):
    pass


class Forbidden(KubeError, PermissionError):
    pass


class KubeUnavailable(KubeError, ConnectionError):
    pass


Login = Callable[[], Awaitable[kopf.ConnectionInfo]]


class Kube:
    """The operator's own requests; credentials come from kopf's login (`login()`)."""

    def __init__(self, login: Login, timeout: float = 10.0) -> None:
        self._login = login
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._server = ""
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- ModelMonitors -------------------------------------------------------------------------

    async def patch_monitor_status(
        self, namespace: str, name: str, status: Mapping[str, Any]
    ) -> dict[str, Any]:
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}/status"
        return await self._call("PATCH", path, {"status": status}, MERGE)

    async def list_monitors(self, namespace: str | None) -> list[dict[str, Any]]:
        """Every ModelMonitor (of one namespace, or of all), page by page."""
        where = f"/namespaces/{namespace}" if namespace else ""
        path = f"/apis/{GROUP}/{VERSION}{where}/{PLURAL}?limit=500"
        items: list[dict[str, Any]] = []
        while True:
            page = await self._call("GET", path)
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items
            path = f"/apis/{GROUP}/{VERSION}{where}/{PLURAL}?limit=500&continue={quote(token)}"

    async def create_event(self, namespace: str, event: Mapping[str, Any]) -> dict[str, Any]:
        return await self._call("POST", f"/api/v1/namespaces/{namespace}/events", event)

    # -- the leader's Lease (`election.py`) ---------------------------------------------------

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any]:
        return await self._call("GET", f"{_leases(namespace)}/{name}")

    async def create_lease(self, namespace: str, lease: Mapping[str, Any]) -> dict[str, Any]:
        return await self._call("POST", _leases(namespace), lease)

    async def replace_lease(self, namespace: str, lease: Mapping[str, Any]) -> dict[str, Any]:
        """A PUT guarded by the `metadata.resourceVersion` it carries: `Conflict` when the Lease
        changed since it was read."""
        name = lease["metadata"]["name"]
        return await self._call("PUT", f"{_leases(namespace)}/{name}", lease)

    # -- Secrets -------------------------------------------------------------------------------

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any]:
        return await self._call("GET", f"/api/v1/namespaces/{namespace}/secrets/{name}")

    async def create_secret(self, namespace: str, secret: Mapping[str, Any]) -> dict[str, Any]:
        return await self._call("POST", f"/api/v1/namespaces/{namespace}/secrets", secret)

    async def patch_secret(
        self, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        path = f"/api/v1/namespaces/{namespace}/secrets/{name}"
        return await self._call("PATCH", path, patch, MERGE)

    # -- webhook configurations ------------------------------------------------------------

    async def get_webhook_configuration(self, kind: str, name: str) -> dict[str, Any]:
        path = f"/apis/admissionregistration.k8s.io/v1/{_plural(kind)}/{name}"
        return await self._call("GET", path)

    async def patch_webhook_configuration(
        self, kind: str, name: str, ops: Sequence[Mapping[str, Any]]
    ) -> dict[str, Any]:
        """A JSON patch (RFC 6902): webhooks are addressed by index, guarded by `test` ops."""
        path = f"/apis/admissionregistration.k8s.io/v1/{_plural(kind)}/{name}"
        return await self._call("PATCH", path, ops, JSON_PATCH)

    # -- workloads (restartExisting) -------------------------------------------------------

    async def get_replicaset(self, namespace: str, name: str) -> dict[str, Any]:
        return await self._call("GET", f"/apis/apps/v1/namespaces/{namespace}/replicasets/{name}")

    async def get_workload(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        """`kind` is Deployment or StatefulSet."""
        return await self._call("GET", _workload_path(kind, namespace, name))

    async def patch_workload(
        self,
        kind: str,
        namespace: str,
        name: str,
        patch: Mapping[str, Any],
    ) -> dict[str, Any]:
        """`kind` is Deployment or StatefulSet."""
        return await self._call("PATCH", _workload_path(kind, namespace, name), patch, STRATEGIC)

    # -- discovery (no RBAC: /version is public) -------------------------------------------

    async def version(self) -> tuple[int, int]:
        """The apiserver's (major, minor); `1.29+` (a GKE-style minor) reads as (1, 29)."""
        info = await self._call("GET", "/version")
        return int(info["major"].rstrip("+")), int(info["minor"].rstrip("+"))

    # -- transport -----------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        for attempt in (1, 2):
            session = await self._connect(fresh=attempt == 2)
            try:
                async with session.request(
                    method,
                    self._server + path,
                    json=body,
                    headers={"Content-Type": content_type} if body is not None else None,
                    timeout=self._timeout,
                ) as response:
                    text = await response.text()
                    if response.status == 401 and attempt == 1:
                        continue
                    data = _json(text)
                    if response.status >= 300:
                        raise _error(response.status, data if data is not None else text)
                    return data if isinstance(data, dict) else {}
            except (aiohttp.ClientError, TimeoutError) as e:
                raise KubeUnavailable(0, type(e).__name__, f"{method} {path}: {e}") from e
        raise AssertionError("unreachable: the second attempt returns or raises")

    async def _connect(self, *, fresh: bool) -> aiohttp.ClientSession:
        async with self._lock:
            if self._session is None or fresh:
                info = await self._login()
                await self.close()
                self._session = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(ssl=info.as_ssl_context()),
                    headers={"User-Agent": "truthloop-operator", **info.as_http_headers()},
                )
                self._server = info.server.rstrip("/")
            return self._session


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _leases(namespace: str) -> str:
    return f"/apis/{COORDINATION}/v1/namespaces/{namespace}/leases"


def _plural(kind: str) -> str:
    return {
        "MutatingWebhookConfiguration": "mutatingwebhookconfigurations",
        "ValidatingWebhookConfiguration": "validatingwebhookconfigurations",
    }[kind]


def _error(status: int, data: Any) -> KubeError:
    reason = str(data.get("reason", "")) if isinstance(data, dict) else ""
    message = str(data.get("message", "")) if isinstance(data, dict) else str(data)[:200]
    kind = {404: NotFound, 409: Conflict, 403: Forbidden}.get(status)
    if kind is None:
        kind = KubeUnavailable if status >= 500 else KubeError
    return kind(status, reason, message)


def _workload_path(kind: str, namespace: str, name: str) -> str:
    plural = {"Deployment": "deployments", "StatefulSet": "statefulsets"}[kind]
    return f"/apis/apps/v1/namespaces/{namespace}/{plural}/{name}"
