"""KMock 0.8's Kubernetes emulator, completed into what kopf and the operator need of an apiserver.

KMock (kopf's companion mock server) keeps objects in memory and streams watch events, but its
objects lack `metadata.resourceVersion`, `uid`, `creationTimestamp` and `generation`, it ignores
`generateName`, merges a status patch into the whole object, and serves only the resources it has
been told about. `Apiserver` fills that in, the way a real apiserver behaves for our purposes:

- create: `generateName` becomes a name; the namespace comes from the URL; `uid`,
  `creationTimestamp`, `resourceVersion` and `generation: 1` are set; `status` is dropped for
  resources with a status subresource;
- patch (merge or JSON patch): applied here; for resources with a status subresource the main
  resource keeps its status and `/status` changes nothing else; `resourceVersion` increases on
  every change and `generation` when anything but metadata and status changed;
- replace (PUT): refused with 409 Conflict unless the object's `metadata.resourceVersion` is the
  stored one (optimistic concurrency, as leader election relies on); then stored as sent;
- discovery: the resources in `RESOURCES` (namespaced or not, with their kinds and verbs);
- `/version` reports `version` (default 1.33), which the operator reads for native sidecars.

`refusing` answers chosen requests 503, a partition between one client and the apiserver. Every
request is kept in `log` as (method, path and query, User-Agent), and every write in
`writes` with its body, for assertions (e.g. counting status PATCHes).
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import itertools
import secrets
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp.web
import attrs
import kmock
from kmock._internal import dicts as kmock_dicts
from kmock._internal import rendering

# (group/version/plural, kind, namespaced, subresources)
RESOURCES: tuple[tuple[str, str, bool, tuple[str, ...]], ...] = (
    ("truthloop.dev/v1alpha1/modelmonitors", "ModelMonitor", True, ("status",)),
    ("v1/pods", "Pod", True, ("status",)),
    ("v1/services", "Service", True, ("status",)),
    ("v1/events", "Event", True, ()),
    ("v1/secrets", "Secret", True, ()),
    ("v1/namespaces", "Namespace", False, ("status",)),
    ("coordination.k8s.io/v1/leases", "Lease", True, ()),
    ("apps/v1/deployments", "Deployment", True, ("status",)),
    ("apps/v1/replicasets", "ReplicaSet", True, ("status",)),
    ("apps/v1/statefulsets", "StatefulSet", True, ("status",)),
    (
        "apiextensions.k8s.io/v1/customresourcedefinitions",
        "CustomResourceDefinition",
        False,
        ("status",),
    ),
    (
        "admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
        "MutatingWebhookConfiguration",
        False,
        (),
    ),
    (
        "admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
        "ValidatingWebhookConfiguration",
        False,
        (),
    ),
)
VERBS = {"get", "list", "watch", "create", "update", "patch", "delete"}
MONITORS = kmock.resource("truthloop.dev", "v1alpha1", "modelmonitors")


@attrs.define(kw_only=True)
class Apiserver(kmock.KubernetesEmulator):
    version: tuple[int, int] = (1, 33)
    age: float = 0.0
    """Seconds to date new objects' creationTimestamp back by (objects made "earlier")."""
    log: list[tuple[str, str, str]] = attrs.field(factory=list, init=False)
    """(method, path with query, User-Agent) of every request."""
    writes: list[tuple[str, str, Any]] = attrs.field(factory=list, init=False)
    """(method, path, body as sent) of every request that is not a GET."""
    refusing: Callable[[str, str, Any], bool] | None = None
    """Requests (method, path, body) answered 503 instead, as if the caller were cut off."""
    _counter: itertools.count[int] = attrs.field(factory=lambda: itertools.count(1), init=False)
    _replacing: asyncio.Lock = attrs.field(factory=asyncio.Lock, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for path, kind, namespaced, subresources in RESOURCES:
            self.resources[path] = kmock.ResourceInfo(
                kind=kind, namespaced=namespaced, verbs=VERBS, subresources=set(subresources)
            )

    def object(self, resource: kmock.resource, namespace: str | None, name: str) -> dict[str, Any]:
        """The stored object now (raises KeyError if absent or deleted)."""
        found = self.objects[resource, namespace, name]
        if found.deleted:
            raise KeyError(name)
        return copy.deepcopy(found.raw)

    def exists(self, resource: kmock.resource, namespace: str | None, name: str) -> bool:
        key = (resource, namespace, name)
        return key in self.objects and not self.objects[key].deleted

    def count(self, method: str, suffix: str) -> int:
        """Requests so far with this method whose path ends with `suffix`."""
        return sum(1 for m, p, _ in self.log if m == method and p.split("?")[0].endswith(suffix))

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        agent = request.headers.get("User-Agent", "")
        self.log.append((str(request.method.value), request.url.path_qs, agent))
        if request.method != kmock.method.GET:
            self.writes.append((str(request.method.value), request.url.path, request.data))
        if self.refusing is not None and self.refusing(
            str(request.method.value), request.url.path, request.data
        ):
            return _status(503, "ServiceUnavailable", "refused by the test (a partition)")
        if request.url.path == "/version":
            major, minor = self.version
            info = {"major": str(major), "minor": str(minor), "gitVersion": f"v{major}.{minor}.0"}
            return aiohttp.web.json_response(info)
        if request.resource is not None and request.method == kmock.method.PUT and request.name:
            async with self._replacing:
                return await self._replace(request)
        if request.resource is not None and request.action == kmock.action.CREATE:
            _replace_data(request, self._created(request))
        elif request.resource is not None and request.action == kmock.action.UPDATE:
            replaced = self._patched(request)
            if replaced is not None:
                _replace_data(request, [{"op": "replace", "path": "", "value": replaced}])
        return await super()._handle(request)

    async def _replace(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        """A PUT: the object as sent, if its resourceVersion is the stored one (else 409)."""
        key = (request.resource, request.namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:
            return _status(404, "NotFound", f"{request.name} not found")
        old = self.objects[key].raw
        sent = copy.deepcopy(request.data)
        version = (sent.get("metadata") or {}).get("resourceVersion")
        if version != old["metadata"]["resourceVersion"]:
            message = (
                "the object has been modified; please apply your changes to the latest version"
            )
            return _status(
                409, "Conflict", f"Operation cannot be fulfilled on {request.name}: {message}"
            )
        kept = {k: old["metadata"][k] for k in ("uid", "creationTimestamp", "generation")}
        sent["metadata"] = {**sent["metadata"], **kept, "resourceVersion": str(next(self._counter))}
        object.__setattr__(request, "action", kmock.action.UPDATE)
        _replace_data(request, [{"op": "replace", "path": "", "value": sent}])
        return await super()._handle(request)

    def _info(self, request: rendering.Request) -> kmock.ResourceInfo | None:
        for resource in self.resources:
            if resource == request.resource:
                return self.resources[resource]  # type: ignore[return-value]
        return None

    def _created(self, request: rendering.Request) -> Any:
        data = copy.deepcopy(request.data)
        if not isinstance(data, dict):
            return data
        meta = data.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        if request.namespace:
            meta["namespace"] = request.namespace
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _timestamp(-self.age)
        meta["resourceVersion"] = str(next(self._counter))
        meta["generation"] = 1
        info = self._info(request)
        if info is not None and "status" in info.subresources:
            data.pop("status", None)
        return data

    def _patched(self, request: rendering.Request) -> dict[str, Any] | None:
        key = (request.resource, request.namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:
            return None
        old = copy.deepcopy(self.objects[key].raw)
        patch = request.data
        if isinstance(patch, dict):
            new = dict(kmock_dicts.merge_patch_dict(old, patch))
        elif isinstance(patch, list):
            new = dict(kmock_dicts.json_patch_dict(old, patch))
        else:
            return None
        info = self._info(request)
        if info is not None and "status" in info.subresources:
            if request.subresource == "status":
                new = {**old, "status": new.get("status")}
                if new["status"] is None:
                    del new["status"]
            elif "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)
        if new == old:
            return new
        meta = new.setdefault("metadata", {})
        meta["resourceVersion"] = str(next(self._counter))
        rest_old = {k: v for k, v in old.items() if k not in ("metadata", "status")}
        rest_new = {k: v for k, v in new.items() if k not in ("metadata", "status")}
        if rest_old != rest_new:
            meta["generation"] = int(old.get("metadata", {}).get("generation", 1)) + 1
        return new


def _replace_data(request: rendering.Request, data: Any) -> None:
    """Give KMock's own handling the completed object. The request is changed in place (it is
    frozen): KMock finds its reactions by the identity of the request it logged."""
    object.__setattr__(request, "data", data)


def _status(code: int, reason: str, message: str) -> aiohttp.web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code}
    return aiohttp.web.json_response({**body, "reason": reason, "message": message}, status=code)


def _timestamp(shift: float) -> str:
    moment = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=shift)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
