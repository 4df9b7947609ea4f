"""Human review's math (`core.review`): by simulation on a calibrated binary model, the AIPW
estimate from 100 reviews a window (a uniform and a borderline share) is unbiased, its 95%
interval covers, and it is narrower than a uniform sample of the same size, while the naive
mean of the mixed sample is biased; the counters selection and review labels add (through
`core.join`) give the same estimate as the arrays; the draw, the design's statuses and the
plan's answers."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import msgspec
import numpy as np
import numpy.typing as npt
import pytest

from tests.support.monitors import churn_monitor
from truthloop.core import calibration, capture, intervals, metrics, review
from truthloop.core.join import Label, Labeling, Row
from truthloop.core.profile import CategoricalProfile, Profile, Reference
from truthloop.core.records import PredictionRecord
from truthloop.core.spec import AbstainSpec, Monitor, ReviewSpec
from truthloop.core.windows import bucket_of

T0 = 1_767_225_600.0
HOUR = 3600.0
Z = intervals.z_score(0.95)


@dataclass(frozen=True)
class Known:
    id: int
    monitor: Monitor
    references: Mapping[str, Reference] = field(default_factory=dict)


def reviewed_monitor(task: str = "binary", **review_fields: object) -> Monitor:
    """ml/churn with `spec.review` (budget 100 per window of an hour, random 0.3)."""
    monitor = churn_monitor(task)
    fields: dict[str, object] = {
        "budget": 100.0,
        "per": "window",
        "random": 0.3,
        "borderline": 0.7,
        **review_fields,
    }
    spec = dataclasses.replace(monitor.spec, review=ReviewSpec(**fields))  # type: ignore[arg-type]
    return dataclasses.replace(monitor, spec=spec)


def calibrated(rng: np.random.Generator, shape: tuple[int, ...]) -> npt.NDArray[np.float64]:
    """Scores of a calibrated classifier (P(y = 1 | score) = score), mostly confident."""
    return 1.0 / (1.0 + np.exp(-rng.normal(2.0, 2.0, shape)))


def same(a: review.Reviewed, b: review.Reviewed) -> bool:
    """Two estimates equal up to rounding."""
    return a.n == b.n and all(
        x == y or x == pytest.approx(y, rel=1e-12, abs=1e-12)
        for x, y in ((a.value, b.value), (a.lower, b.lower), (a.upper, b.upper))
    )


# -- the simulation of the issue ---------------------------------------------------------------

WINDOWS = 2000
RECORDS = 5000


@dataclass
class Simulated:
    truth: list[float] = field(default_factory=list)
    aipw: list[review.Reviewed] = field(default_factory=list)
    ht: list[review.Reviewed] = field(default_factory=list)
    naive: list[float] = field(default_factory=list)
    uniform_half: list[float] = field(default_factory=list)
    reviews: list[int] = field(default_factory=list)


@pytest.fixture(scope="module")
def simulated() -> tuple[Simulated, review.Design]:
    """2,000 windows of 5,000 records, each selected by the design that 100 reviews a window
    (random 0.3, borderline 0.7) gives, every queued item reviewed; and beside each, a
    uniform sample of 100 of the window's records."""
    rng = np.random.default_rng(20)
    spec = reviewed_monitor().spec.review
    assert spec is not None
    pilot = calibrated(rng, (RECORDS,))
    f_pilot = np.maximum(pilot, 1.0 - pilot)
    seen = review.Traffic(
        per_day=RECORDS * 24, mean_g=float(np.sqrt(f_pilot * (1.0 - f_pilot)).mean())
    )
    design = review.design(spec, HOUR, seen, T0)
    assert design.status == "ok"
    out = Simulated()
    chunk = 250
    for _ in range(WINDOWS // chunk):
        score = calibrated(rng, (chunk, RECORDS))
        right = (rng.uniform(size=score.shape) < score) == (score >= 0.5)
        f = np.maximum(score, 1.0 - score)
        none = np.zeros(score.size, dtype=bool)
        pi, _ = review.inclusions(design, f.reshape(-1), none, none)
        pi = pi.reshape(score.shape)
        queued = rng.uniform(size=score.shape) < pi
        values = right.astype(np.float64)
        sample = np.take_along_axis(values, rng.integers(0, RECORDS, (chunk, 100)), axis=1)
        for w in range(chunk):
            out.truth.append(float(values[w].mean()))
            out.aipw.append(review.aipw(values[w], f[w], pi[w], queued[w]))
            out.ht.append(review.horvitz_thompson(values[w], pi[w], queued[w]))
            out.naive.append(float(values[w][queued[w]].mean()))
            out.reviews.append(int(queued[w].sum()))
            low, high = intervals.wilson(float(sample[w].sum()), 100, Z)
            out.uniform_half.append((high - low) / 2)
    return out, design


def summary(found: list[review.Reviewed], truth: list[float]) -> tuple[float, float, float]:
    """Bias, coverage and mean half-width of estimates of the windows' true values."""
    value = np.array([r.value for r in found], dtype=np.float64)
    lower = np.array([r.lower for r in found], dtype=np.float64)
    upper = np.array([r.upper for r in found], dtype=np.float64)
    true = np.array(truth)
    covered = (lower <= true) & (true <= upper)
    return float((value - true).mean()), float(covered.mean()), float(((upper - lower) / 2).mean())


def test_100_reviews_a_window_give_an_unbiased_covering_estimate_narrower_than_uniform(
    simulated: tuple[Simulated, review.Design],
) -> None:
    sim, _ = simulated
    assert abs(np.mean(sim.reviews) - 100) < 2  # the design meets the budget
    bias, coverage, half = summary(sim.aipw, sim.truth)
    uniform = float(np.mean(sim.uniform_half))
    print(f"AIPW bias {bias:+.5f} coverage {coverage:.4f} half {half:.4f} uniform {uniform:.4f}")
    assert abs(bias) <= 0.002
    assert 0.93 <= coverage <= 0.97
    assert half <= 0.9 * uniform


def test_the_naive_mean_of_the_mixed_sample_is_biased(
    simulated: tuple[Simulated, review.Design],
) -> None:
    sim, _ = simulated
    naive = float(np.mean(np.array(sim.naive) - np.array(sim.truth)))
    aipw, _, _ = summary(sim.aipw, sim.truth)
    print(f"naive bias {naive:+.4f}")
    assert naive < -0.02  # the borderline share over-samples the uncertain, so the errors
    assert abs(naive) > 10 * abs(aipw)


def test_horvitz_thompson_is_unbiased_but_wider_than_aipw(
    simulated: tuple[Simulated, review.Design],
) -> None:
    sim, _ = simulated
    bias, coverage, half = summary(sim.ht, sim.truth)
    _, _, aipw_half = summary(sim.aipw, sim.truth)
    print(f"HT bias {bias:+.5f} coverage {coverage:.4f} half {half:.4f}")
    errors = np.array([r.value for r in sim.ht], dtype=np.float64) - np.array(sim.truth)
    assert abs(bias) <= 3 * errors.std() / math.sqrt(len(errors))  # Monte Carlo noise only
    assert 0.93 <= coverage <= 0.97
    assert half > 2 * aipw_half


def test_the_plan_bounds_the_simulated_unit_variance(
    simulated: tuple[Simulated, review.Design],
) -> None:
    """The plan's unit variance (a bound) is at least what the simulation shows: the half-width
    it promises for 100 reviews a window is not narrower than the realized one."""
    sim, design = simulated
    value = np.array([r.value for r in sim.aipw], dtype=np.float64)
    observed = float(np.var(value - np.array(sim.truth))) * 100
    accuracy = float(np.mean(sim.truth))
    seen = review.Traffic(per_day=RECORDS * 24, mean_g=design.mean_g)
    bound = review.unit_variance(seen, accuracy, random_share=0.3)
    assert observed <= bound <= 2 * observed
    answer = review.plan(seen, HOUR, accuracy=accuracy, budget=100 * 24, random_share=0.3)
    assert answer.half_width is not None
    assert answer.half_width >= Z * math.sqrt(observed / 100) * (1 - 0.02)


# -- counters against arrays -------------------------------------------------------------------


def binary_reference(rng: np.random.Generator, rows: int = 20_000) -> Reference:
    score = calibrated(rng, (rows,))
    actual = (rng.uniform(size=rows) < score).astype(np.intp)
    fitted = calibration.fit_binary(score, (score >= 0.5).astype(np.intp), actual)
    prediction = CategoricalProfile("prediction", ("0", "1"), (0.5, 0.5, 0.0), (), 100, 0)
    return Reference(3, "", T0, "upload", Profile(rows, (prediction,), fitted))


def test_the_estimate_of_the_counters_is_the_estimate_of_the_arrays() -> None:
    """Selection's counters and the review labels' (through `core.join`, in several minute
    buckets) give the estimate `aipw` gives on the records' arrays; relabels move the review
    counters by the difference."""
    rng = np.random.default_rng(3)
    reference = binary_reference(rng)
    monitor = reviewed_monitor(budget=300.0)
    known = {monitor.key: Known(7, monitor, {"": reference})}
    n = 3000
    score = calibrated(rng, (n,))
    predicted = (score >= 0.5).astype(int)
    actual = (rng.uniform(size=n) < score).astype(int)
    records = [
        PredictionRecord(
            monitor.key, f"p{i}", "model", "v1", T0 + i, int(predicted[i]), score=float(score[i])
        )
        for i in range(n)
    ]
    fallback = PredictionRecord(monitor.key, "p0", "fallback", "v1", T0, 1, score=0.9)
    design = review.design(
        monitor.spec.review,  # type: ignore[arg-type]
        HOUR,
        review.Traffic(per_day=n * 24, mean_g=0.3),
        T0,
    )
    selected = review.select([*records, fallback], known, {7: design}, [None] * (n + 1))
    assert selected.marks[n] is None  # the fallback's answer is never queued
    queued = selected.queued()
    assert 150 < len(queued) < 450
    f = np.empty(n)
    pi = np.empty(n)
    for i, record in enumerate(records):
        read = review.correctness("binary", record.prediction, record.score, None, 0.5, reference)
        assert read is not None
        assert read[0] == str(predicted[i])
        f[i] = read[1]
        pi[i], _ = review.inclusion(design, f[i], in_band=False, outlier=False)
    marked = np.zeros(n, dtype=bool)
    labeling = Labeling()
    for i, mark in queued:
        assert mark.pi == pytest.approx(pi[i])
        assert mark.f == pytest.approx(f[i])
        marked[i] = True
        row = msgspec.structs.replace(Row.of(i, records[i]), review=mark)
        labeling.apply(7, row, Label(value=int(actual[i]), reviewer="ann"), monitor.spec)
    counters = metrics.total([*selected.deltas().values(), *labeling.deltas.values()])
    right = (actual == predicted).astype(np.float64)
    found = review.estimate("binary", counters)["accuracy"]
    expected = review.aipw(right, f, pi, marked)
    assert same(found, expected)
    assert found.n == len(queued)
    assert set(review.estimate("binary", counters)) == set(review.REVIEWED_NAMES["binary"])

    # a second reviewer's opposite label replaces the first: rev does not move, the residual does
    i, mark = queued[0]
    row = labeling.current(msgspec.structs.replace(Row.of(i, records[i]), review=mark))
    again = Labeling()
    again.apply(7, row, Label(value=1 - int(actual[i]), reviewer="bob"), monitor.spec)
    [delta] = again.deltas.values()
    part = str(predicted[i])
    assert review.key("rev", part) not in delta
    residual = (float(actual[i] != predicted[i]) - mark.f) / mark.pi
    assert delta[review.key("r", part)] == pytest.approx(residual - (right[i] - mark.f) / mark.pi)
    # a label that is no review's (ground truth arriving) keeps the record reviewed: the same
    # value moves nothing, another one the residual, never rev
    relabeled = labeling.current(row)
    assert relabeled.label == Label(value=int(actual[i]), reviewer="ann")
    plain = Labeling()
    assert not plain.apply(7, relabeled, Label(value=int(actual[i])), monitor.spec)
    assert plain.apply(7, relabeled, Label(value=1 - int(actual[i])), monitor.spec)
    [delta] = plain.deltas.values()
    assert review.key("rev", part) not in delta
    assert delta[review.key("r", part)] == pytest.approx(
        (float(actual[i] != predicted[i]) - right[i]) / mark.pi
    )
    [(kept, _)] = plain.rows.values()
    assert kept.label == Label(value=1 - int(actual[i]), reviewer="ann")


def test_the_counters_count_only_the_stored_records_and_the_model_records_of_review_monitors() -> (
    None
):
    plain = churn_monitor()
    reviewed = reviewed_monitor(budget=1e7)  # every record queued
    known = {
        plain.key: Known(1, plain),
        "ml/other": Known(2, dataclasses.replace(reviewed, name="other")),
    }
    records = [
        PredictionRecord(plain.key, "a", "model", "v1", T0, 1, score=0.9),
        PredictionRecord("ml/other", "b", "model", "v1", T0, 1, score=0.9),
        PredictionRecord("ml/other", "c", "model", "v1", T0 + 60, 0, score=0.2),
        PredictionRecord("ml/other", "d", "fallback", "v1", T0, 1, score=0.9),
        PredictionRecord("ml/other", "e", "model", "v1", T0, "maybe", score=0.9),
    ]
    selected = review.select(records, known, {}, [None, 1.0, None, None, None])
    assert [m is not None for m in selected.marks] == [False, True, True, False, False]
    assert selected.marks[1] == review.Mark(1.0, 0.9, "1", "random")
    assert [i for i, _ in selected.queued([0, 2, 3])] == [2]
    everything = selected.deltas()
    minute = bucket_of(T0)
    assert set(everything) == {(2, "v1", "model", minute), (2, "v1", "model", minute + 1)}
    assert everything[(2, "v1", "model", bucket_of(T0))] == pytest.approx(
        {
            review.key("n", "1"): 1,
            review.key("f", "1"): 0.9,
            review.key("sel", "1"): 1,
            review.G_KEY: math.sqrt(0.9 * 0.1),
            review.OUT_KEY: 1,
        }
    )
    assert set(selected.deltas([2])) == {(2, "v1", "model", bucket_of(T0) + 1)}
    assert selected.deltas([0, 3]) == {}


def test_the_abstain_band_and_the_explored_share_are_queued_with_their_pi() -> None:
    abstain = AbstainSpec(low=0.4, high=0.6, explore=0.05)
    monitor = reviewed_monitor(budget=10.0, abstain=abstain)
    spec = monitor.spec.review
    assert spec is not None
    known = {monitor.key: Known(1, monitor)}
    design = review.design(spec, HOUR, review.Traffic(per_day=1e6, mean_g=0.3), T0)
    assert design.explore == 0.05
    n = 4000
    rng = np.random.default_rng(5)
    score = rng.uniform(size=n)
    records = [
        PredictionRecord(
            monitor.key,
            f"id-{i}",
            "model",
            "v1",
            T0,
            int(score[i] >= 0.5),
            score=float(score[i]),
            abstained=review.abstains(monitor.key, spec, f"id-{i}", float(score[i])),
        )
        for i in range(n)
    ]
    selected = review.select(records, known, {1: design}, [None] * n)
    marks = selected.marks
    band = (score >= 0.4) & (score <= 0.6)
    for i in np.flatnonzero(band).tolist():
        assert marks[i] == review.Mark(1.0, marks[i].f, marks[i].part, "abstain")  # type: ignore[union-attr]
    explored = [i for i in range(n) if records[i].abstained and not band[i]]
    assert all(marks[i] is not None and marks[i].reason == "explore" for i in explored)  # type: ignore[union-attr]
    assert len(explored) / (~band).sum() == pytest.approx(0.05, abs=0.012)
    others = [m for i, m in enumerate(marks) if m is not None and not records[i].abstained]
    assert all(m.pi < 1 and m.reason in ("random", "borderline") for m in others)
    counters = metrics.total(selected.deltas().values())
    assert counters[review.BAND_KEY] == band.sum()


# -- draw, band, design ------------------------------------------------------------------------


def test_the_draw_is_fixed_by_monitor_seed_and_id_and_spread_uniformly() -> None:
    assert review.draw("ml/churn", 0, "x") == review.draw("ml/churn", 0, "x")
    assert review.draw("ml/churn", 0, "x") != review.draw("ml/churn", 1, "x")
    assert review.draw("ml/churn", 0, "x") != review.draw("ml/other", 0, "x")
    ids = [f"id-{i}" for i in range(20_000)]
    draws = np.array([review.draw("ml/churn", 0, i) for i in ids])
    assert np.array_equal(review.draws("ml/churn", 0, ids), draws)  # a batch draws the same
    assert review.draws("ml/churn", 0, ids[:500]).tolist() == [
        capture.uniform(f"0:ml/churn:{i}") for i in ids[:500]
    ]  # as the scalar draw the sidecar's sampling takes
    assert ((draws >= 0) & (draws < 1)).all()
    counts = np.bincount((draws * 10).astype(int), minlength=10)
    assert (abs(counts - 2000) < 150).all()  # 3.5 standard deviations


def test_the_band_is_closed_and_abstaining_needs_an_abstain_spec() -> None:
    abstain = AbstainSpec(low=0.4, high=0.6)
    assert review.in_band(abstain, 0.4)
    assert review.in_band(abstain, 0.6)
    assert not review.in_band(abstain, 0.61)
    assert not review.in_band(abstain, None)
    assert not review.in_band(None, 0.5)
    plain = ReviewSpec(budget=10)
    assert not review.abstains("ml/churn", plain, "x", 0.5)
    everyone = ReviewSpec(budget=10, abstain=AbstainSpec(low=0.4, high=0.6, explore=0.999999))
    assert review.abstains("ml/churn", everyone, "x", 0.99)


def test_the_design_meets_the_budget_and_says_when_it_cannot() -> None:
    spec = ReviewSpec(budget=500, random=0.3, borderline=0.7, outliers=0.5)
    rng = np.random.default_rng(8)
    score = calibrated(rng, (100_000,))
    f = np.maximum(score, 1 - score)
    g = np.sqrt(f * (1 - f))
    per_day = 100_000.0
    ok = review.design(spec, HOUR, review.Traffic(per_day, float(g.mean()), 0.0, 100.0), T0)
    assert (ok.status, ok.message, ok.computed) == ("ok", "", T0)
    assert ok.uniform / ok.borderline == pytest.approx(0.3 / 0.7)
    outlier = np.arange(f.size) < 100
    pi, _ = review.inclusions(ok, f, np.zeros(f.size, dtype=bool), outlier)
    assert pi.sum() == pytest.approx(500, rel=0.03)
    assert ok.expected_per_day == pytest.approx(500)

    over = review.design(spec, HOUR, review.Traffic(per_day, 0.3, band_per_day=600.0), T0)
    assert over.status == "over_budget"
    assert (over.uniform, over.borderline) == (0.0, 0.0)
    assert "600" in over.message
    assert "500" in over.message
    under = review.design(spec, HOUR, review.Traffic(300.0, 0.3), T0)
    assert under.status == "under_traffic"
    assert under.uniform == 1.0
    assert "300 records a day" in under.message
    quiet = review.design(spec, HOUR, review.Traffic(0.0, 0.0), T0)
    assert quiet.status == "no_traffic"
    assert quiet.message
    assert quiet.computed == T0
    first = review.initial(spec, HOUR)
    assert first.computed == 0.0
    assert first.uniform + first.borderline == pytest.approx(500 / 86400)
    assert (quiet.uniform, quiet.borderline) == (first.uniform, first.borderline)
    per_window = dataclasses.replace(spec, budget=50, per="window")
    assert review.design(per_window, 600.0, review.Traffic(per_day, 0.3), T0).budget_per_day == 7200


def test_the_traffic_is_read_from_the_ingest_counters() -> None:
    counters = {
        review.key("n", "0"): 300.0,
        review.key("n", "1"): 300.0,
        review.G_KEY: 150.0,
        review.BAND_KEY: 100.0,
        review.OUT_KEY: 6.0,
    }
    seen = review.traffic(counters, 60.0)
    assert seen == review.Traffic(600 * 24, 0.3, 100 * 24, 6 * 24)


def test_inclusion_and_its_reasons() -> None:
    design = review.Design(uniform=0.1, borderline=0.2, mean_g=0.25, explore=0.05, outliers=0.5)
    assert review.inclusion(design, 0.5, in_band=True, outlier=False) == (1.0, "abstain")
    pi, reason = review.inclusion(design, 0.5, in_band=False, outlier=False, u=0.2)
    assert (pi, reason) == (pytest.approx(0.1 + 0.2 * 0.5 / 0.25), "borderline")
    assert review.inclusion(design, 1.0, in_band=False, outlier=False, u=0.07) == (
        pytest.approx(0.1),
        "random",
    )
    assert review.inclusion(design, 1.0, in_band=False, outlier=False)[1] == "explore"
    assert review.inclusion(design, 1.0, in_band=False, outlier=True, u=0.3) == (0.5, "outlier")


# -- correctness and the other tasks ------------------------------------------------------------


def test_correctness_reads_the_calibration_or_the_raw_score() -> None:
    reference = binary_reference(np.random.default_rng(4))
    table = calibration.table(reference.profile.calibration.curve)  # type: ignore[union-attr]
    p = float(table[calibration.bins(np.array([0.7]))[0]])
    assert review.correctness("binary", 1, 0.7, None, 0.5, reference) == ("1", pytest.approx(p))
    assert review.correctness("binary", 0, 0.7, None, 0.5, reference) == ("0", pytest.approx(1 - p))
    assert review.correctness("binary", 1, 0.7, None, 0.5, None) == ("1", 0.7)
    assert review.correctness("binary", 0.3, None, None, 0.5, None) == ("0", 0.7)
    assert review.correctness("binary", True, None, None, 0.5, None) == ("1", 0.0)
    assert review.correctness("binary", "maybe", 0.7, None, 0.5, None) is None
    scores = {"a": 0.2, "b": 0.7, "c": 0.1}
    assert review.correctness("multiclass", "b", None, scores, 0.5, None) == ("all", 0.7)
    assert review.correctness("multiclass", "z", None, scores, 0.5, None) == ("all", 0.0)
    assert review.correctness("regression", 3.5, None, None, 0.5, None) == ("loss", 0.0)
    assert review.correctness("regression", "x", None, None, 0.5, None) is None


def test_multiclass_correctness_is_the_predicted_class_calibrated_probability() -> None:
    rng = np.random.default_rng(6)
    classes = ("a", "b", "c")
    raw = rng.dirichlet([1, 1, 1], size=5000)
    actual = [classes[rng.choice(3, p=row)] for row in raw]
    said = [classes[int(np.argmax(row))] for row in raw]
    fitted = calibration.fit_multiclass(classes, raw, said, actual)
    reference = Reference(4, "", T0, "upload", Profile(5000, (), fitted))
    row = np.array([[0.2, 0.7, 0.1]])
    expected = calibration.probabilities(fitted, row)[0, 1]
    scores = {"a": 0.2, "b": 0.7, "c": 0.1}
    found = review.correctness("multiclass", "b", None, scores, 0.5, reference)
    assert found == ("all", pytest.approx(expected))


def test_multiclass_and_regression_estimates_are_the_arrays_estimates() -> None:
    rng = np.random.default_rng(9)
    n = 2000
    f = rng.uniform(0.3, 1.0, n)
    right = (rng.uniform(size=n) < f).astype(np.float64)
    pi = np.clip(0.02 + 0.1 * np.sqrt(f * (1 - f)), 0, 1)
    reviewed = rng.uniform(size=n) < pi
    counters: dict[str, float] = {review.key("n", "all"): n, review.key("f", "all"): f.sum()}
    counters[review.key("sel", "all")] = float(reviewed.sum())
    prediction = rng.normal(size=n)
    value = prediction + rng.normal(size=n)
    losses: dict[str, float] = {review.key("n", "loss"): n, review.key("sel", "loss"): 0.0}
    for i in np.flatnonzero(reviewed).tolist():
        for task, counts, mark in (
            ("multiclass", counters, review.Mark(float(pi[i]), float(f[i]), "all", "random")),
            ("regression", losses, review.Mark(float(pi[i]), 0.0, "loss", "random")),
        ):
            found = review.contribution(
                mark, task, float(prediction[i]), bool(right[i]), float(value[i])
            )
            for k, v in found.items():
                counts[k] = counts.get(k, 0.0) + v
        losses[review.key("sel", "loss")] += 1
    accuracy = review.estimate("multiclass", counters)["accuracy"]
    assert same(accuracy, review.aipw(right, f, pi, reviewed))
    e = prediction - value
    found = review.estimate("regression", losses)
    mae = review.horvitz_thompson(np.abs(e), pi, reviewed)
    mse = review.horvitz_thompson(e * e, pi, reviewed)
    assert found["mae"].value == pytest.approx(mae.value)
    assert found["mae"].upper == pytest.approx(mae.upper)
    assert same(found["mean_error"], review.horvitz_thompson(e, pi, reviewed))
    assert found["rmse"].value == pytest.approx(math.sqrt(mse.value))  # type: ignore[arg-type]
    assert found["rmse"].upper == pytest.approx(math.sqrt(mse.upper))  # type: ignore[arg-type]
    assert abs(found["mae"].value - np.abs(e).mean()) < 0.2  # type: ignore[operator]


def test_nonresponse_scales_the_residuals_by_the_share_reviewed() -> None:
    """Half the queued items reviewed: the residual sum counts twice, the variance grows."""
    full = {
        review.key("n", "all"): 1000.0,
        review.key("f", "all"): 900.0,
        review.key("sel", "all"): 20.0,
        review.key("rev", "all"): 10.0,
        review.key("r", "all"): -5.0,
        review.key("a", "all"): 40.0,
        review.key("b", "all"): 0.4,
    }
    found = review.estimate("multiclass", full)["accuracy"]
    assert found.value == pytest.approx((900 - 5 / 0.5) / 1000)
    half = Z * math.sqrt(40 / 0.25 - 0.4 / 0.5) / 1000
    assert found.upper == pytest.approx(found.value + half)  # type: ignore[operator]
    assert found.n == 10


def test_no_review_counter_no_estimate_and_nothing_reviewed_no_value() -> None:
    assert review.estimate("binary", {"tp": 3.0}) == {}
    queued = {review.key("n", "1"): 10.0, review.key("sel", "1"): 2.0}
    found = review.estimate("binary", queued)
    assert set(found) == set(review.REVIEWED_NAMES["binary"])
    assert all(r.value is None for r in found.values())


# -- planning ----------------------------------------------------------------------------------


def test_a_budget_plan_gives_back_the_half_width_and_the_drop_asked_for() -> None:
    seen = review.Traffic(per_day=120_000, mean_g=0.2, band_per_day=500)
    asked = review.plan(
        seen, HOUR, accuracy=0.9, half_width=0.02, detect=0.05, within=6 * HOUR, random_share=0.3
    )
    assert asked.for_half_width is not None
    assert asked.for_detection is not None
    assert asked.needed == max(asked.for_half_width, asked.for_detection)
    back = review.plan(
        seen, HOUR, accuracy=0.9, budget=asked.for_half_width, within=6 * HOUR, random_share=0.3
    )
    assert back.half_width == pytest.approx(0.02)
    back = review.plan(
        seen, HOUR, accuracy=0.9, budget=asked.for_detection, within=6 * HOUR, random_share=0.3
    )
    assert back.detectable == pytest.approx(0.05)
    # the borderline share needs fewer reviews than a uniform sample
    uniform = review.plan(seen, HOUR, accuracy=0.9, half_width=0.02)
    assert uniform.for_half_width > asked.for_half_width  # type: ignore[operator]
    # a budget the band eats buys nothing
    assert review.plan(seen, HOUR, accuracy=0.9, budget=400).half_width is None
