"""Sidecar injection as a decision: pod + monitors + settings → `Decision` (pure, no I/O).

Shaped after Linkerd's pkg/inject: a library with no HTTP in it, the webhook (`admission.py` and
`handlers.py`) a thin adapter around it. Every outcome is a `Decision` with a reason code from
`REASONS` — the same code is the metric label, the log field and the monitor's condition reason —
a readable message, and, when the pod is injected, the RFC 6902 JSON patch.

What the patch does (docs/operator.md says why):
- The model container's port named `spec.port` is renamed `tl-model`; the sidecar takes the name
  on a port of its own (two containers of a pod cannot listen on one number) and forwards to the
  model on 127.0.0.1, so Services that target the port by name reach the sidecar unchanged. The
  model container's probes and lifecycle hooks that named the port now name `tl-model`.
- A numbered `spec.port` is taken over only when the model can be moved: with `spec.modelPortEnv`
  the sidecar listens on the number and the model gets a free port in that variable (its probes
  and declared port follow). Without it the pod is left alone (`port_number_needs_env`).
- A bare pod (no controller in its ownerReferences) keeps its containers exactly as written: the
  sidecar listens on a port of its own (`tl-proxy`) in front of the model's. Its manifest is what
  GitOps tools re-apply, and a pod may not change its containers' ports, env or probes, so
  anything the injection changed there would make every re-apply fail (client-side: the update is
  refused; server-side: a conflict with the field's creator). Pods of Deployments, StatefulSets,
  Jobs... come from templates nobody re-applies onto the pod.
- The sidecar is a native sidecar (an init container with `restartPolicy: Always`, up before the
  model and outliving it) or, before Kubernetes 1.29, the first regular container. It runs
  non-root with a read-only root filesystem and no capabilities, spooling into an emptyDir whose
  `sizeLimit` leaves headroom above the spool's own bound (`spool_size_limit`): the kubelet
  evicts a pod whose emptyDir passes its limit, and monitoring must never evict a model.
- The write token comes from its Secret mounted as an optional volume, not an environment
  variable: the kubelet updates a mounted Secret in place, so a rotated token (or a Secret
  created after the pod) reaches the running sidecar, which rereads the file when refused.
- Annotations name the monitor and its spec generation. A pod that carries them (or a container
  named like the sidecar) is left alone, so injecting an injected pod changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from truthloop.core.quantity import parse_bytes
from truthloop.core.spec import Monitor, parse_monitor
from truthloop.operator import labels as label_selectors
from truthloop.operator.settings import SidecarSettings

INJECT = "truthloop.dev/inject"
"""Label or annotation; `"false"` opts a pod out (the label also keeps the webhook away)."""
INJECTED = "truthloop.dev/injected"
"""Annotation on an injected pod: the monitor's name (in the pod's namespace)."""
GENERATION = "truthloop.dev/spec-generation"
"""Annotation on an injected pod: the monitor's metadata.generation its sidecar started with."""
DEFAULT_CONTAINER = "kubectl.kubernetes.io/default-container"

SIDECAR = "truthloop-sidecar"
MODEL_PORT = "tl-model"
PROXY_PORT = "tl-proxy"
"""The sidecar's port name when the numbered port it takes over had none."""
MODEL_URL = "TRUTHLOOP_MODEL_URL"
"""The sidecar's variable naming where the model listens (`census` reads the port back from it)."""
ADMIN_PORT = "tl-admin"
SPOOL_VOLUME = "truthloop-spool"
SPOOL_PATH = "/var/spool/truthloop"
TOKEN_VOLUME = "truthloop-token"
TOKEN_DIR = "/var/run/secrets/truthloop"
TOKEN_FILE = f"{TOKEN_DIR}/token"

Reason = Literal[
    "injected",
    "sidecar_already_exists",
    "opted_out",
    "no_matching_monitor",
    "several_monitors",
    "host_network",
    "port_not_found",
    "port_number_needs_env",
    "model_container_unknown",
    "name_conflict",
]

REASONS: Mapping[Reason, str] = {
    "injected": "the sidecar was added",
    "sidecar_already_exists": "the pod already has the sidecar",
    "opted_out": f'the pod opts out ({INJECT}: "false")',
    "no_matching_monitor": "no ModelMonitor in the namespace selects the pod",
    "several_monitors": "more than one ModelMonitor selects the pod",
    "host_network": "the pod uses the node's network, where the sidecar's ports could collide",
    "port_not_found": "no container of the pod declares the port named in spec.port",
    "port_number_needs_env": "spec.port is a number and spec.modelPortEnv is not set",
    "model_container_unknown": "spec.port is not declared and the pod has several containers",
    "name_conflict": "the pod already uses a port or volume name the sidecar needs",
}

JsonPatch = tuple[Mapping[str, Any], ...]


@dataclass(frozen=True, slots=True)
class Target:
    """A monitor as injection needs it: the parsed spec and the snapshot given to the sidecar."""

    monitor: Monitor
    snapshot: str
    """Compact JSON of the ModelMonitor (identity, generation, spec) for `TRUTHLOOP_SPEC`."""


def target(body: Mapping[str, Any]) -> Target:
    """The `Target` of a ModelMonitor object; raises `SpecError` if its spec does not parse."""
    monitor = parse_monitor(body, bounded=False)
    snapshot = {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {
            "name": monitor.name,
            "namespace": monitor.namespace,
            "generation": monitor.generation,
        },
        "spec": body.get("spec"),
    }
    return Target(monitor, json.dumps(snapshot, separators=(",", ":"), sort_keys=True))


@dataclass(frozen=True, slots=True)
class Decision:
    reason: Reason
    message: str
    monitor: str | None = None
    """`namespace/name` of the monitor that selects the pod, when exactly one does."""
    patch: JsonPatch = ()

    @property
    def injected(self) -> bool:
        return self.reason == "injected"


@dataclass(frozen=True, slots=True)
class _Plan:
    """Where things go: the model container, its port entry, and the numbers chosen."""

    container: int
    port_entry: int | None
    """Index of the model's port in the container's `ports`; None: the port is not declared."""
    old_name: str | None
    """The name the model's port had (probes that use it are rewritten)."""
    old_number: int
    public_port: int
    public_name: str
    model_port: int
    admin_port: int
    env: str | None
    """The variable that moves the model to `model_port`; None: the model stays where it is."""
    keep: bool = False
    """The model's container is left as written (a bare pod): the sidecar has a port of its own."""


def inject(
    pod: Mapping[str, Any],
    targets: Iterable[Target],
    settings: SidecarSettings,
    namespace: str | None = None,
) -> Decision:
    """Decide whether and how to inject `pod`, given the monitors of its namespace.

    `namespace` is the pod's (admission requests carry it beside the object, whose own
    `metadata.namespace` may still be empty); monitors of other namespaces never select a pod.
    """
    meta = _mapping(pod.get("metadata"))
    spec = _mapping(pod.get("spec"))
    annotations = _mapping(meta.get("annotations"))
    pod_labels = _mapping(meta.get("labels"))
    namespace = namespace or meta.get("namespace")
    if INJECTED in annotations or any(c.get("name") == SIDECAR for c in _all_containers(spec)):
        name = annotations.get(INJECTED)
        key = f"{namespace}/{name}" if name and namespace else None
        return Decision("sidecar_already_exists", REASONS["sidecar_already_exists"], key)
    if annotations.get(INJECT) == "false" or pod_labels.get(INJECT) == "false":
        return Decision("opted_out", REASONS["opted_out"])
    selecting = sorted(
        (
            t
            for t in targets
            if (namespace is None or t.monitor.namespace == namespace)
            and label_selectors.matches(t.monitor.spec.selector, pod_labels)
        ),
        key=lambda t: t.monitor.key,
    )
    if not selecting:
        return Decision("no_matching_monitor", REASONS["no_matching_monitor"])
    if len(selecting) > 1:
        names = ", ".join(t.monitor.name for t in selecting)
        return Decision("several_monitors", f"{REASONS['several_monitors']}: {names}")
    chosen = selecting[0]
    monitor = chosen.monitor
    if spec.get("hostNetwork") is True:
        return Decision("host_network", REASONS["host_network"], monitor.key)
    plan = _plan(spec, monitor, settings, bare=_bare(meta))
    if isinstance(plan, Decision):
        return plan
    ops = _patch(pod, spec, annotations, plan, chosen, settings)
    message = (
        f"sidecar on port {plan.public_port} ({plan.public_name}) in front of "
        f"container {_containers(spec)[plan.container].get('name')!r} on {plan.model_port}"
    )
    return Decision("injected", message, monitor.key, ops)


def _bare(meta: Mapping[str, Any]) -> bool:
    """A pod no controller created: its manifest is the user's, and may be applied again."""
    owners = _list(meta.get("ownerReferences"))
    return not any(owner.get("controller") is True for owner in owners)


def _plan(
    spec: Mapping[str, Any], monitor: Monitor, settings: SidecarSettings, *, bare: bool
) -> _Plan | Decision:
    containers = _containers(spec)
    ports = [(i, k, p) for i, c in enumerate(containers) for k, p in enumerate(_ports(c))]
    everywhere = [p for c in _all_containers(spec) for p in _ports(c)]
    used = {p["containerPort"] for p in everywhere if isinstance(p.get("containerPort"), int)}
    taken_names = {p.get("name") for p in everywhere}
    volumes = {v.get("name") for v in _list(spec.get("volumes"))}
    if taken_names & {MODEL_PORT, PROXY_PORT, ADMIN_PORT} or volumes & {SPOOL_VOLUME, TOKEN_VOLUME}:
        return Decision("name_conflict", REASONS["name_conflict"], monitor.key)
    port = monitor.spec.port
    if isinstance(port, str):
        named = [(i, k, p) for i, k, p in ports if p.get("name") == port and _tcp(p)]
        if not named or not isinstance(named[0][2].get("containerPort"), int):
            message = f"no container of the pod declares a port named {port!r} (spec.port)"
            return Decision("port_not_found", message, monitor.key)
        i, k, entry = named[0]
        public = _free(settings.proxy_port, used)
        return _Plan(
            container=i,
            port_entry=k,
            old_name=port,
            old_number=entry["containerPort"],
            public_port=public,
            public_name=PROXY_PORT if bare else port,
            model_port=entry["containerPort"],
            admin_port=_free(settings.admin_port, used | {public}),
            env=None,
            keep=bare,
        )
    numbered = [(i, k, p) for i, k, p in ports if p.get("containerPort") == port and _tcp(p)]
    if numbered:
        i, entry_index, old_name = numbered[0][0], numbered[0][1], numbered[0][2].get("name")
    elif port in used:
        message = f"port {port} (spec.port) belongs to an init container, not to the model"
        return Decision("model_container_unknown", message, monitor.key)
    elif len(containers) == 1:
        i, entry_index, old_name = 0, None, None
    else:
        message = (
            f"no container declares port {port} (spec.port) and the pod has "
            f"{len(containers)} containers: declare the port on the model's container"
        )
        return Decision("model_container_unknown", message, monitor.key)
    if bare:
        public = _free(settings.proxy_port, used | {port})
        return _Plan(
            container=i,
            port_entry=entry_index,
            old_name=None,
            old_number=port,
            public_port=public,
            public_name=PROXY_PORT,
            model_port=port,
            admin_port=_free(settings.admin_port, used | {port, public}),
            env=None,
            keep=True,
        )
    if monitor.spec.model_port_env is None:
        message = (
            f"spec.port {port} is a number and spec.modelPortEnv is not set: the sidecar can "
            "take over a numbered port only by moving the model to another port through the "
            "environment variable it reads its port from (or name the port and use its name)"
        )
        return Decision("port_number_needs_env", message, monitor.key)
    model_port = _free(settings.model_port, used | {port})
    return _Plan(
        container=i,
        port_entry=entry_index,
        old_name=old_name if isinstance(old_name, str) else None,
        old_number=port,
        public_port=port,
        public_name=old_name if isinstance(old_name, str) else PROXY_PORT,
        model_port=model_port,
        admin_port=_free(settings.admin_port, used | {port, model_port}),
        env=monitor.spec.model_port_env,
    )


def _patch(
    pod: Mapping[str, Any],
    spec: Mapping[str, Any],
    annotations: Mapping[str, Any],
    plan: _Plan,
    chosen: Target,
    settings: SidecarSettings,
) -> JsonPatch:
    """The ops, in an order where each path is valid after the ops before it."""
    containers = _containers(spec)
    model = containers[plan.container]
    ops: list[dict[str, Any]] = []
    host: dict[str, Any] = {}
    if not plan.keep:
        ops, host = _move_model(model, f"/spec/containers/{plan.container}", plan)
    spool = {"name": SPOOL_VOLUME, "emptyDir": {"sizeLimit": spool_size_limit(settings)}}
    ops.append(_append(spec, "volumes", "/spec", spool))
    if settings.token_secret:
        secret = {
            "secretName": settings.token_secret,
            "optional": True,
            "items": [{"key": settings.token_key, "path": "token"}],
        }
        ops.append(_op("add", "/spec/volumes/-", {"name": TOKEN_VOLUME, "secret": secret}))
    sidecar = _sidecar(plan, chosen, settings, host)
    if settings.native:
        ops.append(_append(spec, "initContainers", "/spec", sidecar))
    else:
        ops.append(_op("add", "/spec/containers/0", sidecar))
    added = {INJECTED: chosen.monitor.name, GENERATION: str(chosen.monitor.generation)}
    if not settings.native and DEFAULT_CONTAINER not in annotations and containers:
        added[DEFAULT_CONTAINER] = str(containers[0].get("name"))
    if not isinstance(pod.get("metadata"), Mapping):
        ops.append(_op("add", "/metadata", {"annotations": added}))
    elif not isinstance(pod["metadata"].get("annotations"), Mapping):
        ops.append(_op("add", "/metadata/annotations", added))
    else:
        ops.extend(_op("add", f"/metadata/annotations/{_escape(k)}", v) for k, v in added.items())
    return tuple(ops)


def _move_model(
    model: Mapping[str, Any], at: str, plan: _Plan
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The ops that hand the model's port to the sidecar, and the host fields it takes along."""
    ops: list[dict[str, Any]] = []
    host: dict[str, Any] = {}
    if plan.port_entry is not None:
        old = _ports(model)[plan.port_entry]
        host = {k: old[k] for k in ("hostPort", "hostIP") if k in old}
        moved = {k: v for k, v in old.items() if k not in host}
        moved.update(name=MODEL_PORT, containerPort=plan.model_port)
        ops.append(_op("replace", f"{at}/ports/{plan.port_entry}", moved))
    else:
        declared = {"name": MODEL_PORT, "containerPort": plan.model_port, "protocol": "TCP"}
        ops.append(_append(model, "ports", at, declared))
    if plan.env is not None:
        variable = {"name": plan.env, "value": str(plan.model_port)}
        places = [j for j, e in enumerate(_list(model.get("env"))) if e.get("name") == plan.env]
        ops.extend(_op("replace", f"{at}/env/{j}", variable) for j in places)
        if not places:
            ops.append(_append(model, "env", at, variable))
    ops.extend(_rewrite_ports(model, at, plan))
    return ops, host


def _rewrite_ports(model: Mapping[str, Any], at: str, plan: _Plan) -> list[dict[str, Any]]:
    """Probes and lifecycle hooks of the model that pointed at its port, pointed at it again."""

    def moved(port: Any) -> Any:
        if isinstance(port, str) and port == plan.old_name:
            return MODEL_PORT
        if isinstance(port, int) and plan.env is not None and port == plan.old_number:
            return plan.model_port
        return port

    places: list[tuple[str, Mapping[str, Any]]] = []
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        places.append((f"{at}/{probe}", _mapping(model.get(probe))))
    lifecycle = _mapping(model.get("lifecycle"))
    for hook in ("postStart", "preStop"):
        places.append((f"{at}/lifecycle/{hook}", _mapping(lifecycle.get(hook))))
    ops = []
    for path, handlers in places:
        for kind in ("httpGet", "tcpSocket", "grpc"):
            handler = _mapping(handlers.get(kind))
            if "port" in handler and moved(handler["port"]) != handler["port"]:
                ops.append(_op("replace", f"{path}/{kind}/port", moved(handler["port"])))
    return ops


def _sidecar(
    plan: _Plan, chosen: Target, settings: SidecarSettings, host: Mapping[str, Any]
) -> dict[str, Any]:
    monitor = chosen.monitor
    env: list[dict[str, Any]] = [
        {"name": "TRUTHLOOP_LISTEN", "value": f"0.0.0.0:{plan.public_port}"},
        {"name": MODEL_URL, "value": f"http://127.0.0.1:{plan.model_port}"},
        {"name": "TRUTHLOOP_ADMIN", "value": f"0.0.0.0:{plan.admin_port}"},
        {"name": "TRUTHLOOP_FEEDBACK_URL", "value": settings.feedback_url},
        {"name": "TRUTHLOOP_MONITOR", "value": monitor.key},
        {"name": "TRUTHLOOP_SPOOL_DIR", "value": SPOOL_PATH},
        {"name": "TRUTHLOOP_QUEUE_BYTES", "value": settings.queue_bytes},
        {"name": "TRUTHLOOP_SPOOL_BYTES", "value": settings.spool_bytes},
        {"name": "TRUTHLOOP_SPEC", "value": chosen.snapshot},
    ]
    if monitor.spec.model.version_label:
        field = f"metadata.labels['{monitor.spec.model.version_label}']"
        env.append(
            {"name": "TRUTHLOOP_MODEL_VERSION", "valueFrom": {"fieldRef": {"fieldPath": field}}}
        )
    mounts: list[dict[str, Any]] = [{"name": SPOOL_VOLUME, "mountPath": SPOOL_PATH}]
    if settings.token_secret:
        env.append({"name": "TRUTHLOOP_TOKEN_FILE", "value": TOKEN_FILE})
        mounts.append({"name": TOKEN_VOLUME, "mountPath": TOKEN_DIR, "readOnly": True})
    resources = {
        kind: dict(values)
        for kind, values in (("requests", settings.requests), ("limits", settings.limits))
        if values
    }
    container: dict[str, Any] = {
        "name": SIDECAR,
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "args": ["sidecar"],
        "ports": [
            {
                "name": plan.public_name,
                "containerPort": plan.public_port,
                "protocol": "TCP",
                **host,
            },
            {"name": ADMIN_PORT, "containerPort": plan.admin_port, "protocol": "TCP"},
        ],
        "env": env,
        "resources": resources,
        "readinessProbe": _probe("/readyz", period=2, failures=3),
        "livenessProbe": _probe("/healthz", period=10, failures=3),
        "volumeMounts": mounts,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": settings.run_as_user,
            "runAsGroup": settings.run_as_user,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if settings.native:
        # /healthz, not /readyz: the model starts only after this probe passes, and /readyz
        # waits for the model — probing it here would never succeed.
        container["restartPolicy"] = "Always"
        container["startupProbe"] = _probe("/healthz", period=1, failures=30)
    return container


def spool_size_limit(settings: SidecarSettings) -> str:
    """The spool emptyDir's `sizeLimit`: the spool's bound plus a sixteenth (at least 32 MiB) for
    the directory itself and a file being written, so the sidecar's own bound always acts first."""
    bound = parse_bytes(settings.spool_bytes)
    return str(bound + max(bound // 16, 32 * 2**20))


def _probe(path: str, *, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": ADMIN_PORT},
        "periodSeconds": period,
        "timeoutSeconds": 1,
        "failureThreshold": failures,
    }


def _free(start: int, used: set[int]) -> int:
    port = start
    while port in used:
        port += 1
    return port


def _tcp(port: Mapping[str, Any]) -> bool:
    protocol: object = port.get("protocol", "TCP")
    return protocol == "TCP"


def _append(parent: Mapping[str, Any], key: str, at: str, value: Any) -> dict[str, Any]:
    if isinstance(parent.get(key), list):
        return _op("add", f"{at}/{key}/-", value)
    return _op("add", f"{at}/{key}", [value])


def _op(op: str, path: str, value: Any) -> dict[str, Any]:
    return {"op": op, "path": path, "value": value}


def _escape(key: str) -> str:
    """RFC 6901: `~` and `/` in a key."""
    return key.replace("~", "~0").replace("/", "~1")


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Mapping[str, Any]]:
    """A list of objects, non-objects read as empty ones so indices stay those of the pod."""
    return [v if isinstance(v, Mapping) else {} for v in value] if isinstance(value, list) else []


def _containers(spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return _list(spec.get("containers"))


def _all_containers(spec: Mapping[str, Any]) -> Sequence[Mapping[str, Any]]:
    return _list(spec.get("containers")) + _list(spec.get("initContainers"))


def _ports(container: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return _list(container.get("ports"))
