"""The small ModelMonitor the core unit tests parse: ml/churn, prediction at /prediction."""

from __future__ import annotations

from typing import Any

from truthloop.core.spec import Monitor, parse_monitor


def churn_monitor(task: str = "binary", **spec: Any) -> Monitor:
    """The parsed ml/churn monitor of a `task` model with nothing but what parsing requires;
    keyword arguments add or replace top-level spec fields."""
    return parse_monitor(
        {
            "apiVersion": "truthloop.dev/v1alpha1",
            "kind": "ModelMonitor",
            "metadata": {"name": "churn", "namespace": "ml"},
            "spec": {
                "selector": {"matchLabels": {"app": "churn"}},
                "model": {"name": "churn"},
                "task": task,
                "capture": {"prediction": {"pointer": "/prediction"}},
                **spec,
            },
        }
    )
