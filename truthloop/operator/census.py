"""What a monitor's pods and Services look like, from the operator's indexes (pure).

The pod and Service indexes keep *facts*, small trimmed copies of the objects (`pod_facts`,
`service_facts`), so a cluster's worth of pods stays cheap in memory. `count` turns the facts of
one namespace into a `Census` for one monitor: how many selected pods carry its sidecar, why the
others do not (the reason codes of `inject.REASONS`, plus `pod_predates_monitor` for a pod that
would be injected now but was created before), which workloads own such pods (for
`restartExisting`), and which Services send traffic around the sidecar.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from truthloop.operator import inject, labels
from truthloop.operator.settings import SidecarSettings

PREDATES = "pod_predates_monitor"
PREDATES_TEXT = (
    "created before the monitor: restart it (or set spec.restartExisting) to get the sidecar"
)
PREDATES_ROLLED_TEXT = (
    "created before the monitor: spec.restartExisting rolls its Deployment or StatefulSet to "
    "add the sidecar"
)
PREDATES_UNROLLED_TEXT = (
    "created before the monitor: restart it to get the sidecar (spec.restartExisting rolls "
    "only Deployments and StatefulSets)"
)
MISSED = "webhook_missed"
MISSED_TEXT = (
    "created after the monitor but without the sidecar: the injection webhook did not answer "
    "(its failurePolicy Ignore let the pod through); restart the pod once the operator is up"
)


@dataclass(frozen=True, slots=True)
class Owner:
    """A pod's controller: a StatefulSet, or the ReplicaSet whose Deployment is to be found."""

    kind: str
    name: str


@dataclass(frozen=True, slots=True)
class Census:
    injected: int = 0
    """Selected pods carrying this monitor's sidecar."""
    total: int = 0
    """Selected pods that are not finished and have not opted out."""
    refused: tuple[tuple[str, str], ...] = ()
    """(reason code, message) for each selected pod without the sidecar."""
    stale: tuple[Owner, ...] = ()
    """Controllers of pods that would be injected now but predate the monitor (restart them)."""
    bypass: tuple[str, ...] = ()
    """One sentence per Service port that targets the model's port itself."""

    def main_refusal(self) -> tuple[str, str, int] | None:
        """The most frequent (reason, message of its first pod, count), or None."""
        if not self.refused:
            return None
        counts = Counter(reason for reason, _ in self.refused)
        reason = max(sorted(counts), key=lambda r: counts[r])
        message = next(text for code, text in self.refused if code == reason)
        return reason, message, counts[reason]


_POD_ANNOTATIONS = (inject.INJECTED, inject.INJECT, inject.GENERATION)


def pod_facts(body: Mapping[str, Any]) -> dict[str, Any]:
    """What `count` needs of a pod: identity, labels, owners, ports, and injection markers."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    annotations = meta.get("annotations") or {}

    def containers(key: str) -> list[dict[str, Any]]:
        return [
            {"name": c.get("name"), "ports": list(c.get("ports") or [])}
            for c in spec.get(key) or []
        ]

    return {
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "labels": dict(meta.get("labels") or {}),
            "annotations": {k: annotations[k] for k in _POD_ANNOTATIONS if k in annotations},
            "ownerReferences": [
                {"kind": o.get("kind"), "name": o.get("name"), "controller": True}
                for o in meta.get("ownerReferences") or []
                if o.get("controller")
            ],
            "creationTimestamp": meta.get("creationTimestamp"),
            "deleting": bool(meta.get("deletionTimestamp")),
        },
        "spec": {
            "hostNetwork": bool(spec.get("hostNetwork")),
            "containers": containers("containers"),
            "initContainers": containers("initContainers"),
            "volumes": [{"name": v.get("name")} for v in spec.get("volumes") or []],
        },
        "phase": (body.get("status") or {}).get("phase"),
        "modelPort": _sidecar_target(spec),
    }


def _sidecar_target(spec: Mapping[str, Any]) -> int | None:
    """The model's port number as the pod's sidecar forwards to it (`inject.MODEL_URL`)."""
    for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        if c.get("name") == inject.SIDECAR:
            for variable in c.get("env") or []:
                if variable.get("name") == inject.MODEL_URL:
                    port = str(variable.get("value", "")).rpartition(":")[2]
                    return int(port) if port.isdigit() else None
    return None


def service_facts(body: Mapping[str, Any]) -> dict[str, Any]:
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    return {
        "name": meta.get("name"),
        "selector": dict(spec.get("selector") or {}),
        "ports": [
            {"name": p.get("name"), "port": p.get("port"), "targetPort": p.get("targetPort")}
            for p in spec.get("ports") or []
        ],
    }


def count(
    chosen: inject.Target,
    targets: Iterable[inject.Target],
    pods: Iterable[Mapping[str, Any]],
    services: Iterable[Mapping[str, Any]],
    settings: SidecarSettings,
    created: str | None = None,
) -> Census:
    """The census of `chosen` over one namespace's facts and monitors (`targets`).

    `created` is the monitor's creationTimestamp: a pod without the sidecar that is older
    predates the monitor (a restart would inject it); a younger one slipped past the webhook.
    Both are RFC 3339 UTC timestamps of one format, so they compare as strings.
    """
    monitor = chosen.monitor
    others = list(targets)
    injected, total = 0, 0
    refused: list[tuple[str, str]] = []
    stale: dict[Owner, None] = {}
    model_ports: list[tuple[Mapping[str, str], set[int | str]]] = []
    for pod in pods:
        meta = pod["metadata"]
        if meta["deleting"] or pod.get("phase") in ("Succeeded", "Failed"):
            continue
        if not labels.matches(monitor.spec.selector, meta["labels"]):
            continue
        decision = inject.inject(pod, others, settings, monitor.namespace)
        if decision.reason == "opted_out":
            continue
        total += 1
        if meta["annotations"].get(inject.INJECTED) == monitor.name:
            injected += 1
            model_ports.append((meta["labels"], _model_targets(pod)))
        elif decision.injected:
            born = meta.get("creationTimestamp")
            if created is not None and isinstance(born, str) and born >= created:
                refused.append((MISSED, MISSED_TEXT))
                continue
            owners = [
                Owner(o["kind"], o["name"])
                for o in meta["ownerReferences"]
                if o["kind"] in ("ReplicaSet", "StatefulSet")
            ]
            stale.update(dict.fromkeys(owners))
            refused.append((PREDATES, _predates_text(monitor.spec.restart_existing, bool(owners))))
        elif decision.reason == "sidecar_already_exists":
            refused.append((decision.reason, f"has the sidecar of {decision.monitor}"))
        else:
            refused.append((decision.reason, decision.message))
    return Census(
        injected=injected,
        total=total,
        refused=tuple(refused),
        stale=tuple(stale),
        bypass=_bypass(services, model_ports),
    )


def _predates_text(restart_existing: bool, rollable: bool) -> str:
    """What to do about a pod that predates the monitor, as the monitor's spec has it."""
    if not restart_existing:
        return PREDATES_TEXT
    return PREDATES_ROLLED_TEXT if rollable else PREDATES_UNROLLED_TEXT


def _model_targets(pod: Mapping[str, Any]) -> set[int | str]:
    """What a Service's targetPort says to reach the model itself: its number, and each name its
    container gives that number (`tl-model`, or a bare pod's own name, which it keeps)."""
    number = pod.get("modelPort")
    if number is None:
        return set()
    names = {
        port.get("name")
        for container in pod["spec"]["containers"]
        if container["name"] != inject.SIDECAR
        for port in container["ports"]
        if port.get("containerPort") == number and port.get("name")
    }
    return {number, *names}


def _bypass(
    services: Iterable[Mapping[str, Any]],
    model_ports: list[tuple[Mapping[str, str], set[int | str]]],
) -> tuple[str, ...]:
    """Service ports that reach an injected pod's model directly (by number or by its name)."""
    found = []
    for service in sorted(services, key=lambda s: str(s["name"])):
        for port in service["ports"]:
            target = port["targetPort"] if port["targetPort"] is not None else port["port"]
            for pod_labels, targets in model_ports:
                if labels.subset(service["selector"], pod_labels) and target in targets:
                    shown = port["name"] or port["port"]
                    found.append(
                        f"Service {service['name']} port {shown} targets the model's port "
                        f"{target} directly"
                    )
                    break
    return tuple(dict.fromkeys(found))
