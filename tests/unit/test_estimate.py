"""CBPE from aggregates: the histogram estimate equals the same estimator computed row by row,
its band covers the realized metric under covariate shift and not under concept shift, and the
counters come from ingest (`core.sketch`) of every scored record, labeled or not."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from tests.support.monitors import churn_monitor
from truthloop.core import calibration, estimate, metrics, sketch
from truthloop.core.profile import CategoricalProfile, Profile, Reference
from truthloop.core.records import PredictionRecord
from truthloop.core.spec import CostSpec, Monitor

T0 = 1_767_225_600.0
PREDICTION = CategoricalProfile("prediction", ("0", "1"), (0.5, 0.5, 0.0), (), 100, 0)


@dataclass(frozen=True)
class Known:
    id: int
    monitor: Monitor
    references: Mapping[str, Reference] = field(default_factory=dict)


def sigmoid(x: Any) -> Any:
    return 1.0 / (1.0 + np.exp(-x))


def reference_of(rng: np.random.Generator, rows: int = 20_000, ref: int = 3) -> Reference:
    """A reference of a calibrated classifier: score = P(y = 1 | x), x ~ N(0, 1)."""
    x = rng.normal(size=rows)
    score = sigmoid(2 * x)
    actual = (rng.uniform(size=rows) < score).astype(np.intp)
    predicted = (score >= 0.5).astype(np.intp)
    fitted = calibration.fit_binary(score, predicted, actual)
    return Reference(ref, "", T0, "upload", Profile(rows, (PREDICTION,), fitted))


def counters_of(ref: int, scores: Any, predicted: Any) -> dict[str, float]:
    codes = predicted * calibration.BINS + calibration.bins(scores)
    counts = np.bincount(codes, minlength=2 * calibration.BINS)
    return {
        estimate.binary_key(ref, int(c // calibration.BINS), int(c % calibration.BINS)): float(v)
        for c, v in enumerate(counts.tolist())
        if v
    }


def test_the_histogram_estimate_is_the_row_by_row_estimator_within_0_001() -> None:
    rng = np.random.default_rng(11)
    ref = reference_of(rng)
    assert isinstance(ref.profile.calibration, calibration.BinaryCalibration)
    n = 50_000
    x = rng.normal(0.4, 1.3, size=n)
    score = sigmoid(1.7 * x - 0.2)
    predicted = (rng.uniform(size=n) < 0.9) * (score >= 0.5) + (rng.uniform(size=n) < 0.05)
    predicted = np.minimum(predicted, 1).astype(np.intp)
    got = estimate.evaluate(ref, counters_of(3, score, predicted), churn_monitor().spec)

    # the same estimator, row by row: each row's calibrated probability, from its own score
    curve = ref.profile.calibration.curve
    p = np.array([calibration.table(curve)[min(int(s * 1000), 999)] for s in score.tolist()])
    one = predicted == 1
    tp, fp = p[one].sum(), (1 - p[one]).sum()
    fn, tn = p[~one].sum(), (1 - p[~one]).sum()
    recall, specificity = tp / (tp + fn), tn / (tn + fp)
    want = {
        "accuracy": (tp + tn) / n,
        "precision": tp / (tp + fp),
        "recall": recall,
        "f1": 2 * tp / (2 * tp + fp + fn),
        "specificity": specificity,
        "balanced_accuracy": (recall + specificity) / 2,
        # the expected ROC curve over the raw scores: each row a positive of weight p and a
        # negative of weight 1 - p
        "roc_auc": roc_auc_score(
            np.r_[np.ones(n), np.zeros(n)], np.r_[score, score], sample_weight=np.r_[p, 1 - p]
        ),
    }
    assert set(got) == set(want) == set(estimate.BINARY_METRICS)
    for name, value in want.items():
        e = got[name]
        assert e.value is not None
        assert e.lower is not None
        assert e.upper is not None
        assert abs(e.value - value) < 0.001, name
        assert e.lower <= e.value <= e.upper
    assert estimate.records(ref, counters_of(3, score, predicted)) == n


def realized(actual: Any, predicted: Any, score: Any) -> dict[str, float]:
    one, pos = predicted == 1, actual == 1
    tp, fp = np.sum(one & pos), np.sum(one & ~pos)
    fn, tn = np.sum(~one & pos), np.sum(~one & ~pos)
    recall, specificity = tp / (tp + fn), tn / (tn + fp)
    return {
        "accuracy": (tp + tn) / len(actual),
        "precision": tp / (tp + fp),
        "recall": recall,
        "f1": 2 * tp / (2 * tp + fp + fn),
        "specificity": specificity,
        "balanced_accuracy": (recall + specificity) / 2,
        "roc_auc": roc_auc_score(actual, score),
    }


def coverage(concept: float, seed: int) -> dict[str, float]:
    """Share of 200 windows of 2,000 records whose realized metric lies in the estimate's band:
    the inputs move (covariate shift) and, with `concept` != 0, P(y | x) moves too. The reference
    is 100k rows: the calibration's error shrinks with it (the band counts it, as each fitted
    value's binomial error; with 20k rows some seeds cover 89% of windows, every seed >= 93% here).
    """
    rng = np.random.default_rng(seed)
    ref = reference_of(rng, rows=100_000)
    spec = churn_monitor().spec
    hits: dict[str, int] = dict.fromkeys(estimate.BINARY_METRICS, 0)
    windows = 200
    for shift in np.linspace(-1.0, 1.0, windows):
        x = rng.normal(shift, 1.0 + abs(shift) / 2, size=2000)
        score = sigmoid(2 * x)
        actual = (rng.uniform(size=len(x)) < sigmoid(2 * x + concept)).astype(np.intp)
        predicted = (score >= 0.5).astype(np.intp)
        got = estimate.evaluate(ref, counters_of(3, score, predicted), spec)
        for name, value in realized(actual, predicted, score).items():
            e = got[name]
            assert e.lower is not None
            assert e.upper is not None
            hits[name] += e.lower <= value <= e.upper
    return {name: count / windows for name, count in hits.items()}


def test_the_band_covers_the_realized_metric_under_covariate_shift() -> None:
    found = coverage(0.0, 21)
    assert all(share >= 0.9 for share in found.values()), found


def test_under_concept_shift_the_band_does_not_cover_cbpes_limit() -> None:
    found = coverage(-1.5, 22)
    assert found["accuracy"] < 0.5, found
    assert found["recall"] < 0.5, found


def test_ingest_counts_every_scored_record_by_predicted_class_and_bin() -> None:
    ref = Reference(
        3,
        "",
        T0,
        "upload",
        Profile(
            4,
            (PREDICTION,),
            calibration.fit_binary(
                np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])
            ),
        ),
    )
    known = {"ml/churn": Known(7, churn_monitor(), {"": ref})}

    def rec(i: int, prediction: Any, score: float | None, ts: float = T0) -> PredictionRecord:
        return PredictionRecord("ml/churn", f"p{i}", "model", "v1", ts, prediction, score=score)

    batch = [
        rec(0, 1, 0.7),
        rec(1, "0", 0.7),  # a class as text
        rec(2, 0.25, None),  # a probability without a score is its own score: class 0
        rec(3, 1, None),  # no score: not in the histogram
        rec(4, 1, 1.0),  # the top score falls in the last bin
        rec(5, 1, 0.7, ts=T0 + 60),  # another minute
        rec(6, True, 0.7),
    ]
    deltas = sketch.sketch(batch, known).deltas()
    first = deltas[7, "v1", "model", int(T0 // 60)]
    cbpe = {k: v for k, v in first.items() if ":@cbpe:" in k}
    assert cbpe == {
        "~3:@cbpe:1:700": 2.0,
        "~3:@cbpe:0:700": 1.0,
        "~3:@cbpe:0:250": 1.0,
        "~3:@cbpe:1:999": 1.0,
    }
    assert deltas[7, "v1", "model", int(T0 // 60) + 1]["~3:@cbpe:1:700"] == 1.0
    # the stored duplicates are left out, as for every sketch counter
    kept = sketch.sketch(batch, known).deltas([0, 2])[7, "v1", "model", int(T0 // 60)]
    assert {k: v for k, v in kept.items() if ":@cbpe:" in k} == {
        "~3:@cbpe:1:700": 1.0,
        "~3:@cbpe:0:250": 1.0,
    }
    # the vectorised path (float scores, integer classes) counts the same
    fast = [rec(i, i % 2, 0.05 * i) for i in range(20)]
    slow = [rec(i, str(i % 2), 0.05 * i) for i in range(20)]
    one = sketch.sketch(fast, known).deltas()
    two = sketch.sketch(slow, known).deltas()
    assert one == two


def test_a_histogram_kept_per_calibration_step_estimates_the_same() -> None:
    """A segment's copy counts each record at its step's first bin (`segment_codes`): every
    estimate, ROC AUC and the bands included, is the per-bin histogram's."""
    rng = np.random.default_rng(5)
    ref = reference_of(rng, rows=3000)
    found = ref.profile.calibration
    assert isinstance(found, calibration.BinaryCalibration)
    codes = estimate.segment_codes(found.curve)
    assert len(found.curve.starts) > 5
    assert codes[-1] == -1
    starts = {c * calibration.BINS + s for c in (0, 1) for s in found.curve.starts}
    assert set(codes[:-1].tolist()) == starts
    spec = dataclasses.replace(
        churn_monitor().spec,
        metrics=dataclasses.replace(
            churn_monitor().spec.metrics, cost=CostSpec(false_positive=2.0, false_negative=5.0)
        ),
    )
    for shift in (0.0, 1.0):
        scores = sigmoid(2 * rng.normal(loc=shift, size=4000))
        predicted = (scores >= 0.5).astype(np.intp)
        full = counters_of(ref.id, scores, predicted)
        flat = predicted * calibration.BINS + calibration.bins(scores)
        compact = np.bincount(codes[flat], minlength=2 * calibration.BINS)
        stepped = {
            estimate.binary_key(ref.id, c // calibration.BINS, c % calibration.BINS): float(v)
            for c, v in enumerate(compact.tolist())
            if v
        }
        assert len(stepped) <= 2 * len(found.curve.starts) < len(full)
        expected = estimate.evaluate(ref, full, spec)
        got = estimate.evaluate(ref, stepped, spec)
        assert set(got) == set(expected) >= {"roc_auc", "accuracy", "cost"}
        for name, value in expected.items():
            assert (got[name].value, got[name].lower, got[name].upper) == pytest.approx(
                (value.value, value.lower, value.upper), rel=1e-9
            ), name


def test_nothing_is_estimated_without_a_calibration_or_data() -> None:
    bare = Reference(3, "", T0, "upload", Profile(1, (PREDICTION,)))
    assert estimate.evaluate(bare, {}, churn_monitor().spec) == {}
    assert estimate.ingest(bare, churn_monitor().spec) == []
    ref = reference_of(np.random.default_rng(1), rows=500)
    empty = estimate.evaluate(ref, {}, churn_monitor().spec)
    assert empty == dict.fromkeys(estimate.BINARY_METRICS, metrics.Estimate(None))


def test_a_series_is_each_point_evaluated() -> None:
    rng = np.random.default_rng(4)
    ref = reference_of(rng, rows=3000)
    points = []
    for shift in (-0.5, 0.0, 0.8):
        score = sigmoid(2 * rng.normal(shift, size=500))
        points.append(counters_of(3, score, (score >= 0.5).astype(np.intp)))
    points.append({})
    spec = churn_monitor().spec
    got = estimate.series(ref, points, spec)
    each = [estimate.evaluate(ref, c, spec) for c in points]
    # (equal up to the rounding of summing over a matrix rather than a row)
    for g, e in zip(got, each, strict=True):
        assert g.keys() == e.keys()
        for name in g:
            for a, b in zip(
                dataclasses.astuple(g[name]), dataclasses.astuple(e[name]), strict=True
            ):
                assert a == b or a == pytest.approx(b, rel=1e-12)
    assert got[0]["accuracy"] != got[2]["accuracy"]


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_other_tasks_estimate_nothing_from_a_binary_calibration(task: str) -> None:
    ref = reference_of(np.random.default_rng(1), rows=100)
    assert estimate.evaluate(ref, {}, churn_monitor(task).spec) == {}


CLASSES = ("ant", "bee", "cat")
LABELS = CategoricalProfile("prediction", CLASSES, (0.3, 0.3, 0.4, 0.0), (), 100, 0)


def softmax(z: Any) -> Any:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def multiclass_model(rng: np.random.Generator, shift: float, n: int) -> tuple[Any, Any]:
    """A calibrated 3-class model: class probabilities from two inputs, x's mean at `shift`."""
    x = rng.normal(shift, 1.0, size=(n, 2))
    logits = np.stack([1.5 * x[:, 0], 1.5 * x[:, 1], -0.5 * (x[:, 0] + x[:, 1])], axis=1)
    probs = softmax(logits)
    actual = (rng.uniform(size=(n, 1)) > np.cumsum(probs, axis=1)).sum(axis=1)
    return probs, np.minimum(actual, 2)


def multiclass_reference(rng: np.random.Generator, rows: int = 50_000) -> Reference:
    probs, actual = multiclass_model(rng, 0.0, rows)
    predicted = probs.argmax(axis=1)
    fitted = calibration.fit_multiclass(
        CLASSES, probs, [CLASSES[i] for i in predicted], [CLASSES[i] for i in actual]
    )
    return Reference(9, "", T0, "upload", Profile(rows, (LABELS,), fitted))


def multiclass_counters(ref: Reference, probs: Any, predicted: Any) -> dict[str, float]:
    """A window's counters as ingest (`core.sketch`) adds them."""
    known = {"ml/churn": Known(7, churn_monitor("multiclass"), {"": ref})}
    batch = [
        PredictionRecord(
            "ml/churn",
            f"p{i}",
            "model",
            "v1",
            T0,
            CLASSES[j],
            scores=dict(zip(CLASSES, row, strict=True)),
        )
        for i, (row, j) in enumerate(zip(probs.tolist(), predicted.tolist(), strict=True))
    ]
    return metrics.total(sketch.sketch(batch, known).deltas().values())


def multiclass_realized(actual: Any, predicted: Any) -> dict[str, float]:
    hits = np.array([np.sum((actual == k) & (predicted == k)) for k in range(3)], dtype=float)
    said = np.array([np.sum(predicted == k) for k in range(3)], dtype=float)
    support = np.array([np.sum(actual == k) for k in range(3)], dtype=float)
    precision = np.divide(hits, said, out=np.zeros(3), where=said > 0)
    recall = np.divide(hits, support, out=np.zeros(3), where=support > 0)
    f1 = 2 * hits / (said + support)
    share = support / support.sum()
    return {
        "accuracy": float(hits.sum() / len(actual)),
        "macro_precision": float(precision.mean()),
        "macro_recall": float(recall.mean()),
        "macro_f1": float(f1.mean()),
        "weighted_precision": float((share * precision).sum()),
        "weighted_recall": float((share * recall).sum()),
        "weighted_f1": float((share * f1).sum()),
    }


def test_multiclass_estimates_are_the_expected_confusion_matrix_of_the_calibrated_rows() -> None:
    rng = np.random.default_rng(31)
    ref = multiclass_reference(rng, rows=20_000)
    found = ref.profile.calibration
    assert isinstance(found, calibration.MulticlassCalibration)
    probs, _ = multiclass_model(rng, 0.5, 5000)
    predicted = probs.argmax(axis=1)
    predicted[::10] = 0  # some predictions that are not the top score
    counters = multiclass_counters(ref, probs, predicted)
    got = estimate.evaluate(ref, counters, churn_monitor("multiclass").spec)
    q = calibration.probabilities(found, probs)
    cells = np.zeros((3, 3))
    for k in range(3):
        np.add.at(cells[:, k], (), q[predicted == k].sum(axis=0))
    hits, said, support = np.diag(cells), cells.sum(axis=0), cells.sum(axis=1)
    share = support / support.sum()
    want = {
        "accuracy": hits.sum() / len(q),
        "macro_precision": np.mean(hits / said),
        "macro_recall": np.mean(hits / support),
        "macro_f1": np.mean(2 * hits / (said + support)),
        "weighted_f1": np.sum(share * 2 * hits / (said + support)),
    }
    assert set(got) == set(metrics.METRIC_NAMES["multiclass"])
    for name, value in want.items():
        assert got[name].value == pytest.approx(value, abs=1e-9), name
    assert got["micro_f1"] == got["accuracy"]
    assert estimate.records(ref, counters) == 5000


def test_multiclass_bands_cover_the_realized_metrics_under_covariate_shift() -> None:
    rng = np.random.default_rng(32)
    ref = multiclass_reference(rng)
    spec = churn_monitor("multiclass").spec
    windows = 120
    hits: dict[str, int] = {}
    for shift in np.linspace(-0.8, 0.8, windows):
        probs, actual = multiclass_model(rng, shift, 1500)
        predicted = probs.argmax(axis=1)
        got = estimate.evaluate(ref, multiclass_counters(ref, probs, predicted), spec)
        for name, value in multiclass_realized(actual, predicted).items():
            e = got[name]
            assert e.lower is not None
            assert e.upper is not None
            hits[name] = hits.get(name, 0) + (e.lower <= value <= e.upper)
    shares = {name: count / windows for name, count in hits.items()}
    assert all(share >= 0.9 for share in shares.values()), shares


@pytest.mark.parametrize("minutes", [1, 300])
def test_ingest_counts_equal_a_direct_count_however_many_minutes_a_batch_spans(
    minutes: int,
) -> None:
    # (one minute: every cell counted at once; 300 minutes of 2,000 keys each outnumber the
    # records: only the cells that occur are)
    rng = np.random.default_rng(12)
    ref = reference_of(rng, rows=2000)
    known = {"ml/churn": Known(7, churn_monitor(), {"": ref})}
    scores = rng.uniform(size=3000).tolist()
    batch = [
        PredictionRecord(
            "ml/churn", f"p{i}", "model", "v1", T0 + 60 * (i % minutes), i % 2, score=s
        )
        for i, s in enumerate(scores)
    ]
    want: dict[tuple[int, str], float] = {}
    for i, s in enumerate(scores):
        cell = (int(T0 // 60) + i % minutes, estimate.binary_key(3, i % 2, min(int(s * 1000), 999)))
        want[cell] = want.get(cell, 0.0) + 1
    got = {
        (group[3], name): value
        for group, counters in sketch.sketch(batch, known).deltas().items()
        for name, value in counters.items()
        if ":@cbpe:" in name
    }
    assert got == want
