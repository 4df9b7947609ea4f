"""Pods and ModelMonitors for the operator's tests, built from a few words."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from truthloop.operator import inject
from truthloop.operator.settings import SidecarSettings

NATIVE = SidecarSettings(image="truthloop:test")
REGULAR = replace(NATIVE, native=False)
REPLICASET = {
    "apiVersion": "apps/v1",
    "kind": "ReplicaSet",
    "name": "churn-7d9f",
    "uid": "0b5c8f4e-7d9f-4d2e-9a51-3f1e2c6b8a70",
    "controller": True,
}


def monitor(
    name: str = "churn",
    namespace: str = "ml",
    port: str | int = "http",
    env: str | None = None,
    selector: dict[str, Any] | None = None,
    generation: int = 3,
    **spec: Any,
) -> inject.Target:
    body = {
        "apiVersion": "truthloop.dev/v1alpha1",
        "kind": "ModelMonitor",
        "metadata": {"name": name, "namespace": namespace, "generation": generation},
        "spec": {
            "selector": selector or {"matchLabels": {"app": "churn"}},
            "model": {"name": name},
            "port": port,
            "capture": {"prediction": {"pointer": "/prediction"}},
            **({"modelPortEnv": env} if env else {}),
            **spec,
        },
    }
    return inject.target(body)


def container(
    name: str = "model",
    ports: list[tuple[str | None, int]] | None = None,
    raw_ports: list[dict[str, Any]] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A container with `ports` as (name, number) pairs, or `raw_ports` as written."""
    found: dict[str, Any] = {"name": name, "image": f"{name}:1"}
    declared = [("http", 8080)] if ports is None else ports
    if raw_ports is not None:
        found["ports"] = raw_ports
    elif declared:
        found["ports"] = [
            {"containerPort": number, **({"name": port} if port else {})}
            for port, number in declared
        ]
    found.update(fields)
    return found


def http_probe(port: str | int, path: str = "/ready") -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": 5}


def pod(
    *containers: dict[str, Any],
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    bare: bool = False,
    **spec: Any,
) -> dict[str, Any]:
    """A pod of a ReplicaSet, as Deployments make them; `bare`: one created directly."""
    meta: dict[str, Any] = {"name": "churn-7d9f-x2k4q", "namespace": "ml"}
    if not bare:
        meta["ownerReferences"] = [REPLICASET]
    meta["labels"] = (
        {"app": "churn", "app.kubernetes.io/version": "v3"} if labels is None else labels
    )
    if annotations is not None:
        meta["annotations"] = annotations
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {"containers": list(containers) or [container()], **spec},
    }


# A pod of a Deployment that `tests.support.feedback.monitor_body()` selects, as admitted.
SELECTED_POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "generateName": "churn-model-5d4f-",
        "labels": {"app": "churn-model", "pod-template-hash": "5d4f"},
        "ownerReferences": [REPLICASET],
    },
    "spec": {
        "containers": [
            {
                "name": "model",
                "image": "churn:3",
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}},
            }
        ]
    },
}


def review(
    obj: Any,
    resource: tuple[str, str, str] = ("", "v1", "pods"),
    operation: str = "CREATE",
    namespace: str = "ml",
) -> dict[str, Any]:
    """An AdmissionReview v1 of `obj` as the apiserver sends it to a webhook."""
    group, version, plural = resource
    kind = {"group": group, "version": version, "kind": obj.get("kind", "")}
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": kind,
            "resource": {"group": group, "version": version, "resource": plural},
            "requestKind": kind,
            "requestResource": {"group": group, "version": version, "resource": plural},
            "namespace": namespace,
            "operation": operation,
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": obj,
            "oldObject": None,
            "dryRun": False,
        },
    }
