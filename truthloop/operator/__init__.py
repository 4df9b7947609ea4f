"""The Kubernetes operator: ModelMonitor handlers, sidecar injection, status."""
