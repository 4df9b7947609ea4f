"""core/drift.py: a window's sketch against a reference profile, as the drift API reports it."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Mapping

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial import distance

from tests.support.drift_data import (
    REF,
    categorical_profile,
    numeric_profile,
    reference,
    sketch_categorical,
    sketch_numeric,
    spec,
    window,
)
from tests.support.monitors import churn_monitor
from truthloop.core import drift, profile, sketch, table
from truthloop.core.profile import PREDICTION, SCORE, CategoricalProfile, NumericProfile, Reference
from truthloop.core.records import PredictionRecord
from truthloop.core.spec import DriftOverride, Monitor

RNG_SEED = 18


def _rng() -> np.random.Generator:
    return np.random.default_rng(RNG_SEED)


def _colours(rng: np.random.Generator, n: int, weights: list[float]) -> list[str]:
    names = ["red", "green", "blue", "teal"][: len(weights)]
    return list(rng.choice(names, size=n, p=np.asarray(weights) / sum(weights)))


def _setup(n_ref: int = 20_000) -> tuple[Reference, np.random.Generator]:
    rng = _rng()
    age = numeric_profile("age", rng.normal(40, 10, n_ref))
    colour = categorical_profile("colour", _colours(rng, n_ref, [5, 3, 2]))
    score = numeric_profile(SCORE, rng.beta(2, 5, n_ref))
    prediction = categorical_profile(PREDICTION, list(rng.choice(["0", "1"], n_ref, p=[0.8, 0.2])))
    return reference(age, colour, prediction, score), rng


def _column(report: drift.DriftReport, name: str) -> drift.ColumnDrift:
    return next(c for c in (*report.features, *report.predictions) if c.name == name)


def _counters(
    ref: Reference, rng: np.random.Generator, n: int, shift: float = 0.0
) -> dict[str, float]:
    age, colour, prediction, score = ref.profile.columns
    assert isinstance(age, NumericProfile)
    assert isinstance(score, NumericProfile)
    assert isinstance(colour, CategoricalProfile)
    assert isinstance(prediction, CategoricalProfile)
    weights = [5, 3, 2] if shift == 0 else [2, 3, 5]
    return window(
        n,
        sketch_numeric(age, rng.normal(40 + shift, 10, n)),
        sketch_categorical(colour, _colours(rng, n, weights)),
        sketch_categorical(prediction, list(rng.choice(["0", "1"], n, p=[0.8, 0.2]))),
        sketch_numeric(score, rng.beta(2, 5 + shift, n)),
    )


def test_a_window_like_its_reference_has_not_drifted() -> None:
    ref, rng = _setup()
    report = drift.evaluate(ref, _counters(ref, rng, 5000), spec())
    assert report.status == "ok"
    assert report.samples == 5000
    assert [c.name for c in report.features] == ["age", "colour"]
    assert [c.name for c in report.predictions] == [PREDICTION, SCORE]
    age, colour = report.features
    assert (age.method, age.threshold, age.drifted) == ("wasserstein", 0.1, False)
    assert age.statistic is not None
    assert age.statistic < 0.05
    assert age.p_value is None
    assert (colour.method, colour.drifted) == ("jensenshannon", False)
    assert report.dataset == drift.DatasetDrift(2, 0, 0.0, 0.5, False, ())
    assert report.prediction_drift is not None
    assert (report.prediction_drift.column, report.prediction_drift.drifted) == (SCORE, False)


def test_a_shifted_window_drifts_feature_by_feature_and_as_a_dataset() -> None:
    ref, rng = _setup()
    report = drift.evaluate(ref, _counters(ref, rng, 5000, shift=3.0), spec())
    age, colour = report.features
    assert age.drifted
    assert age.statistic is not None
    assert 0.2 < age.statistic < 0.4
    assert colour.drifted
    assert colour.statistic is not None
    assert colour.statistic > 0.1
    assert report.dataset is not None
    assert (report.dataset.share, report.dataset.drifted) == (1.0, True)
    assert report.dataset.names == ("age", "colour")
    assert drift.drifted_features(report) == ("age", "colour")
    assert report.prediction_drift is not None
    assert report.prediction_drift.drifted


def test_fewer_than_a_thousand_values_are_tested_with_p_values() -> None:
    ref, rng = _setup()
    same = drift.evaluate(ref, _counters(ref, rng, 400), spec())
    age, colour = same.features
    assert (age.method, age.threshold, colour.method, colour.threshold) == (
        "ks",
        0.05,
        "chisquare",
        0.05,
    )
    assert age.p_value is not None
    assert age.p_value > 0.05
    assert not age.drifted
    assert colour.p_value is not None
    assert colour.p_value > 0.05
    assert not colour.drifted
    shifted = drift.evaluate(ref, _counters(ref, rng, 400, shift=3.0), spec())
    age, colour = shifted.features
    assert age.p_value is not None
    assert age.p_value < 0.05
    assert age.drifted
    assert colour.p_value is not None
    assert colour.p_value < 0.001
    assert colour.drifted
    assert age.statistic is not None
    assert 0 < age.statistic <= 1


def test_the_threshold_separates_drift_at_the_boundary() -> None:
    """A distance drifts at `>=` its threshold, a test at `p <` its bound."""
    ref, rng = _setup()
    counters = _counters(ref, rng, 5000, shift=1.0)
    stat = _column(drift.evaluate(ref, counters, spec()), "age").statistic
    assert stat is not None
    at = drift.evaluate(ref, counters, spec(DriftOverride("age", threshold=stat)))
    above = drift.evaluate(ref, counters, spec(DriftOverride("age", threshold=stat * 1.01)))
    assert _column(at, "age").drifted
    assert not _column(above, "age").drifted


def test_overrides_replace_the_method_and_or_the_threshold() -> None:
    ref, rng = _setup()
    counters = _counters(ref, rng, 5000, shift=1.0)
    report = drift.evaluate(
        ref,
        counters,
        spec(
            DriftOverride("age", method="psi"),
            DriftOverride("colour", method="chisquare", threshold=0.01),
            DriftOverride(SCORE, method="ks"),
        ),
    )
    age, colour, score = (_column(report, n) for n in ("age", "colour", SCORE))
    assert (age.method, age.threshold, age.p_value) == ("psi", 0.1, None)
    assert (colour.method, colour.threshold) == ("chisquare", 0.01)
    assert colour.p_value is not None
    assert colour.drifted == (colour.p_value < 0.01)
    assert (score.method, score.threshold) == ("ks", 0.05)
    assert score.p_value is not None
    small = drift.evaluate(ref, _counters(ref, rng, 300), spec(DriftOverride("age", threshold=0.5)))
    assert (_column(small, "age").method, _column(small, "age").threshold) == ("wasserstein", 0.5)
    ordered = drift.evaluate(ref, counters, spec(DriftOverride("colour", method="wasserstein")))
    assert (_column(ordered, "colour").method, _column(ordered, "colour").threshold) == (
        "jensenshannon",
        0.1,
    )


def test_the_dataset_drifts_when_the_share_reaches_the_threshold() -> None:
    ref, rng = _setup()
    counters = _counters(ref, rng, 5000)
    only_age = spec(DriftOverride("age", threshold=0.0), share=0.5)
    report = drift.evaluate(ref, counters, only_age)
    assert report.dataset is not None
    assert (report.dataset.count, report.dataset.share, report.dataset.drifted) == (1, 0.5, True)
    stricter = drift.evaluate(ref, counters, spec(DriftOverride("age", threshold=0.0), share=0.6))
    assert stricter.dataset is not None
    assert not stricter.dataset.drifted


def test_data_quality_ratios() -> None:
    rng = _rng()
    age = numeric_profile("age", rng.normal(40, 10, 5000))
    colour = categorical_profile("colour", ["red"] * 60 + ["green"] * 40)
    ref = reference(age, colour)
    values = np.concatenate([rng.normal(40, 10, 60), [-1e6] * 10, [1e6] * 10])  # 80 values
    counters = window(
        100,
        sketch_numeric(age, values),
        {sketch.key(REF, "age", sketch.MISSING): 15.0, sketch.key(REF, "age", sketch.WRONG): 5.0},
        sketch_categorical(colour, ["red"] * 50 + ["mauve"] * 25),
        {sketch.key(REF, "colour", sketch.MISSING): 25.0},
        outliers=20,
    )
    report = drift.evaluate(ref, counters, spec())
    a, c = report.features
    assert (a.samples, a.missing_ratio, a.wrong_type_ratio, a.out_of_range_ratio) == (
        80,
        0.15,
        0.05,
        0.25,
    )
    assert a.new_category_ratio is None
    assert (c.samples, c.missing_ratio, c.wrong_type_ratio, c.new_category_ratio) == (
        75,
        0.25,
        0.0,
        1 / 3,
    )
    assert c.out_of_range_ratio is None
    assert report.outliers == drift.Outliers(20, 0.2)
    assert a.histogram.reference[0] == 0
    assert a.histogram.current[0] == 10 / 80
    assert c.histogram.categories == ("red", "green", "other")
    assert c.histogram.current == (50 / 75, 0.0, 25 / 75)


def test_a_column_without_values_is_not_tested() -> None:
    rng = _rng()
    age = numeric_profile("age", rng.normal(40, 10, 5000))
    ref = reference(age)
    counters = window(50, {sketch.key(REF, "age", sketch.MISSING): 50.0})
    report = drift.evaluate(ref, counters, spec())
    (a,) = report.features
    assert (a.statistic, a.p_value, a.drifted, a.samples, a.missing_ratio) == (
        None,
        None,
        False,
        0,
        1.0,
    )
    assert a.histogram.current == (0.0,) * len(a.histogram.reference)
    assert report.dataset == drift.DatasetDrift(0, 0, None, 0.5, False, ())
    assert "drift_share" not in drift.alert_values(report)


def test_no_reference_and_no_data() -> None:
    assert drift.no_reference() == drift.DriftReport(status="no_reference")
    ref, _ = _setup()
    other_ref = {sketch.rows_key(REF + 1): 100.0, sketch.key(REF + 1, "age", 3): 100.0}
    report = drift.evaluate(ref, other_ref, spec())
    assert report.status == "no_data"
    assert report.samples == 0
    assert report.features == ()
    assert report.reference == drift.ReferenceInfo(REF, "v1", 1_700_000_000.0, 20_000, "upload")
    assert drift.alert_values(report) == {}


def test_only_this_references_counters_are_read() -> None:
    """Metric counters and another reference's sketch in the same window change nothing."""
    ref, rng = _setup()
    counters = _counters(ref, rng, 2000)
    noisy = {
        **counters,
        "tp": 5.0,
        "@predictions": 9.0,
        sketch.key(REF + 1, "age", 1): 1e6,
        sketch.rows_key(REF + 1): 1e6,
    }
    assert drift.evaluate(ref, noisy, spec()) == drift.evaluate(ref, counters, spec())


def test_the_report_round_trips_through_json_with_only_finite_numbers() -> None:
    ref, rng = _setup()
    report = drift.evaluate(ref, _counters(ref, rng, 700, shift=30.0), spec())
    raw = msgspec.json.encode(report)
    json.loads(raw, parse_constant=pytest.fail)  # NaN / Infinity would call parse_constant
    assert msgspec.json.decode(raw, type=drift.DriftReport) == report
    body = json.loads(raw)
    assert body["features"][0]["histogram"]["edges"] == list(ref.profile.columns[0].edges)
    assert body["dataset"]["names"] == ["age", "colour"]


def test_the_alert_values_name_each_drift_figure_with_its_samples() -> None:
    ref, rng = _setup()
    report = drift.evaluate(ref, _counters(ref, rng, 5000, shift=3.0), spec())
    values = drift.alert_values(report)
    assert set(values) == {
        "drift_share",
        "prediction_drift",
        "feature_drift:age",
        "feature_drift:colour",
        "missing_ratio:age",
        "missing_ratio:colour",
        "outlier_ratio",
    }
    assert values["drift_share"] == (1.0, 5000)
    assert values["feature_drift:age"] == (_column(report, "age").statistic, 5000)
    assert _column(report, "age").distance == _column(report, "age").statistic
    assert values["outlier_ratio"] == (0.0, 5000)
    assert report.prediction_drift is not None
    assert values["prediction_drift"] == (report.prediction_drift.statistic, 5000)


def test_a_series_point_keeps_the_numbers() -> None:
    ref, rng = _setup()
    report = drift.evaluate(ref, _counters(ref, rng, 5000, shift=3.0), spec())
    point = drift.point(report, 60.0, 120.0)
    assert (point.start, point.end, point.status, point.samples) == (60.0, 120.0, "ok", 5000)
    assert point.statistics == {c.name: c.statistic for c in report.features}  # distances here
    assert point.drifted == ("age", "colour")
    assert point.share == 1.0
    assert point.outlier_ratio == 0.0
    empty = drift.point(drift.no_reference(), 0.0, 60.0)
    assert (empty.statistics, empty.share, empty.prediction_drift) == ({}, None, None)


def test_without_a_score_the_prediction_is_the_prediction_drift() -> None:
    rng = _rng()
    prediction = categorical_profile(PREDICTION, list(rng.choice(["0", "1"], 5000, p=[0.8, 0.2])))
    ref = reference(prediction)
    counters = window(2000, sketch_categorical(prediction, ["1"] * 2000))
    report = drift.evaluate(ref, counters, spec())
    assert report.features == ()
    assert report.prediction_drift is not None
    assert report.prediction_drift.column == PREDICTION
    assert report.prediction_drift.drifted
    assert report.dataset == drift.DatasetDrift(0, 0, None, 0.5, False, ())


def test_the_statistics_agree_with_scipy_on_the_same_cells() -> None:
    rng = _rng()
    p = rng.dirichlet(np.ones(12))
    counts = rng.multinomial(3000, rng.dirichlet(np.ones(12)))
    q = counts / counts.sum()
    assert drift.jensenshannon(p, q) == pytest.approx(distance.jensenshannon(p, q), abs=1e-12)
    assert drift.jensenshannon(p, p) == 0.0
    statistic, p_value = drift.chisquare(p, counts.astype(float), 10_000)
    expected = stats.chisquare(counts, p * counts.sum())
    assert (statistic, p_value) == pytest.approx((expected.statistic, expected.pvalue), rel=1e-9)
    assert drift.psi(p, q) == pytest.approx(float(np.sum((p - q) * np.log(p / q))), rel=1e-12)


def test_psi_smooths_empty_cells_as_evidently_does() -> None:
    p = np.array([0.5, 0.5, 0.0])
    q = np.array([0.25, 0.25, 0.5])
    filled = np.array([0.5, 0.5, 0.0001])
    assert drift.psi(p, q) == pytest.approx(float(np.sum((filled - q) * np.log(filled / q))))
    tiny = np.array([0.99995, 0.00005, 0.0])
    filled = np.array([0.99995, 0.00005, 0.00005 / 1e6])
    assert drift.psi(tiny, q) == pytest.approx(float(np.sum((filled - q) * np.log(filled / q))))


def test_chisquare_counts_a_cell_the_reference_never_had_as_half_a_row() -> None:
    p = np.array([0.6, 0.4, 0.0])
    observed = np.array([50.0, 30.0, 20.0])
    statistic, p_value = drift.chisquare(p, observed, 1000)
    shares = np.array([0.6, 0.4, 0.0005]) / 1.0005
    expected = stats.chisquare(observed, shares * 100)
    assert (statistic, p_value) == pytest.approx((expected.statistic, expected.pvalue))
    assert math.isfinite(statistic)
    assert p_value < 1e-12
    same, p_same = drift.chisquare(p, np.array([60.0, 40.0, 0.0]), 1000)
    assert (same, p_same) == (0.0, 1.0)


def test_a_shift_beyond_the_reference_range_is_finite_and_drifts() -> None:
    rng = _rng()
    age = numeric_profile("age", rng.normal(40, 10, 5000))
    ref = reference(age)
    report = drift.evaluate(ref, window(5000, sketch_numeric(age, np.full(5000, 1e300))), spec())
    (a,) = report.features
    assert a.drifted
    assert a.out_of_range_ratio == 1.0
    assert a.statistic is not None
    assert math.isfinite(a.statistic)


def test_a_constant_reference_column_is_tested_on_its_one_cell_and_the_overflow() -> None:
    """A constant reference (edges (c, c)): half the window above c is a KS of 0.5; the
    Wasserstein distance places the overflow on c, so it cannot see it (the ratio does)."""
    age = numeric_profile("age", np.full(100, 3.0))
    assert age.edges == (3.0, 3.0)
    counters = window(2000, sketch_numeric(age, np.concatenate([np.full(1000, 3.0), [4.0] * 1000])))
    report = drift.evaluate(reference(age), counters, spec(DriftOverride("age", method="ks")))
    (a,) = report.features
    assert (a.statistic, a.drifted, a.out_of_range_ratio) == (0.5, True, 0.5)
    for method in ("wasserstein", "psi", "jensenshannon", "chisquare"):
        report = drift.evaluate(reference(age), counters, spec(DriftOverride("age", method=method)))
        (a,) = report.features
        assert a.statistic is not None
        assert math.isfinite(a.statistic)
        assert (a.statistic == 0.0) == (method == "wasserstein")


@dataclasses.dataclass(frozen=True)
class _Known:
    id: int
    monitor: Monitor
    references: Mapping[str, Reference]


def test_a_csv_reference_and_sketched_records_make_a_report() -> None:
    """The path as the service runs it: table -> profile -> sketch of captured records -> drift,
    with a missing value, a wrong-typed one and a new category on the way."""
    rng = _rng()
    n = 3000
    tenure = rng.gamma(2.0, 12.0, n)
    plans = rng.choice(["basic", "gold", "pro"], n, p=[0.6, 0.3, 0.1])
    scores = rng.beta(2, 5, n)
    lines = ["tenure,plan,prediction,score"] + [
        f"{t:.4f},{p},{int(s >= 0.5)},{s:.4f}"
        for t, p, s in zip(tenure, plans, scores, strict=True)
    ]
    built, warnings = profile.build(
        table.read([("\n".join(lines) + "\n").encode()], "csv"), churn_monitor().spec
    )
    assert warnings == []
    ref = Reference(11, "", 1_700_000_000.0, "upload", built)
    monitor = churn_monitor()

    def records(shift: float) -> list[PredictionRecord]:
        out = []
        for i in range(2000):
            s = float(rng.beta(2, 5))
            features: dict[str, object] = {
                "tenure": float(rng.gamma(2.0, 12.0)) * (1 + shift),
                "plan": str(rng.choice(["basic", "gold", "pro"], p=[0.6, 0.3, 0.1])),
            }
            if i == 0:
                features = {"tenure": "long", "plan": "platinum"}
            if i == 1:
                features = {"plan": "gold"}
            out.append(
                PredictionRecord(
                    "ml/churn",
                    f"p{i}",
                    "model",
                    "v1",
                    1_700_000_060.0 + i,
                    int(s >= 0.5),
                    score=s,
                    features=features,
                )
            )
        return out

    def window_of(batch: list[PredictionRecord]) -> dict[str, float]:
        summed: dict[str, float] = {}
        known = {"ml/churn": _Known(1, monitor, {"": ref})}
        for group in sketch.sketch(batch, known).deltas().values():
            for k, v in group.items():
                summed[k] = summed.get(k, 0.0) + v
        return summed

    same = drift.evaluate(ref, window_of(records(0.0)), monitor.spec)
    assert same.status == "ok"
    assert same.samples == 2000
    assert [c.name for c in same.features] == ["tenure", "plan"]
    tenure_, plan = same.features
    assert (tenure_.samples, tenure_.missing_ratio, tenure_.wrong_type_ratio) == (
        1998,
        0.0005,
        0.0005,
    )
    assert plan.new_category_ratio == 1 / 2000
    assert same.dataset is not None
    assert same.dataset.names == ()
    assert same.prediction_drift is not None
    assert same.prediction_drift.column == SCORE
    assert not same.prediction_drift.drifted
    assert same.outliers is not None
    assert same.outliers.count >= 1  # the record with an unseen plan
    shifted = drift.evaluate(ref, window_of(records(0.5)), monitor.spec)
    assert shifted.dataset is not None
    assert shifted.dataset.names == ("tenure",)
    assert shifted.dataset.drifted


@functools.cache
def _small() -> tuple[Reference, dict[tuple[int, float], dict[str, float]]]:
    """A reference of 2,000 rows and windows of it by (records, shift), made once."""
    ref, rng = _setup(2000)
    sizes, shifts = (1, 30, 999, 1000, 3000), (0.0, 1.0, 3.0)
    return ref, {(n, d): _counters(ref, rng, n, shift=d) for n in sizes for d in shifts}


_counter_value = st.one_of(
    st.integers(0, 10**6).map(float),
    st.floats(allow_nan=True, allow_infinity=True),
)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_counters_give_a_bounded_report(data: st.DataObject) -> None:
    """Whatever the counters hold (negative, huge, NaN, infinite), the report is finite JSON with
    ratios in [0, 1] and p-values in [0, 1]."""
    ref, _ = _small()
    keys = [
        sketch.key(REF, column.name, cell)
        for column in ref.profile.columns
        for cell in (*range(len(drift.proportions(column))), "missing", "wrong", "oor", "new")
    ] + [sketch.rows_key(REF), sketch.outliers_key(REF)]
    counters = data.draw(st.dictionaries(st.sampled_from(keys), _counter_value, max_size=60))
    counters[sketch.rows_key(REF)] = data.draw(_counter_value)
    report = drift.evaluate(ref, counters, spec())
    raw = msgspec.json.encode(report)
    json.loads(raw, parse_constant=pytest.fail)
    for column in (*report.features, *report.predictions):
        ratios = (
            column.missing_ratio,
            column.wrong_type_ratio,
            column.out_of_range_ratio,
            column.new_category_ratio,
            column.p_value,
        )
        assert all(r is None or 0 <= r <= 1 for r in ratios)
        assert column.statistic is None or column.statistic >= 0
        assert all(0 <= x <= 1 for x in column.histogram.current)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_a_series_is_the_points_of_each_windows_report(data: st.DataObject) -> None:
    """`series` computes every point at once; each is what `point(evaluate(...))` gives, over
    windows of every kind: empty, few values (tests), many (distances), overrides, junk."""
    ref, pool = _small()
    overrides = data.draw(
        st.lists(
            st.builds(
                DriftOverride,
                st.sampled_from(["age", "colour", SCORE, PREDICTION]),
                st.sampled_from([None, *drift.DEFAULT_THRESHOLDS]),
                st.sampled_from([None, 0.01, 0.2]),
            ),
            max_size=3,
            unique_by=lambda o: o.feature,
        )
    )
    sizes = data.draw(st.lists(st.sampled_from([0, 1, 30, 999, 1000, 3000]), max_size=8))
    points = [pool[n, data.draw(st.sampled_from([0.0, 1.0, 3.0]))] if n else {} for n in sizes]
    if points:
        junk = data.draw(
            st.dictionaries(st.sampled_from(sorted(points[0]) or ["x"]), _counter_value, max_size=4)
        )
        points.append({**points[0], **junk})
    monitor = spec(*overrides, share=data.draw(st.sampled_from([0.3, 0.5, 1.0])))
    expected = [
        drift.point(drift.evaluate(ref, counters, monitor), 100.0 + 60 * i, 160.0 + 60 * i)
        for i, counters in enumerate(points)
    ]
    got = drift.series(ref, points, monitor, 100.0, 60.0)
    # The same up to rounding: numpy may sum the cells of many rows in another order than one's.
    assert [msgspec.structs.replace(p, statistics={}, prediction_drift=None) for p in got] == [
        msgspec.structs.replace(p, statistics={}, prediction_drift=None) for p in expected
    ]
    for g, e in zip(got, expected, strict=True):
        assert g.statistics.keys() == e.statistics.keys()
        pairs = [(g.statistics[k], e.statistics[k]) for k in g.statistics]
        for a, b in [*pairs, (g.prediction_drift, e.prediction_drift)]:
            assert (a is None) == (b is None)
            assert a is None or b is None or math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15)


def test_a_small_window_is_tested_but_charted_and_alerted_on_its_distance() -> None:
    """Below 1,000 values the test decides; the distance (what a large window reports) is
    still there, so an alert `above: 0.1` keeps its meaning at every window size."""
    ref, rng = _setup()
    report = drift.evaluate(ref, _counters(ref, rng, 400), spec())
    age, colour = report.features
    assert (age.method, age.distance_method) == ("ks", "wasserstein")
    assert (colour.method, colour.distance_method) == ("chisquare", "jensenshannon")
    assert colour.statistic is not None
    assert colour.statistic > 0.5  # a chi-square statistic: not on a distance's scale
    assert colour.distance is not None
    assert colour.distance < 0.1
    assert age.distance is not None
    assert age.distance < 0.1
    forced = drift.evaluate(
        ref,
        _counters(ref, _rng(), 400),
        spec(DriftOverride("age", method="wasserstein"), DriftOverride("colour", method="psi")),
    )
    same = drift.evaluate(
        ref, _counters(ref, _rng(), 400), spec(DriftOverride("colour", method="psi"))
    )
    assert _column(same, "age").distance == _column(forced, "age").statistic
    assert _column(same, "colour").distance_method == "psi"
    assert _column(same, "colour").distance == _column(forced, "colour").statistic
    values = drift.alert_values(report)
    assert values["feature_drift:colour"] == (colour.distance, 400)
    assert report.prediction_drift is not None
    assert report.prediction_drift.distance_method == "wasserstein"
    assert values["prediction_drift"] == (report.prediction_drift.distance, 400)
    point = drift.point(report, 0.0, 60.0)
    assert point.statistics == {"age": age.distance, "colour": colour.distance}
