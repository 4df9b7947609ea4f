# ruff: noqa: E501 (the table's rows and heading are Markdown text, one line each)
"""Cost of a backtest: 30 days x 10 alerts replayed, a 100-candidate sweep, the minute-counters
read, and the endpoint end to end.

Run: `python bench/backtest.py [--rounds 3] [--postgres postgresql://…] [--write]`

In one run, on one machine:
1. the replay in-process (`core.backtest`): 30 days of minute counters (25 predictions and 20
   labeled a minute, drawn record by record: accuracy 0.9, five planted 2-hour degradations to
   0.6), a 1-hour window and 10 alerts on 6 realized metrics; `inputs` (every minute's window
   evaluated and read by the engine's functions) and `replay` (the machine stepped), then a
   100-candidate sweep on the same inputs (`below` 0.70..0.89 x `for` 0s..1h). The baseline: a
   numpy batch computation over the raw rows (864,000 labeled records) of the same per-minute
   window figures the alerts read (the six metrics from per-minute confusion counts summed over
   the window) and each alert's breach per minute: what the replay costs beyond arithmetic;
2. the store (SQLite, and PostgreSQL with `--postgres`): 30 days of labeled records (1 a minute,
   43,200) sent through the API of `truthloop feedback` (a subprocess) and folded; the minute
   counters of the 30 days read in-process (`backtests.minute_counters`: `Store.series` at
   1-minute steps, a week a read); `POST .../backtest` over HTTP (30 days, the 10 alerts), and
   with the 100-candidate sweep.

Each figure is the best of `--rounds`. With `--write` the table replaces the
`<!-- bench:backtest -->` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import numpy as np
import sections
from feedback_ingest import (
    BATCH,
    cpu_name,
    folded,
    folded_sqlite,
    fresh_store,
    post_all,
    post_records,
    server_facts,
    start_service,
)

from truthloop.core import backtest, sweep
from truthloop.core.spec import parse_monitor
from truthloop.core.windows import BucketRange, bucket_of
from truthloop.feedback import backtests
from truthloop.feedback.store import open_store
from truthloop.feedback.store.interface import Only

DAYS = 30
MINUTES = DAYS * 1440
PREDICTIONS = 25
LABELED = 20
WINDOW = 60
GOAL_REPLAY = 2.0
GOAL_SWEEP = 10.0
METRICS = ("accuracy", "precision", "recall", "f1", "specificity", "balanced_accuracy")
ALERTS = [
    {"name": "accuracy-low", "metric": "accuracy", "below": 0.8, "for": "5m"},
    {"name": "accuracy-very-low", "metric": "accuracy", "below": 0.7, "for": "0s"},
    {"name": "accuracy-slipping", "metric": "accuracy", "below": 0.85, "for": "30m"},
    {"name": "accuracy-sliding", "metric": "accuracy", "below": 0.82, "for": "15m"},
    {"name": "precision-low", "metric": "precision", "below": 0.75, "for": "5m"},
    {"name": "recall-low", "metric": "recall", "below": 0.75, "for": "5m"},
    {"name": "f1-low", "metric": "f1", "below": 0.75, "for": "10m"},
    {"name": "specificity-low", "metric": "specificity", "below": 0.75, "for": "5m"},
    {"name": "balanced-low", "metric": "balanced_accuracy", "below": 0.78, "for": "5m"},
    {"name": "f1-very-low", "metric": "f1", "below": 0.6, "for": "0s"},
]
MONITOR: dict[str, Any] = {
    "apiVersion": "truthloop.dev/v1alpha1",
    "kind": "ModelMonitor",
    "metadata": {"namespace": "bench", "name": "backtest"},
    "spec": {
        "selector": {"matchLabels": {"app": "churn"}},
        "model": {"name": "churn"},
        "task": "binary",
        "capture": {"prediction": {"pointer": "/prediction"}},
        "feedback": {"attributionWindow": "24h"},
        "metrics": {"window": f"{WINDOW}m", "minSamples": 50},
        "alerts": ALERTS,
        "fallback": {
            "engageOn": ["accuracy-low"],
            "recoverAfter": "10m",
            "rules": [{"prediction": "0"}],
        },
    },
}
SWEEPS = ["alerts[accuracy-low].below=0.70:0.89:0.01", "alerts[accuracy-low].for=0s,5m,15m,30m,1h"]
STORE_RECORDS_A_MINUTE = 1


# -- 1. the replay in-process --------------------------------------------------------------------


def raw_rows(seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(minute, predicted, actual) of every labeled record: accuracy 0.9, five 2-hour planted
    degradations to 0.6."""
    rng = np.random.default_rng(seed)
    minute = np.repeat(np.arange(MINUTES), LABELED)
    accuracy = np.full(MINUTES, 0.9)
    for start in np.linspace(2000, MINUTES - 2000, 5).astype(int):
        accuracy[start : start + 120] = 0.6
    predicted = rng.integers(0, 2, len(minute))
    right = rng.random(len(minute)) < accuracy[minute]
    actual = np.where(right, predicted, 1 - predicted)
    return minute, predicted, actual


def cells(minute: np.ndarray, predicted: np.ndarray, actual: np.ndarray) -> dict[str, np.ndarray]:
    """Each minute's confusion counts."""
    out = {}
    for name, p, a in (("tp", 1, 1), ("fp", 1, 0), ("tn", 0, 0), ("fn", 0, 1)):
        out[name] = np.bincount(minute[(predicted == p) & (actual == a)], minlength=MINUTES)
    return out


def minute_counters(start: int, counts: dict[str, np.ndarray]) -> dict[int, Any]:
    """The minute buckets as the store reads them (`Store.series` at 1-minute steps)."""
    found = {}
    for m in range(MINUTES):
        counters = {"@predictions": float(PREDICTIONS)}
        counters.update({k: float(v[m]) for k, v in counts.items() if v[m]})
        found[start + m] = {("v1", "model"): counters}
    return found


def baseline(minute: np.ndarray, predicted: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """The per-minute window figures the alerts read and each alert's breach, straight from the
    raw rows in numpy (the replay's arithmetic without its machine)."""
    counts = cells(minute, predicted, actual)
    summed = {}
    for name, per_minute in counts.items():
        total = np.concatenate(([0], np.cumsum(per_minute)))
        summed[name] = total[WINDOW:] - total[:-WINDOW]
    tp, fp, tn, fn = (summed[k].astype(float) for k in ("tp", "fp", "tn", "fn"))
    with np.errstate(invalid="ignore", divide="ignore"):
        recall, specificity = tp / (tp + fn), tn / (tn + fp)
        figures = {
            "accuracy": (tp + tn) / (tp + tn + fp + fn),
            "precision": tp / (tp + fp),
            "recall": recall,
            "f1": 2 * tp / (2 * tp + fp + fn),
            "specificity": specificity,
            "balanced_accuracy": (recall + specificity) / 2,
        }
    return np.vstack([figures[a["metric"]] < a["below"] for a in ALERTS])


def best(measure: Callable[[], Any], rounds: int) -> tuple[float, Any]:
    times, found = [], None
    for _ in range(rounds):
        started = time.perf_counter()
        found = measure()
        times.append(time.perf_counter() - started)
    return min(times), found


def core_round(args: argparse.Namespace) -> dict[str, float]:
    spec = parse_monitor(MONITOR).spec
    rows = raw_rows()
    start = bucket_of(time.time()) - MINUTES
    minutes = minute_counters(start - WINDOW + 1, cells(*rows))
    span = BucketRange(start, start + MINUTES - WINDOW + 1)
    r: dict[str, float] = {}
    r["baseline_s"], _ = best(lambda: baseline(*rows), args.rounds)

    def replay() -> backtest.BacktestResult:
        found = backtest.inputs(spec, minutes, span)
        return backtest.replay("bench/backtest", spec, found)

    r["replay_s"], result = best(replay, args.rounds)
    cpu = time.process_time()
    r["inputs_s"], inputs = best(lambda: backtest.inputs(spec, minutes, span), args.rounds)
    r["inputs_cpu_s"] = (time.process_time() - cpu) / args.rounds
    r["machine_s"], _ = best(lambda: backtest.replay("bench/backtest", spec, inputs), args.rounds)
    r["every_minute_s"], _ = best(lambda: backtest.step_every_minute(spec, inputs), 1)
    sweeps = sweep.parse(SWEEPS, spec)
    goal = backtest.target(spec, sweeps)
    assert goal is not None
    r["sweep_s"], swept = best(
        lambda: backtest.run_sweep("bench/backtest", spec, inputs, sweeps, goal), args.rounds
    )
    r["sweep_total_s"] = r["inputs_s"] + r["sweep_s"]
    r["episodes"] = len(result.episodes)
    r["transitions"] = len(result.transitions)
    r["minutes"] = len(span)
    r["candidates"] = len(swept.candidates)
    r["front"] = sum(c.pareto for c in swept.candidates)
    return r


# -- 2. the store, and the endpoint end to end ---------------------------------------------------


async def fill(session: aiohttp.ClientSession, base: str, now: float) -> int:
    """30 days of labeled records, one a minute, through the API; how many."""
    async with session.put(base + "/v1/monitors/bench/backtest", json=MONITOR) as r:
        assert r.status in (200, 201), await r.text()
    rng = np.random.default_rng(5)
    items = [
        {
            "prediction_id": f"b-{m}",
            "monitor": "bench/backtest",
            "model_version": "v1",
            "ts": now - 60 * m - 1,
            "prediction": int(m % 2),
        }
        for m in range(MINUTES)
    ]
    await post_records(session, base, items)
    labels = [
        msgspec.json.encode(
            {
                "items": [
                    {
                        "monitor": "bench/backtest",
                        "prediction_id": r["prediction_id"],
                        "actual": int(r["prediction"]) ^ int(rng.random() < 0.1),
                    }
                    for r in items[i : i + BATCH]
                ]
            }
        )
        for i in range(0, len(items), BATCH)
    ]
    await post_all(session, base + "/v1/feedback", labels, "application/json", 4)
    return len(items)


async def store_round(kind: str, args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    r: dict[str, float] = {}
    async with fresh_store(None if kind == "sqlite" else args.postgres, workdir) as url:
        proc, base = await start_service(url, workdir)
        try:
            timeout = aiohttp.ClientTimeout(total=600)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                now = time.time()
                r["records"] = await fill(session, base, now)
                if kind == "sqlite":
                    await folded_sqlite(Path(url.removeprefix("sqlite://")))
                else:
                    await folded(url)
                store = open_store(url)
                await store.open()
                try:
                    (registered,) = await store.load_monitors()
                    end = bucket_of(now)
                    reads = BucketRange(end - MINUTES - WINDOW + 1, end)
                    only = Only(sketches=False)
                    times = []
                    for _ in range(args.rounds):
                        started = time.perf_counter()
                        found = await backtests.minute_counters(store, registered.id, reads, only)
                        times.append(time.perf_counter() - started)
                    r["read_s"] = min(times)
                    r["read_minutes"] = len(found)
                finally:
                    await store.close()
                for name, body in (
                    ("endpoint_s", {"from": "30d"}),
                    ("endpoint_sweep_s", {"from": "30d", "sweeps": SWEEPS}),
                ):
                    times = []
                    for _ in range(args.rounds):
                        started = time.perf_counter()
                        async with session.post(
                            base + "/v1/monitors/bench/backtest/backtest", json=body
                        ) as answer:
                            assert answer.status == 200, await answer.text()
                            await answer.read()
                        times.append(time.perf_counter() - started)
                    r[name] = min(times)
        finally:
            proc.terminate()
            await proc.wait()
    return {f"{kind}_{k}": v for k, v in r.items()}


async def run_all(args: argparse.Namespace) -> dict[str, float]:
    results = core_round(args)
    print(f"core: {results}", file=sys.stderr)
    workdir = Path(tempfile.mkdtemp(prefix="truthloop-bench-"))
    kinds = ["sqlite"] + (["postgres"] if args.postgres else [])
    for kind in kinds:
        found = await store_round(kind, args, workdir)
        print(f"{kind}: {found}", file=sys.stderr)
        results.update(found)
    if args.postgres:
        results["server"] = await server_facts(args.postgres)  # type: ignore[assignment]
    return results


def met(value: float, goal: float) -> str:
    return f"< {goal:g} s: {'met' if value < goal else 'NOT met'}"


def markdown(r: dict[str, Any], args: argparse.Namespace, load: tuple[float, float]) -> str:
    versions = f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}"
    if args.postgres:
        versions += f", {r['server']}"
    rows = [
        (
            f"replay: 30 days ({r['minutes']:,.0f} minutes) x 10 alerts, every window evaluated and the machine stepped ({r['transitions']:.0f} transitions, {r['episodes']:.0f} episodes)",
            f"{r['replay_s']:.2f} s",
            met(r["replay_s"], GOAL_REPLAY),
        ),
        (
            "of which the windows (`backtest.inputs`; in brackets its CPU, the mean of the rounds)",
            f"{r['inputs_s']:.2f} s ({r['inputs_cpu_s']:.2f} s CPU)",
            "",
        ),
        (
            "of which the machine stepped at input changes and deadlines, and the periods",
            f"{r['machine_s'] * 1000:.0f} ms",
            "",
        ),
        (
            "the machine stepped every minute instead (what the engine's tick would do)",
            f"{r['every_minute_s']:.2f} s",
            "",
        ),
        (
            "baseline: the same window figures and breaches in numpy over the raw rows (864,000 labeled records)",
            f"{r['baseline_s'] * 1000:.0f} ms",
            "",
        ),
        ("replay ÷ baseline", f"{r['replay_s'] / r['baseline_s']:.0f}x", ""),
        (
            f"sweep: {r['candidates']:.0f} candidates on the same windows ({r['front']:.0f} on the Pareto front)",
            f"{r['sweep_s']:.2f} s",
            "",
        ),
        (
            "sweep with its windows (`inputs` once + the candidates)",
            f"{r['sweep_total_s']:.2f} s",
            met(r["sweep_total_s"], GOAL_SWEEP),
        ),
    ]
    kinds = [("sqlite", "SQLite")] + ([("postgres", "PostgreSQL")] if args.postgres else [])
    for kind, name in kinds:
        rows += [
            (
                f"{name}: the 30 days' minute counters read (`Store.series` at 1-minute steps, a week a read; {r[f'{kind}_read_minutes']:,.0f} minutes with counters)",
                f"{r[f'{kind}_read_s']:.2f} s",
                "",
            ),
            (
                f"{name}: `POST .../backtest`, 30 days, 10 alerts, over HTTP",
                f"{r[f'{kind}_endpoint_s']:.2f} s",
                "",
            ),
            (
                f"{name}: the same with the 100-candidate sweep",
                f"{r[f'{kind}_endpoint_sweep_s']:.2f} s",
                met(r[f"{kind}_endpoint_sweep_s"], GOAL_SWEEP),
            ),
        ]
    head = (
        "## Backtest: 30 days x 10 alerts replayed, a 100-candidate sweep (`bench/backtest.py`)\n\n"
        f"Run {time.strftime('%Y-%m-%d')} on {os.cpu_count()} × {cpu_name()}, {versions}; best of "
        f"{args.rounds} rounds; load average {load[0]:.2f} before, {load[1]:.2f} after.\n"
        f"In-process: {DAYS} days of minute counters ({PREDICTIONS} predictions and {LABELED} labeled a minute, "
        "accuracy 0.9 with five planted 2-hour degradations to 0.6), a 1-hour window, 10 alerts on 6 realized "
        "metrics, the fallback engaged by one; the sweep is `below` 0.70..0.89 by 0.01 x `for` 0s, 5m, 15m, 30m, 1h. "
        "The store rows: 30 days of labeled records (1 a minute) sent through `truthloop feedback`'s API "
        "(a subprocess) and folded.\n\n"
        "| measure | result | goal |\n|---|---|---|\n"
    )
    tail = (
        "\nEvery figure is the machine's as it was (the load average above, on 2 cores shared "
        "with other jobs). The windows' cost is their evaluation: the distinct windows' metrics "
        "in one batch (`evaluation.evaluate_many`, only the metrics the alerts read), then each "
        "window read as the engine's tick reads it (`evaluation.alert_values`).\n"
    )
    return head + "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows) + "\n" + tail


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres", default=None, metavar="URL")
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args()
    before = os.getloadavg()[0]
    results = asyncio.run(run_all(args))
    text = markdown(results, args, (before, os.getloadavg()[0]))
    print(text)
    if args.write:
        sections.write(Path(__file__).resolve().parent.parent / "BENCHMARKS.md", "backtest", text)


if __name__ == "__main__":
    main()
