"""PromQL held to the series a scrape found: every selector's metric and label names, every
by()/without()/on()/ignoring()/group_left() label and every legend's `{{label}}` must exist where
the expression uses it, and a literal label value a selector asks for must occur.

A query that names a label its series lack is not an error to Prometheus: it answers nothing, and
a dashboard panel stays empty without a word. So the label names each part of an expression
carries are inferred the way Prometheus computes them (an aggregation keeps its by() labels, a
binary operation its left side's unless on()/group_x() say otherwise, histogram_quantile drops
`le`), over the AST of `promql_parser` (PyPI `promql-parser`, Prometheus' grammar).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import promql_parser as pp
from prometheus_client.parser import text_string_to_metric_families

Labels = frozenset[str]

KEEPS_LABELS = {"topk", "bottomk", "limitk", "limit_ratio"}
"""Aggregations that select series rather than combine them: their result keeps every label."""
SET_OPERATORS = {"and", "or", "unless"}
LEGEND = re.compile(r"{{\s*(\w+)\s*}}")


@dataclass(frozen=True)
class Catalog:
    """The label names each series name carries, and the values seen of each exposed label."""

    labels: Mapping[str, Labels]
    values: Mapping[tuple[str, str], frozenset[str]] = field(default_factory=dict)

    @staticmethod
    def scraped(text: str, added: Iterable[str] = ()) -> Catalog:
        """From exposition text; `added`: the labels the scrape adds to every series (the target's,
        whose values a scrape cannot know)."""
        names: dict[str, set[str]] = {}
        values: dict[tuple[str, str], set[str]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                names.setdefault(sample.name, set()).update(sample.labels)
                for label, value in sample.labels.items():
                    values.setdefault((sample.name, label), set()).add(value)
        extra = frozenset(added)
        return Catalog(
            {name: frozenset(found) | extra for name, found in names.items()},
            {key: frozenset(found) for key, found in values.items()},
        )

    def __or__(self, other: Catalog) -> Catalog:
        labels = dict(self.labels)
        for name, found in other.labels.items():
            labels[name] = labels.get(name, frozenset()) | found
        values = dict(self.values)
        for key, seen in other.values.items():
            values[key] = values.get(key, frozenset()) | seen
        return Catalog(labels, values)


@dataclass
class Checked:
    """An expression's result labels (None: a scalar or a string) and what is wrong in it."""

    labels: Labels | None
    problems: list[str]

    def legend(self, template: str, what: str = "legend") -> None:
        """`{{label}}` references of a legend (or an annotation's title) must be result labels."""
        for label in LEGEND.findall(template):
            if self.labels is None or label not in self.labels:
                self.problems.append(f"{what} {template!r} names {label!r}, not in the result")


def check(expr: str, catalog: Catalog) -> Checked:
    """Parse `expr` (Grafana's variables substituted) and check it against `catalog`."""
    try:
        tree = pp.parse(expr)
    except ValueError as e:
        return Checked(None, [f"does not parse: {e}"])
    problems: list[str] = []
    return Checked(_Inference(catalog, problems).labels(tree), problems)


class _Inference:
    def __init__(self, catalog: Catalog, problems: list[str]) -> None:
        self.catalog = catalog
        self.problems = problems

    def need(self, wanted: Iterable[str], present: Labels | None, where: str) -> None:
        for label in wanted:
            if present is None or label not in present:
                have = sorted(present or ())
                self.problems.append(f"{where}: label {label!r} not among {have}")

    def labels(self, node: pp.Expr) -> Labels | None:
        match node:
            case pp.VectorSelector():
                return self.selector(node)
            case pp.MatrixSelector():
                return self.selector(node.vector_selector)
            case pp.ParenExpr() | pp.UnaryExpr() | pp.SubqueryExpr():
                return self.labels(node.expr)
            case pp.Call():
                return self.call(node)
            case pp.AggregateExpr():
                return self.aggregate(node)
            case pp.BinaryExpr():
                return self.binary(node)
            case _:  # number and string literals
                return None

    def selector(self, node: pp.VectorSelector) -> Labels:
        name = node.name or ""
        known = self.catalog.labels.get(name)
        if known is None:
            self.problems.append(f"no series {name!r}")
            return frozenset()
        matchers = [*node.matchers.matchers, *(m for o in node.matchers.or_matchers for m in o)]
        for matcher in matchers:
            if matcher.name == "__name__":
                continue
            self.need([matcher.name], known, name)
            seen = self.catalog.values.get((name, matcher.name))
            literal = matcher.op == pp.MatchOp.Equal and "$" not in matcher.value
            if literal and matcher.value and seen is not None and matcher.value not in seen:
                self.problems.append(
                    f"{name}: no series with {matcher.name}={matcher.value!r} (seen {sorted(seen)})"
                )
        return known

    def call(self, node: pp.Call) -> Labels | None:
        results = [self.labels(arg) for arg in node.args]
        name = node.func.name
        if name == "histogram_quantile":
            self.need(["le"], results[1], name)
            return (results[1] or frozenset()) - {"le"}
        if name in ("label_replace", "label_join"):
            texts = [getattr(arg, "val", "") for arg in node.args[1:]]
            sources = texts[2:] if name == "label_join" else texts[2:3]
            self.need([s for s in sources if s], results[0], name)
            return (results[0] or frozenset()) | {texts[0]}
        if name == "vector":
            return frozenset()
        if node.func.return_type == pp.ValueType.Scalar:
            return None
        return next((r for r in results if r is not None), frozenset())

    def aggregate(self, node: pp.AggregateExpr) -> Labels:
        inner = self.labels(node.expr)
        op = str(node.op)
        modifier = node.modifier
        grouped = frozenset(modifier.labels) if modifier else frozenset()
        self.need(grouped, inner, f"{op} by/without")
        if op in KEEPS_LABELS:
            return inner or frozenset()
        if modifier is not None and modifier.type == pp.AggModifierType.Without:
            result = (inner or frozenset()) - grouped
        else:
            result = grouped
        if op == "count_values":
            result |= {node.param.val}
        return result

    def binary(self, node: pp.BinaryExpr) -> Labels | None:
        left, right = self.labels(node.lhs), self.labels(node.rhs)
        if left is None or right is None:
            return left if right is None else right
        op = str(node.op)
        modifier = node.modifier
        matching = modifier.matching if modifier else None
        on = matching is not None and matching.type == pp.LabelModifierType.Include
        named = frozenset(matching.labels) if matching else frozenset()
        if on:
            self.need(named, left, f"{op} on() left")
            self.need(named, right, f"{op} on() right")
        elif (left - named) != (right - named) and op not in SET_OPERATORS:
            self.problems.append(
                f"{op}: the sides never match: {sorted(left - named)} vs {sorted(right - named)}"
                " (say on() or ignoring())"
            )
        if op in SET_OPERATORS:
            return left | right if op == "or" else left
        card = modifier.card if modifier else None
        group = frozenset(modifier.group_labels or ()) if modifier else frozenset()
        if card == pp.VectorMatchCardinality.ManyToOne:
            self.need(group, right, f"{op} group_left")
            return left | group
        if card == pp.VectorMatchCardinality.OneToMany:
            self.need(group, left, f"{op} group_right")
            return right | group
        return named if on else left - named
