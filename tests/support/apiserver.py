"""What a Kubernetes apiserver does with a custom resource, for a CRD file, without a cluster.

`CustomResource(crd).admit(obj)` follows the apiserver's order for a create: the object must be
JSON, of the CRD's group/version and kind; `status` is dropped (the status subresource owns it);
non-nullable nulls are pruned and the schema's defaults applied (nested defaults of a defaulted
object too); then the openAPIV3Schema is checked with jsonschema, under strict field validation
(unknown fields are errors, as with `kubectl apply`'s default `--validate=strict`); then every
`x-kubernetes-validations` rule runs with cel-python, `self` bound to the value at the rule's
place in the object, typed by its schema (a `number` is a CEL double even when written `1`). It
returns the problems found; `[]` means the apiserver would store the object.

Of the Kubernetes CEL libraries beyond CEL's own, it has the functions the CRD uses: the strings
extension's `split` and the list library's `isSorted`. Of the string formats it checks
`date-time` (the only one the CRD's spec uses; the apiserver refuses a date that does not exist,
2026-02-30, before any rule runs).
What it does not do: ObjectMeta validation (name syntax), CEL cost
estimation, `oldSelf` transition rules, and list-type/map-type uniqueness. A rule that errors on
a schema-valid object raises AssertionError: a rule must be total, guarding optional fields with
`has()`.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import yaml
from celpy import celtypes

Schema = dict[str, Any]

FORMATS = jsonschema.FormatChecker(formats=())
_DATE_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


@FORMATS.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    """RFC 3339 `date-time` as Go's time.Parse takes it: the fields must name a real instant."""
    if not isinstance(value, str):
        return True
    if not _DATE_TIME.fullmatch(value):
        return False
    datetime.fromisoformat(value.upper())
    return True


def _split(text: celtypes.StringType, separator: celtypes.StringType) -> celtypes.ListType:
    """Kubernetes' `string.split(separator)` (cel-go's strings extension)."""
    return celtypes.ListType([celtypes.StringType(part) for part in text.split(separator)])


def _is_sorted(items: celtypes.ListType) -> celtypes.BoolType:
    """Kubernetes' `list.isSorted()`: each item at least the one before it."""
    return celtypes.BoolType(all(a <= b for a, b in itertools.pairwise(items)))


KUBERNETES: dict[str, Any] = {"split": _split, "isSorted": _is_sorted}
"""The Kubernetes CEL functions cel-python lacks that the CRD's rules use."""


@dataclass(frozen=True)
class Rule:
    """One x-kubernetes-validations entry, compiled."""

    source: str
    message: str
    program: celpy.Runner


class CustomResource:
    """The served version of a CRD, as the apiserver applies it to objects."""

    def __init__(self, crd: dict[str, Any]) -> None:
        spec = crd["spec"]
        (version,) = [v for v in spec["versions"] if v["served"] and v["storage"]]
        self.api_version = f"{spec['group']}/{version['name']}"
        self.kind = spec["names"]["kind"]
        self.schema: Schema = version["schema"]["openAPIV3Schema"]
        self.validator = jsonschema.Draft202012Validator(
            to_jsonschema(self.schema), format_checker=FORMATS
        )
        environment = celpy.Environment()
        self.rules: dict[int, list[Rule]] = {}
        for node in walk(self.schema):
            compiled = []
            for entry in node.get("x-kubernetes-validations", ()):
                program = environment.program(environment.compile(entry["rule"]), KUBERNETES)
                compiled.append(Rule(entry["rule"], entry.get("message", entry["rule"]), program))
            if compiled:
                self.rules[id(node)] = compiled

    @classmethod
    def load(cls, path: Path) -> CustomResource:
        return cls(yaml.safe_load(path.read_text()))

    def defaulted(self, obj: Any) -> Any:
        """A copy of `obj` with non-nullable nulls pruned and defaults applied."""
        obj = copy.deepcopy(obj)
        _prune_nulls(obj, self.schema)
        _default(obj, self.schema)
        return obj

    def admit(self, obj: Any) -> list[str]:
        """Every reason the apiserver would refuse to create `obj`; [] if it would store it."""
        try:
            obj = json.loads(json.dumps(obj, allow_nan=False))
        except (TypeError, ValueError) as e:
            return [f"not JSON: {e}"]
        if not isinstance(obj, dict):
            return ["not an object"]
        if obj.get("apiVersion") != self.api_version or obj.get("kind") != self.kind:
            return [f"not a {self.api_version} {self.kind}"]
        obj.pop("status", None)
        return self.validate(self.defaulted(obj))

    def validate(self, value: Any, schema: Schema | None = None) -> list[str]:
        """Problems of `value` against `schema` (a node of this CRD's; the root by default) and
        the CEL rules in it, with no pruning or defaulting."""
        if schema is None:
            validator = self.validator
            schema = self.schema
        else:
            validator = jsonschema.Draft202012Validator(
                to_jsonschema(schema), format_checker=FORMATS
            )
        problems = [
            f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(value)
        ]
        if problems:
            return problems
        return list(self._check_rules(value, schema, ""))

    def _check_rules(self, value: Any, schema: Schema, path: str) -> Iterator[str]:
        for rule in self.rules.get(id(schema), ()):
            activation = {"self": to_cel(value, schema)}
            try:
                result = rule.program.evaluate(activation)
            except celpy.CELEvalError as e:
                result = e
            if isinstance(result, celpy.CELEvalError):
                raise AssertionError(
                    f"rule at {path or 'the root'} errored: {rule.source}: {result}"
                )
            if result != celtypes.BoolType(True):
                yield f"{path}: {rule.message}"
        if isinstance(value, dict):
            properties = schema.get("properties", {})
            extra = schema.get("additionalProperties")
            for key, item in value.items():
                sub = properties.get(key, extra if isinstance(extra, dict) else None)
                if sub is not None:
                    yield from self._check_rules(item, sub, f"{path}.{key}")
        elif isinstance(value, list) and "items" in schema:
            for index, item in enumerate(value):
                yield from self._check_rules(item, schema["items"], f"{path}[{index}]")


def walk(schema: Schema) -> Iterator[Schema]:
    """Every schema node under `schema` (properties, additionalProperties, items), itself first."""
    yield schema
    for sub in schema.get("properties", {}).values():
        yield from walk(sub)
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk(schema["additionalProperties"])
    if "items" in schema:
        yield from walk(schema["items"])


def to_jsonschema(schema: Schema) -> Schema:
    """An OpenAPI v3.0 structural schema as JSON Schema 2020-12 with the apiserver's semantics."""
    out: Schema = {}
    for key, value in schema.items():
        if key == "properties":
            out[key] = {name: to_jsonschema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = to_jsonschema(value)
        elif key == "pattern":
            # Go's RE2 `$` is the end of the text; Python's also matches before a final newline.
            out[key] = value[:-1] + r"\Z" if value.endswith("$") else value
        elif key in ("anyOf", "default", "nullable", "exclusiveMinimum", "exclusiveMaximum"):
            continue
        elif not key.startswith("x-kubernetes-"):
            out[key] = value
    if schema.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    if schema.get("nullable"):
        out["type"] = [out["type"], "null"]
    for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if schema.get(exclusive):
            out[exclusive] = out.pop(bound)
    strict = "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields")
    if strict and "additionalProperties" not in schema:
        out["additionalProperties"] = False
    return out


def to_cel(value: Any, schema: Schema) -> Any:
    """`value` as the CEL value Kubernetes binds for a field of this (schema-valid) schema."""
    kind = schema.get("type")
    if value is None:
        return None
    if schema.get("x-kubernetes-int-or-string"):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return celtypes.IntType(value) if isinstance(value, int) else celtypes.StringType(value)
    if kind == "object" and ("properties" in schema or "additionalProperties" in schema):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        return celtypes.MapType(
            {
                celtypes.StringType(k): to_cel(v, properties.get(k, extra or {}))
                for k, v in value.items()
            }
        )
    if kind == "array":
        return celtypes.ListType([to_cel(v, schema.get("items", {})) for v in value])
    if kind == "number":
        return celtypes.DoubleType(float(value))
    if kind == "integer":
        return celtypes.IntType(int(value))
    if kind == "string":
        return celtypes.StringType(value)
    if kind == "boolean":
        return celtypes.BoolType(value)
    return celpy.json_to_cel(value)


def _prune_nulls(value: Any, schema: Schema) -> None:
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for key in list(value):
            sub = properties.get(key)
            if sub is None:
                continue
            if value[key] is None and not sub.get("nullable"):
                del value[key]
            else:
                _prune_nulls(value[key], sub)
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            _prune_nulls(item, schema["items"])


def _default(value: Any, schema: Schema) -> None:
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for key, sub in properties.items():
            if "default" in sub and key not in value:
                value[key] = copy.deepcopy(sub["default"])
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            sub = properties.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                _default(item, sub)
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            _default(item, schema["items"])
