"""Kubernetes objects for the k8s tier: the churn example's monitor and model workloads it
selects, and what the webhook's injection looks like in a created pod."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "monitor-churn.yaml"
LABELS = {"app": "churn-model"}
"""What the example's selector matches."""
SIDECAR = "truthloop-sidecar"


def churn_monitor(namespace: str, name: str = "churn") -> dict[str, Any]:
    """examples/monitor-churn.yaml in `namespace`."""
    body: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    body["metadata"] = {"name": name, "namespace": namespace}
    return body


def model_pod_spec() -> dict[str, Any]:
    """A model container serving on the port named `http`, as the example's monitor expects."""
    return {
        "containers": [
            {
                "name": "model",
                "image": "registry.example/churn:1",
                "ports": [{"name": "http", "containerPort": 9000}],
            }
        ]
    }


def deployment(namespace: str, name: str, labels: dict[str, str] = LABELS) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": model_pod_spec()},
        },
    }


def bare_pod(namespace: str, name: str, labels: dict[str, str] = LABELS) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": model_pod_spec(),
    }


def native_sidecars(pod: dict[str, Any]) -> list[str]:
    """The names of the pod's native sidecars: init containers that restart Always."""
    inits = pod["spec"].get("initContainers") or []
    return [c["name"] for c in inits if c.get("restartPolicy") == "Always"]
