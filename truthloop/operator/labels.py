"""Kubernetes label selector semantics over parsed selectors (pure).

`matches(selector, labels)` is what the apiserver does for a `LabelSelector`: every `matchLabels`
pair and every `matchExpressions` requirement must hold. `subset(selector, labels)` is a Service's
plain `selector` map (all pairs present).
"""

from __future__ import annotations

from collections.abc import Mapping

from truthloop.core.spec import LabelRequirement, Selector


def matches(selector: Selector, labels: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.match_labels) and all(
        _holds(requirement, labels) for requirement in selector.match_expressions
    )


def _holds(requirement: LabelRequirement, labels: Mapping[str, str]) -> bool:
    key, op = requirement.key, requirement.operator
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    if op == "In":
        return key in labels and labels[key] in requirement.values
    return key not in labels or labels[key] not in requirement.values


def subset(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """A Service's selector: non-empty and every pair present in `labels`."""
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())
