"""The mock apiserver (`Apiserver`) completed for Helm, so `helm template --dry-run=server` runs.

Helm maps every rendered object through discovery before it renders `lookup` results, and checks
that objects already in the cluster belong to the release. KMock 0.8 serves `/api/v1` with
`groupVersion: "/v1"` (Helm then finds no core kind at all) and knows only the resources it is
told about; `HelmApiserver` answers `/api/v1` with `groupVersion: "v1"` and adds the kinds the
chart renders that the operator tests do not need.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp.web
import attrs
import kmock
from kmock._internal import rendering

from tests.support.apiserver_mock import VERBS, Apiserver

CHART_KINDS: tuple[tuple[str, str, bool], ...] = (
    ("v1/serviceaccounts", "ServiceAccount", True),
    ("v1/persistentvolumeclaims", "PersistentVolumeClaim", True),
    ("v1/configmaps", "ConfigMap", True),
    ("policy/v1/poddisruptionbudgets", "PodDisruptionBudget", True),
    ("rbac.authorization.k8s.io/v1/clusterroles", "ClusterRole", False),
    ("rbac.authorization.k8s.io/v1/clusterrolebindings", "ClusterRoleBinding", False),
    ("rbac.authorization.k8s.io/v1/roles", "Role", True),
    ("rbac.authorization.k8s.io/v1/rolebindings", "RoleBinding", True),
)


@attrs.define(kw_only=True)
class HelmApiserver(Apiserver):
    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for path, kind, namespaced in CHART_KINDS:
            self.resources[path] = kmock.ResourceInfo(
                kind=kind, namespaced=namespaced, verbs=VERBS, subresources=set()
            )

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        response = await super()._handle(request)
        if request.url.path != "/api/v1" or not isinstance(response, aiohttp.web.Response):
            return response
        body: dict[str, Any] = json.loads(response.body)  # type: ignore[arg-type]
        body["groupVersion"] = "v1"
        return aiohttp.web.json_response(body)

    def kubeconfig(self) -> str:
        """A kubeconfig (YAML) pointing at this server."""
        server = str(self.url).rstrip("/")
        return (
            "apiVersion: v1\nkind: Config\ncurrent-context: test\n"
            f"clusters: [{{name: test, cluster: {{server: '{server}'}}}}]\n"
            "users: [{name: test, user: {token: test}}]\n"
            "contexts: [{name: test, context: {cluster: test, user: test}}]\n"
        )
