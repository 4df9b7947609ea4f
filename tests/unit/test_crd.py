"""crds/modelmonitor.yaml is a CRD an apiserver accepts: valid, structural, with valid defaults."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.support.apiserver import CustomResource, walk
from truthloop.core import wire

ROOT = Path(__file__).resolve().parents[2]
CRD: dict[str, Any] = yaml.safe_load((ROOT / "crds" / "modelmonitor.yaml").read_text())
(VERSION,) = CRD["spec"]["versions"]
SCHEMA: dict[str, Any] = VERSION["schema"]["openAPIV3Schema"]
INT_OR_STRING = [{"type": "integer"}, {"type": "string"}]


@pytest.mark.parametrize("kubernetes", ["1.28", "1.37"])
def test_the_crd_validates_strictly(kubernetes: str) -> None:
    kubernetes_validate.validate(CRD, kubernetes, strict=True)


def test_names_scope_and_subresources() -> None:
    spec = CRD["spec"]
    assert CRD["metadata"]["name"] == "modelmonitors.truthloop.dev"
    assert (spec["group"], spec["scope"]) == ("truthloop.dev", "Namespaced")
    assert spec["names"] == {
        "kind": "ModelMonitor",
        "listKind": "ModelMonitorList",
        "plural": "modelmonitors",
        "singular": "modelmonitor",
        "shortNames": ["mm"],
        "categories": ["truthloop"],
    }
    assert (VERSION["name"], VERSION["served"], VERSION["storage"]) == ("v1alpha1", True, True)
    assert VERSION["subresources"] == {"status": {}}


def test_printer_columns() -> None:
    columns = [
        (c["name"].upper(), c["type"], c["jsonPath"]) for c in VERSION["additionalPrinterColumns"]
    ]
    assert columns == [
        ("MODEL", "string", ".spec.model.name"),
        ("PHASE", "string", ".status.phase"),
        ("METRIC", "string", ".status.metric"),
        ("LABELED", "integer", ".status.labeled"),
        ("FALLBACK", "boolean", ".status.fallback.active"),
        ("SYNCED", "date", ".status.lastSyncTime"),
        ("AGE", "date", ".metadata.creationTimestamp"),
    ]
    for _, _, path in columns[:-1]:
        node = SCHEMA
        for key in path.strip(".").split("."):
            node = node["properties"][key]
        assert node.get("type") in ("string", "integer", "boolean")


def test_the_status_phases_are_the_alert_machines() -> None:
    assert SCHEMA["properties"]["status"]["properties"]["phase"]["enum"] == list(wire.PHASES)


def _structural_problems(node: dict[str, Any], path: str) -> list[str]:
    problems = []
    untyped_ok = node.get("x-kubernetes-int-or-string") or node.get(
        "x-kubernetes-preserve-unknown-fields"
    )
    if "type" not in node and not untyped_ok:
        problems.append(f"{path or 'the root'}: no type")
    if "properties" in node and "additionalProperties" in node:
        problems.append(f"{path}: properties and additionalProperties together")
    if node.get("type") == "array" and "items" not in node:
        problems.append(f"{path}: an array without items")
    for junctor in ("anyOf", "allOf", "oneOf", "not"):
        if junctor in node and not (junctor == "anyOf" and node[junctor] == INT_OR_STRING):
            problems.append(f"{path}: {junctor} outside the int-or-string pattern")
    if node.get("x-kubernetes-int-or-string") and node.get("anyOf") not in (None, INT_OR_STRING):
        problems.append(f"{path}: int-or-string with another anyOf")
    pattern = node.get("pattern", "")
    if any(part in pattern for part in ("(?=", "(?!", "(?<", "\\1")):
        problems.append(f"{path}: pattern is not RE2 (lookaround or backreference)")
    for name, sub in node.get("properties", {}).items():
        problems += _structural_problems(sub, f"{path}.{name}")
    if isinstance(node.get("additionalProperties"), dict):
        problems += _structural_problems(node["additionalProperties"], f"{path}.*")
    if "items" in node:
        problems += _structural_problems(node["items"], f"{path}[]")
    return problems


def test_the_schema_is_structural() -> None:
    assert SCHEMA["type"] == "object"
    assert "additionalProperties" not in SCHEMA
    assert SCHEMA["properties"]["metadata"] == {"type": "object"}
    assert _structural_problems(SCHEMA, "") == []


def test_defaults_validate_against_their_own_schema_and_rules() -> None:
    """As the apiserver checks them when the CRD is created (nested defaults not applied)."""
    defaulted = [node for node in walk(SCHEMA) if "default" in node]
    assert len(defaulted) >= 15
    crd = CustomResource(CRD)
    for node in defaulted:
        assert crd.validate(copy.deepcopy(node["default"]), node) == [], node


def test_every_rule_compiles_and_every_pattern_is_a_regex() -> None:
    rules = [rule for node in walk(SCHEMA) for rule in node.get("x-kubernetes-validations", ())]
    assert len(rules) >= 12
    assert sum(map(len, CustomResource(CRD).rules.values())) == len(rules)
    for node in walk(SCHEMA):
        if "pattern" in node:
            re.compile(node["pattern"])


def test_every_field_has_a_description() -> None:
    """`kubectl explain modelmonitor.spec...` shows one for every field, not `<no description>`
    (but metadata, which may only say `type: object`: explain shows ObjectMeta's own)."""
    missing = []

    def visit(node: dict[str, Any], path: str) -> None:
        for name, sub in node.get("properties", {}).items():
            if not sub.get("description") and f"{path}.{name}" != ".metadata":
                missing.append(f"{path}.{name}")
            visit(sub, f"{path}.{name}")
        for key, suffix in (("items", "[]"), ("additionalProperties", "{}")):
            if isinstance(node.get(key), dict):
                visit(node[key], path + suffix)

    visit(SCHEMA, "")
    assert missing == []
