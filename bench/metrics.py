"""Cost of the metric math: `observe` on the ingest path, `total` and `evaluate` on reads.

Run: `python bench/metrics.py [--rounds 5] [--write]`

- `observe`/`observe_vote`: one labeled sample's counters, for each task and label form;
- `total`: summing single-row contributions into a bucket, per contribution;
- `evaluate`: a window of 10,000 rows (binary with scores, ten classes, regression), per call.

Each figure is the best of `--rounds` (the machine is shared; the least disturbed round counts).
With `--write` the table replaces the `<!-- bench:metrics -->` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import timeit
from collections.abc import Callable
from pathlib import Path

import sections

from truthloop.core import metrics


def best(fn: Callable[[], object], number: int, rounds: int) -> float:
    """Seconds per call, the best of `rounds`."""
    return min(timeit.repeat(fn, number=number, repeat=rounds)) / number


def windows(rng: random.Random) -> dict[str, dict[str, float]]:
    """10,000 labeled rows per task, as a window would hold them."""
    rows = range(10_000)
    binary = metrics.total(
        metrics.observe("binary", rng.random(), rng.randint(0, 1), threshold=0.5) for _ in rows
    )
    classes = [f"class-{i}" for i in range(10)]
    multiclass = metrics.total(
        metrics.observe("multiclass", rng.choice(classes), rng.choice(classes)) for _ in rows
    )
    regression = metrics.total(
        metrics.observe("regression", rng.gauss(10, 3), rng.gauss(10, 3)) for _ in rows
    )
    return {"binary": binary, "multiclass": multiclass, "regression": regression}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args()
    rounds = args.rounds
    rng = random.Random(1)
    n = 100_000
    observe = metrics.observe
    cases: list[tuple[str, Callable[[], object]]] = [
        ("binary, classes", lambda: observe("binary", 1, 0)),
        ("binary, strings", lambda: observe("binary", "true", "0")),
        ("binary, class + score", lambda: observe("binary", 1, 1, score=0.73)),
        ("binary, float prediction (a score)", lambda: observe("binary", 0.73, 1)),
        ("multiclass, strings", lambda: observe("multiclass", "cat", "dog")),
        ("multiclass, integers", lambda: observe("multiclass", 3, 3)),
        ("regression", lambda: observe("regression", 3.2, 2.9)),
        ("binary vote", lambda: metrics.observe_vote("binary", 1, True)),
    ]
    lines = [
        f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
        f"best of {rounds} rounds.",
        "",
        "| operation | cost |",
        "|---|---|",
    ]
    for name, fn in cases:
        lines.append(f"| `observe` {name} | {best(fn, n, rounds) * 1e6:.2f} µs |")
    contributions = [observe("binary", rng.random(), rng.randint(0, 1)) for _ in range(10_000)]
    per = best(lambda: metrics.total(contributions), 10, rounds) / len(contributions)
    lines.append(f"| `total` of scored binary rows, per row | {per * 1e6:.2f} µs |")
    for task, counters in windows(rng).items():
        cost = best(lambda c=counters, t=task: metrics.evaluate(t, c), 200, rounds)
        lines.append(
            f"| `evaluate` {task}, 10,000-row window ({len(counters)} counters) "
            f"| {cost * 1e6:.0f} µs |"
        )
    text = "\n".join(["## Metric math (`bench/metrics.py`)", "", *lines])
    print(text)
    if args.write:
        sections.write(Path(__file__).resolve().parent.parent / "BENCHMARKS.md", "metrics", text)


if __name__ == "__main__":
    main()
