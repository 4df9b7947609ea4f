"""The operator's settings, one frozen dataclass per concern, each field documented.

Built once by `truthloop operator` from flags and `TRUTHLOOP_*` variables (or by a test) and passed
in as `settings`; nothing here reads the environment or the clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from truthloop import __version__

DEFAULT_IMAGE = f"ghcr.io/truthloop/truthloop:{__version__}"


@dataclass(frozen=True, slots=True)
class FeedbackSettings:
    """How the operator talks to the feedback service."""

    url: str = "http://truthloop-feedback:8081"
    """The service's base URL as the operator reaches it."""
    token: str | None = None
    """The service's admin token (PUT/DELETE of monitors, namespace tokens); None when the
    service needs none (then no namespace tokens are minted either)."""
    timeout: float = 5.0
    """Seconds for one request (a long-poll adds its `wait` on top)."""
    delete_timeout: float = 2.0
    """Seconds the best-effort DELETE of a deleted monitor may take before it is given up."""


@dataclass(frozen=True, slots=True)
class SidecarSettings:
    """What the mutating webhook puts into pods (`inject.py` reads nothing else)."""

    image: str = DEFAULT_IMAGE
    image_pull_policy: str = "IfNotPresent"
    feedback_url: str = "http://truthloop-feedback.truthloop.svc:8081"
    """The feedback service's URL as sidecars reach it (cluster DNS, usually fully qualified)."""
    proxy_port: int = 15080
    """Preferred port of the sidecar when it fronts a named model port (next free one if taken)."""
    model_port: int = 15081
    """Preferred port the model is moved to when the sidecar takes a numbered port."""
    admin_port: int = 15090
    """Preferred port of the sidecar's /healthz, /readyz and /metrics."""
    native: bool = True
    """Native sidecar (init container, `restartPolicy: Always`); False on clusters before 1.29."""
    requests: Mapping[str, str] = field(default_factory=lambda: {"cpu": "50m", "memory": "64Mi"})
    limits: Mapping[str, str] = field(default_factory=lambda: {"memory": "256Mi"})
    queue_bytes: str = "32Mi"
    """In-memory capture queue bound (`TRUTHLOOP_QUEUE_BYTES`)."""
    spool_bytes: str = "1Gi"
    """Disk spool bound (`TRUTHLOOP_SPOOL_BYTES`); the spool's emptyDir gets a `sizeLimit` a
    little above it (`inject.spool_size_limit`)."""
    token_secret: str | None = "truthloop-token"
    """Secret (in the pod's namespace) holding the namespace's token, which the operator mints
    and registers; mounted into sidecars as an optional volume. None: sidecars send none."""
    token_key: str = "token"
    run_as_user: int = 65532


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """The admission webhook server and the configurations whose caBundle the operator sets."""

    host: str = "0.0.0.0"
    port: int = 9443
    insecure: bool = False
    """Plain HTTP (tests and local runs only: the apiserver requires HTTPS)."""
    cert_dir: str | None = None
    """Directory with tls.crt, tls.key and optionally ca.crt (cert-manager); None: self-managed."""
    cert_secret: str = "truthloop-webhook-cert"
    """The Secret in the operator's namespace that keeps the self-managed CA and certificate."""
    service: str = "truthloop-operator"
    """The Service in front of the webhook server: the certificate's DNS names derive from it."""
    configuration: str = "truthloop"
    """Name of both the Mutating- and the ValidatingWebhookConfiguration the chart creates."""
    timeout: float = 4.0
    """Seconds one admission review may take (below the configurations' timeoutSeconds: 5)."""
    work_dir: str | None = None
    """Where self-managed certificate files are written for the TLS server (a temp dir if None)."""


@dataclass(frozen=True, slots=True)
class StatusSettings:
    """The per-monitor status loop."""

    interval: float = 10.0
    """Longest time between two looks at the monitor's state (the long-poll's `wait`)."""
    backoff: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 30.0)
    """Waits between failed registrations, the last one repeating."""
    token_interval: float = 60.0
    """Seconds between looks at each namespace's token Secret: one deleted or annotated
    `truthloop.dev/rotate` is replaced by a newly minted token within this time."""
    sweep_interval: float = 300.0
    """Seconds between removals of service-side monitors whose ModelMonitor is gone."""


@dataclass(frozen=True, slots=True)
class LeaseSettings:
    """Leader election among replicas: the one holding the Lease handles monitors (`lease.py`)."""

    name: str = "truthloop-operator"
    """The coordination.k8s.io/v1 Lease in the operator's namespace (one per installation)."""
    identity: str = ""
    """This replica's holderIdentity; empty: the host name (a pod's name) and a random suffix,
    so that no two processes ever share one."""
    duration: int = 15
    """Seconds others wait after the Lease last changed before they take it over."""
    renew_deadline: float = 10.0
    """Seconds a holder leads after the start of its last successful renewal; below `duration`,
    so a holder cut off from the apiserver stops before another replica can take over."""
    retry_period: float = 2.0
    """Seconds between two reads (and renewals) of the Lease."""

    @classmethod
    def lasting(cls, duration: int, name: str = "truthloop-operator") -> LeaseSettings:
        """Settings in client-go's default proportions (15 s, 10 s, 2 s) for a `duration`."""
        return cls(
            name=name,
            duration=duration,
            renew_deadline=duration * 2 / 3,
            retry_period=duration * 2 / 15,
        )


@dataclass(frozen=True, slots=True)
class Settings:
    namespaces: tuple[str, ...] = ()
    """Namespaces to serve; empty: the whole cluster."""
    operator_namespace: str = "truthloop"
    """Where the operator runs: its Secrets live here and its pods are never injected."""
    native_sidecar: bool | None = None
    """Force native sidecars on or off; None decides from the cluster's version (>= 1.29)."""
    restart_existing: bool = True
    """Whether `spec.restartExisting` may roll Deployments and StatefulSets (the chart grants the
    RBAC for it only when allowed; without it such monitors get a Warning Event instead)."""
    admin_host: str = "0.0.0.0"
    admin_port: int = 8090
    """Serves /healthz, /readyz and /metrics (not 8080, 9090 or 8081, the sidecar's, its admin's
    and the feedback service's defaults: they run side by side locally)."""
    feedback: FeedbackSettings = field(default_factory=FeedbackSettings)
    sidecar: SidecarSettings = field(default_factory=SidecarSettings)
    webhook: WebhookSettings = field(default_factory=WebhookSettings)
    status: StatusSettings = field(default_factory=StatusSettings)
    lease: LeaseSettings = field(default_factory=LeaseSettings)
