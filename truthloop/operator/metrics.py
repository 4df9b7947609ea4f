"""The operator's Prometheus metrics, in its own registry (served on the admin port)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.injections = Counter(
            "truthloop_operator_injections",
            "Pod admission decisions, by reason code.",
            ("reason",),
            registry=self.registry,
        )
        self.admissions = Counter(
            "truthloop_operator_admissions",
            "Admission requests, by webhook and outcome (ok, malformed, unknown, timeout, error).",
            ("webhook", "outcome"),
            registry=self.registry,
        )
        self.reconciles = Counter(
            "truthloop_operator_reconciles",
            "Passes of the per-monitor loops.",
            registry=self.registry,
        )
        self.status_patches = Counter(
            "truthloop_operator_status_patches",
            "ModelMonitor status patches (made only when the status changed).",
            registry=self.registry,
        )
        self.events = Counter(
            "truthloop_operator_events",
            "Events posted, by reason.",
            ("reason",),
            registry=self.registry,
        )
        self.feedback_errors = Counter(
            "truthloop_operator_feedback_errors",
            "Failed calls to the feedback service, by kind (unavailable, rejected).",
            ("kind",),
            registry=self.registry,
        )
        self.leader = Gauge(
            "truthloop_operator_leader",
            "1 while this replica holds the Lease and handles monitors; 0 while it only serves "
            "webhooks.",
            registry=self.registry,
        )
