"""The report on an alert that fired (`core.report`): its "why" names the cause planted in its
inputs first (and "no clear cause" when none was), every list is bounded so that the page stays
under 1 MB whatever the monitor holds, and the page is self-contained (loads nothing)."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import msgspec
import pytest

from truthloop.core import evaluation, report, segment_metrics, sidecar_stats
from truthloop.core.drift import (
    ColumnDrift,
    DatasetDrift,
    DriftReport,
    Histogram,
    Outliers,
    ReferenceInfo,
)
from truthloop.core.segment_metrics import Ranking

T0 = 1_767_225_600.0
BY = Ranking("accuracy", True)


def binary(right: int, wrong: int) -> dict[str, float]:
    """Binary counters of `right` and `wrong` labeled predictions."""
    return {"@predictions": right + wrong, "tp": right / 2, "tn": right / 2, "fp": wrong}


def column(
    name: str,
    statistic: float = 0.01,
    *,
    missing: float = 0.0,
    wrong_type: float = 0.0,
    categories: int = 0,
) -> ColumnDrift:
    if categories:
        cells = categories + 1
        histogram = Histogram(
            (1 / cells,) * cells,
            (1 / cells,) * cells,
            categories=(*(f"category-{i}-" * 30 for i in range(categories)), "other"),
        )
    else:
        edges = tuple(float(i) for i in range(21))
        histogram = Histogram((1 / 22,) * 22, (1 / 22,) * 22, edges=edges)
    return ColumnDrift(
        name=name,
        kind="categorical" if categories else "numeric",
        method="jensenshannon" if categories else "wasserstein",
        statistic=statistic,
        threshold=0.1,
        drifted=statistic >= 0.1,
        p_value=None,
        samples=1000,
        missing_ratio=missing,
        wrong_type_ratio=wrong_type,
        out_of_range_ratio=None if categories else 0.0,
        new_category_ratio=0.0 if categories else None,
        histogram=histogram,
        distance=statistic,
        distance_method="jensenshannon" if categories else "wasserstein",
    )


def drift_report(columns: list[ColumnDrift], outliers: float = 0.0) -> DriftReport:
    drifted = tuple(c.name for c in columns if c.drifted)
    share = len(drifted) / len(columns)
    return DriftReport(
        status="ok",
        reference=ReferenceInfo(1, "", T0 - 86400, 10_000, "upload"),
        samples=1000,
        features=tuple(columns),
        dataset=DatasetDrift(len(columns), len(drifted), share, 0.5, share >= 0.5, drifted),
        outliers=Outliers(int(outliers * 1000), outliers),
    )


def inputs(**changes: Any) -> report.Inputs:
    """A healthy-looking monitor: 1,000 labeled predictions at 0.9 accuracy, two versions and a
    segment alike, 10 features that did not drift, a quiet sidecar; `changes` plant a cause."""
    counters = binary(900, 100)
    model = evaluation.evaluate("binary", counters)
    values = {v: evaluation.evaluate("binary", binary(180, 20)) for v in ("DE", "FR", "IT")}
    base = report.Inputs(
        monitor="ml/churn",
        alert="accuracy-low",
        reason="accuracy-low: accuracy 0.9 < 0.95",
        at=T0,
        task="binary",
        seconds=3600.0,
        start=T0 - 3600,
        end=T0 + 60,
        by=BY,
        min_samples=50,
        model=model,
        counters=counters,
        versions={"v1": evaluation.evaluate("binary", binary(450, 50)), "v2": model},
        segments={"country": (BY, segment_metrics.rank(values, BY, 50))},
        drift=drift_report([column(f"f{i}") for i in range(10)]),
        reference_missing={f"f{i}": 0.01 for i in range(10)},
        wrong=[report.Wrong(f"p{i}", T0 - i, "v1", {"f0": i}, 1, False, 0.8) for i in range(10)],
        wrong_seen=100,
        sidecar=(sidecar(10_000, 10, 0.05), sidecar(10_000, 10, 0.05)),
    )
    return dataclasses.replace(base, **changes)


def sidecar(requests: int, errors: int, typical: float) -> dict[str, float]:
    """A sidecar hour: `requests` (the model's), `errors` timeouts, latencies around
    `typical` seconds (one of the sidecar's bounds): a tenth within the bound below it, 60%
    within it, 99.5% within the second bound above it."""
    counts = {"requests:model": float(requests), "errors:timeout": float(errors)}
    at = sidecar_stats.LATENCY_BOUNDS.index(typical)
    for i, share in ((at - 1, 0.1), (at, 0.6), (at + 2, 0.995)):
        counts[sidecar_stats.bucket_key("latency", sidecar_stats.LATENCY_BOUNDS[i])] = (
            requests * share
        )
    counts["latency_le:+Inf"] = float(requests)
    return counts


def first(built: report.Report) -> report.Cause:
    likely = [c for c in built.why if c.likely]
    assert likely, built.why
    return likely[0]


def test_a_healthy_window_has_no_clear_cause() -> None:
    built = report.build(inputs())
    assert not any(c.likely for c in built.why)
    assert built.summary == "accuracy-low fired: no clear cause: nothing stands out"
    assert "No clear cause" in report.render(built)


def test_drifted_features_come_first_with_their_numbers() -> None:
    columns = [column(f"f{i}") for i in range(8)] + [column("tenure", 0.45), column("plan", 0.2)]
    built = report.build(inputs(drift=drift_report(columns)))
    cause = first(built)
    assert cause.kind == "drift"
    assert cause.evidence["feature"] == "tenure"
    assert cause.evidence["statistic"] == 0.45
    assert cause.evidence["drifted"] == 2
    assert cause.score == pytest.approx(4.5)
    assert [r.feature for r in built.drift[:2]] == ["tenure", "plan"]
    assert built.summary.startswith("accuracy-low fired: 2 of 10 features drifted")


def test_the_drift_table_says_the_statistic_the_p_value_the_threshold_and_the_distance() -> None:
    """A small window's KS test drifts on its p-value against 0.05, while a feature_drift alert
    reads the distance against its own threshold: the table shows each under its own name, as
    GET .../drift answers them, never a p-value under "statistic"."""
    tested = msgspec.structs.replace(
        column("tenure"),
        method="ks",
        statistic=0.21,
        p_value=0.00291,
        threshold=0.05,
        drifted=True,
        samples=400,
        distance=0.3551,
    )
    columns = [column(f"f{i}") for i in range(8)] + [tested, column("plan", 0.2)]
    built = report.build(inputs(drift=drift_report(columns)))
    row = built.drift[0]
    assert (row.feature, row.statistic, row.p_value) == ("tenure", 0.21, 0.00291)
    assert row.threshold == 0.05
    assert (row.distance, row.distance_method, row.drifted) == (0.3551, "wasserstein", True)
    assert built.drift[1].p_value is None
    cause = first(built)
    assert cause.evidence["statistic"] == 0.21
    assert cause.evidence["p_value"] == 0.00291
    assert cause.evidence["distance"] == 0.3551
    assert cause.score == pytest.approx(0.05 / 0.00291, rel=1e-3)
    assert "most: tenure (ks p-value 0.00291 < 0.05)" in cause.sentence
    page = report.render(built)
    head = re.search(r'<table class="drift"[^>]*><thead><tr>(.*?)</tr>', page)
    assert head is not None
    names = re.findall(r"<th>(.*?)</th>", head.group(1))
    assert names[:7] == [
        "feature", "method", "statistic", "p-value", "threshold", "drifted", "distance"
    ]  # fmt: skip
    cells = [re.findall(r"<td>(.*?)</td>", r) for r in re.findall(r"<tr>(<td>.*?)</tr>", page)]
    tenure = next(c for c in cells if c[0] == "tenure")
    assert tenure[1:6] == ["ks", "0.21", "0.00291", "p &lt; 0.05", '<b class="bad">yes</b>']
    assert tenure[6].startswith("0.355 ")
    plan = next(c for c in cells if c[0] == "plan")
    assert plan[1:6] == ["wasserstein", "0.2", "—", "≥ 0.1", '<b class="bad">yes</b>']


def test_an_outlier_share_is_a_cause() -> None:
    columns = [column(f"f{i}") for i in range(10)]
    cause = first(report.build(inputs(drift=drift_report(columns, outliers=0.3))))
    assert cause.kind == "outliers"
    assert cause.evidence["ratio"] == 0.3
    assert cause.score == pytest.approx(6.0)


def test_missing_values_beyond_the_reference_are_a_data_quality_cause() -> None:
    columns = [column(f"f{i}") for i in range(9)] + [column("f9", missing=0.41)]
    cause = first(report.build(inputs(drift=drift_report(columns))))
    assert cause.kind == "data_quality"
    assert cause.evidence == {
        "feature": "f9",
        "problem": "missing",
        "share": 0.41,
        "reference": 0.01,
    }
    columns = [column(f"f{i}") for i in range(9)] + [column("f9", wrong_type=0.2)]
    cause = first(report.build(inputs(drift=drift_report(columns))))
    assert (cause.kind, cause.evidence["problem"]) == ("data_quality", "wrong_type")


def test_one_bad_segment_value_is_a_cause() -> None:
    values = {
        "DE": evaluation.evaluate("binary", binary(100, 100)),
        "FR": evaluation.evaluate("binary", binary(380, 20)),
        "IT": evaluation.evaluate("binary", binary(380, 20)),
    }
    segmented = {"country": (BY, segment_metrics.rank(values, BY, 50))}
    built = report.build(inputs(segments=segmented))
    cause = first(built)
    assert cause.kind == "segment"
    assert (cause.evidence["segment"], cause.evidence["value"]) == ("country", "DE")
    assert cause.evidence["segment_value"] == 0.5
    assert built.segments[0].value == "DE"


def test_one_bad_version_is_a_cause() -> None:
    versions = {
        "v1": evaluation.evaluate("binary", binary(760, 40)),
        "v2": evaluation.evaluate("binary", binary(140, 60)),
    }
    cause = first(report.build(inputs(versions=versions)))
    assert cause.kind == "version"
    assert cause.evidence["version"] == "v2"
    assert cause.evidence["version_value"] == 0.7


def test_the_sidecars_errors_and_latency_against_the_hour_before() -> None:
    errors = (sidecar(10_000, 2_000, 0.05), sidecar(10_000, 10, 0.05))
    built = report.build(inputs(sidecar=errors))
    cause = first(built)
    assert cause.kind == "sidecar"
    assert cause.evidence["error_rate"] == 0.2
    assert cause.evidence["top_error"] == "timeout"
    assert built.sidecar is not None
    # the median in the (0.025, 0.05] bucket, which holds the 10% to 60% of requests
    assert built.sidecar.now.p50 == pytest.approx(0.025 + 0.025 * (0.5 - 0.1) / (0.6 - 0.1))
    slow = (sidecar(10_000, 10, 0.5), sidecar(10_000, 10, 0.05))
    cause = first(report.build(inputs(sidecar=slow)))
    assert cause.kind == "sidecar"
    assert cause.evidence["p99"] == pytest.approx(10 * cause.evidence["p99_before"])  # type: ignore[operator]


def test_the_sidecars_connections_passed_through_uncaptured_are_shown() -> None:
    grpc = {**sidecar(10_000, 10, 0.05), "passthrough:h2c": 12.0}
    built = report.build(inputs(sidecar=(grpc, sidecar(10_000, 10, 0.05))))
    assert built.sidecar is not None
    assert (built.sidecar.now.passthrough, built.sidecar.before.passthrough) == ({"h2c": 12}, {})
    assert "<td>h2c 12</td>" in report.render(built)


def test_without_sidecar_stats_the_page_says_so() -> None:
    built = report.build(inputs(sidecar=None))
    assert built.sidecar is None
    assert "No sidecar stats received." in report.render(built)


def test_causes_are_ranked_strongest_first() -> None:
    columns = [column(f"f{i}") for i in range(9)] + [column("tenure", 0.15)]
    errors = (sidecar(10_000, 3_000, 0.05), sidecar(10_000, 10, 0.05))
    built = report.build(inputs(drift=drift_report(columns, outliers=0.1), sidecar=errors))
    kinds = [c.kind for c in built.why if c.likely]
    assert kinds == ["sidecar", "outliers", "drift"]
    scores = [c.score for c in built.why]
    assert scores == sorted(scores, reverse=True)


def test_the_confusion_matrix_of_each_task() -> None:
    assert report.confusion("binary", {"tp": 3, "fn": 1, "fp": 2, "tn": 4}) == report.Confusion(
        ("1", "0"), ((3.0, 1.0), (2.0, 4.0))
    )
    assert report.confusion("regression", {"n": 3, "se": 1.0}) is None
    cells = {f"cm:c{a}|c{p}": float(a == p) * 10 + 1 for a in range(30) for p in range(30)}
    matrix = report.confusion("multiclass", cells)
    assert matrix is not None
    assert len(matrix.labels) == report.MAX_CLASSES + 1
    assert matrix.labels[-1] == "other"
    assert sum(map(sum, matrix.cells)) == sum(cells.values())


def huge() -> report.Inputs:
    """A monitor at every bound and far beyond: 1,000 features with long names and 50
    categories each, 300 wrong predictions with big inputs, 20 segments of 500 values, 200
    versions, long texts everywhere."""
    long = "x" * 5000
    columns = [column(f"{long}{i}", 0.5, categories=50) for i in range(1000)]
    same = evaluation.evaluate("binary", binary(90, 10))
    values = {f"{long}{i}": same for i in range(500)}
    ranked = segment_metrics.rank(values, BY, 50)
    return inputs(
        monitor="ns/" + "m" * 253,
        drift=drift_report(columns, outliers=0.5),
        reference_missing={c.name: 0.0 for c in columns},
        wrong=[
            report.Wrong(long + str(i), T0, long, {"text": long * 10}, long, long, 0.5)
            for i in range(300)
        ],
        segments={f"{long}{s}": (BY, ranked) for s in range(20)},
        versions={f"{long}{i}": same for i in range(200)},
    )


def test_every_list_is_bounded_and_the_page_stays_under_a_megabyte() -> None:
    built = report.build(huge())
    page = report.render(built)
    assert len(page.encode()) <= report.MAX_HTML
    assert len(msgspec.json.encode(built)) <= report.MAX_HTML
    assert len(built.drift) == report.MAX_DRIFT_ROWS
    assert sum(r.histogram is not None for r in built.drift) == report.MAX_HISTOGRAMS
    assert len(built.wrong) == report.MAX_WRONG
    assert all(len(w.inputs) <= report.MAX_INPUTS for w in built.wrong)
    assert len(built.segments) == report.MAX_SEGMENTS * report.MAX_SEGMENT_VALUES
    assert len(built.versions) == report.MAX_VERSIONS
    assert built.truncated == {
        "drift": 900,
        "segments": 15,
        "segment_values": report.MAX_SEGMENTS * 490,
        "versions": 180,
    }


def test_the_page_loads_nothing_and_escapes_what_it_shows() -> None:
    hostile = "<script>alert(1)</script><img src=x>"
    wrong = [report.Wrong(hostile, T0, hostile, {hostile: hostile}, hostile, hostile, None)]
    columns = [column(hostile, 0.3, categories=3), *(column(f"f{i}") for i in range(9))]
    page = report.render(
        report.build(inputs(alert=hostile, wrong=wrong, drift=drift_report(columns)))
    )
    assert hostile not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("<script>") == 1  # the page's own
    assert not re.search(r"<[^>]*\b(src|href|action)\s*=", page)
    assert "http:" not in page.replace('http-equiv="Content-Security-Policy"', "")
    assert "url(" not in page
    assert "@import" not in page
    assert "<svg" in page
