"""Direct loss estimation: the stored trees predict as scikit-learn does, ingest sums them per
bucket, and the estimate's band covers the realized MAE and RMSE under covariate shift."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

import msgspec
import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor

from truthloop.core import estimate, lossmodel, metrics, sketch
from truthloop.core.profile import Profile, Reference, build, build_from_records
from truthloop.core.records import PredictionRecord
from truthloop.core.spec import Monitor, MonitorSpec, parse_monitor
from truthloop.core.table import Column, Table, values

T0 = 1_767_225_600.0
REGIONS = ("north", "south", "east")


def monitor(task: str = "regression") -> Monitor:
    return parse_monitor(
        {
            "apiVersion": "truthloop.dev/v1alpha1",
            "kind": "ModelMonitor",
            "metadata": {"name": "price", "namespace": "ml"},
            "spec": {
                "selector": {"matchLabels": {"app": "price"}},
                "model": {"name": "price"},
                "task": task,
                "capture": {"prediction": {"pointer": "/y"}, "features": {"pointer": "/f"}},
            },
        }
    )


@dataclass
class Data:
    """Rows of the generating model: features, the model's prediction and the actual."""

    x: np.ndarray  # x0, x1, x2 numeric
    region: list[str | None]
    prediction: np.ndarray
    actual: np.ndarray

    def table(self, *, actual: bool = True) -> Table:
        columns: dict[str, Column] = {
            "x0": Column(self.x[:, 0].copy()),
            "x1": Column(self.x[:, 1].copy()),
            "x2": Column(self.x[:, 2].copy()),
            "region": values(self.region),
            "prediction": Column(self.prediction.copy()),
        }
        if actual:
            columns["actual"] = Column(self.actual.copy())
        rows = len(self.prediction)
        return Table(tuple(columns), columns, np.arange(1, rows + 1, dtype=np.int64))

    def records(self) -> list[PredictionRecord]:
        out = []
        for i in range(len(self.prediction)):
            x0, x1, x2 = (None if np.isnan(v) else float(v) for v in self.x[i])
            features = {"x0": x0, "x1": x1, "x2": x2, "region": self.region[i]}
            out.append(
                PredictionRecord(
                    "ml/price",
                    f"p{i}",
                    "model",
                    "v1",
                    T0 + i % 120,
                    float(self.prediction[i]),
                    features=features,
                )
            )
        return out


EFFECT = {"north": 0.0, "south": 1.0, "east": -0.5}


def generate(rng: np.random.Generator, n: int, *, shift: float = 0.0, concept: float = 0.0) -> Data:
    """y = 3 x0 + sin(2 x1) + region + noise of sd 0.3 + |x2| (+ `concept` more where x1 > 0);
    the model predicts 3 x0 + the region's effect, so its error grows with |x2| and follows
    sin(2 x1). `shift` moves x2 and x1 (covariate shift), `concept` changes y given x."""
    x = rng.normal(size=(n, 3))
    x[:, 2] += shift
    x[:, 1] += shift / 2
    region = rng.choice(REGIONS, size=n, p=(0.5, 0.3, 0.2)).tolist()
    effect = np.array([EFFECT[r] for r in region])
    sd = 0.3 + np.abs(x[:, 2]) + concept * (x[:, 1] > 0)
    actual = 3 * x[:, 0] + np.sin(2 * x[:, 1]) + effect + rng.normal(size=n) * sd
    prediction = 3 * x[:, 0] + effect
    return Data(x, region, prediction, actual)


@pytest.fixture(scope="module")
def fitted() -> tuple[Profile, list[str]]:
    return build(generate(np.random.default_rng(1), 20_000).table(), monitor().spec)


def reference(profile: Profile, ref: int = 3) -> Reference:
    return Reference(ref, "", T0, "upload", profile)


# -- the stored trees are scikit-learn's -------------------------------------------------------


def test_the_numpy_traversal_equals_scikit_learns_predict() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5_000, 6))
    x[rng.random(5_000) < 0.1, 1] = np.nan  # missing values the fit saw
    y = np.abs(x[:, 0]) + np.where(np.isnan(x[:, 1]), 2.0, x[:, 1]) ** 2 + rng.normal(size=5_000)
    fitted = HistGradientBoostingRegressor(**lossmodel.PARAMETERS).fit(x, y)  # type: ignore[arg-type]
    forest = lossmodel.forest_of(fitted)
    test = rng.normal(size=(3_000, 6)) * 2
    test[rng.random(3_000) < 0.2, 1] = np.nan
    test[rng.random(3_000) < 0.2, 4] = np.nan  # missing where the fit saw none
    assert np.array_equal(forest.predict(test), fitted.predict(test))
    stored = msgspec.json.decode(msgspec.json.encode(forest), type=lossmodel.Forest)
    assert np.array_equal(stored.predict(test), fitted.predict(test))


def test_a_regression_reference_with_actuals_gets_a_loss_model(
    fitted: tuple[Profile, list[str]],
) -> None:
    profile, warnings = fitted
    model = profile.loss
    assert model is not None
    assert warnings == []
    assert model.inputs == ("x0", "x1", "x2", "region", "prediction")
    assert model.categories[3] == ("north", "south", "east")
    assert model.rows + model.held_out == 20_000
    assert all(len(f.roots) <= lossmodel.MAX_TREES for f in (model.absolute, model.squared))
    assert max(model.absolute.depth, model.squared.depth) <= lossmodel.MAX_DEPTH
    # stored as JSON like the rest of the profile, and read back the same
    assert msgspec.json.decode(msgspec.json.encode(profile), type=Profile) == profile


def test_no_loss_model_without_actuals_labels_or_a_regression_task() -> None:
    data = generate(np.random.default_rng(2), 500)
    assert build(data.table(actual=False), monitor().spec)[0].loss is None
    few = dataclasses.replace(data, actual=np.where(np.arange(500) < 50, data.actual, np.nan))
    profile, warnings = build(few.table(), monitor().spec)
    assert profile.loss is None
    assert any("fewer than 100" in w for w in warnings)
    records = [(r.prediction, None, r.features) for r in data.records()]
    assert build_from_records(records, monitor().spec)[0].loss is None


def test_a_big_reference_is_fitted_on_a_bounded_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lossmodel, "MAX_FIT_ROWS", 1_000)
    monkeypatch.setattr(lossmodel, "MAX_HELD_OUT", 500)
    profile, _ = build(generate(np.random.default_rng(3), 10_000).table(), monitor().spec)
    assert profile.loss is not None
    assert (profile.loss.rows, profile.loss.held_out) == (1_000, 500)


# -- ingest sums the predicted losses per bucket -----------------------------------------------


@dataclass(frozen=True)
class Known:
    id: int
    monitor: Monitor
    references: Mapping[str, Reference] = field(default_factory=dict)


def sketched(records: list[PredictionRecord], ref: Reference, spec: Monitor) -> dict[str, float]:
    total: dict[str, float] = {}
    for group in sketch.sketch(records, {"ml/price": Known(7, spec, {"": ref})}).deltas().values():
        for k, v in group.items():
            total[k] = total.get(k, 0.0) + v
    return total


def expected_sums(model: lossmodel.LossModel, data: Data) -> dict[str, float]:
    """The `@dle` sums computed straight from the rows, with the module's encoding."""
    index = {c: float(i) for i, c in enumerate(model.categories[3])}
    region = np.array(
        [np.nan if r is None else index.get(r, float(len(index))) for r in data.region]
    )
    inputs = np.column_stack([data.x, region, data.prediction])
    compiled = lossmodel.Compiled(model)
    c = compiled.contributions(inputs, np.isfinite(data.prediction))
    return dict(zip(lossmodel.COUNTERS, c.sum(axis=0).tolist(), strict=True))


def test_ingest_sums_each_records_predicted_losses(fitted: tuple[Profile, list[str]]) -> None:
    profile, _ = fitted
    assert profile.loss is not None
    data = generate(np.random.default_rng(4), 2_000, shift=0.5)
    data.x[::7, 2] = np.nan  # missing
    data.region[::11] = [None] * len(data.region[::11])
    data.region[::13] = ["west"] * len(data.region[::13])  # new to the reference
    records = data.records()
    records[5] = msgspec.structs.replace(records[5], prediction="n/a")  # no loss prediction
    data.prediction[5] = np.nan
    records[6] = msgspec.structs.replace(records[6], features={**records[6].features, "x0": "high"})  # type: ignore[dict-item]
    data.x[6, 0] = np.nan  # wrong-typed: missing to the trees
    found = sketched(records, reference(profile), monitor())
    expected = expected_sums(profile.loss, data)
    assert expected["n"] == 1_999
    for name in lossmodel.COUNTERS:
        assert found[sketch.dle_key(3, name)] == pytest.approx(expected[name], rel=1e-9)
    # metrics and drift ignore these counters; a binary monitor's reference has none
    assert all(k.startswith("~") for k in found)


def test_a_reference_without_a_loss_model_adds_no_loss_counters(
    fitted: tuple[Profile, list[str]],
) -> None:
    profile, _ = fitted
    plain = msgspec.structs.replace(profile, loss=None)
    found = sketched(generate(np.random.default_rng(5), 50).records(), reference(plain), monitor())
    assert not any(":@dle:" in k for k in found)
    assert estimate.evaluate(reference(plain), found, monitor().spec) == {}


# -- the estimate and its band -----------------------------------------------------------------


def window(model: lossmodel.LossModel, data: Data, ref: int = 3) -> dict[str, float]:
    return {sketch.dle_key(ref, k): v for k, v in expected_sums(model, data).items()}


def realized(data: Data) -> dict[str, metrics.Estimate]:
    counters: dict[str, float] = {}
    for p, a in zip(data.prediction.tolist(), data.actual.tolist(), strict=True):
        metrics.tally(counters, "regression", p, a)
    return metrics.evaluate("regression", counters)


def coverage(
    profile: Profile, spec: MonitorSpec, *, concept: float, windows: int = 120, size: int = 400
) -> dict[str, float]:
    """The share of windows (covariate shift growing from 0 to 1.5) whose realized metric lies
    within the estimate's band, per metric."""
    assert profile.loss is not None
    rng = np.random.default_rng(11)
    inside = {"mae": 0, "rmse": 0, "mean_error": 0}
    for i in range(windows):
        data = generate(rng, size, shift=1.5 * i / windows, concept=concept)
        estimated = estimate.evaluate(reference(profile), window(profile.loss, data), spec)
        truth = realized(data)
        for name in inside:
            e, value = estimated[name], truth[name].value
            assert value is not None
            assert e.lower is not None
            assert e.upper is not None
            inside[name] += e.lower <= value <= e.upper
    return {name: count / windows for name, count in inside.items()}


@pytest.mark.parametrize(("windows", "size"), [(120, 400), (40, 2_000)])
def test_the_band_covers_the_realized_metric_under_covariate_shift(
    fitted: tuple[Profile, list[str]], windows: int, size: int
) -> None:
    found = coverage(fitted[0], monitor().spec, concept=0.0, windows=windows, size=size)
    assert min(found.values()) >= 0.9, found


def test_concept_shift_escapes_the_band(fitted: tuple[Profile, list[str]]) -> None:
    """The documented limit: when y given x changes, the inputs cannot tell."""
    found = coverage(fitted[0], monitor().spec, concept=2.0)
    assert found["mae"] < 0.5, found
    assert found["rmse"] < 0.5, found


def test_the_estimate_tracks_the_shifted_error(fitted: tuple[Profile, list[str]]) -> None:
    profile, _ = fitted
    assert profile.loss is not None
    calm = generate(np.random.default_rng(8), 5_000)
    shifted = generate(np.random.default_rng(9), 5_000, shift=1.5)
    spec = monitor().spec
    before = estimate.evaluate(reference(profile), window(profile.loss, calm), spec)["mae"]
    after = estimate.evaluate(reference(profile), window(profile.loss, shifted), spec)["mae"]
    truth_before, truth_after = realized(calm)["mae"].value, realized(shifted)["mae"].value
    assert before.value is not None
    assert after.value is not None
    assert after.value > 1.3 * before.value
    assert after.value == pytest.approx(truth_after, rel=0.05)
    assert before.value == pytest.approx(truth_before, rel=0.05)


def test_nothing_estimated_without_sketched_records(fitted: tuple[Profile, list[str]]) -> None:
    assert estimate.evaluate(reference(fitted[0]), {}, monitor().spec) == {}
