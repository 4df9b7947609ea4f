"""Calibration from the reference: pool-adjacent-violators equals scikit-learn's isotonic
regression on the binned scores, and the profile carries the calibration when the reference has
scores and actuals (binary and multiclass), not otherwise."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.isotonic import IsotonicRegression

from truthloop.core import calibration, profile, table
from truthloop.core.calibration import BinaryCalibration, MulticlassCalibration
from truthloop.core.spec import MonitorSpec, parse_spec

BASE: dict[str, Any] = {
    "selector": {"matchLabels": {"app": "m"}},
    "model": {"name": "m"},
    "capture": {"prediction": {"pointer": "/p"}, "features": {"pointer": "/f"}},
}


def spec(**fields: Any) -> MonitorSpec:
    return dataclasses.replace(parse_spec({**BASE, **fields}), features=())


def csv(text: str) -> table.Table:
    return table.read([text.encode()], "csv")


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0, 1), st.integers(0, 1)),
        min_size=1,
        max_size=300,
    )
)
def test_pav_is_sklearns_isotonic_regression_on_the_bins(rows: list[tuple[float, int]]) -> None:
    scores = np.array([s for s, _ in rows])
    y = np.array([a for _, a in rows], dtype=np.float64)
    x = calibration.bins(scores)
    curve = calibration.isotonic(x, y)
    got = calibration.table(curve)[x]
    want = IsotonicRegression(out_of_bounds="clip").fit(x, y).predict(x)
    assert np.allclose(got, want, atol=1e-12)
    assert all(a <= b for a, b in zip(curve.values, curve.values[1:], strict=False))
    assert curve.starts[0] == 0


def test_an_unseen_bin_takes_the_fitted_value_below_it_or_the_first() -> None:
    curve = calibration.isotonic(np.array([100, 100, 900, 900]), np.array([0.0, 1.0, 1.0, 1.0]))
    values = calibration.table(curve)
    assert values[0] == values[100] == values[500] == 0.5
    assert values[900] == values[999] == 1.0


def test_a_binary_reference_with_score_and_actual_is_calibrated() -> None:
    rng = np.random.default_rng(3)
    n = 20_000
    truth = rng.uniform(size=n)
    actual = (rng.uniform(size=n) < truth).astype(int)
    raw = truth**2  # a miscalibrated score: the true probability is its square root
    predicted = (raw >= 0.25).astype(int)
    cells = zip(raw.tolist(), predicted, actual, strict=True)
    rows = "\n".join(f"{s!r},{p},{a}" for s, p, a in cells)
    p, warnings = profile.build(csv("score,prediction,actual\n" + rows + "\n"), spec())
    assert warnings == []
    got = p.calibration
    assert isinstance(got, BinaryCalibration)
    assert got.rows == n
    values = calibration.table(got.curve)
    for s in (0.04, 0.25, 0.64):
        assert abs(values[int(s * 1000)] - s**0.5) < 0.06
    assert sum(got.tp) == int(np.sum((predicted == 1) & (actual == 1)))
    assert sum(got.fn) == int(np.sum((predicted == 0) & (actual == 1)))
    assert sum(got.tp) + sum(got.fp) + sum(got.tn) + sum(got.fn) == n


def test_rows_without_a_usable_actual_are_left_out_with_a_warning() -> None:
    data = "score,prediction,actual\n0.9,1,1\n0.1,0,0\n0.8,1,\n0.2,0,maybe\n0.7,true,false\n"
    p, warnings = profile.build(csv(data), spec())
    assert isinstance(p.calibration, BinaryCalibration)
    assert p.calibration.rows == 3
    assert warnings == [
        "2 reference rows without a usable score, prediction or actual are left out of the "
        "calibration"
    ]


def test_no_calibration_without_actual_or_score() -> None:
    assert profile.build(csv("score,prediction\n0.9,1\n"), spec())[0].calibration is None
    assert profile.build(csv("prediction,actual\n1,1\n"), spec())[0].calibration is None


def test_a_multiclass_reference_is_calibrated_one_vs_rest_on_its_class_score_columns() -> None:
    rng = np.random.default_rng(5)
    n = 6000
    logits = rng.normal(size=(n, 3)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    actual = np.array([rng.choice(3, p=row) for row in probs])
    predicted = probs.argmax(axis=1)
    names = ["cat", "dog", "eel"]
    header = "x,score:cat,score:dog,score:eel,prediction,actual"
    rows = "\n".join(
        f"{i % 7},{r[0]!r},{r[1]!r},{r[2]!r},{names[p]},{names[a]}"
        for i, (r, p, a) in enumerate(zip(probs.tolist(), predicted, actual, strict=True))
    )
    p, warnings = profile.build(csv(header + "\n" + rows + "\n"), spec(task="multiclass"))
    assert warnings == []
    assert [c.name for c in p.columns] == ["x", "prediction"]  # class scores are no features
    got = p.calibration
    assert isinstance(got, MulticlassCalibration)
    assert got.classes == ("cat", "dog", "eel")
    assert got.rows == n
    assert sum(map(sum, got.confusion)) == n
    assert got.confusion[1][1] == int(np.sum((actual == 1) & (predicted == 1)))
    calibrated = calibration.probabilities(got, probs)
    assert np.allclose(calibrated.sum(axis=1), 1.0)
    # already calibrated scores stay close to themselves
    assert float(np.mean(np.abs(calibrated - probs))) < 0.05


def test_the_calibration_survives_the_stores_json() -> None:
    from truthloop.feedback.store import codec

    data = "score,prediction,actual\n0.9,1,1\n0.1,0,0\n0.6,1,0\n"
    p, _ = profile.build(csv(data), spec())
    back = codec.reference(1, "", 0.0, "upload", codec.profile_json(p))
    assert back.profile == p
