# ruff: noqa: E501 (the table's rows and heading are Markdown text, one line each)
"""Cost of estimated performance (CBPE): ingest with estimation, the estimated 30-day read, and
the same estimator as a batch over raw rows.

Run: `python bench/estimate.py [--records 100000] [--rounds 3] [--write]`

In one run, on one machine, with the command users run (`truthloop feedback` on SQLite as a
subprocess, spoken to over HTTP):
1. ingest: the same scored capture records, each with 10 features, POSTed in NDJSON batches of
   1,000 from 4 connections to two monitors of one service, both with a 10-feature reference:
   one whose reference has actuals (so a calibration: each record also adds its score histogram
   cell, `~<ref>:@cbpe:<class>:<bin>`) and one whose reference has none (sketched for drift, no
   estimation: the baseline); records/s and the service's CPU per record. Each round sends its
   records in `SLICES` slices, each slice to both monitors in turn (swapping places every slice),
   so a disturbance hits both alike;
2. `GET .../metrics?window=30d` on a monitor with a calibrated reference whose 30 days of
   1-minute buckets were filled through the API (`--per-minute` scored records a minute), once
   the tick has folded them: p50 / p95 of 30 reads, which estimate every binary metric with its
   band (and compute the realized metrics, none here: no labels) — against the same read of the
   same records on a monitor without a calibration (the read without estimation);
3. the batch baseline, in process: the same estimator (calibrated probability of each row's
   score, expected confusion matrix, accuracy/precision/recall/F1/specificity and the expected
   ROC AUC with numpy over raw rows) over `--batch-rows` raw rows in `--windows` windows, as a
   tool that re-scans raw rows per window does (NannyML's chunks), against `estimate.binary_rows`
   over the same windows' score histograms (what the service evaluates at read time), both
   starting from data in memory; and the two agree (accuracy within 0.001).

Each figure is the best of `--rounds`; each ratio the median of the rounds' ratios, both figures
of a ratio measured in one round. With `--write` the table replaces the `<!-- bench:estimate -->`
section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import statistics
import tempfile
import time
import timeit
from pathlib import Path

import aiohttp
import drift as drift_bench
import numpy as np
from feedback_ingest import (
    SLICES,
    best_of_rounds,
    cpu_name,
    folded_sqlite,
    month_records,
    pct,
    post_records,
    report,
    service_arguments,
    sliced,
    start_service,
    timed_gets,
)

from truthloop.core import calibration, estimate


def reference_csv(path: Path, n: int, width: int, *, actual: bool, seed: int = 1) -> None:
    """`n` reference rows: `width` features, a score, its prediction and (with `actual`) an
    outcome drawn with the score's probability (a calibrated model)."""
    rng = np.random.default_rng(seed)
    cols = drift_bench.columns(rng, n, width)
    score = rng.uniform(0, 1, n).round(4)
    cols["prediction"] = (score >= 0.5).astype(int)
    cols["score"] = score
    if actual:
        cols["actual"] = (rng.uniform(0, 1, n) < score).astype(int)
    names = list(cols)
    with path.open("w") as f:
        f.write(",".join(names) + "\n")
        block = [np.asarray(cols[name]).astype(str) for name in names]
        f.write("\n".join(",".join(row) for row in zip(*block, strict=True)) + "\n")


async def put(session: aiohttp.ClientSession, base: str, name: str) -> None:
    body = drift_bench.monitor(name)
    body["spec"]["capture"]["score"] = {"pointer": "/score"}
    async with session.put(f"{base}/v1/monitors/bench/{name}", json=body) as r:
        if r.status not in (200, 201):
            raise SystemExit(f"PUT {name}: {r.status} {await r.text()}")


# -- 1. ingest, with and without estimation -----------------------------------------------------


async def ingest_round(
    args: argparse.Namespace, workdir: Path, refs: dict[str, Path], flip: bool
) -> dict[str, float]:
    rng = np.random.default_rng(2)
    features = drift_bench.rows(drift_bench.columns(rng, args.records, 10))
    now = time.time()
    bodies = drift_bench.batches(features, ("estimated", "sketched"), now)
    store = workdir / f"ingest-{time.monotonic_ns()}.db"
    proc, base = await start_service(f"sqlite://{store}", workdir)
    results: dict[str, float] = {}
    try:
        connector = aiohttp.TCPConnector(limit=args.concurrency * 2)
        async with aiohttp.ClientSession(connector=connector) as session:
            for name in bodies:
                await put(session, base, name)
                await drift_bench.upload(session, base, name, refs[name])
            orders = (["sketched", "estimated"], ["estimated", "sketched"])
            results = await sliced(session, base, proc.pid, bodies, orders, flip, args)
            async with session.get(f"{base}/v1/monitors/bench/estimated/metrics") as r:
                answer = await r.json()
            if answer["estimated"].get("accuracy", {}).get("value") is None:
                raise SystemExit(f"nothing estimated: {str(answer)[:500]}")
    finally:
        proc.kill()
        await proc.wait()
    return results


# -- 2. the estimated 30-day read ---------------------------------------------------------------


async def fill(session: aiohttp.ClientSession, base: str, name: str, per_minute: int) -> None:
    """30 days of 1-minute buckets of scored records (2 features) through the API."""
    items = month_records(
        f"bench/{name}",
        per_minute,
        time.time(),
        lambda m, k: {
            "prediction": int((m * 7 + k * 13) % 100 >= 50),  # the score's class at 0.5
            "features": {"f00": float(m % 97), "f01": float(k)},
        },
    )
    await post_records(session, base, items)


async def history_round(
    args: argparse.Namespace, workdir: Path, refs: dict[str, Path]
) -> dict[str, float]:
    store = workdir / f"history-{time.monotonic_ns()}.db"
    proc, base = await start_service(f"sqlite://{store}", workdir)
    results: dict[str, float] = {}
    try:
        async with aiohttp.ClientSession() as session:
            for name in ("estimated", "sketched"):
                await put(session, base, name)
                await drift_bench.upload(session, base, name, refs[name + "2"])
                await fill(session, base, name, args.per_minute)
            await folded_sqlite(store, within=300)
            for name in ("estimated", "sketched"):
                url = f"{base}/v1/monitors/bench/{name}/metrics?window=30d"
                async with session.get(url) as r:
                    answer = await r.json()
                if name == "estimated" and answer["estimated"]["accuracy"]["value"] is None:
                    raise SystemExit(f"nothing estimated: {str(answer)[:500]}")
                results["history_samples"] = answer["samples"]
                times = await timed_gets(session, url, 30)
                results[f"{name}_30d_p50_ms"] = statistics.median(times) * 1000
                results[f"{name}_30d_p95_ms"] = pct(times, 0.95) * 1000
            with sqlite3.connect(store) as db:
                results["history_rows"] = db.execute(
                    "SELECT (SELECT count(*) FROM agg_minute) + (SELECT count(*) FROM agg_hour)"
                    " + (SELECT count(*) FROM agg_day)"
                ).fetchone()[0]
    finally:
        proc.kill()
        await proc.wait()
    return results


# -- 3. the batch estimator over raw rows -------------------------------------------------------


def batch_round(args: argparse.Namespace) -> dict[str, float]:
    """The same estimator over raw rows per window (numpy) and over the windows' histograms."""
    rng = np.random.default_rng(5)
    ref_scores = rng.uniform(0, 1, 100_000)
    ref_actual = (rng.uniform(0, 1, 100_000) < ref_scores).astype(np.int64)
    curve = calibration.fit_binary(
        ref_scores, (ref_scores >= 0.5).astype(np.int64), ref_actual
    ).curve
    p_bin = calibration.table(curve)
    n = args.batch_rows
    scores = rng.beta(2.0, 2.0, n)
    predicted = (scores >= 0.5).astype(np.int64)
    window = rng.integers(0, args.windows, n)
    order = np.argsort(window, kind="stable")
    scores, predicted, window = scores[order], predicted[order], window[order]
    bounds = np.searchsorted(window, np.arange(args.windows + 1))

    def raw() -> list[tuple[float, float]]:
        """Per window, from its raw rows: each row's calibrated probability (its score's bin,
        as the reference's isotonic fit), the expected confusion matrix, the metrics and the
        expected ROC AUC (rows sorted by score, expected positives and negatives)."""
        out = []
        for w in range(args.windows):
            s = scores[bounds[w] : bounds[w + 1]]
            c = predicted[bounds[w] : bounds[w + 1]]
            p = p_bin[calibration.bins(s)]
            tp, fp = np.sum(p[c == 1]), np.sum(1 - p[c == 1])
            fn, tn = np.sum(p[c == 0]), np.sum(1 - p[c == 0])
            accuracy = (tp + tn) / len(s)
            _ = tp / (tp + fp), tp / (tp + fn), 2 * tp / (2 * tp + fp + fn), tn / (tn + fp)
            ranked = np.argsort(s, kind="stable")
            ps, bins = p[ranked], calibration.bins(s[ranked])
            neg = 1 - ps
            # ties: rows of one bin share a calibrated value; count pairs within a bin as half
            first = np.searchsorted(bins, bins, side="left")
            below = np.concatenate(([0.0], np.cumsum(neg)))[first]
            same = np.bincount(bins, weights=neg, minlength=calibration.BINS)[bins]
            auc = np.sum(ps * (below + 0.5 * same)) / (ps.sum() * neg.sum())
            out.append((float(accuracy), float(auc)))
        return out

    def histograms() -> list[float]:
        """The service's way: per window its score histogram by predicted class (what ingest
        adds up), then `estimate.binary_rows` over every window at once."""
        code = calibration.bins(scores) + calibration.BINS * predicted
        counts = np.zeros((args.windows, 2 * calibration.BINS))
        np.add.at(counts, (window, code), 1.0)
        rows = estimate.binary_rows(
            counts[:, calibration.BINS :], counts[:, : calibration.BINS], curve
        )
        return [float(r["accuracy"].value or 0.0) for r in rows]

    def evaluate_only() -> list[tuple[float, float]]:
        rows = estimate.binary_rows(hist1, hist0, curve)
        return [(float(r["accuracy"].value or 0), float(r["roc_auc"].value or 0)) for r in rows]

    code = calibration.bins(scores) + calibration.BINS * predicted
    counts = np.zeros((args.windows, 2 * calibration.BINS))
    np.add.at(counts, (window, code), 1.0)
    hist1, hist0 = counts[:, calibration.BINS :], counts[:, : calibration.BINS]
    a, b = raw(), evaluate_only()
    worst = float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
    if worst > 0.001:
        raise SystemExit(f"the two estimators disagree by {worst}")
    return {
        "batch_raw_ms": min(timeit.repeat(raw, number=1, repeat=args.rounds)) * 1000,
        "batch_hist_build_ms": min(timeit.repeat(histograms, number=1, repeat=args.rounds)) * 1000,
        "batch_hist_eval_ms": min(timeit.repeat(evaluate_only, number=1, repeat=args.rounds))
        * 1000,
        "batch_one_window_ms": min(
            timeit.repeat(
                lambda: estimate.binary_rows(hist1[:1], hist0[:1], curve), number=20, repeat=3
            )
        )
        / 20
        * 1000,
        "batch_agreement": worst,
    }


# -- the table ----------------------------------------------------------------------------------


RATIOS = {"ratio": ("estimated_per_s", "sketched_per_s")}
"""Ingest with estimation against the same records sketched without a calibration."""
DIFFERENCES = {"added_cpu_us": ("estimated_cpu_us", "sketched_cpu_us")}
"""The service's CPU per record that estimation adds."""


def markdown(r: dict[str, float], args: argparse.Namespace, load: tuple[float, float]) -> str:
    def met(ok: bool) -> str:
        return "met" if ok else "NOT met"

    rows = [
        ("scored capture records, 10 features, reference without actuals (sketched, nothing estimated): the baseline", f"{r['sketched_per_s']:,.0f}/s", ""),
        ("the same records against a reference with actuals (sketched and estimated: score histogram per minute)", f"{r['estimated_per_s']:,.0f}/s", ""),
        ("estimated ÷ baseline, records/s (median of the rounds)", f"{r['ratio']:.2f} (rounds {r['ratio_low']:.2f}–{r['ratio_high']:.2f})", f"≥ 0.8: {met(r['ratio'] >= 0.8)}"),
        ("service CPU per record: baseline / estimated (all threads; the difference, median of the rounds)", f"{r['sketched_cpu_us']:.1f} / {r['estimated_cpu_us']:.1f} µs ({r['added_cpu_us']:+.1f})", ""),
        (f"`GET metrics?window=30d` with estimates, {r['history_samples']:,.0f} records in 1-minute buckets, folded ({r['history_rows']:,.0f} aggregate rows in the store, both monitors' feature sketches included) (p50 / p95)", f"{r['estimated_30d_p50_ms']:.1f} / {r['estimated_30d_p95_ms']:.1f} ms", f"< 50 ms: {met(r['estimated_30d_p50_ms'] < 50)}"),
        ("the same read of the same records, no calibration (nothing estimated) (p50 / p95)", f"{r['sketched_30d_p50_ms']:.1f} / {r['sketched_30d_p95_ms']:.1f} ms", ""),
        (f"batch: the estimator over {args.batch_rows:,} raw rows in {args.windows} windows (numpy per window: calibrate each row, expected confusion matrix, metrics, expected ROC AUC)", f"{r['batch_raw_ms']:,.0f} ms", ""),
        (f"aggregates: `estimate.binary_rows` over the same {args.windows} windows' score histograms (what a read evaluates)", f"{r['batch_hist_eval_ms']:,.1f} ms ({r['batch_one_window_ms']:.2f} ms for one window)", ""),
        ("aggregates, histograms built from the raw rows first (ingest's work, done once per record in the service)", f"{r['batch_hist_build_ms']:,.0f} ms", ""),
        ("batch ÷ aggregates (evaluation alone)", f"{r['batch_raw_ms'] / r['batch_hist_eval_ms']:,.0f}×", ""),
        ("largest difference of the two estimators' accuracy and ROC AUC over the windows", f"{r['batch_agreement']:.1e}", "≤ 0.001"),
    ]  # fmt: skip
    table = "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)
    return f"""## Estimated performance (CBPE): ingest, the 30-day read, batch (`bench/estimate.py`)

Run {time.strftime("%Y-%m-%d")} on {os.cpu_count()} × {cpu_name()}, Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}; best of {args.rounds} rounds (a ratio: the median of the rounds', both figures from one round; CPU per record: the median); load average {load[0]:.2f} before, {load[1]:.2f} after.
`truthloop feedback` runs as a subprocess on a fresh SQLite store per round, spoken to over HTTP:
{args.records:,} scored capture records with 10 features per monitor and round, NDJSON batches of
1,000 from {args.concurrency} connections, in {SLICES} slices sent to both monitors in turn. Both
monitors have a 10,000-row reference; only the estimated one's has actuals (so a calibration).
The 30-day window holds {args.per_minute} records a minute for 30 days, sent through the API, read
once the tick has folded them. The batch lines run in process on data in memory.

| measure | result | goal |
|---|---|---|
{table}

The estimated read sums the window's aggregate rows (day, hour and minute buckets, as every
metrics read does) and evaluates the estimate from two 1,000-bin score histograms, so its cost
does not grow with the records in the window; the batch estimator's grows with the rows. The
estimate agrees with the row-by-row one because the calibration is a step function of the
score's bin (docs/estimation.md).
"""


async def run_all(args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="truthloop-bench-estimate-") as directory:
        workdir = Path(directory)
        refs = {
            "estimated": workdir / "with-actuals.csv",
            "sketched": workdir / "without-actuals.csv",
            "estimated2": workdir / "with-actuals-2.csv",
            "sketched2": workdir / "without-actuals-2.csv",
        }
        reference_csv(refs["estimated"], 10_000, 10, actual=True)
        reference_csv(refs["sketched"], 10_000, 10, actual=False)
        reference_csv(refs["estimated2"], 10_000, 2, actual=True)
        reference_csv(refs["sketched2"], 10_000, 2, actual=False)
        results = await best_of_rounds(
            args, lambda flip: ingest_round(args, workdir, refs, flip), RATIOS, DIFFERENCES
        )
        results.update(await history_round(args, workdir, refs))
        results.update(batch_round(args))
        return results


def main() -> None:
    parser = service_arguments(__doc__)
    parser.add_argument("--batch-rows", type=int, default=1_000_000)
    parser.add_argument("--windows", type=int, default=200)
    report(parser.parse_args(), run_all, markdown, "estimate")


if __name__ == "__main__":
    main()
