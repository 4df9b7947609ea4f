"""Cost of drift: sketching on ingest, the drift read, the reference profile, against a batch tool.

Run: `python bench/drift.py [--records 100000] [--rounds 3] [--write]`

In one run, on one machine, with the commands users run (`truthloop feedback` on SQLite as a
subprocess, spoken to over HTTP; `truthloop reference` as a subprocess):
1. ingest: the same capture records, each with 10 features (7 numbers, 3 categories), POSTed in
   NDJSON batches of 1,000 from 4 connections to two monitors of one service: one with a
   reference (every record sketched against it: cells, missing, out-of-range, outlier score) and
   one without (the baseline: records stored with their features, nothing sketched); records/s
   and the service's CPU per record. A third monitor takes the same records without any
   features: the goal (sketched ≥ 0.8× the run without features) is read against both. Each
   round sends its records in `SLICES` slices, each slice to the three monitors in turn (the
   first two swapping places every slice), so a disturbance hits all three alike;
2. sketch cost: the service's CPU per record sketched less the baseline's (from 1.), and, in
   process, `core.sketch.sketch` and its counter deltas on batches of 1,000 of those records;
3. `GET .../drift?window=30d` on a monitor with 20 features whose 30 days of 1-minute buckets
   were filled through the API (`--per-minute` records a minute), once the tick has folded them:
   p50 / p95 of 30 reads;
4. `truthloop reference -f ref.csv --monitor ...` of a 1,000,000-row, 10-column CSV: wall time of
   the command, process start to exit;
5. the batch baseline, on the same machine: the 30-day window's raw rows read back from the
   service's own SQLite file (the records as stored), and the exact statistics recomputed from
   them with numpy/scipy against the raw reference rows (`scipy.stats.wasserstein_distance` /
   std, `ks_2samp` for numbers; Jensen-Shannon and chi-square of the category counts), which is
   what a tool that re-scans raw data per window does; its time against the drift read's p50.

Each figure is the best of `--rounds` (the machine is shared; the least disturbed round counts);
each ratio is the median of the rounds' ratios, both figures of a ratio measured in one round.
With `--write` the table replaces the `<!-- bench:drift -->` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import timeit
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import numpy as np
from feedback_ingest import (
    BATCH,
    MONTH_MINUTES,
    SLICES,
    best,
    cpu_name,
    cpu_seconds,
    folded_sqlite,
    month_records,
    ndjson,
    pct,
    post_records,
    report,
    service_arguments,
    sliced,
    start_service,
    timed_gets,
)
from scipy import spatial, stats

from truthloop.core import profile as core_profile
from truthloop.core import sketch, spec, table
from truthloop.core.records import PredictionRecord

CATEGORIES = ("basic", "plus", "premium", "family", "student")
REGIONS = tuple(f"region-{i}" for i in range(12))
CHANNELS = ("web", "app", "store", "phone")


def monitor(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "truthloop.dev/v1alpha1",
        "kind": "ModelMonitor",
        "metadata": {"namespace": "bench", "name": name},
        "spec": {
            "selector": {"matchLabels": {"app": "churn"}},
            "model": {"name": "churn"},
            "task": "binary",
            "capture": {
                "prediction": {"pointer": "/prediction"},
                "features": {"pointer": "/features"},
            },
            "feedback": {"attributionWindow": "24h"},
            "metrics": {"window": "1h", "minSamples": 50},
            "alerts": [{"name": "accuracy-low", "metric": "accuracy", "below": 0.5, "for": "2m"}],
            "fallback": {"recoverAfter": "10m", "rules": [{"prediction": "0"}]},
        },
    }


def columns(rng: np.random.Generator, n: int, width: int, shift: float = 0.0) -> dict[str, Any]:
    """`width` feature columns of `n` rows: 70% numbers of a few shapes, 30% categories."""
    out: dict[str, Any] = {}
    numeric = round(width * 0.7)
    for i in range(width):
        name = f"f{i:02d}"
        if i < numeric:
            kind = i % 4
            if kind == 0:
                values = rng.normal(50.0 + shift * 10, 10.0, n).round(3)
            elif kind == 1:
                values = rng.uniform(0.0, 100.0 + shift * 30, n).round(2)
            elif kind == 2:
                values = rng.lognormal(3.0 + shift * 0.3, 0.5, n).round(2)
            else:
                values = rng.poisson(3.0 + shift, n).astype(np.float64)
            out[name] = values
        else:
            choices = (CATEGORIES, REGIONS, CHANNELS)[i % 3]
            p = np.linspace(2.0, 1.0, len(choices)) + shift * np.linspace(0.0, 1.0, len(choices))
            out[name] = np.asarray(choices)[rng.choice(len(choices), n, p=p / p.sum())]
    return out


def rows(cols: dict[str, Any]) -> list[dict[str, Any]]:
    """Column arrays as one features object per row (numbers as floats, categories as text)."""
    names = list(cols)
    lists = [cols[name].tolist() for name in names]
    return [dict(zip(names, values, strict=True)) for values in zip(*lists, strict=True)]


def records(
    features: list[dict[str, Any]], monitor_key: str, now: float, tag: str
) -> list[dict[str, Any]]:
    out = []
    for i, f in enumerate(features):
        score = ((i * 7919) % 1000) / 1000
        record: dict[str, Any] = {
            "prediction_id": f"{tag}-{i:08d}",
            "monitor": monitor_key,
            "model_version": "v3",
            "entity_id": f"user-{i}",
            "ts": now - 600 + (i % 600),
            "prediction": int(score >= 0.5),
            "score": score,
            "served_by": "model",
        }
        if f:
            record["features"] = f
        out.append(record)
    return out


def batches(
    features: list[dict[str, Any]], names: tuple[str, ...], now: float
) -> dict[str, list[bytes]]:
    """The same records for each monitor `bench/<name>` as NDJSON bodies of `BATCH`."""
    out = {}
    for name in names:
        batch = records(features, f"bench/{name}", now, name)
        out[name] = [ndjson(batch[i : i + BATCH]) for i in range(0, len(batch), BATCH)]
    return out


def reference_csv(path: Path, n: int, width: int, seed: int = 1) -> None:
    """A reference data set of `n` rows: the features, a prediction and a score."""
    rng = np.random.default_rng(seed)
    cols = columns(rng, n, width)
    score = rng.uniform(0, 1, n).round(4)
    cols["prediction"] = (score >= 0.5).astype(int)
    cols["score"] = score
    names = list(cols)
    with path.open("w") as f:
        f.write(",".join(names) + "\n")
        step = 100_000
        for start in range(0, n, step):
            block = [np.asarray(cols[name][start : start + step]).astype(str) for name in names]
            f.write("\n".join(",".join(row) for row in zip(*block, strict=True)) + "\n")


async def upload(session: aiohttp.ClientSession, base: str, name: str, path: Path) -> None:
    url = f"{base}/v1/monitors/bench/{name}/reference"
    with path.open("rb") as f:
        body = f.read()
    async with session.post(url, data=body, headers={"Content-Type": "text/csv"}) as r:
        if r.status != 201:
            raise SystemExit(f"{url}: {r.status} {await r.text()}")


async def put_monitor(session: aiohttp.ClientSession, base: str, name: str) -> None:
    async with session.put(f"{base}/v1/monitors/bench/{name}", json=monitor(name)) as r:
        if r.status not in (200, 201):
            raise SystemExit(f"PUT {name}: {r.status} {await r.text()}")


# -- 1. ingest, with and without sketching ------------------------------------------------------


async def ingest_round(
    args: argparse.Namespace, workdir: Path, reference: Path, flip: bool
) -> dict[str, float]:
    """One round: a fresh service, the same records to the sketched monitor and the baseline."""
    rng = np.random.default_rng(2)
    features = rows(columns(rng, args.records, 10))
    now = time.time()
    bodies = batches(features, ("sketched", "plain"), now)
    bare = records([{} for _ in features], "bench/bare", now, "bare")
    bodies["bare"] = [ndjson(bare[i : i + BATCH]) for i in range(0, len(bare), BATCH)]
    store = workdir / f"ingest-{time.monotonic_ns()}.db"
    proc, base = await start_service(f"sqlite://{store}", workdir)
    results: dict[str, float] = {}
    try:
        connector = aiohttp.TCPConnector(limit=args.concurrency * 2)
        async with aiohttp.ClientSession(connector=connector) as session:
            for name in ("sketched", "plain", "bare"):
                await put_monitor(session, base, name)
            await upload(session, base, "sketched", reference)
            orders = (["plain", "sketched", "bare"], ["sketched", "plain", "bare"])
            results = await sliced(session, base, proc.pid, bodies, orders, flip, args)
            url = f"{base}/v1/monitors/bench/sketched/drift?window=1h"
            async with session.get(url) as r:
                report = (await r.json())["drift"]
            if report["samples"] != args.records:
                raise SystemExit(f"sketched {report['samples']} of {args.records} records")
    finally:
        proc.kill()
        await proc.wait()
    return results


# -- 2. the sketch in process -------------------------------------------------------------------


class Known:
    """A registered monitor as `sketch.sketch` reads it."""

    def __init__(self, mid: int, parsed: spec.Monitor, reference: core_profile.Reference) -> None:
        self.id = mid
        self.monitor = parsed
        self.references = {"": reference}


def sketch_cost(args: argparse.Namespace, reference_path: Path) -> float:
    """µs per record of sketching 1,000-record batches of 10-feature records, counters
    included; best of `rounds`."""
    parsed = spec.parse_monitor(monitor("sketched"))
    with reference_path.open("rb") as f:
        built, _ = core_profile.build(table.read(iter([f.read()]), "csv"), parsed.spec)
    reference = core_profile.Reference(1, "", time.time(), "upload", built)
    rng = np.random.default_rng(3)
    batch = [
        msgspec.convert(r, PredictionRecord)
        for r in records(rows(columns(rng, BATCH, 10)), "bench/sketched", time.time(), "s")
    ]
    known = {"bench/sketched": Known(1, parsed, reference)}

    def once() -> None:
        sketch.sketch(batch, known).deltas()

    number = 20
    return min(timeit.repeat(once, number=number, repeat=args.rounds)) / number / BATCH * 1e6


# -- 3. the 30-day drift read, and 5. the batch baseline ----------------------------------------


async def fill_history(
    session: aiohttp.ClientSession, base: str, per_minute: int, width: int
) -> float:
    """30 days of 1-minute buckets of `width`-feature records for bench/history, drifting
    slowly over the month, through the API; the newest record's time."""
    now = time.time()
    rng = np.random.default_rng(4)
    n = MONTH_MINUTES * per_minute
    shift = 1.0 - np.arange(n) / n  # record 0 is the newest: a drift growing over the month
    cols = columns(rng, n, width)
    drifted = columns(rng, n, width, shift=1.0)
    mixed = {
        name: np.where(rng.uniform(0, 1, n) < shift * 0.5, drifted[name], values)
        for name, values in cols.items()
    }
    features = rows(mixed)
    items = month_records(
        "bench/history", per_minute, now, lambda m, k: {"features": features[m * per_minute + k]}
    )
    await post_records(session, base, items)
    return now


def batch_baseline(db: Path, reference_path: Path, start: float, end: float) -> dict[str, float]:
    """Exact statistics recomputed from raw rows, as a batch tool does per window: the seconds
    reading the window's rows (from the service's database file), reading the raw reference,
    and computing; and the window's rows."""
    began = time.perf_counter()
    conn = sqlite3.connect(db)
    try:
        raw = conn.execute(
            "SELECT p.features FROM predictions p JOIN monitors m ON m.id = p.monitor_id"
            " WHERE m.key = 'bench/history' AND p.ts >= ? AND p.ts < ?",
            (start, end),
        ).fetchall()
    finally:
        conn.close()
    decode = msgspec.json.decode
    window = [decode(features) for (features,) in raw]
    names = list(window[0])
    current = {name: np.asarray([row.get(name) for row in window]) for name in names}
    read_window = time.perf_counter()
    with reference_path.open() as f:
        reader = csv.reader(f)
        header = next(reader)
        ref_columns = list(zip(*reader, strict=True))
    reference = {}
    for name, values in zip(header, ref_columns, strict=True):
        column = np.asarray(values)
        with contextlib.suppress(ValueError):
            column = column.astype(np.float64)
        reference[name] = column
    read_reference = time.perf_counter()
    for name in names:
        ref, cur = reference[name], current[name]
        if ref.dtype == np.float64:
            cur = cur.astype(np.float64)
            stats.wasserstein_distance(ref, cur) / max(float(np.std(ref)), 0.001)
            stats.ks_2samp(ref, cur)
        else:
            categories, ref_counts = np.unique(ref, return_counts=True)
            seen, cur_counts = np.unique(cur, return_counts=True)
            at = np.searchsorted(categories, seen).clip(0, len(categories) - 1)
            known = categories[at] == seen
            counts = np.zeros(len(categories) + 1)
            np.add.at(counts, np.where(known, at, len(categories)), cur_counts)
            p = np.append(ref_counts / ref_counts.sum(), 0.0)
            spatial.distance.jensenshannon(p, counts / counts.sum())
            expected = np.maximum(p, 0.5 / len(ref))
            stats.chisquare(counts, expected / expected.sum() * counts.sum())
    done = time.perf_counter()
    return {
        "batch_window_read_ms": (read_window - began) * 1000,
        "batch_reference_read_ms": (read_reference - read_window) * 1000,
        "batch_compute_ms": (done - read_reference) * 1000,
        "batch_rows": len(window),
    }


async def history_round(
    args: argparse.Namespace, workdir: Path, reference20: Path
) -> dict[str, float]:
    store = workdir / f"history-{time.monotonic_ns()}.db"
    proc, base = await start_service(f"sqlite://{store}", workdir)
    results: dict[str, float] = {}
    try:
        async with aiohttp.ClientSession() as session:
            await put_monitor(session, base, "history")
            await upload(session, base, "history", reference20)
            await fill_history(session, base, args.per_minute, 20)
            await folded_sqlite(store, within=300)
            url = f"{base}/v1/monitors/bench/history/drift?window=30d"
            async with session.get(url) as r:
                answer = await r.json()
            report = answer["drift"]
            if report["status"] != "ok" or len(report["features"]) != 20:
                raise SystemExit(f"unexpected drift answer: {str(answer)[:500]}")
            results["history_samples"] = report["samples"]
            times = await timed_gets(session, url, 30)
            results["drift_30d_p50_ms"] = statistics.median(times) * 1000
            results["drift_30d_p95_ms"] = pct(times, 0.95) * 1000
            window = answer["window"]
            results.update(batch_baseline(store, reference20, window["start"], window["end"]))
    finally:
        proc.kill()
        await proc.wait()
    return results


# -- 4. truthloop reference of a 1M-row CSV -----------------------------------------------------


async def reference_round(workdir: Path, big: Path) -> dict[str, float]:
    store = workdir / f"reference-{time.monotonic_ns()}.db"
    proc, base = await start_service(f"sqlite://{store}", workdir)
    try:
        async with aiohttp.ClientSession() as session:
            await put_monitor(session, base, "big")
        cpu = cpu_seconds(proc.pid)
        started = time.perf_counter()
        done = await asyncio.to_thread(
            subprocess.run,
            [
                sys.executable,
                "-m",
                "truthloop",
                "reference",
                "-f",
                str(big),
                "--monitor",
                "bench/big",
                "--feedback-url",
                base,
            ],
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"truthloop reference failed: {done.stdout}{done.stderr}")
        service_cpu = cpu_seconds(proc.pid) - cpu
    finally:
        proc.kill()
        await proc.wait()
    return {"reference_s": seconds, "reference_service_cpu_s": service_cpu}


# -- the run ------------------------------------------------------------------------------------


RATIOS = {
    "ratio_plain": ("sketched_per_s", "plain_per_s"),
    "ratio_bare": ("sketched_per_s", "bare_per_s"),
    "capacity_plain": ("plain_cpu_us", "sketched_cpu_us"),
}
"""Ratios of figures of one round: sketched records/s to the baseline's and to records without
features, and the baseline's CPU per record to the sketched one's (what one core can take)."""
DIFFERENCES = {
    "added_cpu_us": ("sketched_cpu_us", "plain_cpu_us"),
    "storing_cpu_us": ("plain_cpu_us", "bare_cpu_us"),
}
"""Differences of figures of one round: the service's CPU per record that sketching adds, and
that storing the features adds."""


def markdown(r: dict[str, float], args: argparse.Namespace, load: tuple[float, float]) -> str:
    ratio, bare_ratio, added = r["ratio_plain"], r["ratio_bare"], r["added_cpu_us"]

    def spread(name: str) -> str:
        return f"{r[name]:.2f} (rounds {r[name + '_low']:.2f}–{r[name + '_high']:.2f})"

    p50 = r["drift_30d_p50_ms"]
    batch_ms = r["batch_window_read_ms"] + r["batch_reference_read_ms"] + r["batch_compute_ms"]
    met = {True: "met", False: "NOT met"}
    rows_ = [
        (
            "capture records with 10 features, no reference (the baseline)",
            f"{r['plain_per_s']:,.0f}/s",
            "",
        ),
        (
            "the same records, sketched against a 10-feature reference",
            f"{r['sketched_per_s']:,.0f}/s",
            "",
        ),
        (
            "sketched ÷ baseline, records/s (median of the rounds)",
            spread("ratio_plain"),
            f"≥ 0.8: {met[ratio >= 0.8]}",
        ),
        (
            "service CPU per record: baseline / sketched (all threads)",
            f"{r['plain_cpu_us']:.1f} / {r['sketched_cpu_us']:.1f} µs",
            "",
        ),
        (
            "what one core takes, sketched ÷ baseline (CPU per record, inverted)",
            spread("capacity_plain"),
            "",
        ),
        (
            "the same records without any features (nothing to store or sketch)",
            f"{r['bare_per_s']:,.0f}/s ({r['bare_cpu_us']:.1f} µs CPU)",
            "",
        ),
        (
            "sketched ÷ without features, records/s (median of the rounds)",
            spread("ratio_bare"),
            f"≥ 0.8: {met[bare_ratio >= 0.8]}",
        ),
        (
            "sketch cost in the service, 10 features: its CPU per record, sketched − baseline"
            " (median of the rounds)",
            f"{added:.1f} µs/record (rounds {r['added_cpu_us_low']:.1f}–"
            f"{r['added_cpu_us_high']:.1f})",
            f"≤ 5: {met[added <= 5]}",
        ),
        (
            "the same in process: `core.sketch` and its counter deltas, batches of 1,000",
            f"{r['sketch_us']:.2f} µs/record",
            "",
        ),
        (
            f"`GET drift?window=30d`, 20 features, {r['history_samples']:,.0f} records in"
            " 1-minute buckets (p50 / p95)",
            f"{r['drift_30d_p50_ms']:.1f} / {r['drift_30d_p95_ms']:.1f} ms",
            f"< 100 ms: {met[r['drift_30d_p95_ms'] < 100]}",
        ),
        (
            f"batch baseline: exact numpy/scipy statistics from the raw values of the same"
            f" {r['batch_rows']:,.0f} rows and of the reference (10,000 rows), already in memory"
            " (Wasserstein and KS; Jensen-Shannon and chi-square)",
            f"{r['batch_compute_ms']:,.0f} ms",
            "",
        ),
        (
            "batch baseline: reading those rows first (from the service's SQLite file, their"
            " features decoded) and the reference CSV",
            f"{r['batch_window_read_ms']:,.0f} + {r['batch_reference_read_ms']:,.0f} ms",
            "",
        ),
        (
            "batch ÷ drift read (p50): compute alone / with the reads",
            f"{r['batch_compute_ms'] / p50:,.0f}× / {batch_ms / p50:,.0f}×",
            "",
        ),
        (
            "`truthloop reference` of a 1,000,000-row, 10-column CSV"
            f" ({r['big_mb']:.0f} MB), command start to exit",
            f"{r['reference_s']:.1f} s (the service's CPU: {r['reference_service_cpu_s']:.1f} s)",
            f"< 10 s: {met[r['reference_s'] < 10]}",
        ),
    ]
    table_ = "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows_)
    intro = (
        f"Run {time.strftime('%Y-%m-%d')} on {os.cpu_count()} × {cpu_name()}, Python"
        f" {platform.python_version()}, SQLite {sqlite3.sqlite_version}; best of {args.rounds}"
        " rounds (a ratio or a difference: the median of the rounds', both of its figures from"
        " one round; CPU per record: the median); load average"
        f" {load[0]:.2f} before, {load[1]:.2f} after (the machine was shared with other work)."
        " `truthloop feedback` runs as a subprocess on a fresh SQLite store per round and is"
        " spoken to over HTTP, as the sidecar does: capture records in NDJSON batches of"
        f" {BATCH:,} from {args.concurrency} connections, {args.records:,} per monitor and round,"
        f" sent in {SLICES} slices, each slice to the three monitors in turn (the sketched one"
        " and the baseline swapping places every slice), so whatever else the machine does"
        " falls on every side of a ratio alike; client and service share the machine's cores."
        f" The 30-day window holds {args.per_minute} records a minute for 30 days, sent through"
        " the API, read once the tick has folded them; the batch baseline reads the same"
        " window's rows back from the service's own database file and recomputes each"
        " statistic exactly from the raw values, as a tool that re-scans raw data per window"
        " does."
    )
    storing, sketching = r["storing_cpu_us"], r["added_cpu_us"]
    ingest = (
        "The ingest goal read two ways: against the same records sent to a monitor without a"
        " reference (what turning drift on costs: the sketch), and against records that carry"
        " no features at all (what capturing features and sketching them cost together). Per"
        f" record the service spent {r['bare_cpu_us']:.1f} µs of CPU on a record without"
        f" features, {r['plain_cpu_us']:.1f} µs on one with its 10 features stored (as JSON,"
        " with the record, as it does whenever `capture.features` is set, reference or not)"
        f" and {r['sketched_cpu_us']:.1f} µs on one also sketched (medians of the rounds); in"
        f" each round's pair, storing the features added {storing:.1f} µs (median), which drift"
        f" does not add, and the sketch {sketching:.1f} µs."
    )
    read = (
        "The drift read sums a few hundred aggregate rows (day, hour and minute buckets, as the"
        " metrics read does) and computes every statistic on 20-odd cells per feature, so its"
        " cost does not grow with the records in the window; the batch baseline's grows"
        " linearly with them and with the reference."
    )
    paragraphs = [textwrap.fill(text, 100) for text in (intro,)]
    after = [textwrap.fill(text, 100) for text in (ingest, read)]
    return (
        "\n\n".join(
            [
                "## Drift: sketching, the drift read, the reference (`bench/drift.py`)",
                *paragraphs,
                f"| measure | result | goal |\n|---|---|---|\n{table_}",
                *after,
            ]
        )
        + "\n"
    )


async def run_all(args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="truthloop-bench-drift-") as directory:
        return await measure_all(args, Path(directory))


async def measure_all(args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    """Every measurement, its files (references, stores) in `workdir`."""
    reference10 = workdir / "reference10.csv"
    reference20 = workdir / "reference20.csv"
    big = workdir / "big.csv"
    reference_csv(reference10, 10_000, 10)
    reference_csv(reference20, 10_000, 20)
    reference_csv(big, 1_000_000, 10, seed=9)
    rounds: list[dict[str, float]] = []
    for i in range(args.rounds):
        r = await ingest_round(args, workdir, reference10, flip=i % 2 == 1)
        r.update(await reference_round(workdir, big))
        print(f"round {i + 1}: {r}", file=sys.stderr)
        rounds.append(r)
    results = best(rounds, RATIOS, DIFFERENCES)
    results["sketch_us"] = sketch_cost(args, reference10)
    history = [await history_round(args, workdir, reference20) for _ in range(args.history_rounds)]
    results.update(best(history, RATIOS, DIFFERENCES))
    results["big_mb"] = big.stat().st_size / 1e6
    return results


def main() -> None:
    parser = service_arguments(__doc__)
    parser.add_argument("--history-rounds", type=int, default=1)
    report(parser.parse_args(), run_all, markdown, "drift")


if __name__ == "__main__":
    main()
