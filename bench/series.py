# ruff: noqa: E501 (the table's rows and heading are Markdown text, one line each)
"""What a chart asks for: the 30-day metrics series at a step chosen from its width (`points`).

Run: `python bench/series.py [--rounds 3] [--per-minute 1] [--postgres postgresql://…] [--write]`

In one run, on one machine, with the command users run (`truthloop feedback` as a subprocess, on
a fresh SQLite store and a fresh schema of `--postgres`'s database per round), spoken to over
HTTP: 30 days of 1-minute buckets (`--per-minute` records a minute) filled through the API and
folded by the tick, for two monitors: `history`, every record labeled (the realized metrics and
their intervals per point), and `estimated`, scored records with a calibrated reference and no
label (each point also evaluates its CBPE estimate from its score histogram). Then p50 / p95 of
`READS` reads (`FEW` of the largest) each of `GET .../metrics?window=30d&points=800` (what a chart 800 pixels wide
asks: 1h steps, 720 or 721 points), the same window without a series (the baseline), and
`points=10000` (5m steps, 8,640 points: the most a series may be asked in).

Each figure is the best of `--rounds`. With `--write` the table replaces the
`<!-- bench:series -->` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
import drift as drift_bench
import estimate as estimate_bench
from feedback_ingest import (
    best_of_rounds,
    cpu_name,
    cpu_seconds,
    fill_history,
    folded,
    folded_sqlite,
    fresh_store,
    pct,
    report,
    server_facts,
    service_arguments,
    start_service,
    timed_gets,
)

STORES = ("sqlite", "postgres")
READS = 30
FEW = 5
"""Reads of `points=10000`, which take seconds each."""
GOAL_MS = 300.0
QUERIES = {
    "points800": "window=30d&points=800",
    "plain": "window=30d",
    "points10000": "window=30d&points=10000",
}


async def checked(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    """The answer's step, points and bytes; exits when the series is not what was asked."""
    async with session.get(url) as r:
        body = await r.read()
        answer = await r.json()
    series = answer["series"]
    if answer["step"] != 3600 or not 720 <= len(series) <= 721 or not answer["samples"]:
        raise SystemExit(f"not a 30-day series at 1h: {str(answer)[:500]}")
    return {"points": len(series), "bytes": len(body)}


async def round_of(
    kind: str, args: argparse.Namespace, workdir: Path, reference: Path
) -> dict[str, float]:
    results: dict[str, float] = {}
    async with fresh_store(None if kind == "sqlite" else args.postgres, workdir) as store:
        proc, base = await start_service(store, workdir)
        try:
            async with aiohttp.ClientSession() as session:
                await fill_history(session, base, args.per_minute)
                await estimate_bench.put(session, base, "estimated")
                await drift_bench.upload(session, base, "estimated", reference)
                await estimate_bench.fill(session, base, "estimated", args.per_minute)
                if kind == "sqlite":
                    await folded_sqlite(Path(store.removeprefix("sqlite://")), within=300)
                else:
                    await folded(store)
                for name in ("history", "estimated"):
                    url = f"{base}/v1/monitors/bench/{name}/metrics?"
                    shape = await checked(session, url + QUERIES["points800"])
                    results[f"{kind}_{name}_points"] = shape["points"]
                    results[f"{kind}_{name}_bytes"] = shape["bytes"]
                    for read, query in QUERIES.items():
                        n = FEW if read == "points10000" else READS
                        cpu = cpu_seconds(proc.pid)
                        times = await timed_gets(session, url + query, n)
                        used = (cpu_seconds(proc.pid) - cpu) / n
                        results[f"{kind}_{name}_{read}_cpu_ms"] = used * 1000
                        results[f"{kind}_{name}_{read}_p50_ms"] = statistics.median(times) * 1000
                        results[f"{kind}_{name}_{read}_p95_ms"] = pct(times, 0.95) * 1000
        finally:
            proc.kill()
            await proc.wait()
    return results


async def run_all(args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="truthloop-bench-series-") as directory:
        workdir = Path(directory)
        reference = workdir / "reference.csv"
        estimate_bench.reference_csv(reference, 10_000, 2, actual=True)

        async def one_round(flip: bool) -> dict[str, float]:
            results: dict[str, float] = {}
            for kind in STORES:
                results.update(await round_of(kind, args, workdir, reference))
            return results

        return await best_of_rounds(args, one_round, {}, {})


def markdown(r: dict[str, float], args: argparse.Namespace, load: tuple[float, float]) -> str:
    names = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
    monitors = {
        "history": "labeled records (realized metrics)",
        "estimated": "unlabeled scored records, calibrated reference (CBPE estimate per point)",
    }
    rows = []
    for kind in STORES:
        for name, what in monitors.items():
            key = f"{kind}_{name}"
            p50, p95 = r[f"{key}_points800_p50_ms"], r[f"{key}_points800_p95_ms"]
            met = "met" if p95 < GOAL_MS else "NOT met"
            rows += [
                (
                    f"{names[kind]}, {what}: `GET metrics?window=30d&points=800` ({r[f'{key}_points']:.0f} points of 1h, {r[f'{key}_bytes'] / 1024:,.0f} KiB), p50 / p95",
                    f"{p50:.1f} / {p95:.1f} ms ({r[f'{key}_points800_cpu_ms']:.0f} ms CPU)",
                    f"< {GOAL_MS:g} ms: {met}",
                ),
                (
                    f"{names[kind]}, the same monitor: `GET metrics?window=30d` (no series), p50 / p95",
                    f"{r[f'{key}_plain_p50_ms']:.1f} / {r[f'{key}_plain_p95_ms']:.1f} ms ({r[f'{key}_plain_cpu_ms']:.0f} ms CPU)",
                    "",
                ),
                (
                    f"{names[kind]}, the same monitor: `points=10000` (8,640 points of 5m), p50 / p95",
                    f"{r[f'{key}_points10000_p50_ms']:.1f} / {r[f'{key}_points10000_p95_ms']:.1f} ms ({r[f'{key}_points10000_cpu_ms']:.0f} ms CPU)",
                    "",
                ),
            ]
    table = "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)
    return f"""## A chart's 30-day series: `points` (`bench/series.py`)

Run {time.strftime("%Y-%m-%d")} on {os.cpu_count()} × {cpu_name()}, Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, {args.server}; best of {args.rounds} rounds (the least p50 and the least p95 of the rounds, each of {READS} reads, {FEW} of `points=10000`; CPU: the service's, all threads, per read, the least of the rounds); load average {load[0]:.2f} before, {load[1]:.2f} after.
`truthloop feedback` runs as a subprocess on a fresh store per round (a SQLite file, a schema of
the PostgreSQL database), spoken to over HTTP. Each monitor holds 30 days of 1-minute buckets
({args.per_minute} record a minute, 43,200 a monitor) sent through the API and folded by the tick.
`points=800` is what a chart 800 pixels wide asks: the step is the smallest of 1m 2m 5m … 1d 2d
7d at least 30 days / 800 (54 minutes: 1h).

| measure | result | goal |
|---|---|---|
{table}

The times are the machine's as it was (the load average above, on 2 cores shared with other
work: a read waits for a core); the CPU in brackets is what a read costs the service. Past 300 ms
the time is in the points, not the records: each point's counters are read (a scored binary
monitor keeps about 68 a point, most of them the score histogram's cells behind ROC AUC and
calibration, so 721 hourly points are about 49,000 rows of the hourly rollup; SQLite reads them in
the service's process, PostgreSQL in its server, whose CPU is not counted) and the points are
evaluated in one batch (`metrics.evaluate_many`: every metric with its interval over a matrix of
the points' counters, and CBPE's estimate from the score histogram where a calibrated reference
allows one). The realized metrics of 721 points cost about 45 ms of CPU in process, down from
about 80 evaluated one point at a time; the estimated monitor's remaining cost is CBPE's
(`estimate.binary_rows`, its calibration's variance per point). `points=10000` costs about 8 to
12 times `points=800`: a chart asks for about as many points as it has pixels.
"""


def main() -> None:
    parser = service_arguments(__doc__)
    parser.add_argument(
        "--postgres",
        default=os.environ.get("TRUTHLOOP_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test"),
        help="the PostgreSQL database to measure in (default %(default)s)",
    )
    parser.set_defaults(per_minute=1)
    args = parser.parse_args()
    args.server = asyncio.run(server_facts(args.postgres))
    report(args, run_all, markdown, "series")


if __name__ == "__main__":
    main()
