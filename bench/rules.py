"""Fallback rule evaluations per second: translated closures against cel-python, in one run.

Run: `python bench/rules.py [--seconds 2] [--write]`

A realistic five-rule churn fallback (tenure, plan and charges, country, contract, a default) is
evaluated as `RuleSet.evaluate` runs on the sidecar's request path, over a fixed mix of 1,000
requests in which every rule answers some and fields are sometimes missing, and over one request
no `when` matches (every rule is tried):

- closures: `compile_rules(rules)`, the translated subset;
- cel-python interpreter: `compile_rules(rules, closures=False)`, what rules outside the subset
  run on, and the reference the closures are tested against;
- cel-python CompiledRunner: the same expressions transpiled by cel-python, evaluated as its
  documentation shows (an `Environment` per rule set, the request converted with `json_to_cel`).

All three must give the same decision for every request of the mix before anything is timed.
With `--write` the table replaces the `<!-- bench:rules -->` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import random
import re
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import celpy
import sections
from celpy import celtypes
from celpy.adapter import json_to_cel

from truthloop.core.celrules import compile_rules, to_json
from truthloop.core.rules import Decision, FallbackRule

RULES = [
    FallbackRule(when="request.features.tenure < 6", prediction="1"),
    FallbackRule(
        when='request.features.plan == "month-to-month" && request.features.monthly_charges > 80.0',
        prediction="1",
    ),
    FallbackRule(
        when='request.features.country in ["DE", "FR", "NL"] && request.features.tenure >= 24',
        prediction="0",
    ),
    FallbackRule(
        when='has(request.features.contract) && request.features.contract.startsWith("two")',
        prediction="request.features.tenure > 12 ? 0 : 1",
    ),
    FallbackRule(prediction="0"),
]
GOAL = 200_000
HEADER = (
    "| path | mix: evaluations/s | µs each | closures × faster "
    "| all rules tried: evaluations/s | µs each | closures × faster |\n"
    "|---|---:|---:|---:|---:|---:|---:|"
)
FALLS_THROUGH = {
    "features": {"tenure": 12, "plan": "one-year", "monthly_charges": 50.0, "country": "US"}
}

Evaluate = Callable[[Any, dict[str, str]], Decision | None]


def requests(count: int, seed: int = 6901) -> list[dict[str, Any]]:
    """Churn-model inputs; about one in eight lacks a field a rule reads."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        features: dict[str, Any] = {
            "tenure": rng.randint(0, 72),
            "plan": rng.choice(["month-to-month", "one-year", "two-year"]),
            "monthly_charges": round(rng.uniform(20.0, 120.0), 2),
            "country": rng.choice(["DE", "FR", "NL", "US", "GB", "IN"]),
        }
        if rng.random() < 0.5:
            features["contract"] = rng.choice(["two-year", "one-year", "none"])
        if rng.random() < 0.125:
            del features[rng.choice(["tenure", "plan", "monthly_charges"])]
        out.append({"features": features})
    return out


def compiled_runner(rules: Sequence[FallbackRule]) -> Evaluate:
    """The rules on cel-python's CompiledRunner, first match wins, errors fall through."""
    logging.getLogger("celpy").setLevel(logging.CRITICAL)  # it logs every CEL error as ERROR
    env = celpy.Environment(
        annotations={"request": celtypes.MapType, "headers": celtypes.MapType},
        runner_class=celpy.CompiledRunner,
    )
    programs = [
        (
            None if rule.when is None else env.program(env.compile(rule.when)),
            env.program(env.compile(rule.prediction)),
        )
        for rule in rules
    ]

    def evaluate(request: Any, headers: dict[str, str]) -> Decision | None:
        activation = {
            "request": json_to_cel(request),
            "headers": celtypes.MapType(
                {celtypes.StringType(k): celtypes.StringType(v) for k, v in headers.items()}
            ),
        }
        for index, (when, prediction) in enumerate(programs):
            try:
                if when is not None and not _true(when.evaluate(activation)):
                    continue
                return Decision(to_json(prediction.evaluate(activation)), index)
            except Exception:
                continue
        return None

    return evaluate


def _true(value: Any) -> bool:
    """CompiledRunner answers Python's True for some conditions and BoolType(True) for others."""
    return type(value) in (bool, celtypes.BoolType) and bool(value)


def rate(evaluate: Evaluate, mix: list[dict[str, Any]], seconds: float) -> float:
    """Evaluations per second: the best of three rounds over the mix, each at least `seconds`/3."""
    best = 0.0
    for _ in range(3):
        done = 0
        start = time.perf_counter()
        while True:
            for request in mix:
                evaluate(request, {})
            done += len(mix)
            elapsed = time.perf_counter() - start
            if elapsed >= seconds / 3:
                break
        best = max(best, done / elapsed)
    return best


def cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            names = re.findall(r"model name\s*:\s*(.+)", f.read())
    except OSError:
        names = []
    return names[0] if names else platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="time spent on each path")
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args()

    # CompiledRunner needs the parser cel-python makes first to build its kind of tree.
    paths: dict[str, Evaluate] = {"cel-python CompiledRunner": compiled_runner(RULES)}
    closures = compile_rules(RULES)
    assert closures.uses_cel_runner == (False,) * len(RULES)
    paths["closures (truthloop)"] = closures.evaluate
    paths["cel-python interpreter"] = compile_rules(RULES, closures=False).evaluate

    mix = requests(1000)
    decisions = [[evaluate(r, {}) for r in mix] for evaluate in paths.values()]
    assert all(d == decisions[0] for d in decisions), "the paths disagree"
    answered = sorted({d.rule_index for d in decisions[0] if d is not None})
    assert answered == list(range(len(RULES))), answered

    unmatched = [FALLS_THROUGH] * len(mix)
    assert all(evaluate(FALLS_THROUGH, {}) == Decision(0, 4) for evaluate in paths.values())

    rates = {
        name: (rate(evaluate, mix, args.seconds), rate(evaluate, unmatched, args.seconds))
        for name, evaluate in paths.items()
    }
    fastest = rates["closures (truthloop)"]
    rows = [
        f"| {name} | {m:,.0f} | {1e6 / m:,.2f} | {fastest[0] / m:,.0f}× "
        f"| {u:,.0f} | {1e6 / u:,.2f} | {fastest[1] / u:,.0f}× |"
        for name, (m, u) in sorted(rates.items(), key=lambda item: -item[1][0])
    ]
    verdict = "met" if min(fastest) >= GOAL else "NOT met"
    text = f"""## Fallback rules (`bench/rules.py`)

{os.cpu_count()} × {cpu()}, Python {platform.python_version()},
cel-python {metadata.version("cel-python")}. Five churn rules (the first four with a `when`, the
last a default) evaluated by `RuleSet.evaluate`; one evaluation = one request's decision. "mix":
1,000 requests, every rule answering some, one in eight missing a field. "all rules tried": a
request no `when` matches. Best of three rounds; all paths gave the same decisions.

{HEADER}
{chr(10).join(rows)}

Goal for the closures: ≥ {GOAL:,} evaluations/s — {verdict}.
"""
    print(text)
    if args.write:
        sections.write(Path(__file__).resolve().parent.parent / "BENCHMARKS.md", "rules", text)


if __name__ == "__main__":
    main()
