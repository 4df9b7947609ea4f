"""The drift summary the monitor's state carries: the report's verdicts, not its statistics."""

from __future__ import annotations

import numpy as np

from tests.support.drift_data import (
    categorical_profile,
    numeric_profile,
    reference,
    sketch_categorical,
    sketch_numeric,
    spec,
    window,
)
from truthloop.core import drift, wire
from truthloop.core.profile import PREDICTION, CategoricalProfile, NumericProfile


def test_the_summary_names_the_drifted_features_and_moves_with_verdicts_only() -> None:
    rng = np.random.default_rng(18)
    age = numeric_profile("age", rng.normal(40, 10, 20_000))
    tenure = numeric_profile("tenure", rng.normal(12, 3, 20_000))
    prediction = categorical_profile(PREDICTION, list(rng.choice(["0", "1"], 20_000)))
    ref = reference(age, tenure, prediction)

    def report(age_shift: float, n: int = 5000) -> drift.DriftReport:
        assert isinstance(age, NumericProfile)
        assert isinstance(tenure, NumericProfile)
        assert isinstance(prediction, CategoricalProfile)
        counters = window(
            n,
            sketch_numeric(age, rng.normal(40 + age_shift, 10, n)),
            sketch_numeric(tenure, rng.normal(12, 3, n)),
            sketch_categorical(prediction, list(rng.choice(["0", "1"], n))),
        )
        return drift.evaluate(ref, counters, spec())

    calm = drift.summary(report(0.0))
    assert calm == wire.DriftSummary(
        status="ok", drifted=False, share=0.0, threshold=0.5, features=(), profiled=2
    )
    assert drift.summary(report(0.1)) == calm, "a statistic that moves is no new summary"
    shifted = drift.summary(report(5.0))
    assert shifted == wire.DriftSummary(
        status="ok", drifted=True, share=0.5, threshold=0.5, features=("age",), profiled=2
    )
    assert drift.summary(drift.no_reference()) == wire.DriftSummary(status="no_reference")
    assert drift.summary(drift.evaluate(ref, {}, spec())) == wire.DriftSummary(status="no_data")
